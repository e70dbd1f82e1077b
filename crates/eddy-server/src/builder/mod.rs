//! `Server::builder()`: every setting with its default and range, checked at `build`.
//!
//! The top layer: it builds a `Server`. `settings` holds the unchecked values and the
//! checks.

use std::{fmt, sync::Arc, time::Duration};

use eddy_codec::Codec;

use self::settings::{Settings, Speaks};
use crate::{
    dispatch::DispatchMode,
    error::{BuildError, ConfigError},
    handler::EventHandler,
    lifecycle::{ProcessContext, ProcessFn},
    server::Server,
    shared::{CommandContext, CommandFn, Commands},
    task::{NoTasks, TaskFactory, TaskHandler},
    tls::TlsConfig,
    ws::WebSocketConfig,
};

mod settings;

/// Configures a [`Server`]. Made by [`Server::builder`]; [`build`](Self::build) checks every
/// setting and binds the listeners.
///
/// Each setter documents its default and range. A value out of range, or settings that
/// contradict each other, make `build` fail with a [`ConfigError`] naming the setting: never a
/// panic, never a silent clamp.
pub struct ServerBuilder<T: TaskHandler = NoTasks> {
    s: Settings,
    tasks: Option<TaskFactory<T>>,
    processes: Vec<(String, ProcessFn)>,
    commands: Vec<(String, CommandFn)>,
}

impl<T: TaskHandler> fmt::Debug for ServerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.s;
        f.debug_struct("ServerBuilder")
            .field(
                "listeners",
                &s.listeners.iter().map(|l| &l.0).collect::<Vec<_>>(),
            )
            .field("reactor_num", &s.reactor_num)
            .field("worker_num", &s.worker_num)
            .field("dispatch_mode", &s.dispatch_mode)
            .field("task_worker_num", &s.task_worker_num)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            s: Settings::default(),
            tasks: None,
            processes: Vec::new(),
            commands: Vec::new(),
        }
    }
}

impl Server {
    /// Start configuring a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

impl<T: TaskHandler> ServerBuilder<T> {
    /// Listen on an address: `"127.0.0.1:9501"`, `"[::1]:0"` (port 0 picks a free port;
    /// read it back with [`Server::local_addr`]) or `"unix:/path/to.sock"`. Call it once per
    /// listener; at least one is required. Uses the builder's [`codec`](Self::codec).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.s.listeners.push((addr.into(), Speaks::Framed(None)));
        self
    }

    /// Listen on an address with its own framing.
    pub fn listen_with(mut self, addr: impl Into<String>, codec: impl Codec) -> Self {
        let codec = Arc::new(codec);
        self.s
            .listeners
            .push((addr.into(), Speaks::Framed(Some(codec))));
        self
    }

    /// Listen for UDP datagrams (IPv4 or IPv6) on `addr` (`"127.0.0.1:9501"`): each datagram
    /// goes to [`on_packet`](crate::EventHandler::on_packet), answered with `sendto`. The
    /// same as `listen("udp:ADDR")`.
    pub fn listen_udp(mut self, addr: impl Into<String>) -> Self {
        let addr = format!("udp:{}", addr.into());
        self.s.listeners.push((addr, Speaks::Framed(None)));
        self
    }

    /// Listen for unix datagrams on a socket at `path`; the same as
    /// `listen("unix-dgram:PATH")`.
    pub fn listen_unix_dgram(mut self, path: impl Into<String>) -> Self {
        let addr = format!("unix-dgram:{}", path.into());
        self.s.listeners.push((addr, Speaks::Framed(None)));
        self
    }

    /// Listen on an address for WebSocket clients (Swoole's `WebSocket\Server`, Workerman's
    /// `websocket://`), with the settings of [`websocket`](Self::websocket). Handlers get
    /// [`on_handshake`](crate::EventHandler::on_handshake),
    /// [`on_open`](crate::EventHandler::on_open), one
    /// [`on_message`](crate::EventHandler::on_message) per whole message, and
    /// [`on_request`](crate::EventHandler::on_request) for plain HTTP on the same port;
    /// `send` on such a connection sends one message. Mixes freely with TCP listeners.
    pub fn listen_ws(mut self, addr: impl Into<String>) -> Self {
        self.s.listeners.push((addr.into(), Speaks::WebSocket));
        self
    }

    /// Serve TLS on the listener added last (a TCP, unix or WebSocket listener: `wss://`),
    /// with these certificates and settings (Swoole's `SWOOLE_SSL` port with its `ssl_*`
    /// settings). Its files are read and checked at [`build`](Self::build): a missing or
    /// broken file, or a key that does not match its certificate, is refused there, naming
    /// the file. Handlers and codecs see plaintext; `on_connect` runs once the handshake is
    /// done, and [`ClientInfo::tls`](crate::ClientInfo::tls) tells what it negotiated.
    /// [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls) (or SIGUSR1) reads the
    /// files again for new connections.
    pub fn tls(mut self, config: TlsConfig) -> Self {
        let last = self.s.listeners.len().checked_sub(1);
        self.s.tls.push((last, config));
        self
    }

    /// The settings of every WebSocket listener (limits, handshake timeout,
    /// permessage-deflate, default opcode). See [`WebSocketConfig`] for the defaults.
    pub fn websocket(mut self, config: WebSocketConfig) -> Self {
        self.s.websocket = config;
        self
    }

    /// Framing for listeners added without their own. Default: [`RawCodec`](eddy_codec::RawCodec) (each read as it
    /// comes, as Swoole without a protocol).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.s.codec = Arc::new(codec);
        self
    }

    /// Reactor threads (`reactor_num`), which own the sockets. Default: the number of cores;
    /// with [`DispatchMode::Reactor`], where each reactor is also a worker, one less (at least
    /// one), see [`worker_num`](Self::worker_num). Range 1 to 64.
    pub fn reactor_num(mut self, n: usize) -> Self {
        self.s.reactor_num = Some(n);
        self
    }

    /// Worker threads (`worker_num`), which run the handler. Default: the number of cores.
    ///
    /// With [`DispatchMode::Reactor`] the default is one less than the number of cores (at
    /// least one): a reactor owns its connections, so a reactor thread waiting for a core
    /// holds all of them back until it gets one. With a one-thread client on the same 2 cores
    /// that was the p99: two reactors answered ping-pong at 1–4 ms where one answered at
    /// 0.3 ms. When the load does not leave a core free (other busy processes, or a machine
    /// whose cores are the server's alone), give one worker per core: beside a two-thread
    /// client that was 1.15–1.7× the throughput of one.
    /// Range 1 to 1024.
    pub fn worker_num(mut self, n: usize) -> Self {
        self.s.worker_num = Some(n);
        self
    }

    /// How events pick their worker (`dispatch_mode`). Default [`DispatchMode::Fd`].
    pub fn dispatch_mode(mut self, mode: DispatchMode) -> Self {
        self.s.dispatch_mode = mode;
        self
    }

    /// The listen queue length (`backlog`). Default 1024, so a burst of connects does not
    /// overflow the accept queue. Range 1 to 65535 (the kernel may cap it at `somaxconn`).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.s.backlog = backlog;
        self
    }

    /// `TCP_NODELAY` on accepted TCP connections (`open_tcp_nodelay`). Default on.
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.s.tcp_nodelay = on;
        self
    }

    /// `SO_REUSEPORT` on TCP listeners (`enable_reuse_port`). Default off.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.s.reuse_port = on;
        self
    }

    /// The most connections open at once (`max_conn`); further connections are closed as soon
    /// as they are accepted, logged and counted in `abort_count`. Default 100,000. Range 1 to
    /// 16,777,216. The process's open-file limit also applies: at that limit eddy pauses
    /// accepting briefly instead of spinning.
    pub fn max_conn(mut self, n: usize) -> Self {
        self.s.max_conn = n;
        self
    }

    /// The largest packet, framing included (`package_max_length`). A longer one closes its
    /// connection: with a length header, as soon as the header is read, before the body is
    /// buffered; without one (a delimiter, a length function still asking for more), once
    /// the limit's worth is buffered with no end found. A partial packet's buffer grows with
    /// what arrives, never to more than the packet (or the limit) and one read. Default
    /// 2 MiB. Range: the codec's smallest packet to 1 GiB.
    pub fn package_max_length(mut self, bytes: usize) -> Self {
        self.s.package_max_length = bytes;
        self
    }

    /// Cap of each connection's output buffer (`socket_buffer_size`): a send that would pass
    /// it is refused with `BufferFull`. Default 8 MiB. Range 1 KiB to 1 GiB.
    ///
    /// Unless set with [`buffer_watermarks`](Self::buffer_watermarks), the high watermark
    /// leaves room for a reply to everything already read from the connection:
    /// `socket_buffer_size - max_queued_bytes - package_max_length - 64 KiB` (one read), but
    /// at least half the buffer. So with the defaults (high 4.9 MiB) a server that answers each
    /// packet with as many bytes never sees `BufferFull`, however slowly its client reads. The
    /// low watermark is a quarter of the buffer (at most half the high watermark).
    pub fn socket_buffer_size(mut self, bytes: usize) -> Self {
        self.s.socket_buffer_size = bytes;
        self
    }

    /// Output buffer watermarks: at `high` bytes pending `on_buffer_full` fires (and reading
    /// pauses, see [`output_backpressure`](Self::output_backpressure)); back at `low` or below,
    /// `on_buffer_drain` fires. Each fires exactly once per crossing. Requires
    /// `low < high <= socket_buffer_size`.
    pub fn buffer_watermarks(mut self, high: usize, low: usize) -> Self {
        self.s.watermarks = Some((high, low));
        self
    }

    /// Stop reading from a connection while its output buffer is above the high watermark, so
    /// a client that writes but never reads cannot grow server memory. Default on.
    pub fn output_backpressure(mut self, on: bool) -> Self {
        self.s.output_backpressure = on;
        self
    }

    /// The most bytes of one connection's packets that may wait for, or be in, workers
    /// (Swoole's `max_queued_bytes`); past it, eddy stops reading that connection until the
    /// workers have caught up. Bounds the memory and the replies a fast writer can cause.
    /// Default 1 MiB. Range 1 byte to 1 GiB.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.s.max_queued_bytes = bytes;
        self
    }

    /// Events each worker's queue holds. When a queue is full, reactors stop reading the
    /// connections feeding it until it drains. Default 1024. Range 1 to 1,048,576.
    pub fn worker_queue_capacity(mut self, n: usize) -> Self {
        self.s.worker_queue_capacity = n;
        self
    }

    /// How long a graceful shutdown may take (`max_wait_time`) before what is left is
    /// abandoned (and reported), counted from when `on_before_shutdown` returns. Default
    /// 3 s. Range 1 ms to 1 h.
    pub fn max_wait_time(mut self, wait: Duration) -> Self {
        self.s.max_wait_time = wait;
        self
    }

    /// How often to look for idle connections (`heartbeat_check_interval`). Off by default.
    /// Set alone, the idle time is twice the interval. An interval longer than half the
    /// shortest idle time is lowered to that half (as Swoole does), so no connection
    /// outlives its idle time by more than half of it. Range 10 ms to 1 day.
    pub fn heartbeat_check_interval(mut self, every: Duration) -> Self {
        self.s.heartbeat_check_interval = Some(every);
        self
    }

    /// Close connections whose peer sent nothing for this long (`heartbeat_idle_time`),
    /// through the normal close path with [`CloseReason::HeartbeatTimeout`] (queued output is
    /// dropped). Off by default. The check runs every half of it (at least every 10 ms),
    /// or more often if `heartbeat_check_interval` asks. Sends from the
    /// server do not count as activity; [`ServerHandle::protect`] exempts a connection.
    /// Range 10 ms to 1 day.
    ///
    /// [`CloseReason::HeartbeatTimeout`]: crate::CloseReason::HeartbeatTimeout
    /// [`ServerHandle::protect`]: crate::ServerHandle::protect
    pub fn heartbeat_idle_time(mut self, idle: Duration) -> Self {
        self.s.heartbeat_idle_time = Some(idle);
        self
    }

    /// The heartbeat idle time of one listener (its index in the order listeners were added),
    /// instead of the server-wide [`heartbeat_idle_time`](Self::heartbeat_idle_time). Range
    /// 10 ms to 1 day.
    pub fn listener_heartbeat_idle_time(mut self, listener: usize, idle: Duration) -> Self {
        self.s.listener_idle_time.push((listener, idle));
        self
    }

    /// Accept connections and run `on_connect`, but read nothing from them until
    /// [`ServerHandle::confirm`](crate::ServerHandle::confirm) (or `close`). Default off.
    pub fn enable_delay_receive(mut self, on: bool) -> Self {
        self.s.enable_delay_receive = on;
        self
    }

    /// Shut down gracefully on SIGTERM and SIGINT. Default on. Turn it off when the process
    /// runs several servers or handles signals itself (then call
    /// [`ServerHandle::shutdown`](crate::ServerHandle::shutdown)).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.s.handle_signals = on;
        self
    }

    /// Task workers (`task_worker_num`): threads that run the task handler. Default: the
    /// number of cores once a [`task_handler`](Self::task_handler) is set. Range 1 to 256;
    /// setting it without a task handler is refused (Swoole's "require onTask").
    pub fn task_worker_num(mut self, n: usize) -> Self {
        self.s.task_worker_num = Some(n);
        self
    }

    /// Tasks each task worker's queue holds (`task_queue_capacity`); a task that finds its
    /// queue full is refused at once with [`TaskError::QueueFull`](crate::TaskError). Default
    /// 1024. Range 1 to 1,048,576.
    pub fn task_queue_capacity(mut self, n: usize) -> Self {
        self.s.task_queue_capacity = n;
        self
    }

    /// Rebuild a task worker's handler from the factory after this many tasks
    /// (`task_max_request`), plus a random grace of up to half as many (when over 10) so task
    /// workers do not all rebuild at once. Queued tasks wait and are not lost. Off by
    /// default. Range 1 to 2^32.
    pub fn task_max_request(mut self, n: usize) -> Self {
        self.s.task_max_request = Some(n);
        self
    }

    /// Rebuild a worker's handler from the factory after it handled this many packets
    /// (`max_request`), plus a random grace of up to half as many (when over 10,
    /// `max_request_grace`) so workers do not all rebuild at once. Connections stay open and
    /// no packet is lost: the swap happens between two events. Off by default. Range 1 to
    /// 2^32.
    pub fn max_request(mut self, n: usize) -> Self {
        self.s.max_request = Some(n);
        self
    }

    /// What happens to the connection whose event made a callback panic: closed with
    /// [`CloseReason::HandlerPanic`](crate::CloseReason::HandlerPanic) (reset, output dropped;
    /// the default), or kept open (`false`). Either way the panic is logged, the worker
    /// rebuilds its handler and reports it to `on_worker_error`, and the server goes on.
    pub fn close_on_panic(mut self, on: bool) -> Self {
        self.s.close_on_panic = on;
        self
    }

    /// Run `body` on a thread of its own beside the server (Swoole's `addProcess`), named
    /// `name`: long-running application code (a feed, a poller of another system) with the
    /// server at hand through [`ProcessContext::server`](crate::ProcessContext::server). It
    /// starts with the server, is called again (after a back-off) if it returns or panics,
    /// and is told to stop at shutdown: [`ProcessContext::wait_stop`] paces a loop and
    /// returns `true` then. The shutdown waits for it until `max_wait_time`.
    ///
    /// [`ProcessContext::wait_stop`]: crate::ProcessContext::wait_stop
    pub fn add_process(
        mut self,
        name: impl Into<String>,
        body: impl Fn(&ProcessContext) + Send + Sync + 'static,
    ) -> Self {
        self.processes.push((name.into(), Arc::new(body)));
        self
    }

    /// Add an admin command (Swoole's `addCommand`): `body` runs where
    /// [`ServerHandle::command`](crate::ServerHandle::command) asks (a worker between two
    /// events, a task worker between two tasks, or the supervisor) and answers with a JSON
    /// value. A name added twice is refused at build.
    pub fn add_command(
        mut self,
        name: impl Into<String>,
        body: impl Fn(&CommandContext<'_>, serde_json::Value) -> serde_json::Value
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.commands.push((name.into(), Arc::new(body)));
        self
    }

    /// Make this server one node of a cluster (cargo feature `cluster`): servers that reach
    /// each other's uids, groups and connections through Redis, GatewayWorker's
    /// `sendToUid` / `sendToGroup` / `sendToAll` with no register process. Off by default.
    /// `build` checks `config` (a bad field is a [`ConfigError`] naming it, as
    /// `cluster.node_id`) and, unless it may start degraded, that Redis answers
    /// ([`BuildError::Cluster`] otherwise).
    ///
    /// The API is the same with or without a cluster; with one:
    ///
    /// - [`send_to_uid`](crate::ServerHandle::send_to_uid) delivers here when the uid is
    ///   bound here, and publishes to the channel of each other node that presence says
    ///   holds it (never to every node). A uid bound on several nodes reaches all its
    ///   connections on all of them.
    /// - [`broadcast`](crate::ServerHandle::broadcast) and `broadcast_where` deliver here,
    ///   then publish once for every other node, which delivers to all its connections
    ///   (a filter runs only here), encoding the frame once.
    /// - [`send_to_group`](crate::ServerHandle::send_to_group) publishes to each other node
    ///   with members in the group; [`group_count`](crate::ServerHandle::group_count),
    ///   [`is_uid_online`](crate::ServerHandle::is_uid_online),
    ///   [`uid_count`](crate::ServerHandle::uid_count) and `online_uids` answer from
    ///   presence.
    /// - Presence: a bind registers `uid → node` in Redis (asynchronously, within a moment)
    ///   with `presence_ttl`, renewed by a heartbeat every third of it; unbinding or closing
    ///   removes it; a node that dies stops renewing, and its uids and groups expire within
    ///   `presence_ttl`. Expiry uses sorted sets scored by Redis's own clock: Redis 7.0 is
    ///   enough.
    /// - Faults: local delivery never waits for Redis. With Redis lost, remote parts fail at
    ///   once ([`ClusterError::Unavailable`](crate::ClusterError::Unavailable) in
    ///   [`Delivery::cluster`](crate::Delivery::cluster)) once the loss is known, and within
    ///   about twice `command_timeout` when it is not yet; the bus reconnects with back-off
    ///   and writes this node's presence again. A remote part costs the calling thread one
    ///   round trip to Redis.
    ///
    /// **Redis pub/sub is at-most-once.** A message is never delivered twice, but it is
    /// lost, with no error to its sender, when the receiving node's subscriber is not
    /// connected at that moment (Redis restarting, the node reconnecting, or the node dead
    /// while its presence has not expired yet), when the receiving node cannot keep up (its
    /// delivery queue is full: dropped, counted in
    /// [`ClusterStats::dropped`](crate::ClusterStats::dropped) and logged) or Redis cuts a
    /// subscriber that reads too slowly (`client-output-buffer-limit pubsub`), and when the
    /// uid or group leaves the receiving node while the message is on its way. Messages
    /// from one sending thread to one node keep their order.
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, config: crate::cluster::ClusterConfig) -> Self {
        self.s.cluster = Some(config);
        self
    }

    /// The task handler (Swoole's `onTask`): `factory` makes one per task worker. This types
    /// the tasks of the server: its event handler implements `EventHandler<U>`, and
    /// [`Context::task`](crate::Context::task) takes `U::Task`.
    pub fn task_handler<U, F>(self, factory: F) -> ServerBuilder<U>
    where
        U: TaskHandler,
        F: Fn() -> U + Send + Sync + 'static,
    {
        ServerBuilder {
            s: self.s,
            tasks: Some(Arc::new(factory)),
            processes: self.processes,
            commands: self.commands,
        }
    }

    /// Check every setting, bind the listeners and return the server, ready to
    /// [`run`](Server::run). `factory` makes one handler per worker thread (and one for
    /// `on_start`/`on_shutdown`).
    pub fn build<H, F>(self, factory: F) -> Result<Server, BuildError>
    where
        H: EventHandler<T>,
        F: Fn() -> H + Send + Sync + 'static,
    {
        #[allow(unused_mut)]
        let mut settings = self.s;
        #[cfg(feature = "cluster")]
        let cluster = settings.cluster.take();
        let config = settings.config(self.tasks.is_some())?;
        #[cfg(feature = "cluster")]
        let cluster = cluster.map(crate::cluster::connect).transpose()?;
        #[cfg(not(feature = "cluster"))]
        let cluster = None;
        let mut commands = Commands::default();
        for (name, body) in self.commands {
            if commands.0.insert(name.clone(), body).is_some() {
                return Err(
                    ConfigError::new("add_command", format!("`{name}` is added twice")).into(),
                );
            }
        }
        Server::new(
            config,
            Arc::new(factory),
            self.tasks,
            self.processes,
            commands,
            cluster,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: TaskHandler>(builder: ServerBuilder<T>) -> ConfigError {
        builder.s.config(builder.tasks.is_some()).unwrap_err()
    }

    fn base() -> ServerBuilder {
        ServerBuilder::default().listen("127.0.0.1:0")
    }

    #[test]
    fn defaults_are_valid() {
        let config = base().s.config(false).unwrap();
        assert_eq!(config.backlog, 1024);
        assert_eq!(config.package_max_length, 2 << 20);
        assert_eq!(config.socket_buffer_size, 8 << 20);
        assert!(config.tcp_nodelay && config.output_backpressure);
        assert!(config.buffer_low_watermark < config.buffer_high_watermark);
    }

    #[test]
    fn each_bad_setting_is_named() {
        assert_eq!(err(ServerBuilder::default()).setting, "listen");
        assert_eq!(
            err(ServerBuilder::default().listen("nowhere")).setting,
            "listen"
        );
        assert_eq!(err(base().worker_num(0)).setting, "worker_num");
        assert_eq!(err(base().reactor_num(65)).setting, "reactor_num");
        assert_eq!(err(base().backlog(0)).setting, "backlog");
        assert_eq!(err(base().max_conn(0)).setting, "max_conn");
        assert_eq!(
            err(base().socket_buffer_size(10)).setting,
            "socket_buffer_size"
        );
        assert_eq!(
            err(base().worker_queue_capacity(0)).setting,
            "worker_queue_capacity"
        );
        assert_eq!(
            err(base().max_wait_time(Duration::ZERO)).setting,
            "max_wait_time"
        );
        assert_eq!(
            err(base().buffer_watermarks(10, 10)).setting,
            "buffer_low_watermark"
        );
        assert_eq!(
            err(base().socket_buffer_size(4096).buffer_watermarks(5000, 1)).setting,
            "buffer_high_watermark"
        );
        assert_eq!(
            err(base()
                .codec(eddy_codec::LengthCodec::new())
                .package_max_length(3))
            .setting,
            "package_max_length"
        );
        assert_eq!(
            err(base().codec(eddy_codec::EofCodec::new(Vec::new()))).setting,
            "package_eof"
        );
        let eof = eddy_codec::EofCodec::new(b"<end>".to_vec());
        assert_eq!(
            err(base().codec(eof).package_max_length(4)).setting,
            "package_max_length",
            "shorter than the delimiter"
        );
    }

    #[test]
    fn reactor_mode_ties_reactors_to_workers() {
        let config = base()
            .dispatch_mode(DispatchMode::Reactor)
            .worker_num(3)
            .s
            .config(false)
            .unwrap();
        assert_eq!((config.reactor_num, config.worker_num), (3, 3));
        let mode = DispatchMode::Reactor;
        let err = err(base().dispatch_mode(mode).worker_num(2).reactor_num(1));
        assert_eq!(err.setting, "reactor_num");
    }

    #[test]
    fn messages_name_the_setting_and_range() {
        let text = err(base().worker_num(5000)).to_string();
        assert!(
            text.contains("worker_num") && text.contains("1024"),
            "{text}"
        );
    }
}
