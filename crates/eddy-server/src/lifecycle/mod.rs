//! The server's life on the thread that called `run`: start every thread, accept until a
//! shutdown is asked for, then shut down in phases and report.
//!
//! Above `reactor` and `worker` (whose threads it starts) and below `server`.
//! `supervisor` is the accept loop (with the heartbeat, reloads and supervisor commands),
//! `signals` the signal pipes, `reloader` a reload's phases, `roles` the handler types
//! erased, `process` user threads, `shutdown` the phases after the accept loop.

mod process;
mod reloader;
mod roles;
mod shutdown;
mod signals;
mod supervisor;

pub use process::ProcessContext;
pub(crate) use process::{ProcessFn, Processes};
pub(crate) use roles::{Roles, TaskRoles, Typed};
pub use shutdown::ShutdownReport;

use std::{
    io,
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::Instant,
};

use crossbeam_channel::{unbounded, Receiver, Sender};

use self::{roles::spawn, shutdown::Threads, signals::Signals, supervisor::Supervisor};
use crate::{
    dispatch::DispatchMode,
    net::Listener,
    reactor::{Reactor, ReactorReport},
    shared::{Command, Event, ServerHandle, Shared, WorkerRun},
};

/// The receiving ends of the reactors' command channels and the workers' inboxes (and the
/// inboxes' sending ends, which only reactors keep once the server runs).
#[derive(Debug)]
pub(crate) struct Mailboxes {
    pub(crate) reactor_rx: Vec<Receiver<Command>>,
    pub(crate) worker_rx: Vec<Receiver<Event>>,
    pub(crate) worker_tx: Vec<Sender<Event>>,
}

/// How started threads report back: started (once ready), done (workers, by id), each
/// reactor's report, and task workers done (by id).
struct Reports {
    started: Channel<()>,
    done: Channel<usize>,
    reactors: Channel<(usize, ReactorReport)>,
    task_done: Channel<usize>,
}

/// Both ends of an unbounded channel.
type Channel<T> = (Sender<T>, Receiver<T>);

/// Workers made to run inline on the reactors (`DispatchMode::Reactor`), by reactor.
type InlineWorkers = Vec<Option<Box<dyn WorkerRun>>>;

/// Run a built server on this thread until it has shut down.
pub(crate) fn run(
    shared: Arc<Shared>,
    listeners: Vec<Option<Listener>>,
    mut roles: Box<dyn Roles>,
    processes: &[(String, ProcessFn)],
    mut mailboxes: Mailboxes,
    ready: impl FnOnce(),
) -> io::Result<ShutdownReport> {
    let handle = ServerHandle {
        shared: shared.clone(),
    };
    let signals = if shared.config.handle_signals {
        Some(Signals::install().map_err(|err| abort_start(&shared, err))?)
    } else {
        None
    };
    let reports = Reports {
        started: unbounded(),
        done: unbounded(),
        reactors: unbounded(),
        task_done: unbounded(),
    };
    // A worker whose thread started stops by itself if start-up fails: its inbox's senders
    // go with `mailboxes`. Reactors and task workers are told to (`abort_start`).
    let (workers, inline) = spawn_workers(&mut *roles, &handle, &mut mailboxes, &reports)
        .map_err(|err| abort_start(&shared, err))?;
    let reactors = spawn_reactors(&shared, &mut mailboxes, inline, &reports)
        .map_err(|err| abort_start(&shared, err))?;
    let task_workers = roles
        .spawn_task_workers(&handle, &reports.started.0, &reports.task_done.0)
        .map_err(|err| abort_start(&shared, err))?;
    let Reports {
        started,
        done,
        reactors: reactor_reports,
        task_done,
    } = reports;
    let expected = shared.config.worker_num + task_workers.len();
    drop((started.0, done.0, reactor_reports.0, task_done.0));
    // Only reactors hold worker queue senders now: workers stop when every reactor has.
    mailboxes.worker_tx.clear();
    for _ in 0..expected {
        if started.1.recv().is_err() {
            break;
        }
    }
    let mut main = roles.main();
    main.on_start(&handle);
    let mut processes =
        Processes::start(&handle, processes).map_err(|err| abort_start(&shared, err))?;
    // Shared with the reactors, which accept on them; closed at the shutdown.
    let listeners: Vec<Option<Arc<Listener>>> =
        listeners.into_iter().map(|l| l.map(Arc::new)).collect();
    let accepted = Supervisor::new(&shared, &listeners, signals, &mut *main);
    ready();
    let (result, signals) = accepted.run();
    processes.tell_stop();
    let threads = Threads {
        reactors,
        reactor_reports: reactor_reports.1,
        workers,
        done: done.1,
        task_workers,
        task_done: task_done.1,
    };
    let report = shutdown::shut_down(&handle, listeners, threads, processes, &mut *main, &result);
    drop(signals);
    result.map(|()| report)
}

/// Start-up failed (a thread could not be spawned, the signal pipes could not be made): tell
/// the reactors and task workers started to stop at once, so that a `run` that failed leaves
/// no thread running (they are not waited for), and close the task queues, so that a task
/// sent through a handle taken before `run` is refused rather than left waiting. Returns
/// `err`.
fn abort_start(shared: &Shared, err: io::Error) -> io::Error {
    tracing::error!("server start-up failed: {err}; stopping the threads started");
    shared.shutdown_requested.store(true, Ordering::SeqCst);
    shared.reactors_stopping.store(true, Ordering::SeqCst);
    let deadline = *shared.deadline.get_or_init(Instant::now);
    for reactor in shared.outlet.reactors() {
        reactor.command(Command::Shutdown(deadline));
    }
    if let Some(pool) = &shared.tasks {
        pool.close(deadline);
    }
    err
}

/// Start the worker threads; in `DispatchMode::Reactor`, make the workers the reactors will
/// run inline instead.
fn spawn_workers(
    roles: &mut dyn Roles,
    handle: &ServerHandle,
    mailboxes: &mut Mailboxes,
    reports: &Reports,
) -> io::Result<(Vec<JoinHandle<()>>, InlineWorkers)> {
    let inline = matches!(handle.shared.config.dispatch_mode, DispatchMode::Reactor);
    let mut threads = Vec::new();
    let mut inline_workers = Vec::new();
    for (id, inbox) in mailboxes.worker_rx.drain(..).enumerate() {
        let worker = roles.worker(id, inbox, handle);
        if inline {
            // Reactor `id` runs this worker's handler itself.
            inline_workers.push(Some(worker));
            continue;
        }
        let (done, started) = (reports.done.0.clone(), reports.started.0.clone());
        threads.push(spawn(format!("eddy-worker-{id}"), move || {
            worker.run(Box::new(move || {
                let _ = started.send(());
            }));
            let _ = done.send(id);
        })?);
    }
    Ok((threads, inline_workers))
}

/// Start the reactor threads, each with its inline worker if it has one.
fn spawn_reactors(
    shared: &Arc<Shared>,
    mailboxes: &mut Mailboxes,
    mut inline: InlineWorkers,
    reports: &Reports,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut reactors = Vec::new();
    for (id, commands) in mailboxes.reactor_rx.drain(..).enumerate() {
        let worker = inline.get_mut(id).and_then(Option::take);
        let inboxes = mailboxes.worker_tx.clone();
        let mut reactor = Reactor::new(id, shared.clone(), commands, inboxes, worker);
        let (done, started) = (reports.done.0.clone(), reports.started.0.clone());
        let report_tx = reports.reactors.0.clone();
        reactors.push(spawn(format!("eddy-reactor-{id}"), move || {
            let is_worker = reactor.start_worker();
            if is_worker {
                let _ = started.send(());
            }
            let report = reactor.run();
            if is_worker {
                let _ = done.send(id);
            }
            let _ = report_tx.send((id, report));
        })?);
    }
    Ok(reactors)
}
