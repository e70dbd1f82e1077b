//! The handler types, erased: `Server` is not generic, yet its threads run the user's typed
//! handlers. `Roles` makes each thread's handler; `Lifecycle` is the main handler's callbacks.

use std::{io, marker::PhantomData, sync::Arc, thread::JoinHandle};

use crossbeam_channel::{Receiver, Sender};

use crate::{
    handler::EventHandler,
    shared::{Event, PoolControl, ServerHandle, WorkerRun},
    task::{run_task_worker, Finished, TaskFactory, TaskHandler, TaskPool},
    worker::Worker,
};

/// Makes the threads' handlers, with the handler types erased (so `Server` is not generic).
pub(crate) trait Roles: Send {
    /// Worker `id`, with its inbox (called once per worker).
    fn worker(
        &mut self,
        id: usize,
        inbox: Receiver<Event>,
        server: &ServerHandle,
    ) -> Box<dyn WorkerRun>;
    /// The handler that runs `on_start` and `on_shutdown`.
    fn main(&self) -> Box<dyn Lifecycle>;
    /// Start the task workers; each sends on `started` when ready and its id on `done` when
    /// it has stopped.
    fn spawn_task_workers(
        &self,
        server: &ServerHandle,
        started: &Sender<()>,
        done: &Sender<usize>,
    ) -> io::Result<Vec<JoinHandle<()>>>;
}

/// The main handler's callbacks (`on_start`, reloads, `on_shutdown`), whatever the task
/// types.
pub(crate) trait Lifecycle {
    fn on_start(&mut self, server: &ServerHandle);
    fn on_before_reload(&mut self, server: &ServerHandle);
    fn on_after_reload(&mut self, server: &ServerHandle);
    fn on_before_shutdown(&mut self, server: &ServerHandle);
    fn on_shutdown(&mut self, server: &ServerHandle);
}

struct Main<H, T>(H, PhantomData<fn() -> T>);

impl<T: TaskHandler, H: EventHandler<T>> Lifecycle for Main<H, T> {
    fn on_start(&mut self, server: &ServerHandle) {
        self.0.on_start(server)
    }
    fn on_before_reload(&mut self, server: &ServerHandle) {
        self.0.on_before_reload(server)
    }
    fn on_after_reload(&mut self, server: &ServerHandle) {
        self.0.on_after_reload(server)
    }
    fn on_before_shutdown(&mut self, server: &ServerHandle) {
        self.0.on_before_shutdown(server)
    }
    fn on_shutdown(&mut self, server: &ServerHandle) {
        self.0.on_shutdown(server)
    }
}

/// A pool with what its task workers are made of.
pub(crate) struct TaskRoles<T: TaskHandler> {
    pool: Arc<TaskPool<T>>,
    factory: TaskFactory<T>,
    /// Per worker: where results of its tasks arrive, handed to the worker when it is made
    /// (so once it is gone, results sent to it fail and are counted late).
    results: Vec<Option<Receiver<Finished<T>>>>,
}

pub(crate) struct Typed<H, F, T: TaskHandler> {
    factory: Arc<F>,
    tasks: Option<TaskRoles<T>>,
    _handler: PhantomData<fn() -> H>,
}

impl<H, F, T: TaskHandler> Typed<H, F, T> {
    pub(crate) fn new(factory: Arc<F>, tasks: Option<TaskRoles<T>>) -> Self {
        Typed {
            factory,
            tasks,
            _handler: PhantomData,
        }
    }
}

impl<T: TaskHandler> TaskRoles<T> {
    /// A pool of `task_worker_num` task workers made by `factory`, answering `worker_num`
    /// workers through queues of `capacity`.
    pub(crate) fn new(
        factory: TaskFactory<T>,
        task_worker_num: usize,
        capacity: usize,
        worker_num: usize,
    ) -> Self {
        let (pool, results) = TaskPool::new(task_worker_num, capacity, worker_num);
        TaskRoles {
            pool: Arc::new(pool),
            factory,
            results: results.into_iter().map(Some).collect(),
        }
    }

    /// The pool, as the shared state holds it.
    pub(crate) fn control(&self) -> Arc<dyn PoolControl> {
        self.pool.clone()
    }
}

impl<T, H, F> Roles for Typed<H, F, T>
where
    T: TaskHandler,
    H: EventHandler<T>,
    F: Fn() -> H + Send + Sync + 'static,
{
    fn worker(
        &mut self,
        id: usize,
        inbox: Receiver<Event>,
        server: &ServerHandle,
    ) -> Box<dyn WorkerRun> {
        let tasks = self.tasks.as_mut().and_then(|t| {
            let results = t.results.get_mut(id)?.take()?;
            Some((t.pool.clone(), results))
        });
        let factory = self.factory.clone();
        Box::new(Worker::new(
            id,
            Arc::new(move || Box::new(factory()) as Box<dyn EventHandler<T>>),
            inbox,
            server.clone(),
            tasks,
        ))
    }

    fn main(&self) -> Box<dyn Lifecycle> {
        Box::new(Main((self.factory)(), PhantomData))
    }

    fn spawn_task_workers(
        &self,
        server: &ServerHandle,
        started: &Sender<()>,
        done: &Sender<usize>,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let Some(tasks) = &self.tasks else {
            return Ok(Vec::new());
        };
        let max_request = server.shared.config.task_max_request;
        (0..tasks.pool.task_worker_num())
            .map(|id| {
                let (pool, factory) = (tasks.pool.clone(), tasks.factory.clone());
                let (server, started, done) = (server.clone(), started.clone(), done.clone());
                spawn(format!("eddy-task-{id}"), move || {
                    run_task_worker(id, pool, factory, server, max_request, || {
                        let _ = started.send(());
                    });
                    let _ = done.send(id);
                })
            })
            .collect()
    }
}

/// Spawn a named thread.
pub(crate) fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name).spawn(f)
}
