//! Running a user callback on a worker: with its `Context`, its panic caught.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{atomic::Ordering, Arc},
};

use super::{callback::Callback, Worker};
use crate::{
    conn::{CloseReason, Conn},
    context::Context,
    error::panic_message,
    handler::EventHandler,
    shared::WorkerError,
    task::TaskHandler,
};

impl<T: TaskHandler> Worker<T> {
    /// Run a callback with a context, catching a panic so the worker carries on. Returns
    /// whether it returned normally.
    ///
    /// After a panic in an event callback the handler is rebuilt once the event is done
    /// (`maintain`), and the connection the event was about is closed with
    /// [`CloseReason::HandlerPanic`] unless `close_on_panic` is off.
    pub(super) fn guard(
        &mut self,
        what: Callback,
        conn: Option<&Arc<Conn>>,
        f: impl FnOnce(&mut dyn EventHandler<T>, &mut Context<'_, T>),
    ) -> bool {
        if let Some(conn) = conn {
            conn.worker.store(self.id, Ordering::Relaxed);
        }
        let outcome = {
            let mut ctx = Context::new(
                &self.server,
                self.id,
                conn,
                self.tasks.as_deref(),
                &self.timers,
            );
            let handler = &mut *self.handler;
            catch_unwind(AssertUnwindSafe(|| f(handler, &mut ctx)))
        };
        let Err(panic) = outcome else {
            return true;
        };
        let message = panic_message(&*panic);
        tracing::error!(
            worker = self.id,
            conn = conn.map(|c| c.id.as_u64()),
            callback = what.name(),
            "handler panicked: {message}"
        );
        if !what.is_lifecycle() {
            let shared = &self.server.shared;
            let closed = conn.is_some_and(|conn| {
                shared.config.close_on_panic
                    && shared.outlet.close(conn, CloseReason::HandlerPanic).is_ok()
            });
            self.failure = Some(WorkerError {
                worker_id: self.id,
                callback: what.name(),
                conn: conn.map(|c| c.id),
                message,
                closed,
            });
        }
        false
    }
}
