//! Sending tasks: the typed handle for any thread, and the blocking waits it shares with
//! worker contexts.

use std::{fmt, sync::Arc, time::Duration};

use super::{pool::Reply, waiter::Waiter, TaskHandler, TaskId, TaskPool, TaskSource, MAX_MULTI};
use crate::{
    error::TaskError,
    shared::{Outlet, Shared},
    timer::deadline_after,
};

/// Sends tasks to a server's task workers from any thread: Swoole's `task` from a user
/// process, and `taskwait` without a worker. Got from
/// [`ServerHandle::tasks`](crate::ServerHandle::tasks); cheap to clone.
///
/// Tasks sent with [`task`](Self::task) are one-way: nobody receives their results (a
/// `finish` in them says [`TaskError::NoReceiver`]). Use a wait to get results back.
pub struct Tasks<T: TaskHandler> {
    pool: Arc<TaskPool<T>>,
    /// The server's state: a wait first writes the replies the calling thread holds for the
    /// end of its round (a reactor-mode handler's, see `Outlet::uncork`).
    shared: Arc<Shared>,
}

impl<T: TaskHandler> Clone for Tasks<T> {
    fn clone(&self) -> Self {
        Tasks {
            pool: self.pool.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T: TaskHandler> fmt::Debug for Tasks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks")
            .field("task_worker_num", &self.pool.task_worker_num())
            .finish()
    }
}

impl<T: TaskHandler> Tasks<T> {
    pub(crate) fn new(pool: Arc<TaskPool<T>>, shared: Arc<Shared>) -> Self {
        Tasks { pool, shared }
    }

    /// How many task workers there are.
    pub fn task_worker_num(&self) -> usize {
        self.pool.task_worker_num()
    }

    /// Queue a one-way task; returns its id at once, or why it was not queued.
    pub fn task(&self, payload: T::Task) -> Result<TaskId, TaskError> {
        self.pool
            .submit(None, TaskSource::External, payload, Reply::None)
    }

    /// Queue a one-way task on task worker `task_worker` (its queue is FIFO).
    pub fn task_to(&self, task_worker: usize, payload: T::Task) -> Result<TaskId, TaskError> {
        self.pool.submit(
            Some(task_worker),
            TaskSource::External,
            payload,
            Reply::None,
        )
    }

    /// Run a task and block until its result or `timeout`. See
    /// [`Context::task_wait`](crate::Context::task_wait).
    pub fn task_wait(&self, payload: T::Task, timeout: Duration) -> Result<T::Output, TaskError> {
        let outlet = &self.shared.outlet;
        wait_one(&self.pool, outlet, TaskSource::External, payload, timeout)
    }

    /// Run tasks at once and block until all results or `timeout`. See
    /// [`Context::task_wait_multi`](crate::Context::task_wait_multi).
    pub fn task_wait_multi(
        &self,
        payloads: impl IntoIterator<Item = T::Task>,
        timeout: Duration,
    ) -> Result<Vec<Result<T::Output, TaskError>>, TaskError> {
        let outlet = &self.shared.outlet;
        wait_all(&self.pool, outlet, TaskSource::External, payloads, timeout)
    }

    /// The same as [`task_wait_multi`](Self::task_wait_multi).
    pub fn task_co(
        &self,
        payloads: impl IntoIterator<Item = T::Task>,
        timeout: Duration,
    ) -> Result<Vec<Result<T::Output, TaskError>>, TaskError> {
        let outlet = &self.shared.outlet;
        wait_all(&self.pool, outlet, TaskSource::External, payloads, timeout)
    }
}

/// `task_wait`: one task, one result or error.
///
/// Before it blocks, what the calling thread holds for the end of its round is written
/// (`Outlet::end_round`: a reactor-mode handler's replies must not wait for the task).
pub(crate) fn wait_one<T: TaskHandler>(
    pool: &TaskPool<T>,
    outlet: &Outlet,
    src: TaskSource,
    payload: T::Task,
    timeout: Duration,
) -> Result<T::Output, TaskError> {
    let deadline = deadline_after(timeout);
    let waiter = Arc::new(Waiter::new(1));
    let reply = Reply::Wait {
        waiter: waiter.clone(),
        index: 0,
    };
    pool.submit(None, src, payload, reply)?;
    outlet.end_round();
    waiter
        .wait(deadline)
        .pop()
        .unwrap_or(Err(TaskError::Timeout))
}

/// `task_wait_multi` / `task_co`: every task queued at once, one deadline, results in the
/// order of the payloads. A payload that could not be queued has its error in its place.
/// Writes what the thread holds for its round first, as [`wait_one`] does.
pub(crate) fn wait_all<T: TaskHandler>(
    pool: &TaskPool<T>,
    outlet: &Outlet,
    src: TaskSource,
    payloads: impl IntoIterator<Item = T::Task>,
    timeout: Duration,
) -> Result<Vec<Result<T::Output, TaskError>>, TaskError> {
    let deadline = deadline_after(timeout);
    if super::pool::IN_TASK_WORKER.get() {
        return Err(TaskError::InTaskWorker);
    }
    // Not read past the limit: an endless iterator is refused too.
    let mut given = payloads.into_iter();
    let payloads: Vec<T::Task> = given.by_ref().take(MAX_MULTI + 1).collect();
    if payloads.len() > MAX_MULTI {
        return Err(TaskError::TooMany {
            len: payloads.len().saturating_add(given.size_hint().0),
            max: MAX_MULTI,
        });
    }
    let waiter = Arc::new(Waiter::new(payloads.len()));
    for (index, payload) in payloads.into_iter().enumerate() {
        let reply = Reply::Wait {
            waiter: waiter.clone(),
            index,
        };
        if let Err(err) = pool.submit(None, src, payload, reply) {
            // The slot is empty and nobody else will fill it.
            waiter.put(index, Err(err));
        }
    }
    outlet.end_round();
    Ok(waiter.wait(deadline))
}
