//! The server handle: a clonable, thread-safe way to reach the running server.

use std::{
    sync::{atomic::AtomicBool, atomic::Ordering, Arc, OnceLock},
    time::{Instant, SystemTime},
};

use crossbeam_channel::{Receiver, Sender};

use crate::{
    command::{CommandCall, CommandError, CommandTarget, Commands},
    config::Config,
    conn::Conn,
    message::{Destination, Message, MessageError, MessageSource},
    reactor::Command,
    reload::{Rebuild, ReloadError, ReloadScope, WorkerStatus},
    stats::Counters,
    sys::Poller,
    table::ConnTable,
    task::{PoolControl, TaskPool, Tasks},
    worker::WorkerShared,
    CloseReason, ConnId, ListenAddr, PeerAddr, SendError, SendStatus, Stats, TaskError,
    TaskHandler, Uid,
};

/// Everything the threads of one server share. Immutable but for atomics and the table.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) table: ConnTable,
    pub(crate) reactors: Box<[ReactorHandle]>,
    pub(crate) workers: Box<[WorkerShared]>,
    pub(crate) stats: Counters,
    pub(crate) local_addrs: Vec<ListenAddr>,
    /// Wakes the supervisor (accept loop) for shutdown.
    pub(crate) supervisor: Arc<Poller>,
    pub(crate) shutdown_requested: AtomicBool,
    /// Which connections each uid is bound to.
    pub(crate) uids: crate::routing::UidIndex,
    pub(crate) start_time: SystemTime,
    /// The origin of the coarse clock connections record activity with (`sys::coarse_ms`).
    pub(crate) epoch_ms: u64,
    /// The task pool, if the server has task workers.
    pub(crate) tasks: Option<Arc<dyn PoolControl>>,
    /// When a graceful shutdown must be over, once one has begun.
    pub(crate) deadline: OnceLock<Instant>,
    /// Reloads: requested, running, counted.
    pub(crate) reload: crate::reload::ReloadState,
    /// Admin commands, by name.
    pub(crate) commands: Commands,
    /// Commands for the supervisor to run.
    pub(crate) supervisor_commands: (Sender<CommandCall>, Receiver<CommandCall>),
}

impl Shared {
    /// Milliseconds since `epoch_ms` on the coarse clock, from 1 (so 0 can mean "never").
    pub(crate) fn now_ms(&self) -> u64 {
        crate::sys::coarse_ms().saturating_sub(self.epoch_ms) + 1
    }

    pub(crate) fn reactor(&self, id: usize) -> &ReactorHandle {
        &self.reactors[id]
    }

    /// Wake worker `id` if it sleeps, after something was queued for it outside its inbox.
    pub(crate) fn wake_worker(&self, id: usize) {
        if matches!(self.config.dispatch_mode, crate::DispatchMode::Reactor) {
            // The worker is reactor `id`'s thread, asleep in its poller.
            self.reactors[id].poller.notify();
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
            self.workers[id].wake();
        }
    }

    /// Queue a message for a worker's or task worker's `on_pipe_message`, and wake it.
    pub(crate) fn send_message(
        &self,
        src: MessageSource,
        dst: Destination,
        message: Message,
    ) -> Result<(), MessageError> {
        if self.shutdown_requested.load(Ordering::Acquire) {
            return Err(MessageError::ShuttingDown);
        }
        match dst {
            Destination::Worker(id) => {
                let worker = self
                    .workers
                    .get(id)
                    .ok_or(MessageError::NoSuchDestination(dst))?;
                worker
                    .messages
                    .0
                    .try_send((src, message))
                    .map_err(|_| MessageError::QueueFull)?;
                self.wake_worker(id);
                Ok(())
            }
            Destination::TaskWorker(id) => self
                .tasks
                .as_ref()
                .ok_or(MessageError::NoSuchDestination(dst))?
                .message(id, src, message),
        }
    }

    /// The shutdown deadline; `max_wait_time` from now if no shutdown has begun.
    pub(crate) fn shutdown_deadline(&self) -> Instant {
        *self
            .deadline
            .get_or_init(|| Instant::now() + self.config.max_wait_time)
    }
}

/// A reactor's command channel, and the poller to wake it with.
#[derive(Debug)]
pub(crate) struct ReactorHandle {
    pub(crate) tx: Sender<Command>,
    pub(crate) poller: Arc<Poller>,
}

impl ReactorHandle {
    /// Queue a command and wake the reactor (wake-ups coalesce while it is busy).
    pub(crate) fn command(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            self.poller.notify();
        }
    }
}

/// A handle to a server: send to and close any connection, look connections up, shut down.
///
/// Cheap to clone, `Send + Sync`: give it to any thread. It is also what callbacks reach
/// through [`Context::server`](crate::Context::server).
#[derive(Clone, Debug)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

/// What is known of one connection (Swoole's `getClientInfo`). Serialises (serde) with times
/// as unix seconds and the id as a number.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The connection's id.
    pub id: ConnId,
    /// Index of the listener that accepted it, in the order they were added.
    pub listener: usize,
    /// The port of that listener (`server_port`; 0 for unix sockets).
    pub server_port: u16,
    /// The socket's file descriptor (`socket_fd`).
    pub socket_fd: i32,
    /// `tcp`, `tcp6` or `unix` (`socket_type`).
    pub socket_type: &'static str,
    /// The peer's IP address (`remote_ip`; empty for unix sockets).
    pub remote_ip: String,
    /// The peer's port (`remote_port`; 0 for unix sockets).
    pub remote_port: u16,
    /// The reactor thread that owns the socket.
    pub reactor_id: usize,
    /// The worker the connection's latest event went to.
    pub worker_id: usize,
    /// When the connection was accepted.
    #[serde(serialize_with = "unix_seconds")]
    pub connect_time: SystemTime,
    /// When bytes last arrived from the peer (the connect time if none yet).
    #[serde(serialize_with = "unix_seconds")]
    pub last_recv_time: SystemTime,
    /// When the server last sent to it (a send that got past the checks), if ever.
    #[serde(serialize_with = "unix_seconds_opt")]
    pub last_send_time: Option<SystemTime>,
    /// When a worker last took one of its events, if ever (compare with the receive time to
    /// see queueing delay).
    #[serde(serialize_with = "unix_seconds_opt")]
    pub last_dispatch_time: Option<SystemTime>,
    /// The user id bound with `bind`, if any.
    pub uid: Option<Uid>,
    /// Bytes of packets read but not yet handled by a worker (`recv_queued_bytes`).
    pub recv_queued_bytes: u64,
    /// Bytes waiting in the connection's output buffer (`send_queued_bytes`).
    pub send_queued_bytes: usize,
    /// Exempt from the heartbeat (`protect`).
    pub protected: bool,
    /// Why it closed, once it has (inside `on_close`).
    pub close_reason: Option<String>,
}

/// A time as (fractional) unix seconds.
pub(crate) fn unix_seconds<S: serde::Serializer>(
    time: &SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    serializer.serialize_f64(seconds)
}

/// An optional time as unix seconds, or null.
pub(crate) fn unix_seconds_opt<S: serde::Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => unix_seconds(time, serializer),
        None => serializer.serialize_none(),
    }
}

impl ClientInfo {
    pub(crate) fn of(conn: &Conn, shared: &Shared) -> Self {
        let (remote_ip, remote_port, socket_type) = match &conn.peer {
            PeerAddr::Tcp(addr) => (
                addr.ip().to_string(),
                addr.port(),
                if addr.is_ipv6() { "tcp6" } else { "tcp" },
            ),
            PeerAddr::Unix => (String::new(), 0, "unix"),
        };
        let server_port = match shared.local_addrs.get(conn.listener) {
            Some(ListenAddr::Tcp(addr)) => addr.port(),
            _ => 0,
        };
        // Activity is kept as milliseconds since the server's epoch; turn it into wall time.
        let now_ms = shared.now_ms();
        let now = SystemTime::now();
        let at = |ms: u64| now - std::time::Duration::from_millis(now_ms.saturating_sub(ms));
        let ever = |ms: u64| (ms != 0).then(|| at(ms));
        ClientInfo {
            id: conn.id,
            listener: conn.listener,
            server_port,
            socket_fd: conn.fd,
            socket_type,
            remote_ip,
            remote_port,
            reactor_id: conn.reactor,
            worker_id: conn.worker.load(Ordering::Relaxed),
            connect_time: conn.connect_time,
            last_recv_time: at(conn.last_recv.load(Ordering::Relaxed)),
            last_send_time: ever(conn.last_send.load(Ordering::Relaxed)),
            last_dispatch_time: ever(conn.last_dispatch.load(Ordering::Relaxed)),
            uid: conn.uid(),
            recv_queued_bytes: conn.inflight.load(Ordering::Relaxed)
                & crate::conn::inflight::WEIGHT,
            send_queued_bytes: conn.out.lock().pending(),
            protected: conn.protected.load(Ordering::Relaxed),
            close_reason: conn.close_reason.get().map(ToString::to_string),
        }
    }

    /// The peer's socket address, for TCP connections.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        Some(std::net::SocketAddr::new(
            self.remote_ip.parse().ok()?,
            self.remote_port,
        ))
    }
}

impl ServerHandle {
    fn conn(&self, conn: ConnId) -> Result<Arc<Conn>, SendError> {
        self.shared.table.get(conn).ok_or(SendError::NotFound)
    }

    /// Send bytes to a connection, from any thread.
    ///
    /// When nothing is queued for the connection the bytes are written straight to the socket
    /// ([`SendStatus::Sent`]); whatever the kernel does not take is queued in the connection's
    /// output buffer and flushed by its reactor ([`SendStatus::Queued`]). Bytes on one
    /// connection never reorder: once anything is queued, later sends queue behind it. A
    /// message that does not fit under `socket_buffer_size` is refused whole
    /// ([`SendError::BufferFull`]), as is one on a closing or closed connection.
    pub fn send(&self, conn: ConnId, data: impl AsRef<[u8]>) -> Result<SendStatus, SendError> {
        let data = data.as_ref();
        let result = self.conn(conn)?.send(data, &self.shared);
        if result.is_ok() {
            self.shared.stats.count_response(data.len());
        }
        result
    }

    /// Frame `body` with the codec of the connection's listener (its length header or
    /// delimiter), then [`send`](Self::send) it: Workerman's `send($data)`, where `send` is
    /// `send($data, true)`. [`SendError::Unframable`] if the codec cannot frame it.
    pub fn send_framed(
        &self,
        conn: ConnId,
        body: impl AsRef<[u8]>,
    ) -> Result<SendStatus, SendError> {
        let body = body.as_ref();
        let result = self.conn(conn)?.send_framed(body, &self.shared);
        if result.is_ok() {
            self.shared.stats.count_response(body.len());
        }
        result
    }

    /// Close a connection once its queued output is flushed. Packets it sent that no worker
    /// has handled yet are dropped. `on_close` follows with [`CloseReason::ServerClosed`].
    /// If the peer never reads, the flush cannot finish: [`close_reset`](Self::close_reset),
    /// or the heartbeat, ends such a close.
    ///
    /// [`CloseReason::ServerClosed`]: crate::CloseReason::ServerClosed
    pub fn close(&self, conn: ConnId) -> Result<(), SendError> {
        self.conn(conn)?
            .close(CloseReason::ServerClosed, &self.shared)
    }

    /// Close a connection at once with a TCP reset, dropping its queued output.
    pub fn close_reset(&self, conn: ConnId) -> Result<(), SendError> {
        self.conn(conn)?
            .close(CloseReason::ServerReset, &self.shared)
    }

    /// Whether the id names a connection that is open (not closing, not closed).
    pub fn exists(&self, conn: ConnId) -> bool {
        self.shared
            .table
            .get(conn)
            .is_some_and(|conn| conn.is_open())
    }

    /// Bind a connection to a user id (Swoole's `bind`).
    ///
    /// A connection may be bound again; the latest uid wins. With
    /// [`DispatchMode::Uid`](crate::DispatchMode::Uid) the new worker takes over at the next
    /// packet boundary where no event of the connection is in flight, so its events never run
    /// on two workers at once and never reorder.
    pub fn bind(&self, conn: ConnId, uid: impl Into<Uid>) -> Result<(), SendError> {
        self.conn(conn)?.bind(Some(uid.into()), &self.shared.uids)
    }

    /// What is known of a connection, or `None` for an unknown or stale id.
    pub fn client_info(&self, conn: ConnId) -> Option<ClientInfo> {
        self.shared
            .table
            .get(conn)
            .map(|conn| ClientInfo::of(&conn, &self.shared))
    }

    /// Connections currently open or closing.
    pub fn connection_count(&self) -> usize {
        self.shared.table.len()
    }

    /// The bound address of each listener, in the order they were added (with the real port
    /// when port 0 was asked for).
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.shared.local_addrs
    }

    /// Rebuild every worker's and task worker's handler from the factory (Swoole's
    /// `reload`, as SIGUSR1 does). Connections stay open and no packet is lost: each worker
    /// swaps its handler between two events, the old one finishing what it holds. The
    /// main handler's `on_before_reload` and `on_after_reload` run around it, on the thread
    /// that called `run`; [`Stats::reload_count`] counts completed reloads.
    ///
    /// Returns at once: the reload runs in the background, within `max_wait_time`. A reload
    /// asked for while one runs is ignored ([`ReloadError::InProgress`], and logged).
    ///
    /// [`ReloadError::InProgress`]: crate::ReloadError::InProgress
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.reload_scope(ReloadScope::All)
    }

    /// Rebuild only the task workers' handlers (Swoole's `reload(true)`, as SIGUSR2 does).
    /// Tasks queued before it run on the old handlers.
    pub fn reload_task_workers(&self) -> Result<(), ReloadError> {
        self.reload_scope(ReloadScope::TaskWorkers)
    }

    fn reload_scope(&self, scope: ReloadScope) -> Result<(), ReloadError> {
        if self.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        self.shared.reload.request(scope)?;
        self.shared.supervisor.notify();
        Ok(())
    }

    /// Restart one worker (Swoole's `stop($worker_id)`): it rebuilds its handler from the
    /// factory after its current event, keeping its connections and queued events.
    pub fn stop_worker(&self, worker_id: usize) -> Result<(), ReloadError> {
        let worker = self
            .shared
            .workers
            .get(worker_id)
            .ok_or(ReloadError::NoSuchWorker {
                id: worker_id,
                worker_num: self.shared.config.worker_num,
            })?;
        if self.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        // A full control queue already holds rebuilds this one would repeat.
        let _ = worker.control.0.try_send(Rebuild::Restart);
        self.shared.wake_worker(worker_id);
        Ok(())
    }

    /// What worker `worker_id` is doing: idle, busy, or rebuilding its handler.
    pub fn worker_status(&self, worker_id: usize) -> Option<WorkerStatus> {
        self.shared.workers.get(worker_id).map(|w| w.status())
    }

    /// Run the admin command `name` (added with
    /// [`ServerBuilder::add_command`](crate::ServerBuilder::add_command)) on `target`, and
    /// wait up to `timeout` for its answer (Swoole's `command`). `args` is turned into JSON.
    /// A worker asking a command of itself times out: it cannot run it while it waits.
    pub fn command(
        &self,
        name: &str,
        target: CommandTarget,
        args: impl serde::Serialize,
        timeout: std::time::Duration,
    ) -> Result<serde_json::Value, CommandError> {
        let shared = &self.shared;
        let body = shared
            .commands
            .0
            .get(name)
            .cloned()
            .ok_or_else(|| CommandError::Unknown(name.to_string()))?;
        let args = serde_json::to_value(args)
            .map_err(|err| CommandError::BadArguments(err.to_string()))?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let call = CommandCall { body, args, reply };
        let dst = match target {
            CommandTarget::Supervisor => None,
            CommandTarget::Worker(id) => Some(Destination::Worker(id)),
            CommandTarget::TaskWorker(id) => Some(Destination::TaskWorker(id)),
        };
        if let Some(dst) = dst {
            let message = Message::new(call);
            shared
                .send_message(MessageSource::External, dst, message)
                .map_err(|err| match err {
                    MessageError::NoSuchDestination(_) => CommandError::NoSuchTarget(target),
                    MessageError::QueueFull => CommandError::QueueFull,
                    _ => CommandError::ShuttingDown,
                })?;
        } else {
            if self.is_shutting_down() {
                return Err(CommandError::ShuttingDown);
            }
            shared
                .supervisor_commands
                .0
                .try_send(call)
                .map_err(|_| CommandError::QueueFull)?;
            shared.supervisor.notify();
        }
        answer
            .recv_timeout(timeout)
            .unwrap_or(Err(CommandError::Timeout))
    }

    /// Send a message to a worker's or task worker's `on_pipe_message` from any thread
    /// (Swoole's `sendMessage` from a user process). It is moved, not serialised; messages
    /// from one thread to one receiver arrive in order. Refused at once, never blocking,
    /// when the receiver's queue is full.
    pub fn send_message(
        &self,
        dst: Destination,
        message: impl std::any::Any + Send,
    ) -> Result<(), MessageError> {
        self.shared
            .send_message(MessageSource::External, dst, Message::new(message))
    }

    /// Send tasks from any thread (Swoole's `task` from a user process): a typed handle to
    /// the task workers. `T` must be the server's task handler type
    /// ([`TaskError::WrongTaskType`] otherwise); [`TaskError::NoTaskWorkers`] if it has none.
    pub fn tasks<T: TaskHandler>(&self) -> Result<Tasks<T>, TaskError> {
        let pool = self.shared.tasks.as_ref().ok_or(TaskError::NoTaskWorkers)?;
        let expected = pool.type_name();
        pool.clone()
            .as_any()
            .downcast::<TaskPool<T>>()
            .map(Tasks::new)
            .map_err(|_| TaskError::WrongTaskType { expected })
    }

    /// Counters and gauges of the whole server; the same answer from any thread.
    pub fn stats(&self) -> Stats {
        Stats::collect(&self.shared)
    }

    /// Ask the server to shut down gracefully (as SIGTERM does). Returns at once; `run`
    /// returns when the shutdown is complete. Calling it again does nothing.
    pub fn shutdown(&self) {
        if !self.shared.shutdown_requested.swap(true, Ordering::AcqRel) {
            self.shared.supervisor.notify();
        }
    }

    /// Whether a shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown_requested.load(Ordering::Acquire)
    }

    /// Number of worker threads.
    pub fn worker_num(&self) -> usize {
        self.shared.config.worker_num
    }

    /// Number of reactor threads.
    pub fn reactor_num(&self) -> usize {
        self.shared.config.reactor_num
    }
}
