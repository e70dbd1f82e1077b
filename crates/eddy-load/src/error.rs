//! Typed errors of the load generator.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::frame::Mismatch;

/// Everything that can make a load run fail.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The configuration is inconsistent (message says which field).
    Config(String),
    /// The address could not be parsed or resolved.
    Resolve {
        /// The address as given.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The address resolves to something outside 127.0.0.0/8 and ::1.
    NotLoopback {
        /// The address as given.
        addr: String,
    },
    /// A connection could not be established before the deadline.
    Connect {
        /// Target address.
        addr: SocketAddr,
        /// Index of the connection that failed.
        conn: u32,
        /// Connection attempts made for it.
        attempts: u32,
        /// The last error.
        source: io::Error,
    },
    /// An I/O error on an established connection or on the poller.
    Io {
        /// Connection id, or `None` for the poller itself.
        conn: Option<u32>,
        /// The error.
        source: io::Error,
    },
    /// The server closed a connection while echoes were outstanding.
    Closed {
        /// Connection id.
        conn: u32,
        /// Packets sent but not echoed.
        outstanding: u64,
    },
    /// The server echoed more bytes than were sent.
    Unsolicited {
        /// Connection id.
        conn: u32,
    },
    /// An echoed byte differed from what was sent.
    Mismatch(Mismatch),
    /// No echo arrived for `timeout` while packets were outstanding.
    Stalled {
        /// The stall timeout.
        timeout: Duration,
        /// Packets outstanding on the stalled thread.
        outstanding: u64,
    },
    /// A worker thread panicked or could not be started.
    Thread(String),
    /// A WebSocket upgrade was refused or answered wrongly.
    Handshake {
        /// Connection id.
        conn: u32,
        /// What was wrong with the answer.
        reason: String,
    },
    /// TLS failed: the trusted certificates could not be read, a handshake was refused
    /// (say, a certificate not trusted) or did not finish in time, or a record did not
    /// decrypt.
    Tls {
        /// Connection id, or `None` for the client's configuration.
        conn: Option<u32>,
        /// What went wrong, as rustls says it.
        reason: String,
    },
    /// A WebSocket echo broke the protocol: an unexpected opcode, a masked
    /// or fragmented frame, a compressed echo that does not inflate; or a
    /// UDP echo of the wrong size.
    Protocol {
        /// Connection id.
        conn: u32,
        /// What was wrong.
        reason: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(msg) => write!(f, "invalid configuration: {msg}"),
            LoadError::Resolve { addr, source } => {
                write!(f, "cannot resolve address {addr:?}: {source}")
            }
            LoadError::NotLoopback { addr } => write!(
                f,
                "refusing to load {addr:?}: only loopback targets (127.0.0.0/8, ::1) are allowed"
            ),
            LoadError::Connect {
                addr,
                conn,
                attempts,
                source,
            } => write!(
                f,
                "connection {conn} to {addr} failed after {attempts} attempt(s): {source}"
            ),
            LoadError::Io {
                conn: Some(c),
                source,
            } => write!(f, "I/O error on connection {c}: {source}"),
            LoadError::Io { conn: None, source } => write!(f, "poller error: {source}"),
            LoadError::Closed { conn, outstanding } => write!(
                f,
                "server closed connection {conn} with {outstanding} packet(s) not echoed"
            ),
            LoadError::Unsolicited { conn } => {
                write!(
                    f,
                    "server sent more bytes than were sent on connection {conn}"
                )
            }
            LoadError::Mismatch(m) => m.fmt(f),
            LoadError::Stalled {
                timeout,
                outstanding,
            } => write!(
                f,
                "no echo for {:.1}s with {outstanding} packet(s) outstanding (is the server up and using the same framing?)",
                timeout.as_secs_f64()
            ),
            LoadError::Thread(msg) => write!(f, "worker thread failed: {msg}"),
            LoadError::Handshake { conn, reason } => {
                write!(f, "WebSocket handshake failed on connection {conn}: {reason}")
            }
            LoadError::Tls {
                conn: Some(c),
                reason,
            } => write!(f, "TLS error on connection {c}: {reason}"),
            LoadError::Tls { conn: None, reason } => write!(f, "TLS client setup: {reason}"),
            LoadError::Protocol { conn, reason } => {
                write!(f, "protocol error on connection {conn}: {reason}")
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Resolve { source, .. }
            | LoadError::Connect { source, .. }
            | LoadError::Io { source, .. } => Some(source),
            LoadError::Mismatch(m) => Some(m),
            _ => None,
        }
    }
}

impl From<Mismatch> for LoadError {
    fn from(m: Mismatch) -> Self {
        LoadError::Mismatch(m)
    }
}
