//! `Server`: spawns the threads, runs the accept loop, and shuts down.

use std::{
    fmt, io,
    marker::PhantomData,
    sync::{atomic::Ordering, Arc, OnceLock},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::{
    command::Commands,
    config::Config,
    handle::{ReactorHandle, Shared},
    net::Listener,
    process::{ProcessFn, Processes},
    reactor::{Command, Reactor, ReactorReport},
    stats::Counters,
    supervisor::{Acceptor, Signals},
    sys::Poller,
    table::ConnTable,
    task::{run_task_worker, Finished, PoolControl, TaskFactory, TaskPool},
    worker::{Event, Worker, WorkerRun, WorkerShared},
    BuildError, DispatchMode, EventHandler, ListenAddr, ServerBuilder, ServerHandle, TaskHandler,
};

/// Makes the threads' handlers, with the handler types erased (so `Server` is not generic).
trait Roles: Send {
    /// Worker `id`, with its inbox (called once per worker).
    fn worker(
        &mut self,
        id: usize,
        inbox: Receiver<Event>,
        server: &ServerHandle,
    ) -> Box<dyn WorkerRun>;
    /// The handler that runs `on_start` and `on_shutdown`.
    fn main(&self) -> Box<dyn Lifecycle>;
    /// Start the task workers; each sends on `started` when ready and its id on `done` when
    /// it has stopped.
    fn spawn_task_workers(
        &self,
        server: &ServerHandle,
        started: &Sender<()>,
        done: &Sender<usize>,
    ) -> io::Result<Vec<JoinHandle<()>>>;
}

/// The main handler's callbacks (`on_start`, reloads, `on_shutdown`), whatever the task
/// types.
pub(crate) trait Lifecycle {
    fn on_start(&mut self, server: &ServerHandle);
    fn on_before_reload(&mut self, server: &ServerHandle);
    fn on_after_reload(&mut self, server: &ServerHandle);
    fn on_before_shutdown(&mut self, server: &ServerHandle);
    fn on_shutdown(&mut self, server: &ServerHandle);
}

struct Main<H, T>(H, PhantomData<fn() -> T>);

impl<T: TaskHandler, H: EventHandler<T>> Lifecycle for Main<H, T> {
    fn on_start(&mut self, server: &ServerHandle) {
        self.0.on_start(server)
    }
    fn on_before_reload(&mut self, server: &ServerHandle) {
        self.0.on_before_reload(server)
    }
    fn on_after_reload(&mut self, server: &ServerHandle) {
        self.0.on_after_reload(server)
    }
    fn on_before_shutdown(&mut self, server: &ServerHandle) {
        self.0.on_before_shutdown(server)
    }
    fn on_shutdown(&mut self, server: &ServerHandle) {
        self.0.on_shutdown(server)
    }
}

/// A pool with what its task workers are made of.
struct TaskRoles<T: TaskHandler> {
    pool: Arc<TaskPool<T>>,
    factory: TaskFactory<T>,
    /// Per worker: where results of its tasks arrive, handed to the worker when it is made
    /// (so once it is gone, results sent to it fail and are counted late).
    results: Vec<Option<Receiver<Finished<T>>>>,
}

struct Typed<H, F, T: TaskHandler> {
    factory: Arc<F>,
    tasks: Option<TaskRoles<T>>,
    _handler: PhantomData<fn() -> H>,
}

impl<T, H, F> Roles for Typed<H, F, T>
where
    T: TaskHandler,
    H: EventHandler<T>,
    F: Fn() -> H + Send + Sync + 'static,
{
    fn worker(
        &mut self,
        id: usize,
        inbox: Receiver<Event>,
        server: &ServerHandle,
    ) -> Box<dyn WorkerRun> {
        let tasks = self.tasks.as_mut().and_then(|t| {
            let results = t.results.get_mut(id)?.take()?;
            Some((t.pool.clone(), results))
        });
        let factory = self.factory.clone();
        Box::new(Worker::new(
            id,
            Arc::new(move || Box::new(factory()) as Box<dyn EventHandler<T>>),
            inbox,
            server.clone(),
            tasks,
        ))
    }

    fn main(&self) -> Box<dyn Lifecycle> {
        Box::new(Main((self.factory)(), PhantomData))
    }

    fn spawn_task_workers(
        &self,
        server: &ServerHandle,
        started: &Sender<()>,
        done: &Sender<usize>,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let Some(tasks) = &self.tasks else {
            return Ok(Vec::new());
        };
        let max_request = server.shared.config.task_max_request;
        (0..tasks.pool.task_worker_num())
            .map(|id| {
                let (pool, factory) = (tasks.pool.clone(), tasks.factory.clone());
                let (server, started, done) = (server.clone(), started.clone(), done.clone());
                spawn(format!("eddy-task-{id}"), move || {
                    run_task_worker(id, pool, factory, server, max_request, || {
                        let _ = started.send(());
                    });
                    let _ = done.send(id);
                })
            })
            .collect()
    }
}

impl<T: TaskHandler, H: EventHandler<T> + ?Sized> EventHandler<T> for Box<H> {
    fn on_start(&mut self, server: &ServerHandle) {
        (**self).on_start(server)
    }
    fn on_worker_start(&mut self, ctx: &mut crate::Context<'_, T>) {
        (**self).on_worker_start(ctx)
    }
    fn on_worker_stop(&mut self, ctx: &mut crate::Context<'_, T>) {
        (**self).on_worker_stop(ctx)
    }
    fn on_connect(&mut self, ctx: &mut crate::Context<'_, T>, conn: crate::ConnId) {
        (**self).on_connect(ctx, conn)
    }
    fn on_receive(
        &mut self,
        ctx: &mut crate::Context<'_, T>,
        conn: crate::ConnId,
        packet: bytes::Bytes,
    ) {
        (**self).on_receive(ctx, conn, packet)
    }
    fn on_close(
        &mut self,
        ctx: &mut crate::Context<'_, T>,
        conn: crate::ConnId,
        reason: crate::CloseReason,
    ) {
        (**self).on_close(ctx, conn, reason)
    }
    fn on_buffer_full(&mut self, ctx: &mut crate::Context<'_, T>, conn: crate::ConnId) {
        (**self).on_buffer_full(ctx, conn)
    }
    fn on_buffer_drain(&mut self, ctx: &mut crate::Context<'_, T>, conn: crate::ConnId) {
        (**self).on_buffer_drain(ctx, conn)
    }
    fn on_finish(
        &mut self,
        ctx: &mut crate::Context<'_, T>,
        task: crate::TaskId,
        result: Result<T::Output, crate::TaskError>,
    ) {
        (**self).on_finish(ctx, task, result)
    }
    fn on_pipe_message(
        &mut self,
        ctx: &mut crate::Context<'_, T>,
        src: crate::MessageSource,
        message: crate::Message,
    ) {
        (**self).on_pipe_message(ctx, src, message)
    }
    fn on_worker_error(&mut self, ctx: &mut crate::Context<'_, T>, error: &crate::WorkerError) {
        (**self).on_worker_error(ctx, error)
    }
    fn on_before_reload(&mut self, server: &ServerHandle) {
        (**self).on_before_reload(server)
    }
    fn on_after_reload(&mut self, server: &ServerHandle) {
        (**self).on_after_reload(server)
    }
    fn on_before_shutdown(&mut self, server: &ServerHandle) {
        (**self).on_before_shutdown(server)
    }
    fn on_shutdown(&mut self, server: &ServerHandle) {
        (**self).on_shutdown(server)
    }
}

/// A built server: listeners bound, threads not started yet.
///
/// ```no_run
/// use eddy_server::{Context, ConnId, EventHandler, Server};
///
/// struct Echo;
///
/// impl EventHandler for Echo {
///     fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: bytes::Bytes) {
///         let _ = ctx.send(conn, &packet);
///     }
/// }
///
/// let server = Server::builder().listen("127.0.0.1:9501").build(|| Echo)?;
/// println!("listening on {}", server.local_addr());
/// let report = server.run()?;
/// println!("{report:?}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a server does nothing until it is run"]
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    roles: Box<dyn Roles>,
    processes: Vec<(String, ProcessFn)>,
    reactor_rx: Vec<Receiver<Command>>,
    worker_rx: Vec<Receiver<Event>>,
    worker_tx: Vec<Sender<Event>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.shared.local_addrs)
            .finish_non_exhaustive()
    }
}

/// How a shutdown went.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// From the shutdown request to the end of `run`.
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

impl Server {
    /// Start configuring a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    pub(crate) fn new<T, H, F>(
        config: Config,
        factory: Arc<F>,
        task_factory: Option<TaskFactory<T>>,
        processes: Vec<(String, ProcessFn)>,
        commands: Commands,
    ) -> Result<Server, BuildError>
    where
        T: TaskHandler,
        H: EventHandler<T>,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut local_addrs = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let bound = Listener::bind(&listener.addr, config.backlog, config.reuse_port).map_err(
                |source| BuildError::Bind {
                    addr: listener.addr.to_string(),
                    source,
                },
            )?;
            local_addrs.push(bound.local_addr().map_err(BuildError::Io)?);
            listeners.push(bound);
        }
        let mut reactors = Vec::new();
        let mut reactor_rx = Vec::new();
        for _ in 0..config.reactor_num {
            let (tx, rx) = unbounded();
            let poller = Arc::new(Poller::new().map_err(BuildError::Io)?);
            reactors.push(ReactorHandle { tx, poller });
            reactor_rx.push(rx);
        }
        let (mut workers, mut worker_rx, mut worker_tx) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..config.worker_num {
            let (tx, rx) = bounded(config.worker_queue_capacity);
            workers.push(WorkerShared::new(rx.clone(), config.worker_queue_capacity));
            worker_rx.push(rx);
            worker_tx.push(tx);
        }
        let tasks = task_factory.map(|factory| {
            let (pool, results) = TaskPool::new(
                config.task_worker_num,
                config.task_queue_capacity,
                config.worker_num,
            );
            TaskRoles {
                pool: Arc::new(pool),
                factory,
                results: results.into_iter().map(Some).collect(),
            }
        });
        let shared = Arc::new(Shared {
            tasks: tasks
                .as_ref()
                .map(|t| t.pool.clone() as Arc<dyn PoolControl>),
            deadline: OnceLock::new(),
            reload: Default::default(),
            commands,
            supervisor_commands: bounded(64),
            table: ConnTable::new(config.max_conn, config.listeners.len()),
            stats: Counters::new(config.reactor_num, config.worker_num),
            reactors: reactors.into(),
            workers: workers.into(),
            local_addrs,
            supervisor: Arc::new(Poller::new().map_err(BuildError::Io)?),
            shutdown_requested: Default::default(),
            uids: Default::default(),
            start_time: SystemTime::now(),
            epoch_ms: crate::sys::coarse_ms(),
            config,
        });
        Ok(Server {
            shared,
            listeners,
            processes,
            roles: Box::new(Typed {
                factory,
                tasks,
                _handler: PhantomData,
            }),
            reactor_rx,
            worker_rx,
            worker_tx,
        })
    }

    /// The first listener's bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> &ListenAddr {
        &self.shared.local_addrs[0]
    }

    /// Every listener's bound address, in the order they were added.
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.shared.local_addrs
    }

    /// A handle to the server, usable before and while it runs.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Run the server on this thread until it shuts down (a handle's `shutdown`, SIGTERM or
    /// SIGINT), then return how the shutdown went.
    pub fn run(self) -> io::Result<ShutdownReport> {
        self.run_with(|| {})
    }

    /// Run the server on a thread of its own; returns once every thread has started and the
    /// server accepts connections.
    pub fn start(self) -> io::Result<RunningServer> {
        let handle = self.handle();
        let (ready_tx, ready_rx) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("eddy-supervisor".into())
            .spawn(move || {
                self.run_with(move || {
                    let _ = ready_tx.send(());
                })
            })?;
        match ready_rx.recv() {
            Ok(()) => Ok(RunningServer {
                handle,
                thread: Some(thread),
            }),
            // The supervisor ended before it was ready: report its error.
            Err(_) => match thread.join() {
                Ok(Err(err)) => Err(err),
                _ => Err(io::Error::other("the server stopped while starting")),
            },
        }
    }

    fn run_with(mut self, ready: impl FnOnce()) -> io::Result<ShutdownReport> {
        let handle = self.handle();
        let shared = self.shared.clone();
        let signals = if shared.config.handle_signals {
            Some(Signals::install()?)
        } else {
            None
        };
        let (done_tx, done_rx) = unbounded::<usize>();
        let mut workers = Vec::new();
        let (started_tx, started_rx) = unbounded::<()>();
        let inline = matches!(shared.config.dispatch_mode, DispatchMode::Reactor);
        let mut inline_workers = Vec::new();
        for (id, inbox) in self.worker_rx.drain(..).enumerate() {
            let worker = self.roles.worker(id, inbox, &handle);
            if inline {
                // Reactor `id` runs this worker's handler itself.
                inline_workers.push(Some(worker));
                continue;
            }
            let (done_tx, started_tx) = (done_tx.clone(), started_tx.clone());
            workers.push(spawn(format!("eddy-worker-{id}"), move || {
                worker.run(Box::new(move || {
                    let _ = started_tx.send(());
                }));
                let _ = done_tx.send(id);
            })?);
        }
        let mut reactors = Vec::new();
        let (reports_tx, reports_rx) = unbounded::<(usize, ReactorReport)>();
        for (id, commands) in self.reactor_rx.drain(..).enumerate() {
            let worker = inline_workers.get_mut(id).and_then(Option::take);
            let mut reactor =
                Reactor::new(id, shared.clone(), commands, self.worker_tx.clone(), worker);
            let (done_tx, started_tx) = (done_tx.clone(), started_tx.clone());
            let reports_tx = reports_tx.clone();
            reactors.push(spawn(format!("eddy-reactor-{id}"), move || {
                let is_worker = reactor.start_worker();
                if is_worker {
                    let _ = started_tx.send(());
                }
                let report = reactor.run();
                if is_worker {
                    let _ = done_tx.send(id);
                }
                let _ = reports_tx.send((id, report));
            })?);
        }
        let (task_done_tx, task_done_rx) = unbounded::<usize>();
        let task_workers = self
            .roles
            .spawn_task_workers(&handle, &started_tx, &task_done_tx)?;
        let task_worker_num = task_workers.len();
        drop((done_tx, started_tx, reports_tx, task_done_tx));
        // Only reactors hold worker queue senders now: workers stop when every reactor has.
        self.worker_tx.clear();
        for _ in 0..shared.config.worker_num + task_worker_num {
            if started_rx.recv().is_err() {
                break;
            }
        }
        let mut main = self.roles.main();
        main.on_start(&handle);
        let mut processes = Processes::start(&handle, &self.processes)?;
        let accepted = Acceptor::new(&shared, &self.listeners, signals, &mut *main);
        ready();
        let (result, signals) = accepted.run();
        processes.tell_stop();
        let begun = Instant::now();
        if let Err(err) = &result {
            tracing::error!("accept loop failed: {err}; shutting down");
        }
        shared.shutdown_requested.store(true, Ordering::Release);
        for listener in self.listeners.drain(..) {
            listener.cleanup();
        }
        let deadline = *shared
            .deadline
            .get_or_init(|| begun + shared.config.max_wait_time);
        for reactor in shared.reactors.iter() {
            reactor.command(Command::Shutdown(deadline));
        }
        // Reactors stop by the deadline on their own, unless a handler running inline on one
        // (`DispatchMode::Reactor`) blocks: wait until the deadline and a little more, then
        // leave such a thread behind rather than hang.
        let mut report = ReactorReport::default();
        let reactor_grace = deadline.max(Instant::now()) + Duration::from_millis(100);
        let mut reactors: Vec<Option<JoinHandle<()>>> = reactors.into_iter().map(Some).collect();
        let mut reactors_left = reactors.len();
        while reactors_left > 0 {
            let Ok((id, part)) = reports_rx.recv_deadline(reactor_grace) else {
                break;
            };
            report.abandoned_events += part.abandoned_events;
            report.abandoned_bytes += part.abandoned_bytes;
            if let Some(thread) = reactors[id].take() {
                let _ = thread.join();
            }
            reactors_left -= 1;
        }
        // Workers finish what reactors handed them, then stop. Wait until the deadline (and
        // a little more, for the close events of connections closed at the deadline).
        let grace = deadline.max(Instant::now()) + Duration::from_millis(100);
        let mut finished = vec![false; shared.config.worker_num];
        while finished.iter().any(|done| !done) {
            match done_rx.recv_deadline(grace) {
                Ok(id) => finished[id] = true,
                Err(_) => break,
            }
        }
        // In `DispatchMode::Reactor` a stuck reactor is also its worker: count it once.
        let unfinished = finished
            .iter()
            .filter(|done| !**done)
            .count()
            .max(reactors_left);
        if !inline {
            for (worker, done) in workers.into_iter().zip(&finished) {
                if *done {
                    let _ = worker.join();
                }
            }
        }
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "workers still busy at the shutdown deadline: detached"
            );
        }
        // User threads were told to stop when the shutdown began; wait for them before the
        // task workers stop, as they may still send tasks.
        let unfinished_processes = processes.join(deadline);
        // Workers have taken the results owed to them: now the task workers finish what is
        // queued, until the deadline.
        let (tasks_abandoned, unfinished_task_workers) =
            stop_task_workers(&handle, task_workers, &task_done_rx, deadline);
        main.on_shutdown(&handle);
        let stats = handle.stats();
        let report = ShutdownReport {
            elapsed: begun.elapsed(),
            connections_closed: stats.close_count,
            graceful: unfinished == 0
                && report.abandoned_events == 0
                && report.abandoned_bytes == 0
                && tasks_abandoned == 0
                && unfinished_task_workers == 0
                && unfinished_processes == 0,
            abandoned_events: report.abandoned_events,
            abandoned_bytes: report.abandoned_bytes,
            unfinished_workers: unfinished,
            tasks_finished: stats.task_completed + stats.task_failed,
            tasks_abandoned,
            unfinished_task_workers,
            unfinished_processes,
        };
        tracing::info!(?report, "server stopped");
        drop(signals);
        result.map(|()| report)
    }
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
    pool.close(deadline);
    let grace = deadline.max(Instant::now()) + Duration::from_millis(100);
    let mut threads: Vec<Option<JoinHandle<()>>> = threads.into_iter().map(Some).collect();
    let mut left = threads.len();
    while left > 0 {
        let Ok(id) = done.recv_deadline(grace) else {
            break;
        };
        if let Some(thread) = threads[id].take() {
            let _ = thread.join();
        }
        left -= 1;
    }
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

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name).spawn(f)
}

/// A server running on a thread of its own (from [`Server::start`]). Dropping it shuts the
/// server down and waits for it.
#[derive(Debug)]
pub struct RunningServer {
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<ShutdownReport>>>,
}

impl RunningServer {
    /// A handle to the server.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Shut down gracefully and wait until done.
    pub fn shutdown(mut self) -> io::Result<ShutdownReport> {
        self.handle.shutdown();
        self.join()
    }

    /// Wait until the server stops by itself (a signal or a handle's `shutdown`).
    pub fn wait(mut self) -> io::Result<ShutdownReport> {
        self.join()
    }

    fn join(&mut self) -> io::Result<ShutdownReport> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the server thread panicked"))),
            None => Err(io::Error::other("the server was already joined")),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.handle.shutdown();
            let _ = self.join();
        }
    }
}
