//! `Server`: builds the shared state and the threads' mailboxes, runs the server, and
//! returns how its shutdown went.
//!
//! Above `lifecycle` (which runs the threads) and below `builder`.

use std::{
    fmt, io,
    sync::{Arc, OnceLock},
    thread::JoinHandle,
    time::SystemTime,
};

use crossbeam_channel::{bounded, unbounded};

use crate::{
    config::Config,
    error::BuildError,
    handler::EventHandler,
    lifecycle::{self, Mailboxes, ProcessFn, Roles, ShutdownReport, TaskRoles, Typed},
    net::{DatagramSocket, ListenAddr, Listener},
    shared::{
        ClusterBus, Commands, ConnTable, Counters, DatagramPort, GroupIndex, Outlet, ReactorHandle,
        ServerHandle, Shared, SupervisorCommands, UidIndex, Watch, WorkerShared,
    },
    sys::{Clock, Poller},
    task::{TaskFactory, TaskHandler},
};

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
    /// The stream listeners, by listener index (`None` for datagram listeners).
    listeners: Vec<Option<Listener>>,
    roles: Box<dyn Roles>,
    processes: Vec<(String, ProcessFn)>,
    /// The receiving ends of the mailboxes, handed to the threads when they start.
    mailboxes: Mailboxes,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.shared.local_addrs)
            .finish_non_exhaustive()
    }
}

impl Server {
    pub(crate) fn new<T, H, F>(
        config: Config,
        factory: Arc<F>,
        task_factory: Option<TaskFactory<T>>,
        processes: Vec<(String, ProcessFn)>,
        commands: Commands,
        cluster: Option<Arc<dyn ClusterBus>>,
    ) -> Result<Server, BuildError>
    where
        T: TaskHandler,
        H: EventHandler<T>,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let (listeners, datagrams, local_addrs) = bind_listeners(&config)?;
        let (reactors, mailboxes, workers) = mailboxes(&config)?;
        let tasks = task_factory.map(|factory| {
            TaskRoles::new(
                factory,
                config.task_worker_num,
                config.task_queue_capacity,
                config.worker_num,
            )
        });
        let outlet = Outlet::new(
            reactors.into(),
            Clock::start(),
            config.socket_buffer_size,
            config.buffer_high_watermark,
            config
                .listeners
                .iter()
                .map(|l| l.protocol.clone())
                .collect(),
        );
        let watch = cluster.clone().map(|bus| bus as Arc<dyn Watch>);
        let shared = Arc::new(Shared {
            tasks: tasks.as_ref().map(TaskRoles::control),
            deadline: OnceLock::new(),
            reload: Default::default(),
            commands,
            supervisor_commands: SupervisorCommands::new(64),
            datagrams,
            table: ConnTable::new(config.max_conn, config.listeners.len()),
            stats: Counters::new(config.reactor_num, config.worker_num),
            outlet,
            workers: workers.into(),
            local_addrs,
            supervisor: Arc::new(Poller::new().map_err(BuildError::Io)?),
            shutdown_requested: Default::default(),
            reactors_stopping: Default::default(),
            messages_in_flight: Default::default(),
            uids: UidIndex::new(watch.clone()),
            groups: GroupIndex::new(watch),
            cluster,
            start_time: SystemTime::now(),
            config,
        });
        Ok(Server {
            shared,
            listeners,
            processes,
            roles: Box::new(Typed::<H, F, T>::new(factory, tasks)),
            mailboxes,
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

    /// Listener `index`'s socket, to set socket options before the server runs (Swoole's
    /// `getSocket`): a stream listener or a datagram socket. `None` for an index out of range.
    pub fn listener_socket(&self, index: usize) -> Option<socket2::SockRef<'_>> {
        if let Some(Some(listener)) = self.listeners.get(index) {
            return Some(socket2::SockRef::from(listener));
        }
        let port = self.shared.datagrams.get(index)?.as_ref()?;
        Some(socket2::SockRef::from(&port.socket))
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

    fn run_with(self, ready: impl FnOnce()) -> io::Result<ShutdownReport> {
        let Server {
            shared,
            listeners,
            roles,
            processes,
            mailboxes,
        } = self;
        let bus = shared.cluster.clone();
        if let Some(bus) = &bus {
            bus.start(ServerHandle {
                shared: shared.clone(),
            })?;
        }
        let result = lifecycle::run(shared, listeners, roles, &processes, mailboxes, ready);
        // Every connection is closed by now: leave the cluster, stop the bus's threads.
        if let Some(bus) = &bus {
            bus.stop();
        }
        result
    }
}

/// The stream listeners and the datagram ports, by listener index.
type Bound = (
    Vec<Option<Listener>>,
    Box<[Option<Arc<DatagramPort>>]>,
    Vec<ListenAddr>,
);

/// Bind every listener; returns them with their bound addresses. Datagram listeners go to
/// the reactors in turn.
fn bind_listeners(config: &Config) -> Result<Bound, BuildError> {
    let mut listeners = Vec::with_capacity(config.listeners.len());
    let mut datagrams = Vec::with_capacity(config.listeners.len());
    let mut local_addrs = Vec::with_capacity(config.listeners.len());
    let bind_error = |addr: &ListenAddr| {
        let addr = addr.to_string();
        move |source| BuildError::Bind { addr, source }
    };
    for (index, listener) in config.listeners.iter().enumerate() {
        let addr = &listener.addr;
        if addr.is_datagram() {
            let socket = DatagramSocket::bind(addr, config.reuse_port).map_err(bind_error(addr))?;
            local_addrs.push(socket.local_addr().map_err(BuildError::Io)?);
            let reactor = datagrams.iter().flatten().count() % config.reactor_num;
            let port = DatagramPort::new(index, socket, reactor, config.socket_buffer_size);
            datagrams.push(Some(Arc::new(port)));
            listeners.push(None);
        } else {
            let bound = Listener::bind(addr, config.backlog, config.reuse_port)
                .map_err(bind_error(addr))?;
            local_addrs.push(bound.local_addr().map_err(BuildError::Io)?);
            listeners.push(Some(bound));
            datagrams.push(None);
        }
    }
    Ok((listeners, datagrams.into(), local_addrs))
}

/// Every reactor's mailbox (command channel and poller), every worker's inbox and what
/// other threads see of it.
fn mailboxes(
    config: &Config,
) -> Result<(Vec<ReactorHandle>, Mailboxes, Vec<WorkerShared>), BuildError> {
    let mut reactors = Vec::new();
    let mut reactor_rx = Vec::new();
    for _ in 0..config.reactor_num {
        let (tx, rx) = unbounded();
        let poller = Arc::new(Poller::new().map_err(BuildError::Io)?);
        reactors.push(ReactorHandle::new(tx, poller));
        reactor_rx.push(rx);
    }
    let (mut workers, mut worker_rx, mut worker_tx) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..config.worker_num {
        let (tx, rx) = bounded(config.worker_queue_capacity);
        workers.push(WorkerShared::new(rx.clone(), config.worker_queue_capacity));
        worker_rx.push(rx);
        worker_tx.push(tx);
    }
    let mailboxes = Mailboxes {
        reactor_rx,
        worker_rx,
        worker_tx,
    };
    Ok((reactors, mailboxes, workers))
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
