//! Why a connection closed.

use eddy_codec::FrameError;

/// Why a connection closed. Every close has one, and every close goes through one path, so
/// [`EventHandler::on_close`](crate::EventHandler::on_close) runs exactly once per connection with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side (end of stream). What it sent before is still handled, and
    /// the replies flushed, before the connection closes (a half-closing client gets its
    /// answer).
    PeerClosed,
    /// The peer reset the connection, or the socket failed (`ECONNRESET`, `EPIPE`, …).
    PeerReset,
    /// Another socket error.
    Error(std::io::ErrorKind),
    /// The server closed it with `close`, after flushing what was queued.
    ServerClosed,
    /// The server closed it with `close_reset`: queued output was dropped.
    ServerReset,
    /// The peer's bytes broke the listener's framing (malformed, or a packet over
    /// `package_max_length`); the body of an oversized packet was never buffered. The packets
    /// before the bad one are still handled and answered.
    BadPacket(FrameError),
    /// The server shut down.
    Shutdown,
    /// The peer sent nothing for `heartbeat_idle_time`; queued output was dropped.
    HeartbeatTimeout,
    /// A callback panicked while handling this connection's event, and `close_on_panic` is
    /// on (the default): the connection was reset, its queued output dropped.
    HandlerPanic,
    /// The listener's codec panicked on this connection's bytes (a bug in a user codec): the
    /// reactor caught it and closed only this connection, after flushing the replies to the
    /// packets before.
    CodecPanic,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::PeerReset => f.write_str("reset by peer"),
            CloseReason::Error(kind) => write!(f, "socket error: {kind}"),
            CloseReason::ServerClosed => f.write_str("closed by server"),
            CloseReason::ServerReset => f.write_str("reset by server"),
            CloseReason::BadPacket(err) => write!(f, "bad packet: {err}"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
            CloseReason::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            CloseReason::HandlerPanic => f.write_str("handler panicked"),
            CloseReason::CodecPanic => f.write_str("codec panicked"),
        }
    }
}
