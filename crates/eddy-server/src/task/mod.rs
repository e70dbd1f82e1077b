//! Task workers: a pool of threads that run slow work for the workers (Swoole's `task`,
//! `taskwait`, `taskWaitMulti`, `taskCo`, `finish`, `onTask`, `onFinish`).
//!
//! Task workers are threads of the server's process, so a task and its result move as Rust
//! values of the types the [`TaskHandler`] names: nothing is serialised, nothing goes through a
//! temporary file, and the only size limit is memory.
//!
//! # What happens to a task
//! [`task`](crate::Context::task) queues it at once or says why not ([`TaskError`]): each task
//! worker has a FIFO queue of `task_queue_capacity` tasks. An idle task worker is preferred
//! (one running no task, and no timer or message callback either), then the shortest
//! queue. The task worker runs [`TaskHandler::on_task`]; its result (the
//! returned value, and each [`TaskContext::finish`]) goes to whoever waits:
//! - a worker's [`on_finish`](crate::EventHandler::on_finish), or the per-call callback given
//!   to [`task_then`](crate::Context::task_then), on the worker that sent it;
//! - a [`task_wait`](crate::Context::task_wait) (or `task_wait_multi`, `task_co`) that blocks
//!   until then or its deadline;
//! - nobody, for a one-way task sent from a thread that is not a worker.
//!
//! A panic in `on_task` is caught: the waiter gets [`TaskError::Panicked`] with the message,
//! and the task worker rebuilds its handler and carries on. A result whose waiter has stopped
//! waiting is dropped and counted (`task_late`), never given to a later wait. At shutdown the
//! queued tasks still run until `max_wait_time`; any left then end with
//! [`TaskError::Abandoned`] and are counted in the shutdown report.

pub(crate) mod client;
pub(crate) mod pool;
mod runner;
mod waiter;

use std::{cell::RefCell, convert::Infallible, fmt, time::Duration};

pub use client::Tasks;
pub(crate) use pool::{Callback, Finished, Reply, TaskPool};
pub(crate) use runner::{run_task_worker, TaskFactory};

use crate::{
    error::TaskError,
    message::{Destination, Message, MessageError, MessageSource},
    shared::ServerHandle,
    timer::{TimerError, TimerId, Timers},
};

/// The most payloads one `task_wait_multi` or `task_co` takes (Swoole's limit, 1024).
pub const MAX_MULTI: usize = 1024;

/// A task's id: unique within a server, counted from 0 in the order tasks were queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who sent a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskSource {
    /// The worker with this id.
    Worker(usize),
    /// A thread that is not a worker, through a [`Tasks`] handle.
    External,
}

/// A task as its task worker receives it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Task<P> {
    /// The task's id, as `task` returned it to the sender.
    pub id: TaskId,
    /// Who sent it.
    pub src: TaskSource,
    /// What the sender gave.
    pub payload: P,
}

/// What a task worker does with a task: Swoole's `onTask`, typed.
///
/// The server makes one instance per task worker with the factory given to
/// [`ServerBuilder::task_handler`](crate::ServerBuilder::task_handler), and a new one after
/// `task_max_request` tasks or after a panic.
///
/// ```
/// use eddy_server::{Task, TaskContext, TaskHandler};
///
/// struct Square;
///
/// impl TaskHandler for Square {
///     type Task = u64;
///     type Output = u64;
///
///     fn on_task(&mut self, _ctx: &mut TaskContext<'_, Self>, task: Task<u64>) -> Option<u64> {
///         Some(task.payload * task.payload)
///     }
/// }
/// ```
pub trait TaskHandler: Sized + Send + 'static {
    /// What a task carries.
    type Task: Send + 'static;
    /// What a task produces.
    type Output: Send + 'static;

    /// Run one task. A value returned is the task's result (as if given to
    /// [`TaskContext::finish`]); `None` sends nothing more. A waiter that got nothing at all
    /// gets [`TaskError::NoResult`].
    fn on_task(
        &mut self,
        ctx: &mut TaskContext<'_, Self>,
        task: Task<Self::Task>,
    ) -> Option<Self::Output>;

    /// A task worker starts (or has rebuilt its handler), before its next task.
    fn on_task_worker_start(&mut self, ctx: &mut TaskContext<'_, Self>) {
        let _ = ctx;
    }

    /// A message sent to this task worker with `send_message` (Swoole's `onPipeMessage`),
    /// in order with the tasks queued around it.
    fn on_pipe_message(
        &mut self,
        ctx: &mut TaskContext<'_, Self>,
        src: MessageSource,
        message: Message,
    ) {
        let _ = (ctx, src, message);
    }

    /// A task worker stops (at shutdown, or before its handler is rebuilt).
    fn on_task_worker_stop(&mut self, ctx: &mut TaskContext<'_, Self>) {
        let _ = ctx;
    }
}

/// The task handler of a server without task workers: its tasks cannot be made.
#[derive(Debug)]
pub struct NoTasks;

impl TaskHandler for NoTasks {
    type Task = Infallible;
    type Output = Infallible;

    fn on_task(
        &mut self,
        _ctx: &mut TaskContext<'_, Self>,
        task: Task<Infallible>,
    ) -> Option<Infallible> {
        match task.payload {}
    }
}

/// What `on_task` can do besides returning: send results with [`finish`](Self::finish), see
/// whether its waiter still waits, reach the server.
pub struct TaskContext<'a, T: TaskHandler> {
    server: &'a ServerHandle,
    task_worker_id: usize,
    pool: &'a TaskPool<T>,
    current: Option<&'a mut pool::Running<T>>,
    timers: &'a RefCell<Timers<TaskTimer<T>>>,
}

/// A task worker's timer callback.
pub(crate) type TaskTimer<T> = dyn FnMut(&mut TaskContext<'_, T>, TimerId) + Send;

impl<T: TaskHandler> fmt::Debug for TaskContext<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("task_worker_id", &self.task_worker_id)
            .field("task", &self.task_id())
            .finish_non_exhaustive()
    }
}

impl<'a, T: TaskHandler> TaskContext<'a, T> {
    /// This task worker's id, `0..task_worker_num`.
    pub fn task_worker_id(&self) -> usize {
        self.task_worker_id
    }

    /// The task being run, inside `on_task`.
    pub fn task_id(&self) -> Option<TaskId> {
        self.current.as_ref().map(|running| running.id)
    }

    /// The server: send to connections, look them up, read stats.
    pub fn server(&self) -> &'a ServerHandle {
        self.server
    }

    /// Send a result now. Each call is one result: to a worker's `on_finish` (or its
    /// callback, first), as many as are sent; to a `task_wait`, only the first counts and
    /// later ones are [`TaskError::Expired`].
    ///
    /// Errors: [`TaskError::NotInTask`] outside `on_task`, [`TaskError::NoReceiver`] for a
    /// one-way task, [`TaskError::Expired`] when the waiter has stopped waiting (the result is
    /// dropped and counted), [`TaskError::QueueFull`] when the sending worker has not taken
    /// the results already sent to it (`task_queue_capacity` per task worker).
    pub fn finish(&mut self, output: T::Output) -> Result<(), TaskError> {
        let running = self.current.as_deref_mut().ok_or(TaskError::NotInTask)?;
        self.pool.deliver(self.server, running, Ok(output), false)
    }

    /// Run `f` on this task worker every `interval`, between tasks, until
    /// [`clear_timer`](Self::clear_timer). Like [`Context::tick`](crate::Context::tick):
    /// dropped when the handler is rebuilt or the task worker stops.
    pub fn tick(
        &self,
        interval: Duration,
        f: impl FnMut(&mut TaskContext<'_, T>, TimerId) + Send + 'static,
    ) -> Result<TimerId, TimerError> {
        self.timers.borrow_mut().tick(interval, Box::new(f))
    }

    /// Run `f` once on this task worker after `delay`, between tasks.
    pub fn after(
        &self,
        delay: Duration,
        f: impl FnOnce(&mut TaskContext<'_, T>) + Send + 'static,
    ) -> TimerId {
        let mut f = Some(f);
        let once = move |ctx: &mut TaskContext<'_, T>, _: TimerId| {
            if let Some(f) = f.take() {
                f(ctx)
            }
        };
        self.timers.borrow_mut().add(delay, None, Box::new(once))
    }

    /// Run `f` on this task worker once the current callback has returned.
    pub fn defer(&self, f: impl FnOnce(&mut TaskContext<'_, T>) + Send + 'static) {
        self.after(Duration::ZERO, f);
    }

    /// Cancel a timer of this task worker; `false` if it is not pending.
    pub fn clear_timer(&self, id: TimerId) -> bool {
        self.timers.borrow_mut().clear(id)
    }

    /// Send a message to a worker's or task worker's `on_pipe_message`. See
    /// [`ServerHandle::send_message`].
    pub fn send_message(
        &self,
        dst: Destination,
        message: impl std::any::Any + Send,
    ) -> Result<(), MessageError> {
        let src = MessageSource::TaskWorker(self.task_worker_id);
        self.server
            .shared
            .send_message(src, dst, Message::new(message))
    }

    /// Whether this is a task worker's thread: always `true` here.
    pub fn is_task_worker(&self) -> bool {
        true
    }

    /// Whether nobody waits for this task any more: its `task_wait` timed out. A long task
    /// can check it and stop early. Always `false` for tasks whose results go to a worker.
    pub fn is_cancelled(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|running| running.reply.is_cancelled())
    }
}
