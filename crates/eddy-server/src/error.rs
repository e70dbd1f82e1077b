//! Typed errors and outcomes of the public API.

use std::{fmt, io};

use crate::message::CommandTarget;

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
    /// An empty message on a stream (there is nothing to send). A WebSocket message may be
    /// empty: it goes out as a frame with no payload.
    Empty,
    /// The listener's codec cannot frame this message (`send_framed`), e.g. its length does
    /// not fit the length field; or a WebSocket text message that is not UTF-8.
    Unframable,
    /// A WebSocket call (`send_text`, `disconnect`, …) on a connection that is not a
    /// WebSocket.
    NotWebSocket,
    /// The WebSocket handshake is not done yet: no message may go out (once the connection
    /// is closing, sends fail with [`Closed`](Self::Closed)).
    NotEstablished,
    /// A close code a server may not send (it must be 1000 or 3000 to 4999).
    InvalidCloseCode(u16),
    /// `sendwait`: the bytes were not in the kernel's buffer before the timeout (they stay
    /// queued, and will be sent).
    TimedOut,
    /// `sendwait` on a reactor thread (a handler in `DispatchMode::Reactor`): it would block
    /// the very thread that flushes the output.
    OnReactor,
    /// `sendfile` on a WebSocket connection (whose messages must be framed).
    NotStream,
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
            SendError::NotWebSocket => f.write_str("not a WebSocket connection"),
            SendError::NotEstablished => f.write_str("the WebSocket handshake is not done"),
            SendError::TimedOut => f.write_str("not flushed before the timeout"),
            SendError::OnReactor => {
                f.write_str("sendwait on a reactor thread would block the thread that flushes")
            }
            SendError::NotStream => f.write_str("sendfile needs a plain stream connection"),
            SendError::InvalidCloseCode(code) => {
                write!(f, "close code {code} is not 1000 or 3000 to 4999")
            }
        }
    }
}

impl std::error::Error for SendError {}

/// Why a `sendfile` could not be done. Nothing was sent or queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendFileError {
    /// The connection refused it (unknown, closed, a WebSocket, …).
    Send(SendError),
    /// The file could not be opened or read (`NotFound`, `PermissionDenied`, …).
    Io(io::ErrorKind),
    /// Not a regular file.
    NotAFile,
    /// The range asked for goes past the file's end.
    OutOfRange {
        /// Where it starts.
        offset: u64,
        /// How long it is.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
}

impl fmt::Display for SendFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendFileError::Send(err) => write!(f, "{err}"),
            SendFileError::Io(kind) => write!(f, "cannot read the file: {kind}"),
            SendFileError::NotAFile => f.write_str("not a regular file"),
            SendFileError::OutOfRange {
                offset,
                len,
                file_len,
            } => write!(
                f,
                "{len} bytes from {offset} go past the end of a {file_len}-byte file"
            ),
        }
    }
}

impl std::error::Error for SendFileError {}

impl From<SendError> for SendFileError {
    fn from(err: SendError) -> Self {
        SendFileError::Send(err)
    }
}

/// Why a `sendto` could not be done. Nothing was sent or queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendToError {
    /// No listener has this index.
    UnknownListener(usize),
    /// The listener is not a datagram listener (UDP or unix datagram).
    NotDatagram(usize),
    /// Larger than one datagram can carry.
    TooLarge {
        /// The datagram's length.
        len: usize,
        /// The most it may carry.
        max: usize,
    },
    /// The peer is not of the socket's family (IPv4 vs IPv6, or unix vs IP, or an unnamed
    /// unix peer, which cannot be answered).
    FamilyMismatch,
    /// The socket's send queue is full (`socket_buffer_size`), or, on a unix datagram
    /// socket, the peer's share of it (a quarter: a peer that stops reading cannot take the
    /// queue from the others).
    QueueFull {
        /// Bytes already queued (for the peer, when its share is what is full).
        pending: usize,
        /// The cap (the queue's, or the peer's share).
        limit: usize,
    },
    /// An empty datagram.
    Empty,
    /// The kernel refused it.
    Io(io::ErrorKind),
}

impl fmt::Display for SendToError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendToError::UnknownListener(i) => write!(f, "no listener {i}"),
            SendToError::NotDatagram(i) => write!(f, "listener {i} is not a datagram listener"),
            SendToError::TooLarge { len, max } => {
                write!(
                    f,
                    "a datagram of {len} bytes is over the {max} one can carry"
                )
            }
            SendToError::FamilyMismatch => f.write_str("the peer is not of the socket's family"),
            SendToError::QueueFull { pending, limit } => {
                write!(f, "send queue full ({pending} bytes queued, limit {limit})")
            }
            SendToError::Empty => f.write_str("empty datagram"),
            SendToError::Io(kind) => write!(f, "sendto failed: {kind}"),
        }
    }
}

impl std::error::Error for SendToError {}

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
    /// The cluster's Redis could not be reached at build time, and the cluster is set to
    /// refuse to start without it (`ClusterConfig::on_unavailable_at_start`).
    Cluster {
        /// The Redis URL, without its password.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(err) => err.fmt(f),
            BuildError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            BuildError::Io(err) => write!(f, "cannot set up the server: {err}"),
            BuildError::Cluster { url, reason } => {
                write!(f, "cannot reach the cluster's Redis at {url}: {reason}")
            }
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Config(err) => Some(err),
            BuildError::Bind { source, .. } => Some(source),
            BuildError::Io(err) => Some(err),
            BuildError::Cluster { .. } => None,
        }
    }
}

impl From<ConfigError> for BuildError {
    fn from(err: ConfigError) -> Self {
        BuildError::Config(err)
    }
}

/// Why a task could not be queued, or what became of it instead of a result.
///
/// Every task ends in exactly one of these ways for whoever waits on it: its result, or one
/// of these errors. Nothing is dropped without a trace: results nobody waits for any more are
/// counted in [`Stats::task_late`](crate::Stats::task_late).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The server has no task workers (`task_worker_num` is 0: no task handler was given).
    NoTaskWorkers,
    /// [`ServerHandle::tasks`](crate::ServerHandle::tasks) was asked for a task handler type
    /// that is not the server's.
    WrongTaskType {
        /// The server's task handler type.
        expected: &'static str,
    },
    /// A task worker id past `task_worker_num`.
    NoSuchTaskWorker {
        /// The id asked for.
        id: usize,
        /// How many task workers there are.
        task_worker_num: usize,
    },
    /// The chosen task worker's queue holds `task_queue_capacity` tasks already.
    QueueFull {
        /// The queue's capacity (`task_queue_capacity`).
        capacity: usize,
    },
    /// The server is shutting down and takes no new task.
    ShuttingDown,
    /// A task worker tried to send a task (a task worker would wait on itself).
    InTaskWorker,
    /// `task_wait_multi` / `task_co` with more payloads than they take at once.
    TooMany {
        /// Payloads given, as far as known: the iterator is read only one past `max`, and
        /// what its size hint says is left is added (at least `max + 1`).
        len: usize,
        /// The most taken at once ([`MAX_MULTI`](crate::MAX_MULTI)).
        max: usize,
    },
    /// The deadline passed before the task's result arrived. The task may still run: its
    /// late result is dropped and counted, never handed to a later wait.
    Timeout,
    /// The task panicked; the message is the panic's.
    Panicked(String),
    /// The task ended without a result (`on_task` returned `None` and never called
    /// `finish`).
    NoResult,
    /// `finish` on a task nobody waits for: it was sent one-way (from a thread that is not a
    /// worker, with no waiting).
    NoReceiver,
    /// `finish` outside `on_task`.
    NotInTask,
    /// `finish` after the waiter gave up (timed out) or already had its result; the result
    /// was dropped and counted in `task_late`.
    Expired,
    /// The shutdown deadline passed before a task worker could run the task.
    Abandoned,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::NoTaskWorkers => f.write_str("the server has no task workers"),
            TaskError::WrongTaskType { expected } => {
                write!(f, "the server's task handler is {expected}")
            }
            TaskError::NoSuchTaskWorker {
                id,
                task_worker_num,
            } => write!(
                f,
                "no task worker {id} (task_worker_num is {task_worker_num})"
            ),
            TaskError::QueueFull { capacity } => {
                write!(f, "task queue full (task_queue_capacity is {capacity})")
            }
            TaskError::ShuttingDown => f.write_str("the server is shutting down"),
            TaskError::InTaskWorker => f.write_str("a task worker cannot send tasks"),
            TaskError::TooMany { len, max } => {
                write!(f, "{len} tasks at once: at most {max} are taken")
            }
            TaskError::Timeout => f.write_str("timed out"),
            TaskError::Panicked(message) => write!(f, "task panicked: {message}"),
            TaskError::NoResult => f.write_str("the task ended without a result"),
            TaskError::NoReceiver => f.write_str("nobody waits for this task's result"),
            TaskError::NotInTask => f.write_str("finish called outside on_task"),
            TaskError::Expired => f.write_str("the waiter has stopped waiting"),
            TaskError::Abandoned => f.write_str("abandoned at the shutdown deadline"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Why a command gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// No command of that name was added with `add_command`.
    Unknown(String),
    /// No such worker or task worker.
    NoSuchTarget(CommandTarget),
    /// The target's queue is full.
    QueueFull,
    /// No answer within the timeout (the target is busy; a worker asking itself always
    /// times out).
    Timeout,
    /// The command panicked; the message is the panic's.
    Panicked(String),
    /// The arguments could not be turned into JSON.
    BadArguments(String),
    /// The server is shutting down.
    ShuttingDown,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(name) => write!(f, "no command named `{name}`"),
            CommandError::NoSuchTarget(target) => write!(f, "no such target: {target:?}"),
            CommandError::QueueFull => f.write_str("the target's queue is full"),
            CommandError::Timeout => f.write_str("no answer in time"),
            CommandError::Panicked(message) => write!(f, "command panicked: {message}"),
            CommandError::BadArguments(err) => write!(f, "bad arguments: {err}"),
            CommandError::ShuttingDown => f.write_str("the server is shutting down"),
        }
    }
}

impl std::error::Error for CommandError {}

/// Why the part of a message for other nodes, or a cluster-wide question, went unanswered.
///
/// Local delivery never waits for the cluster: a [`Delivery`](crate::Delivery) counts this
/// node's connections whatever happened to the rest, and carries this error in
/// [`Delivery::cluster`](crate::Delivery::cluster).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis cannot be reached now: known to be down, or every free connection lost and not
    /// replaced yet (the call returned at once, and nothing was published), or it did not
    /// answer within `command_timeout` (Redis may have run the
    /// command all the same, so the message may have gone out: it is never retried, so never
    /// sent twice; the bus then replaces that connection, and counts Redis down only if it
    /// does not answer its presence thread either). The bus reconnects by itself.
    Unavailable,
    /// The message is larger than the cluster's `max_message_bytes`: not published.
    TooLarge {
        /// The message's length.
        len: usize,
        /// `max_message_bytes`.
        limit: usize,
    },
    /// Redis answered with an error (logged): a script error, or a key of eddy's namespace
    /// holding another type because something else wrote it.
    Rejected,
    /// The uid or group name is too long to cross the bus (the message's header, which
    /// holds it, would be over what the other nodes read, about `limit` bytes): not
    /// published.
    NameTooLong {
        /// The header's length.
        len: usize,
        /// About the longest header the bus carries.
        limit: usize,
    },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Unavailable => f.write_str("the cluster's Redis is unavailable"),
            ClusterError::TooLarge { len, limit } => write!(
                f,
                "a message of {len} bytes is over the cluster's max_message_bytes ({limit})"
            ),
            ClusterError::Rejected => f.write_str("the cluster's Redis refused the command"),
            ClusterError::NameTooLong { len, limit } => write!(
                f,
                "a message header (uid or group name) of {len} bytes is too long for the \
                 cluster bus (about {limit} at most)"
            ),
        }
    }
}

impl std::error::Error for ClusterError {}

/// The message a panic was raised with.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// Put `new` in `slot` and drop the old value, catching a panic of its `Drop` (logged): a
/// user's handler replaced at a rebuild must not unwind the thread that holds it.
pub(crate) fn replace_guarded<T>(slot: &mut T, new: T, what: &str) {
    let old = std::mem::replace(slot, new);
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(old)));
    if let Err(panic) = dropped {
        tracing::error!("{what} panicked when dropped: {}", panic_message(&*panic));
    }
}
