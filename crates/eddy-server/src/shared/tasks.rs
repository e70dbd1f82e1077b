//! What the server needs of its task pool without knowing the task types.
//!
//! The pool itself (`task::pool`) is generic over the task handler and sits above this layer;
//! the shared state holds it as a `dyn PoolControl`.

use std::{any::Any, sync::Arc, time::Instant};

use super::worker_mail::WakeWorker;
use crate::message::{Message, MessageError, MessageSource};

/// What the server needs of a pool without knowing its task types.
pub(crate) trait PoolControl: Send + Sync + std::fmt::Debug {
    /// The pool, for `ServerHandle::tasks` to downcast.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// The pool's task handler type, for the error when a downcast fails.
    fn type_name(&self) -> &'static str;
    /// The OS thread id of task worker `id`, once it runs.
    fn thread_id(&self, id: usize) -> Option<i32>;
    /// Its figures for `stats()`.
    fn snapshot(&self) -> TaskSnapshot;
    /// Take no new task; queued ones run until `deadline`, then are abandoned.
    fn close(&self, deadline: Instant);
    /// Abandon what is left in the queues (after the task workers stopped or at the
    /// deadline). Returns how many.
    fn abandon_queued(&self, waker: &dyn WakeWorker) -> u64;
    /// Queue a rebuild behind the tasks of every task worker (a reload); each acknowledges it
    /// to the reload state once done.
    fn rebuild_all(&self, generation: u64);
    /// Queue a message for task worker `id`.
    fn message(&self, id: usize, src: MessageSource, message: Message) -> Result<(), MessageError>;
}

/// The task figures of [`Stats`](crate::Stats).
#[derive(Debug, Default)]
pub(crate) struct TaskSnapshot {
    pub(crate) task_worker_num: usize,
    pub(crate) tasking_num: usize,
    pub(crate) task_queue_num: usize,
    pub(crate) submitted: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) late: u64,
    pub(crate) rejected: u64,
    pub(crate) abandoned: u64,
    pub(crate) restarts: u64,
}
