//! The builder's settings before they are checked, and the checks that turn them into a
//! `Config` (every refusal names its setting).

use std::{fmt, sync::Arc, time::Duration};

use eddy_codec::{Codec, RawCodec};

use crate::{
    config::{limits, Config, ListenerConfig, Protocol, READ_CHUNK},
    dispatch::DispatchMode,
    error::ConfigError,
    net::ListenAddr,
    tls::{TlsAcceptor, TlsConfig},
    ws::WebSocketConfig,
};

/// What a listener added to the builder speaks.
pub(super) enum Speaks {
    /// Framed by its own codec, or the builder's.
    Framed(Option<Arc<dyn Codec>>),
    /// WebSocket, with the builder's WebSocket settings.
    WebSocket,
}

/// The builder's settings, before they are checked.
pub(super) struct Settings {
    pub(super) listeners: Vec<(String, Speaks)>,
    /// The settings of the WebSocket listeners.
    pub(super) websocket: WebSocketConfig,
    /// TLS settings, by the index of the listener they secure (`None`: given before any).
    pub(super) tls: Vec<(Option<usize>, TlsConfig)>,
    pub(super) codec: Arc<dyn Codec>,
    pub(super) reactor_num: Option<usize>,
    pub(super) worker_num: Option<usize>,
    pub(super) dispatch_mode: DispatchMode,
    pub(super) backlog: u32,
    pub(super) tcp_nodelay: bool,
    pub(super) reuse_port: bool,
    pub(super) max_conn: usize,
    pub(super) package_max_length: usize,
    pub(super) socket_buffer_size: usize,
    pub(super) watermarks: Option<(usize, usize)>,
    pub(super) output_backpressure: bool,
    pub(super) max_queued_bytes: usize,
    pub(super) worker_queue_capacity: usize,
    pub(super) max_wait_time: Duration,
    pub(super) handle_signals: bool,
    pub(super) heartbeat_check_interval: Option<Duration>,
    pub(super) heartbeat_idle_time: Option<Duration>,
    pub(super) listener_idle_time: Vec<(usize, Duration)>,
    pub(super) enable_delay_receive: bool,
    pub(super) task_worker_num: Option<usize>,
    pub(super) task_queue_capacity: usize,
    pub(super) task_max_request: Option<usize>,
    pub(super) max_request: Option<usize>,
    pub(super) close_on_panic: bool,
    /// The cluster this server is a node of.
    #[cfg(feature = "cluster")]
    pub(super) cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listeners: Vec::new(),
            websocket: WebSocketConfig::default(),
            tls: Vec::new(),
            codec: Arc::new(RawCodec),
            reactor_num: None,
            worker_num: None,
            dispatch_mode: DispatchMode::Fd,
            backlog: 1024,
            tcp_nodelay: true,
            reuse_port: false,
            max_conn: 100_000,
            package_max_length: 2 * 1024 * 1024,
            socket_buffer_size: 8 * 1024 * 1024,
            watermarks: None,
            output_backpressure: true,
            max_queued_bytes: 1024 * 1024,
            worker_queue_capacity: 1024,
            max_wait_time: Duration::from_secs(3),
            handle_signals: true,
            heartbeat_check_interval: None,
            heartbeat_idle_time: None,
            listener_idle_time: Vec::new(),
            enable_delay_receive: false,
            task_worker_num: None,
            task_queue_capacity: 1024,
            task_max_request: None,
            max_request: None,
            close_on_panic: true,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(super) fn check<T: PartialOrd + fmt::Debug>(
    setting: &'static str,
    value: T,
    (min, max): (T, T),
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            setting,
            format!("{value:?} is out of range: must be {min:?} to {max:?}"),
        ));
    }
    Ok(())
}

impl Settings {
    /// Check every setting and derive the defaults that depend on others.
    pub(super) fn config(self, has_task_handler: bool) -> Result<Config, ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError::new(
                "listen",
                "no listener: add one with .listen(\"127.0.0.1:9501\")",
            ));
        }
        let (reactor_num, worker_num) = self.threads()?;
        self.check_ranges()?;
        let (heartbeat_check_interval, heartbeat_idle_time) = self.heartbeat()?;
        let (high, low) = self.watermarks()?;
        let task_worker_num = self.task_workers(has_task_handler)?;
        let listeners = self.listener_configs()?;
        Ok(Config {
            listeners,
            reactor_num,
            worker_num,
            dispatch_mode: self.dispatch_mode,
            backlog: self.backlog,
            tcp_nodelay: self.tcp_nodelay,
            reuse_port: self.reuse_port,
            max_conn: self.max_conn,
            package_max_length: self.package_max_length,
            socket_buffer_size: self.socket_buffer_size,
            buffer_high_watermark: high,
            buffer_low_watermark: low,
            output_backpressure: self.output_backpressure,
            max_queued_bytes: self.max_queued_bytes,
            worker_queue_capacity: self.worker_queue_capacity,
            max_wait_time: self.max_wait_time,
            handle_signals: self.handle_signals,
            heartbeat_check_interval,
            heartbeat_idle_time,
            enable_delay_receive: self.enable_delay_receive,
            task_worker_num,
            task_queue_capacity: self.task_queue_capacity,
            task_max_request: self.task_max_request,
            max_request: self.max_request,
            close_on_panic: self.close_on_panic,
        })
    }

    /// `reactor_num` and `worker_num`, defaulted from the core count.
    fn threads(&self) -> Result<(usize, usize), ConfigError> {
        let inline = matches!(self.dispatch_mode, DispatchMode::Reactor);
        // Inline reactors own their connections: leave a core for the rest of the machine
        // (see `ServerBuilder::worker_num`).
        let worker_num = match self.worker_num {
            Some(n) => n,
            None if inline => cores().saturating_sub(1).max(1),
            None => cores(),
        };
        let reactor_num = match self.reactor_num {
            Some(n) => n,
            None if inline => worker_num,
            None => cores(),
        };
        if inline && reactor_num != worker_num {
            return Err(ConfigError::new(
                "reactor_num",
                format!(
                    "{reactor_num} must equal worker_num ({worker_num}) with \
                     DispatchMode::Reactor, where each reactor thread is a worker"
                ),
            ));
        }
        check("reactor_num", reactor_num, limits::REACTOR_NUM)?;
        check("worker_num", worker_num, limits::WORKER_NUM)?;
        Ok((reactor_num, worker_num))
    }

    /// The plain numeric settings.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        check("backlog", self.backlog, limits::BACKLOG)?;
        check("max_conn", self.max_conn, limits::MAX_CONN)?;
        check(
            "socket_buffer_size",
            self.socket_buffer_size,
            limits::SOCKET_BUFFER_SIZE,
        )?;
        check(
            "worker_queue_capacity",
            self.worker_queue_capacity,
            limits::WORKER_QUEUE_CAPACITY,
        )?;
        check("max_wait_time", self.max_wait_time, limits::MAX_WAIT_TIME)?;
        check(
            "max_queued_bytes",
            self.max_queued_bytes,
            limits::MAX_QUEUED_BYTES,
        )?;
        check(
            "task_queue_capacity",
            self.task_queue_capacity,
            limits::TASK_QUEUE_CAPACITY,
        )?;
        if let Some(n) = self.task_max_request {
            check("task_max_request", n, limits::MAX_REQUEST)?;
        }
        if let Some(n) = self.max_request {
            check("max_request", n, limits::MAX_REQUEST)?;
        }
        Ok(())
    }

    /// The check interval and each listener's idle time. Swoole's rules: an interval alone
    /// means an idle time of twice it; an idle time alone (server-wide or per listener) means
    /// checks every half of the shortest.
    #[allow(clippy::type_complexity)]
    fn heartbeat(&self) -> Result<(Option<Duration>, Vec<Option<Duration>>), ConfigError> {
        let server_idle = self
            .heartbeat_idle_time
            .or(self.heartbeat_check_interval.map(|every| every * 2));
        let mut heartbeat_idle_time = vec![server_idle; self.listeners.len()];
        for &(listener, idle) in &self.listener_idle_time {
            let Some(slot) = heartbeat_idle_time.get_mut(listener) else {
                return Err(ConfigError::new(
                    "listener_heartbeat_idle_time",
                    format!(
                        "there is no listener {listener} ({} added)",
                        self.listeners.len()
                    ),
                ));
            };
            check("listener_heartbeat_idle_time", idle, limits::HEARTBEAT)?;
            *slot = Some(idle);
        }
        if let Some(idle) = self.heartbeat_idle_time {
            check("heartbeat_idle_time", idle, limits::HEARTBEAT)?;
        }
        if let Some(every) = self.heartbeat_check_interval {
            check("heartbeat_check_interval", every, limits::HEARTBEAT)?;
        }
        // Half the shortest idle time (not under the shortest interval there is), so no
        // connection outlives its idle time by more than half of it: an interval left unset
        // or set longer is lowered to it, as Swoole does.
        let shortest = heartbeat_idle_time.iter().flatten().min().copied();
        let half = shortest.map(|idle| (idle / 2).max(limits::HEARTBEAT.0));
        let heartbeat_check_interval = match (self.heartbeat_check_interval, half) {
            (Some(every), Some(half)) => Some(every.min(half)),
            (every, half) => every.or(half),
        };
        Ok((heartbeat_check_interval, heartbeat_idle_time))
    }

    /// The output buffer's high and low watermarks, defaulted so that a paused connection's
    /// replies to what it already sent still fit under `socket_buffer_size`.
    fn watermarks(&self) -> Result<(usize, usize), ConfigError> {
        let cap = self.socket_buffer_size;
        let (high, low) = self.watermarks.unwrap_or_else(|| {
            let room = self.max_queued_bytes + self.package_max_length + READ_CHUNK;
            let high = cap.saturating_sub(room).max(cap / 2);
            (high, (cap / 4).min(high / 2))
        });
        if high == 0 || high > self.socket_buffer_size {
            return Err(ConfigError::new(
                "buffer_high_watermark",
                format!(
                    "{high} must be at least 1 and at most socket_buffer_size ({})",
                    self.socket_buffer_size
                ),
            ));
        }
        if low >= high {
            return Err(ConfigError::new(
                "buffer_low_watermark",
                format!("{low} must be below buffer_high_watermark ({high})"),
            ));
        }
        Ok((high, low))
    }

    /// `task_worker_num`: the core count with a task handler, refused without one.
    fn task_workers(&self, has_task_handler: bool) -> Result<usize, ConfigError> {
        let task_worker_num = match (self.task_worker_num, has_task_handler) {
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "task_worker_num",
                    "task workers need a task handler: add one with .task_handler(|| …)",
                ))
            }
            (Some(n), true) => n,
            (None, true) => cores(),
            (None, false) => 0,
        };
        if has_task_handler {
            check("task_worker_num", task_worker_num, limits::TASK_WORKER_NUM)?;
        }
        Ok(task_worker_num)
    }

    /// Each listener's address and protocol, checked against `package_max_length`.
    fn listener_configs(&self) -> Result<Vec<ListenerConfig>, ConfigError> {
        let mut listeners = Vec::with_capacity(self.listeners.len());
        let websocket = Arc::new(self.websocket.clone());
        for (addr, speaks) in &self.listeners {
            let addr: ListenAddr = addr
                .parse()
                .map_err(|reason: String| ConfigError::new("listen", reason))?;
            let protocol = match speaks {
                _ if addr.is_datagram() => {
                    match speaks {
                        Speaks::WebSocket => {
                            return Err(ConfigError::new(
                                "listen_ws",
                                format!("{addr} is a datagram address: WebSocket needs a stream"),
                            ))
                        }
                        // A datagram is a packet already: a codec given for it would be
                        // ignored, which the caller did not mean.
                        Speaks::Framed(Some(codec)) => {
                            return Err(ConfigError::new(
                                "listen_with",
                                format!(
                                    "{addr} is a datagram address: each datagram is one packet, \
                                     a codec ({}) cannot frame it",
                                    codec.name()
                                ),
                            ))
                        }
                        Speaks::Framed(None) => Protocol::Datagram,
                    }
                }
                Speaks::Framed(codec) => {
                    let codec = codec.clone().unwrap_or_else(|| self.codec.clone());
                    codec
                        .validate()
                        .map_err(|err| ConfigError::new(err.setting, err.reason))?;
                    Protocol::Framed(codec)
                }
                Speaks::WebSocket => {
                    websocket.validate()?;
                    Protocol::WebSocket(websocket.clone())
                }
            };
            check(
                "package_max_length",
                self.package_max_length,
                (protocol.min_packet().max(1), limits::PACKAGE_MAX_LENGTH),
            )?;
            let tls = self.tls_of(listeners.len(), &addr)?;
            listeners.push(ListenerConfig {
                addr,
                protocol,
                tls,
            });
        }
        if let Some((None, _)) = self.tls.first() {
            return Err(ConfigError::new(
                "tls",
                "given before any listener: call it after the listener it secures",
            ));
        }
        Ok(listeners)
    }

    /// The TLS acceptor of listener `index`, its files read and checked now.
    fn tls_of(
        &self,
        index: usize,
        addr: &ListenAddr,
    ) -> Result<Option<Arc<TlsAcceptor>>, ConfigError> {
        let mut given = self.tls.iter().filter(|(i, _)| *i == Some(index));
        let Some((_, tls)) = given.next() else {
            return Ok(None);
        };
        if given.next().is_some() {
            return Err(ConfigError::new(
                "tls",
                format!("listener {addr} is given TLS settings twice"),
            ));
        }
        if addr.is_datagram() {
            return Err(ConfigError::new(
                "tls",
                format!("{addr} is a datagram address: TLS needs a stream (DTLS is not supported)"),
            ));
        }
        let (lo, hi) = (Duration::from_millis(10), Duration::from_secs(3600));
        if !(lo..=hi).contains(&tls.handshake_timeout) {
            return Err(ConfigError::new(
                "tls_handshake_timeout",
                format!(
                    "listener {addr}: {:?} is out of range ({lo:?} to {hi:?})",
                    tls.handshake_timeout
                ),
            ));
        }
        let acceptor = TlsAcceptor::new(tls.clone())
            .map_err(|err| ConfigError::new("tls", format!("listener {addr}: {err}")))?;
        Ok(Some(Arc::new(acceptor)))
    }
}
