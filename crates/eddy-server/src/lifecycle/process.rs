//! User threads (Swoole's `addProcess`): long-running application code beside the server,
//! with a handle to it, restarted if it returns or panics, told to stop at shutdown.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::{error::panic_message, shared::ServerHandle};

/// A user thread's body: called again whenever it returns or panics, until the server stops.
pub(crate) type ProcessFn = Arc<dyn Fn(&ProcessContext) + Send + Sync>;

/// What a user thread gets: the server, and word of its stop.
#[derive(Debug)]
pub struct ProcessContext {
    server: ServerHandle,
    id: usize,
    name: String,
    stop: Receiver<()>,
}

impl ProcessContext {
    /// The server: send, close, tasks (`server().tasks::<T>()`), `send_message`, stats.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// This user thread's index, in the order `add_process` was called.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The name given to `add_process` (also the thread's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the server is stopping: return soon.
    pub fn is_stopping(&self) -> bool {
        !matches!(
            self.stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Empty)
        )
    }

    /// Sleep for `timeout`, or less if the server stops meanwhile; returns whether it is
    /// stopping. The way to pace a loop without delaying a shutdown.
    pub fn wait_stop(&self, timeout: Duration) -> bool {
        !matches!(
            self.stop.recv_timeout(timeout),
            Err(RecvTimeoutError::Timeout)
        )
    }
}

/// The running user threads, and how to stop them.
pub(crate) struct Processes {
    /// Dropped to tell every user thread to stop.
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    done: Receiver<usize>,
}

impl Processes {
    /// Start each user thread.
    pub(crate) fn start(
        server: &ServerHandle,
        bodies: &[(String, ProcessFn)],
    ) -> std::io::Result<Processes> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (done_tx, done) = crossbeam_channel::unbounded();
        let mut threads = Vec::with_capacity(bodies.len());
        for (id, (name, body)) in bodies.iter().enumerate() {
            let ctx = ProcessContext {
                server: server.clone(),
                id,
                name: name.clone(),
                stop: stop_rx.clone(),
            };
            let (body, done_tx) = (body.clone(), done_tx.clone());
            let thread = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    supervise(&ctx, &*body);
                    let _ = done_tx.send(id);
                })?;
            threads.push(thread);
        }
        Ok(Processes {
            stop: Some(stop_tx),
            threads,
            done,
        })
    }

    /// Tell every user thread to stop (at the start of a shutdown).
    pub(crate) fn tell_stop(&mut self) {
        self.stop.take();
    }

    /// Wait for the user threads until `deadline` (a little more). Returns how many are still
    /// running (left detached).
    pub(crate) fn join(mut self, deadline: Instant) -> usize {
        self.tell_stop();
        let grace = deadline.max(Instant::now()) + Duration::from_millis(100);
        let mut threads: Vec<Option<JoinHandle<()>>> = self.threads.into_iter().map(Some).collect();
        let mut left = threads.len();
        while left > 0 {
            let Ok(id) = self.done.recv_deadline(grace) else {
                break;
            };
            if let Some(thread) = threads[id].take() {
                let _ = thread.join();
            }
            left -= 1;
        }
        if left > 0 {
            tracing::warn!(
                left,
                "user threads still running at the shutdown deadline: detached"
            );
        }
        left
    }
}

/// Run `body` until the server stops: again after it returns or panics, waiting 10 ms
/// doubling to 1 s between quick failures (a run that lasted a second resets the wait).
fn supervise(ctx: &ProcessContext, body: &(dyn Fn(&ProcessContext) + Send + Sync)) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| body(ctx)));
        if ctx.is_stopping() {
            return;
        }
        match outcome {
            Ok(()) => tracing::warn!(process = ctx.name, "user thread returned: restarting"),
            Err(panic) => tracing::error!(
                process = ctx.name,
                "user thread panicked: {}; restarting",
                panic_message(&*panic)
            ),
        }
        if began.elapsed() >= Duration::from_secs(1) {
            backoff = Duration::from_millis(10);
        }
        if ctx.wait_stop(backoff) {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
