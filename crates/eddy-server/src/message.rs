//! Messages between workers, task workers and other threads (Swoole's `sendMessage` and
//! `onPipeMessage`).
//!
//! A message is any Rust value (`Send + 'static`), moved, never serialised; the receiver
//! takes it back out with [`Message::downcast`]. Messages from one sender to one receiver
//! arrive in the order they were sent.

use std::{any::Any, fmt};

/// Who sent a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageSource {
    /// The worker with this id.
    Worker(usize),
    /// The task worker with this id (`0..task_worker_num`).
    TaskWorker(usize),
    /// A thread that is neither, through a [`ServerHandle`](crate::ServerHandle).
    External,
}

/// A message as its receiver gets it: a value of the sender's type.
pub struct Message(Box<dyn Any + Send>);

impl Message {
    pub(crate) fn new(value: impl Any + Send) -> Self {
        Message(Box::new(value))
    }

    /// Whether the message is an `M`.
    pub fn is<M: Any>(&self) -> bool {
        self.0.is::<M>()
    }

    /// The value, if it is an `M`; otherwise the message back.
    pub fn downcast<M: Any>(self) -> Result<M, Message> {
        self.0.downcast::<M>().map(|m| *m).map_err(Message)
    }

    /// A reference to the value, if it is an `M`.
    pub fn downcast_ref<M: Any>(&self) -> Option<&M> {
        self.0.downcast_ref::<M>()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Message(..)")
    }
}

/// Where a message goes: Swoole numbers workers `0..worker_num` and task workers after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Worker `id`.
    Worker(usize),
    /// Task worker `id` (`0..task_worker_num`).
    TaskWorker(usize),
}

impl Destination {
    /// Swoole's single numbering: `0..worker_num` are workers, the next `task_worker_num`
    /// ids task workers.
    pub fn from_swoole_id(id: usize, worker_num: usize) -> Destination {
        if id < worker_num {
            Destination::Worker(id)
        } else {
            Destination::TaskWorker(id - worker_num)
        }
    }
}

/// Why a message was not sent. The message is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// No such worker or task worker.
    NoSuchDestination(Destination),
    /// The receiver has `worker_queue_capacity` (workers) or `task_queue_capacity` (task
    /// workers) messages waiting already.
    QueueFull,
    /// The server is shutting down: its workers are being stopped (messages are still taken
    /// while `on_before_shutdown` runs).
    ShuttingDown,
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::NoSuchDestination(dst) => write!(f, "no such destination: {dst:?}"),
            MessageError::QueueFull => f.write_str("the receiver's message queue is full"),
            MessageError::ShuttingDown => f.write_str("the server is shutting down"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandTarget {
    /// The thread that called `run`.
    Supervisor,
    /// Worker `id`, between two events.
    Worker(usize),
    /// Task worker `id`, between two tasks.
    TaskWorker(usize),
}
