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
    #[cfg(test)]
    if tests::FAIL_SPAWN.with_borrow(|fail| fail.as_deref() == Some(name.as_str())) {
        return Err(io::Error::other("no thread (test)"));
    }
    std::thread::Builder::new().name(name).spawn(f)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        cell::RefCell,
        time::{Duration, Instant},
    };

    use bytes::Bytes;

    use crate::{
        conn::ConnId,
        context::Context,
        dispatch::DispatchMode,
        handler::EventHandler,
        server::Server,
        task::{Task, TaskContext, TaskHandler},
    };

    thread_local! {
        /// The name of a thread `spawn` fails to start, on this thread.
        pub(crate) static FAIL_SPAWN: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    struct Idle;

    impl TaskHandler for Idle {
        type Task = ();
        type Output = ();

        fn on_task(&mut self, _: &mut TaskContext<'_, Self>, _: Task<()>) -> Option<()> {
            None
        }
    }

    impl EventHandler<Idle> for Idle {
        fn on_receive(&mut self, _: &mut Context<'_, Idle>, _: ConnId, _: Bytes) {}
    }

    /// This process's reactor, worker and task worker threads (no other unit test starts a
    /// server).
    fn eddy_threads() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| {
                ["eddy-reactor-", "eddy-worker-", "eddy-task-"]
                    .iter()
                    .any(|p| name.starts_with(p))
            })
            .collect()
    }

    /// A start-up that cannot spawn a thread fails, and the threads it had started stop.
    #[test]
    fn a_failed_start_leaves_no_thread_running() {
        for (fails, dispatch) in [
            ("eddy-reactor-1", DispatchMode::Fd),
            ("eddy-task-1", DispatchMode::Fd),
            ("eddy-task-0", DispatchMode::Reactor),
        ] {
            FAIL_SPAWN.set(Some(fails.to_string()));
            let server = Server::builder()
                .listen("127.0.0.1:0")
                .handle_signals(false)
                .reactor_num(2)
                .worker_num(2)
                .dispatch_mode(dispatch)
                .task_handler(|| Idle)
                .task_worker_num(2)
                .build(|| Idle)
                .unwrap();
            let err = server.run().unwrap_err();
            assert_eq!(err.to_string(), "no thread (test)");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let left = eddy_threads();
                if left.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{fails}: still running: {left:?}"
                );
                // Polls the threads' exit (nothing to wait on: they are detached).
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        FAIL_SPAWN.set(None);
    }
}
