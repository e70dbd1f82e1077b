//! Validated settings, as the threads read them: `Config`, each listener's `Protocol`, and
//! the ranges the builder enforces (`limits`).
//!
//! Above `dispatch` and `net`. Read by every thread, written by none once built.

pub(crate) mod limits;
mod protocol;

pub(crate) use protocol::Protocol;

use std::time::Duration;

use std::sync::Arc;

use crate::{dispatch::DispatchMode, net::ListenAddr, tls::TlsAcceptor};

/// One listener's settings.
#[derive(Clone, Debug)]
pub(crate) struct ListenerConfig {
    pub(crate) addr: ListenAddr,
    /// What its connections speak over their transport.
    pub(crate) protocol: Protocol,
    /// Its TLS acceptor (a stream listener with TLS).
    pub(crate) tls: Option<Arc<TlsAcceptor>>,
}

/// Every setting, checked by `ServerBuilder::build`. See the builder for meanings and defaults.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) listeners: Vec<ListenerConfig>,
    pub(crate) reactor_num: usize,
    pub(crate) worker_num: usize,
    pub(crate) dispatch_mode: DispatchMode,
    pub(crate) backlog: u32,
    pub(crate) tcp_nodelay: bool,
    pub(crate) reuse_port: bool,
    pub(crate) max_conn: usize,
    pub(crate) package_max_length: usize,
    pub(crate) socket_buffer_size: usize,
    pub(crate) buffer_high_watermark: usize,
    pub(crate) buffer_low_watermark: usize,
    pub(crate) output_backpressure: bool,
    pub(crate) max_queued_bytes: usize,
    pub(crate) worker_queue_capacity: usize,
    pub(crate) max_wait_time: Duration,
    pub(crate) handle_signals: bool,
    /// How often the supervisor checks for idle connections, when the heartbeat is on.
    pub(crate) heartbeat_check_interval: Option<Duration>,
    /// Per listener: a connection that sent nothing for this long is closed.
    pub(crate) heartbeat_idle_time: Vec<Option<Duration>>,
    pub(crate) enable_delay_receive: bool,
    /// Task worker threads (0: no task handler).
    pub(crate) task_worker_num: usize,
    pub(crate) task_queue_capacity: usize,
    pub(crate) task_max_request: Option<usize>,
    /// Rebuild a worker's handler after this many packets.
    pub(crate) max_request: Option<usize>,
    /// Close the connection whose event made a callback panic.
    pub(crate) close_on_panic: bool,
}

/// The most bytes a reactor reads from one socket per readiness event.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
