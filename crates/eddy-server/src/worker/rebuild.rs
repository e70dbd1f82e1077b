//! Rebuilding a worker's handler between two events: after a panic, at `max_request`, or when
//! asked (a reload, `stop_worker`).

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::atomic::Ordering,
};

use super::{callback::Callback, Worker};
use crate::{
    error::{panic_message, replace_guarded},
    shared::{jittered, Rebuild, FIRST_BACKOFF, MAX_BACKOFF},
    task::TaskHandler,
};

impl<T: TaskHandler> Worker<T> {
    /// Between events (and between the packets of a batch): rebuild for a panic,
    /// `max_request` or a request. Three plain loads when there is nothing to do.
    #[inline]
    pub(super) fn maintain(&mut self) {
        if self.needs_rebuild() {
            self.rebuild_now();
        }
    }

    /// Whether the handler is to be rebuilt now: three plain loads.
    #[inline]
    pub(super) fn needs_rebuild(&self) -> bool {
        self.failure.is_some()
            || self.limit.is_some_and(|limit| self.handled >= limit)
            || self.server.shared.workers[self.id].rebuild_asked()
    }

    #[cold]
    pub(super) fn rebuild_now(&mut self) {
        if self.failure.is_some() {
            self.rebuild(None);
        } else if self.limit.is_some_and(|limit| self.handled >= limit) {
            tracing::debug!(
                worker = self.id,
                handled = self.handled,
                "max_request reached"
            );
            self.rebuild(None);
        }
        while let Some(cause) = self.server.shared.workers[self.id].take_rebuild() {
            self.rebuild(Some(cause));
        }
    }

    /// Swap in a new handler from the factory: `on_worker_stop` on the old one,
    /// `on_worker_start` on the new one (retried with back-off while it panics), then
    /// `on_worker_error` if a panic caused it.
    fn rebuild(&mut self, cause: Option<Rebuild>) {
        let server = self.server.clone();
        let shared = &server.shared;
        // A reactor-mode worker's replies held for the end of its round go out first: a
        // handler that cannot start keeps the thread in back-off until the shutdown.
        shared.outlet.end_round();
        let status = &shared.workers[self.id];
        status.stopping.store(true, Ordering::Relaxed);
        self.guard(Callback::WorkerStop, None, |h, ctx| h.on_worker_stop(ctx));
        // Timers belong to the handler that set them: the new one sets its own.
        self.timers.get_mut().clear_all();
        self.build_until_started();
        self.handled = 0;
        self.limit = shared.config.max_request.map(jittered);
        shared
            .reload
            .worker_restarts
            .fetch_add(1, Ordering::Relaxed);
        if let Some(error) = self.failure.take() {
            self.guard(Callback::WorkerError, None, |h, ctx| {
                h.on_worker_error(ctx, &error)
            });
        }
        status.stopping.store(false, Ordering::Relaxed);
        if let Some(Rebuild::Reload(generation)) = cause {
            shared.reload.ack(generation, &shared.supervisor);
        }
    }

    /// Make handlers from the factory until one's `on_worker_start` returns, waiting between
    /// tries (10 ms doubling to 1 s) so a crash loop does not eat a core; gives up at a
    /// shutdown request. A factory that panics leaves the old handler in place.
    pub(super) fn build_until_started(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match catch_unwind(AssertUnwindSafe(|| (self.factory)())) {
                Ok(handler) => replace_guarded(&mut self.handler, handler, "handler"),
                Err(panic) => tracing::error!(
                    worker = self.id,
                    "handler factory panicked: {}; keeping the old handler",
                    panic_message(&*panic)
                ),
            }
            let started = self.guard(Callback::WorkerStart, None, |h, ctx| h.on_worker_start(ctx));
            if !started {
                // The timers it set before it panicked go with it: the next try sets its own
                // (without this, each failed try left one more `tick` behind).
                self.timers.get_mut().clear_all();
            }
            let shutting_down = self
                .server
                .shared
                .shutdown_requested
                .load(Ordering::Acquire);
            if started || shutting_down {
                return;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
