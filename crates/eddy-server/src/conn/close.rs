//! Why a connection closed.

use eddy_codec::FrameError;

use crate::tls::{self, TlsFailure};

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
    /// A WebSocket connection ended with this close code and reason: the peer's close frame
    /// (`by_peer`; code 1005 if it had none), the server's `disconnect`, or a protocol
    /// error the server failed the connection for (1002 protocol error, 1007 invalid
    /// UTF-8, 1009 message too big), whose reason says why.
    WebSocket {
        /// The close code.
        code: u16,
        /// The reason text.
        reason: String,
        /// Whether the peer sent the close first.
        by_peer: bool,
    },
    /// The client did not finish its handshake in time: a TLS listener's within
    /// `TlsConfig::handshake_timeout`, a WebSocket listener's upgrade request within
    /// `WebSocketConfig::handshake_timeout`.
    HandshakeTimeout,
    /// The TLS session ended without a clean close: the handshake or a record failed, or
    /// the peer closed without close_notify (`TlsFailure::Truncated`; what it sent was
    /// still handled). A peer's close_notify is a clean `PeerClosed`.
    Tls(TlsFailure),
    /// A WebSocket listener answered the request with this HTTP status and closed: a
    /// broken or refused upgrade, an oversized request head, or a plain HTTP request
    /// answered by `on_request`.
    Http {
        /// The status sent.
        status: u16,
    },
}

impl CloseReason {
    /// The close reason for a failed read or write: the TLS session's failure it carries, a
    /// reset, or the error's kind.
    pub(crate) fn of_io(err: &std::io::Error) -> Self {
        if let Some(failure) = tls::failure_of(err) {
            return CloseReason::Tls(failure.clone());
        }
        match err.kind() {
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted => CloseReason::PeerReset,
            kind => CloseReason::Error(kind),
        }
    }

    /// Whether a close for this reason flushes what is queued first (a close the server
    /// asked for that is not a reset).
    pub(crate) fn flushes_first(&self) -> bool {
        matches!(
            self,
            CloseReason::ServerClosed
                | CloseReason::WebSocket { .. }
                | CloseReason::Http { .. }
                | CloseReason::Tls(TlsFailure::RecordLimit)
        )
    }

    /// Whether such a close drops the packets no worker has taken yet (a close the server
    /// decided on, as Swoole's `close` does), rather than letting them be handled and
    /// answered first (the peer's end of stream, a shutdown).
    pub(crate) fn drops_unhandled(&self) -> bool {
        match self {
            CloseReason::ServerClosed | CloseReason::Http { .. } => true,
            CloseReason::WebSocket { by_peer, .. } => !by_peer,
            _ => false,
        }
    }
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
            CloseReason::WebSocket {
                code,
                reason,
                by_peer,
            } => {
                let who = if *by_peer { "peer" } else { "server" };
                write!(f, "websocket closed by {who} ({code}")?;
                if !reason.is_empty() {
                    write!(f, ": {reason}")?;
                }
                f.write_str(")")
            }
            CloseReason::HandshakeTimeout => f.write_str("handshake timeout"),
            CloseReason::Tls(failure) => failure.fmt(f),
            CloseReason::Http { status } => write!(f, "answered HTTP {status}"),
        }
    }
}
