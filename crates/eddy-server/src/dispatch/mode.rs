//! Dispatch modes: which worker handles an event.

use std::{fmt, str::FromStr, sync::Arc};

use crate::{conn::ConnId, net::PeerAddr};

/// What a custom dispatch function is told about an event.
#[derive(Debug)]
#[non_exhaustive]
pub struct DispatchInfo<'a> {
    /// The connection.
    pub conn: ConnId,
    /// Its peer.
    pub peer: &'a PeerAddr,
    /// The packet (or WebSocket message), for `on_receive` and `on_message` events; `None` for
    /// connect, handshake and buffer events.
    pub data: Option<&'a [u8]>,
    /// The worker the connection's previous event went to (`None` before its first).
    pub last_worker: Option<usize>,
    /// Number of workers.
    pub worker_num: usize,
}

/// A user dispatch function: returns the worker, or `None` to fall back to [`DispatchMode::Fd`].
/// A worker id out of range also falls back, and so does a panic (caught, logged once per
/// reactor). It is called from every reactor thread at once.
pub type DispatchFn = Arc<dyn Fn(&DispatchInfo<'_>) -> Option<usize> + Send + Sync>;

/// How a packet picks its worker (Swoole's `dispatch_mode`).
///
/// | mode | picks | stateful |
/// |---|---|---|
/// | [`Fd`](Self::Fd) (default) | connection slot modulo `worker_num` | yes |
/// | [`RoundRobin`](Self::RoundRobin) | the next worker, per reactor thread | no |
/// | [`Idle`](Self::Idle) | an idle worker with an empty queue, else the shortest queue | no |
/// | [`Ip`](Self::Ip) | hash of the peer's IP address modulo `worker_num` | yes |
/// | [`Uid`](Self::Uid) | the bound uid modulo `worker_num` (slot before `bind`) | yes |
/// | [`Custom`](Self::Custom) | a user function | no |
/// | [`Reactor`](Self::Reactor) | the connection's own reactor thread, which runs the handler | yes |
///
/// In a stateful mode every event of a connection runs on one worker, in order. In a stateless
/// mode packets of one connection may run on different workers at the same time; eddy still
/// runs `on_connect` before any `on_receive` (reading starts once `on_connect` returns) and
/// `on_close` after the last `on_receive` returns (on the worker that ran it).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum DispatchMode {
    /// Connection slot modulo `worker_num` (Swoole's mode 2, on eddy's slot instead of the fd).
    #[default]
    Fd,
    /// Round robin over the workers (Swoole's mode 1).
    RoundRobin,
    /// An idle worker, else the one with the shortest queue (Swoole's mode 3).
    Idle,
    /// Hash of the peer IP (Swoole's mode 4); unix peers fall back to the slot.
    Ip,
    /// The bound uid modulo `worker_num`, the slot before `bind` (Swoole's mode 5).
    Uid,
    /// A user function (Swoole's `dispatch_func`).
    Custom(DispatchFn),
    /// No hand-over at all: each reactor thread is also the worker of the connections it owns
    /// (Swoole's BASE mode, or its THREAD mode). Connections are spread evenly over the
    /// reactors at accept; there are `worker_num` reactor threads and no separate workers
    /// (`reactor_num` must equal `worker_num`, and defaults to it).
    ///
    /// The fastest mode for handlers that answer quickly: a packet is read, handled and
    /// answered on one thread, with no queue, wake-up or cache miss in between. The replies to
    /// a read of several packets (a batch) go out at the end of the reactor's poll round,
    /// together with the other connections' (up to 64 connections and 16 KiB each; before a
    /// `task_wait` or a rebuild of the handler), so a client is woken once for them, not once
    /// each. The price: a handler that blocks delays every other connection of its reactor,
    /// and the batch replies of the round before it.
    Reactor,
}

impl DispatchMode {
    /// Whether every event of one connection runs on one worker, in order.
    pub fn is_stateful(&self) -> bool {
        matches!(
            self,
            DispatchMode::Fd | DispatchMode::Ip | DispatchMode::Uid | DispatchMode::Reactor
        )
    }

    /// A custom mode from a function.
    pub fn custom(f: impl Fn(&DispatchInfo<'_>) -> Option<usize> + Send + Sync + 'static) -> Self {
        DispatchMode::Custom(Arc::new(f))
    }
}

impl fmt::Debug for DispatchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DispatchMode::Fd => "Fd",
            DispatchMode::RoundRobin => "RoundRobin",
            DispatchMode::Idle => "Idle",
            DispatchMode::Ip => "Ip",
            DispatchMode::Uid => "Uid",
            DispatchMode::Custom(_) => "Custom(..)",
            DispatchMode::Reactor => "Reactor",
        })
    }
}

impl FromStr for DispatchMode {
    type Err = String;

    /// `fd`, `round-robin`, `idle`, `ip`, `uid` or `reactor`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "fd" => DispatchMode::Fd,
            "round-robin" => DispatchMode::RoundRobin,
            "idle" => DispatchMode::Idle,
            "ip" => DispatchMode::Ip,
            "uid" => DispatchMode::Uid,
            "reactor" => DispatchMode::Reactor,
            other => {
                return Err(format!(
                    "unknown dispatch mode `{other}` \
                     (expected fd, round-robin, idle, ip, uid or reactor)"
                ))
            }
        })
    }
}
