//! The shutdown's phases after the accept loop: stop accepting, let reactors flush and
//! close, let workers finish, wait for user threads, then task workers, then `on_shutdown`;
//! and the report of what was closed, finished and abandoned.

use std::{
    io,
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::Receiver;

use super::{process::Processes, roles::Lifecycle};
use crate::{
    net::Listener,
    reactor::ReactorReport,
    shared::{Command, ServerHandle},
};

/// How long past the deadline the supervisor waits for threads that report at the deadline
/// itself (their close events), before it leaves them behind.
const GRACE: Duration = Duration::from_millis(100);

/// How a shutdown went.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// From the end of `on_before_shutdown` (when the reactors are told to stop, and the
    /// `max_wait_time` deadline starts) to the end of `run`.
    pub elapsed: Duration,
    /// Connections closed over the server's life.
    pub connections_closed: u64,
    /// Whether everything finished within `max_wait_time`.
    pub graceful: bool,
    /// Events no worker took before the deadline.
    pub abandoned_events: u64,
    /// Bytes of output not flushed, or of packets not handled, before the deadline.
    pub abandoned_bytes: u64,
    /// Threads running handlers that were still busy at the deadline (left running, detached).
    pub unfinished_workers: usize,
    /// Tasks completed over the server's life (their `on_task` returned or panicked).
    pub tasks_finished: u64,
    /// Tasks still queued at the deadline: each ended with `TaskError::Abandoned` to its
    /// waiter.
    pub tasks_abandoned: u64,
    /// Task workers still running a task at the deadline (left running, detached).
    pub unfinished_task_workers: usize,
    /// User threads (`add_process`) still running at the deadline (left running, detached).
    pub unfinished_processes: usize,
}

/// The threads to stop, and where they report.
pub(super) struct Threads {
    pub(super) reactors: Vec<JoinHandle<()>>,
    pub(super) reactor_reports: Receiver<(usize, ReactorReport)>,
    pub(super) workers: Vec<JoinHandle<()>>,
    pub(super) done: Receiver<usize>,
    pub(super) task_workers: Vec<JoinHandle<()>>,
    pub(super) task_done: Receiver<usize>,
}

/// Wait until `grace` for `n` threads to report their ids on `done` (with what `on_report`
/// makes of each report), joining those of `threads` that did (in `DispatchMode::Reactor`
/// workers have no threads of their own: `threads` is empty). Returns how many did not.
fn join_until<R>(
    n: usize,
    threads: Vec<JoinHandle<()>>,
    done: &Receiver<R>,
    grace: Instant,
    mut on_report: impl FnMut(R) -> usize,
) -> usize {
    let mut threads: Vec<Option<JoinHandle<()>>> = threads.into_iter().map(Some).collect();
    let mut left = vec![true; n];
    while left.iter().any(|l| *l) {
        let Ok(report) = done.recv_deadline(grace) else {
            break;
        };
        let id = on_report(report);
        if let Some(slot) = left.get_mut(id) {
            *slot = false;
        }
        if let Some(thread) = threads.get_mut(id).and_then(Option::take) {
            let _ = thread.join();
        }
    }
    left.iter().filter(|l| **l).count()
}

/// Stop accepting: stop the stream listeners (new connections are refused from now on; the
/// reactors drop them as they begin their shutdown) and remove unix socket files.
fn close_listeners(handle: &ServerHandle, listeners: Vec<Option<Arc<Listener>>>) {
    for listener in listeners.into_iter().flatten() {
        listener.stop();
        listener.cleanup();
    }
    for port in handle.shared.datagrams.iter().flatten() {
        port.socket.cleanup();
    }
}

/// Lead the shutdown after the accept loop returned `result`; returns the report.
pub(super) fn shut_down(
    handle: &ServerHandle,
    listeners: Vec<Option<Arc<Listener>>>,
    threads: Threads,
    processes: Processes,
    main: &mut dyn Lifecycle,
    result: &io::Result<()>,
) -> ShutdownReport {
    let shared = &handle.shared;
    let begun = Instant::now();
    if let Err(err) = result {
        tracing::error!("accept loop failed: {err}; shutting down");
    }
    shared.shutdown_requested.store(true, Ordering::SeqCst);
    // SeqCst: accepting reactors read it after counting a connection they hand over (see
    // `Shared::admit`). Not `shutdown_requested`, which is set as `on_before_shutdown`
    // begins: the server still accepts and hands over connections while it runs.
    shared.reactors_stopping.store(true, Ordering::SeqCst);
    close_listeners(handle, listeners);
    let deadline = *shared
        .deadline
        .get_or_init(|| begun + shared.config.max_wait_time);
    for reactor in shared.outlet.reactors() {
        reactor.command(Command::Shutdown(deadline));
    }
    // Reactors stop by the deadline on their own, unless a handler running inline on one
    // (`DispatchMode::Reactor`) blocks: wait until the deadline and a little more, then
    // leave such a thread behind rather than hang.
    let mut abandoned = ReactorReport::default();
    let reactors_left = join_until(
        threads.reactors.len(),
        threads.reactors,
        &threads.reactor_reports,
        deadline.max(Instant::now()) + GRACE,
        |(id, part)| {
            abandoned.abandoned_events += part.abandoned_events;
            abandoned.abandoned_bytes += part.abandoned_bytes;
            id
        },
    );
    let unfinished = stop_workers(
        handle,
        threads.workers,
        &threads.done,
        deadline,
        reactors_left,
    );
    // User threads were told to stop when the shutdown began; wait for them before the
    // task workers stop, as they may still send tasks.
    let unfinished_processes = processes.join(deadline);
    // Datagrams `sendto` queued after their reactor had stopped (a reactor that reached the
    // deadline dropped and counted its own): nobody flushes them now.
    let unsent: usize = shared.datagrams.iter().flatten().map(|p| p.discard()).sum();
    abandoned.abandoned_bytes += unsent as u64;
    // Workers have taken the results owed to them: now the task workers finish what is
    // queued, until the deadline.
    let (tasks_abandoned, unfinished_task_workers) =
        stop_task_workers(handle, threads.task_workers, &threads.task_done, deadline);
    main.on_shutdown(handle);
    let stats = handle.stats();
    let report = ShutdownReport {
        elapsed: begun.elapsed(),
        connections_closed: stats.close_count,
        graceful: unfinished == 0
            && abandoned.abandoned_events == 0
            && abandoned.abandoned_bytes == 0
            && tasks_abandoned == 0
            && unfinished_task_workers == 0
            && unfinished_processes == 0,
        abandoned_events: abandoned.abandoned_events,
        abandoned_bytes: abandoned.abandoned_bytes,
        unfinished_workers: unfinished,
        tasks_finished: stats.task_completed + stats.task_failed,
        tasks_abandoned,
        unfinished_task_workers,
        unfinished_processes,
    };
    tracing::info!(?report, "server stopped");
    report
}

/// Workers finish what reactors handed them, then stop: wait until the deadline (and a
/// little more, for the close events of connections closed at the deadline). Returns how
/// many are still busy.
fn stop_workers(
    handle: &ServerHandle,
    workers: Vec<JoinHandle<()>>,
    done: &Receiver<usize>,
    deadline: Instant,
    reactors_left: usize,
) -> usize {
    let n = handle.shared.config.worker_num;
    let left = join_until(
        n,
        workers,
        done,
        deadline.max(Instant::now()) + GRACE,
        |id| id,
    );
    // In `DispatchMode::Reactor` a stuck reactor is also its worker: count it once.
    let unfinished = left.max(reactors_left);
    if unfinished > 0 {
        tracing::warn!(
            unfinished,
            "workers still busy at the shutdown deadline: detached"
        );
    }
    unfinished
}

/// Close the task queues and wait for the task workers until the deadline (and a little
/// more); abandon what is left. Returns the tasks abandoned and the task workers left running.
fn stop_task_workers(
    server: &ServerHandle,
    threads: Vec<JoinHandle<()>>,
    done: &Receiver<usize>,
    deadline: Instant,
) -> (u64, usize) {
    let Some(pool) = &server.shared.tasks else {
        return (0, 0);
    };
    // Every message `send_message` took is queued before the Stop, so it is handled.
    server.shared.messages_settled();
    pool.close(deadline);
    let n = threads.len();
    let left = join_until(
        n,
        threads,
        done,
        deadline.max(Instant::now()) + GRACE,
        |id| id,
    );
    // Tasks still queued behind a task worker that is stuck, or sent after the queues closed.
    pool.abandon_queued(server);
    if left > 0 {
        tracing::warn!(
            left,
            "task workers still busy at the shutdown deadline: detached"
        );
    }
    let abandoned = pool.snapshot().abandoned;
    (abandoned, left)
}
