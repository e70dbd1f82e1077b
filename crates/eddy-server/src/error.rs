//! Typed errors and outcomes of the public API.

use std::{fmt, io};

/// What `send` did with the bytes.
///
/// Workerman's three-way answer, made a type: the bytes are either in the kernel's socket
/// buffer already, or in eddy's output buffer for that connection (they will be flushed, in
/// order, unless the connection is reset or dies first), or the call failed ([`SendError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Every byte was written to the kernel's socket buffer.
    Sent,
    /// Some or all bytes wait in eddy's output buffer; `pending` bytes are buffered for the
    /// connection in total, this message included.
    Queued {
        /// Bytes waiting in the connection's output buffer, after this call.
        pending: usize,
    },
}

/// Why a `send` or `close` could not be done. Nothing of the message was sent or queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No such connection: the id was never issued, or its connection is gone (a stale id
    /// never reaches a newer connection).
    NotFound,
    /// The connection is closing or closed.
    Closed,
    /// The output buffer cannot take the message without passing `socket_buffer_size`.
    BufferFull {
        /// Bytes already waiting in the connection's output buffer.
        pending: usize,
        /// The output buffer's cap (`socket_buffer_size`).
        limit: usize,
    },
    /// The message alone is larger than the output buffer's cap, so it could never be queued.
    TooLarge {
        /// The message's length.
        len: usize,
        /// The output buffer's cap (`socket_buffer_size`).
        limit: usize,
    },
    /// An empty message (there is nothing to send).
    Empty,
    /// The listener's codec cannot frame this message (`send_framed`), e.g. its length does
    /// not fit the length field.
    Unframable,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotFound => f.write_str("no such connection"),
            SendError::Closed => f.write_str("connection is closed"),
            SendError::BufferFull { pending, limit } => write!(
                f,
                "output buffer full ({pending} bytes pending, socket_buffer_size is {limit})"
            ),
            SendError::TooLarge { len, limit } => write!(
                f,
                "message of {len} bytes is larger than socket_buffer_size ({limit})"
            ),
            SendError::Empty => f.write_str("empty message"),
            SendError::Unframable => f.write_str("the listener's codec cannot frame this message"),
        }
    }
}

impl std::error::Error for SendError {}

/// A setting that is out of range or contradicts another, refused when the server is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's name (`worker_num`, `package_max_length`, …).
    pub setting: &'static str,
    /// What is wrong, and what would be accepted.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            setting,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting `{}`: {}", self.setting, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Why a server could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is invalid.
    Config(ConfigError),
    /// A listener could not be bound.
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// Another system call failed while setting up (creating a poller, …).
    Io(io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(err) => err.fmt(f),
            BuildError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            BuildError::Io(err) => write!(f, "cannot set up the server: {err}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Config(err) => Some(err),
            BuildError::Bind { source, .. } => Some(source),
            BuildError::Io(err) => Some(err),
        }
    }
}

impl From<ConfigError> for BuildError {
    fn from(err: ConfigError) -> Self {
        BuildError::Config(err)
    }
}
