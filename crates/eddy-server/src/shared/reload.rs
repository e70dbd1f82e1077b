//! Rebuilding handlers while the server runs: `reload` (SIGUSR1), `reload` of the task workers
//! only (SIGUSR2), `stop_worker`, `max_request`, and after a panic.
//!
//! Connections live in the reactors, not in the handlers, so a rebuild loses nothing: a worker
//! swaps its handler between two events: the old one gets `on_worker_stop` after the last
//! event it took, the new one `on_worker_start` before the next.

use std::{
    fmt,
    sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
};

use parking_lot::Mutex;

/// The first wait between two failed handler starts; it doubles up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);
/// The longest wait between two failed handler starts.
pub(crate) const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// `max` plus a random grace of up to half of it (when over 10), so that workers started
/// together do not all rebuild at the same moment (Swoole's `max_request_grace`).
pub(crate) fn jittered(max: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let grace = if max > 10 { max / 2 } else { 0 };
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(max);
    max + (hasher.finish() as usize) % (grace + 1)
}

/// Which handlers a reload rebuilds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadScope {
    /// Every worker's and task worker's handler (SIGUSR1).
    All,
    /// Only the task workers' handlers (SIGUSR2).
    TaskWorkers,
}

/// Why a reload was not started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadError {
    /// A reload is already running; this request is ignored.
    InProgress,
    /// The server is shutting down.
    ShuttingDown,
    /// `stop_worker` with an id past `worker_num`.
    NoSuchWorker {
        /// The id asked for.
        id: usize,
        /// How many workers there are.
        worker_num: usize,
    },
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::InProgress => f.write_str("a reload is already running: ignored"),
            ReloadError::ShuttingDown => f.write_str("the server is shutting down"),
            ReloadError::NoSuchWorker { id, worker_num } => {
                write!(f, "no worker {id} (worker_num is {worker_num})")
            }
        }
    }
}

impl std::error::Error for ReloadError {}

/// Why a worker rebuilt its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rebuild {
    /// Part of server-wide reload number `n`: acknowledge it when done.
    Reload(u64),
    /// `stop_worker`: just this worker.
    Restart,
}

/// What a worker is doing, as [`ServerHandle::worker_status`](crate::ServerHandle::worker_status)
/// reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Waiting for an event.
    Idle,
    /// Running a callback.
    Busy,
    /// Rebuilding its handler (reload, `max_request`, after a panic) or shutting down.
    Stopping,
}

/// A panic caught in a callback, as [`EventHandler::on_worker_error`] receives it.
///
/// [`EventHandler::on_worker_error`]: crate::EventHandler::on_worker_error
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerError {
    /// The worker it happened on.
    pub worker_id: usize,
    /// The callback that panicked (`on_receive`, …).
    pub callback: &'static str,
    /// The connection the event was about, if any.
    pub conn: Option<crate::conn::ConnId>,
    /// The panic's message.
    pub message: String,
    /// Whether that connection was closed for it ([`CloseReason::HandlerPanic`]).
    ///
    /// [`CloseReason::HandlerPanic`]: crate::CloseReason::HandlerPanic
    pub closed: bool,
}

/// A reload's number and what it still waits for.
#[derive(Debug, Default)]
struct Progress {
    generation: u64,
    pending: usize,
}

/// The state of server-wide reloads, shared by the supervisor, the workers and the handles.
#[derive(Debug, Default)]
pub(crate) struct ReloadState {
    /// A reload was asked for and not finished yet.
    pub(crate) running: AtomicBool,
    /// 0: nothing asked; 1: `All`; 2: `TaskWorkers`. Taken by the supervisor.
    pub(crate) requested: AtomicU8,
    /// The running (or last) reload's number, and how many workers and task workers have not
    /// rebuilt for it yet. One lock, so a late acknowledgement of an older reload can never
    /// count for a newer one.
    progress: Mutex<Progress>,
    /// Reloads finished (every handler rebuilt, or `max_wait_time` passed).
    pub(crate) count: AtomicU64,
    /// Handler rebuilds of workers, for any reason.
    pub(crate) worker_restarts: AtomicU64,
}

impl ReloadState {
    /// Ask for a reload; the supervisor runs it.
    pub(crate) fn request(&self, scope: ReloadScope) -> Result<(), ReloadError> {
        if self.running.swap(true, Ordering::AcqRel) {
            tracing::warn!("reload requested during a reload: ignored");
            return Err(ReloadError::InProgress);
        }
        let code = match scope {
            ReloadScope::All => 1,
            ReloadScope::TaskWorkers => 2,
        };
        self.requested.store(code, Ordering::Release);
        Ok(())
    }

    /// A worker or task worker has rebuilt for the running reload: the last one wakes the
    /// supervisor. Acknowledgements after the reload's deadline ended it are ignored.
    pub(crate) fn ack(&self, generation: u64, supervisor: &crate::sys::Poller) {
        let mut progress = self.progress.lock();
        if progress.generation != generation || progress.pending == 0 {
            return;
        }
        progress.pending -= 1;
        if progress.pending == 0 {
            supervisor.notify();
        }
    }

    /// Start reload number n+1, waiting for `pending` acknowledgements; returns its number.
    pub(crate) fn begin(&self, pending: usize) -> u64 {
        let mut progress = self.progress.lock();
        progress.generation += 1;
        progress.pending = pending;
        progress.generation
    }

    /// Acknowledgements the running reload still waits for.
    pub(crate) fn pending(&self) -> usize {
        self.progress.lock().pending
    }

    /// End the running reload; returns how many never acknowledged it.
    pub(crate) fn end(&self) -> usize {
        std::mem::take(&mut self.progress.lock().pending)
    }

    /// The supervisor takes a request, if there is one.
    pub(crate) fn take_request(&self) -> Option<ReloadScope> {
        match self.requested.swap(0, Ordering::AcqRel) {
            1 => Some(ReloadScope::All),
            2 => Some(ReloadScope::TaskWorkers),
            _ => None,
        }
    }
}
