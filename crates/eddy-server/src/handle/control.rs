//! Controlling the server from any thread: reload, restart a worker, admin commands,
//! messages, tasks, shutdown.

use std::sync::atomic::Ordering;

use crossbeam_channel::RecvTimeoutError;

use crate::{
    error::{CommandError, TaskError},
    message::{CommandTarget, Destination, Message, MessageError, MessageSource},
    shared::{
        CommandCall, Rebuild, ReloadError, ReloadScope, ServerHandle, WakeWorker, WorkerStatus,
    },
    task::{TaskHandler, TaskPool, Tasks},
    tls::TlsError,
};

impl ServerHandle {
    /// Rebuild every worker's and task worker's handler from the factory (Swoole's
    /// `reload`, as SIGUSR1 does). Connections stay open and no packet is lost: each worker
    /// swaps its handler between two events, the old one finishing what it holds. The
    /// main handler's `on_before_reload` and `on_after_reload` run around it, on the thread
    /// that called `run`; [`Stats::reload_count`](crate::Stats::reload_count) counts completed reloads.
    ///
    /// Returns at once: the reload runs in the background, within `max_wait_time`. A reload
    /// asked for while one runs is ignored ([`ReloadError::InProgress`], and logged).
    ///
    /// [`ReloadError::InProgress`]: crate::ReloadError::InProgress
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.reload_scope(ReloadScope::All)
    }

    /// Rebuild only the task workers' handlers (Swoole's `reload(true)`, as SIGUSR2 does).
    /// Tasks queued before it run on the old handlers.
    pub fn reload_task_workers(&self) -> Result<(), ReloadError> {
        self.reload_scope(ReloadScope::TaskWorkers)
    }

    fn reload_scope(&self, scope: ReloadScope) -> Result<(), ReloadError> {
        if self.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        self.shared.reload.request(scope)?;
        self.shared.supervisor.notify();
        Ok(())
    }

    /// Read the certificate, key and CA files of TLS listener `listener` again (its index in
    /// the order listeners were added) and use them for the connections accepted from now
    /// on; open connections keep their session. If a file is missing or broken, or the key
    /// does not match, the listener keeps the certificate it had and the error says why.
    /// SIGUSR1 reloads every TLS listener this way, besides the handlers.
    pub fn reload_tls(&self, listener: usize) -> Result<(), TlsError> {
        match self
            .shared
            .config
            .listeners
            .get(listener)
            .and_then(|l| l.tls.as_ref())
        {
            Some(acceptor) => acceptor.reload(),
            None => Err(TlsError::NotTls { listener }),
        }
    }

    /// Restart one worker (Swoole's `stop($worker_id)`): it rebuilds its handler from the
    /// factory after its current event, keeping its connections and queued events.
    pub fn stop_worker(&self, worker_id: usize) -> Result<(), ReloadError> {
        let worker = self
            .shared
            .workers
            .get(worker_id)
            .ok_or(ReloadError::NoSuchWorker {
                id: worker_id,
                worker_num: self.shared.config.worker_num,
            })?;
        if self.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        // A full control queue already holds rebuilds this one would repeat.
        let _ = worker.ask_rebuild(Rebuild::Restart);
        self.shared.wake_worker(worker_id);
        Ok(())
    }

    /// What worker `worker_id` is doing: idle, busy, or rebuilding its handler.
    pub fn worker_status(&self, worker_id: usize) -> Option<WorkerStatus> {
        self.shared.workers.get(worker_id).map(|w| w.status())
    }

    /// The OS thread id of worker `worker_id` (Swoole's `getWorkerPid`): eddy's workers are
    /// threads of one process, so this is what `top -H` or `/proc/PID/task` shows for it.
    /// `None` for an unknown worker, or before it runs.
    pub fn worker_pid(&self, worker_id: usize) -> Option<i32> {
        self.shared.workers.get(worker_id)?.thread_id()
    }

    /// The OS thread id of task worker `task_worker_id`.
    pub fn task_worker_pid(&self, task_worker_id: usize) -> Option<i32> {
        self.shared.tasks.as_ref()?.thread_id(task_worker_id)
    }

    /// The process id (Swoole's `getMasterPid`). With threads there is one process: the
    /// master, the manager and every worker share it.
    pub fn master_pid(&self) -> u32 {
        std::process::id()
    }

    /// The process id (Swoole's `getManagerPid`): the same as [`master_pid`](Self::master_pid),
    /// as eddy's supervisor is a thread of the one process.
    pub fn manager_pid(&self) -> u32 {
        std::process::id()
    }

    /// Run the admin command `name` (added with
    /// [`ServerBuilder::add_command`](crate::ServerBuilder::add_command)) on `target`, and
    /// wait up to `timeout` for its answer (Swoole's `command`). `args` is turned into JSON.
    /// A worker asking a command of itself times out: it cannot run it while it waits.
    pub fn command(
        &self,
        name: &str,
        target: CommandTarget,
        args: impl serde::Serialize,
        timeout: std::time::Duration,
    ) -> Result<serde_json::Value, CommandError> {
        let shared = &self.shared;
        let body = shared
            .commands
            .0
            .get(name)
            .cloned()
            .ok_or_else(|| CommandError::Unknown(name.to_string()))?;
        let args = serde_json::to_value(args)
            .map_err(|err| CommandError::BadArguments(err.to_string()))?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let call = CommandCall { body, args, reply };
        let dst = match target {
            CommandTarget::Supervisor => None,
            CommandTarget::Worker(id) => Some(Destination::Worker(id)),
            CommandTarget::TaskWorker(id) => Some(Destination::TaskWorker(id)),
        };
        if let Some(dst) = dst {
            let message = Message::new(call);
            shared
                .send_message(MessageSource::External, dst, message)
                .map_err(|err| match err {
                    MessageError::NoSuchDestination(_) => CommandError::NoSuchTarget(target),
                    MessageError::QueueFull => CommandError::QueueFull,
                    _ => CommandError::ShuttingDown,
                })?;
        } else {
            if self.is_shutting_down() {
                return Err(CommandError::ShuttingDown);
            }
            shared.supervisor_commands.push(call)?;
            shared.supervisor.notify();
        }
        // A call dropped unanswered went with its target's queue: the server is stopping.
        answer.recv_timeout(timeout).unwrap_or_else(|err| {
            Err(match err {
                RecvTimeoutError::Timeout => CommandError::Timeout,
                RecvTimeoutError::Disconnected => CommandError::ShuttingDown,
            })
        })
    }

    /// Send a message to a worker's or task worker's `on_pipe_message` from any thread
    /// (Swoole's `sendMessage` from a user process). It is moved, not serialised; messages
    /// from one thread to one receiver arrive in order. Refused at once, never blocking,
    /// when the receiver's queue is full.
    pub fn send_message(
        &self,
        dst: Destination,
        message: impl std::any::Any + Send,
    ) -> Result<(), MessageError> {
        self.shared
            .send_message(MessageSource::External, dst, Message::new(message))
    }

    /// Send tasks from any thread (Swoole's `task` from a user process): a typed handle to
    /// the task workers. `T` must be the server's task handler type
    /// ([`TaskError::WrongTaskType`] otherwise); [`TaskError::NoTaskWorkers`] if it has none.
    pub fn tasks<T: TaskHandler>(&self) -> Result<Tasks<T>, TaskError> {
        let pool = self.shared.tasks.as_ref().ok_or(TaskError::NoTaskWorkers)?;
        let expected = pool.type_name();
        pool.clone()
            .as_any()
            .downcast::<TaskPool<T>>()
            .map(|pool| Tasks::new(pool, self.shared.clone()))
            .map_err(|_| TaskError::WrongTaskType { expected })
    }

    /// Ask the server to shut down gracefully (as SIGTERM does). Returns at once; `run`
    /// returns when the shutdown is complete. Calling it again does nothing.
    pub fn shutdown(&self) {
        if !self.shared.shutdown_requested.swap(true, Ordering::SeqCst) {
            self.shared.supervisor.notify();
        }
    }

    /// Whether a shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown_requested.load(Ordering::Acquire)
    }
}
