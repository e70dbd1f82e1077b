//! The task queues, the choice of task worker, and where results go.

use std::{
    any::Any,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::Instant,
};

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::{waiter::Waiter, Task, TaskHandler, TaskId, TaskSource};
use crate::{
    error::TaskError,
    message::{Destination, Message, MessageError, MessageSource},
    shared::{Counter, PoolControl, TaskSnapshot, WakeWorker},
};

/// A per-call callback (`task_then`), carried through the pool untouched and back to the
/// worker that sent the task, which alone knows its type (it names the worker's `Context`,
/// a layer above the pool) and runs it instead of `on_finish`.
pub(crate) type Callback = Box<dyn Any + Send>;

/// Where a task's results go.
pub(crate) enum Reply<T: TaskHandler> {
    /// Nowhere: a one-way task.
    None,
    /// To worker `worker`'s `on_finish`, or first to the callback.
    Worker {
        worker: usize,
        callback: Option<Callback>,
    },
    /// Into slot `index` of a blocking wait.
    Wait {
        waiter: Arc<Waiter<T::Output>>,
        index: usize,
    },
}

impl<T: TaskHandler> Reply<T> {
    pub(crate) fn is_cancelled(&self) -> bool {
        matches!(self, Reply::Wait { waiter, .. } if waiter.is_gone())
    }
}

/// A queued task.
pub(crate) struct Job<T: TaskHandler> {
    pub(crate) task: Task<T::Task>,
    pub(crate) reply: Reply<T>,
}

/// What goes through a task queue.
pub(crate) enum Msg<T: TaskHandler> {
    Job(Job<T>),
    /// Stop once the tasks queued before this one are done (shutdown).
    Stop,
    /// Rebuild the handler once the tasks queued before this one are done, then acknowledge
    /// the latest reload asked for (`Slot::rebuild_asked`): one is queued at a time, so
    /// reloads while a task worker is stuck in a task do not pile up rebuilds.
    Rebuild,
    /// A message for `on_pipe_message`.
    Message(MessageSource, Message),
}

/// A task being run: what `finish` needs.
pub(crate) struct Running<T: TaskHandler> {
    pub(crate) id: TaskId,
    pub(crate) reply: Reply<T>,
    /// Results delivered so far.
    pub(crate) results: usize,
}

/// A result (or the end of a task) on its way to the worker that sent the task.
pub(crate) struct Finished<T: TaskHandler> {
    pub(crate) task: TaskId,
    pub(crate) result: Option<Result<T::Output, TaskError>>,
    pub(crate) callback: Option<Callback>,
    /// The task's last message: the worker stops counting it as outstanding.
    pub(crate) last: bool,
}

/// One task worker's queue, as the senders see it. Aligned to its own cache lines: a task
/// worker writes its slot with every task, and would otherwise slow the senders reading the
/// next slot.
#[repr(align(128))]
pub(crate) struct Slot<T: TaskHandler> {
    tx: Sender<Msg<T>>,
    pub(crate) rx: Receiver<Msg<T>>,
    /// Tasks in the queue: reserved before a send, released when the task worker takes one.
    pub(crate) queued: AtomicUsize,
    /// Running a task now.
    pub(crate) busy: AtomicBool,
    /// Running a timer or a message callback now: not a task ([`busy`](Self::busy) and the
    /// stats say so), but the tasks placed meanwhile would wait for it.
    pub(crate) occupied: AtomicBool,
    /// Its task worker has no handler yet (the factory panicked; it retries with back-off):
    /// a task placed there waits until one is made, so `pick` passes it over while another
    /// can take the task.
    pub(crate) unbuilt: AtomicBool,
    /// Messages in the queue (bounded like tasks, counted apart).
    pub(crate) messages: AtomicUsize,
    /// The latest reload whose rebuild is queued and not begun (0: none).
    pub(crate) rebuild_asked: AtomicU64,
    /// The OS thread id of the task worker (0 until it runs).
    pub(crate) tid: std::sync::atomic::AtomicI32,
    /// Tasks this slot's task worker ran to the end (it alone writes these two).
    pub(crate) completed: Counter,
    /// Tasks whose `on_task` panicked.
    pub(crate) failed: Counter,
}

impl<T: TaskHandler> Slot<T> {
    /// Running nothing of the handler's: a task placed here starts at once.
    fn is_idle(&self) -> bool {
        !self.busy.load(Ordering::Relaxed) && !self.occupied.load(Ordering::Relaxed)
    }
}

/// Counters that only go up and change off the hot path; the gauges (queued, running) are
/// read from the queues, the tasks submitted from the task ids given out, and the tasks
/// completed or failed from each slot.
#[derive(Debug, Default)]
pub(crate) struct TaskCounters {
    pub(crate) late: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

/// The task workers' queues and the result queues back to the workers.
pub(crate) struct TaskPool<T: TaskHandler> {
    pub(crate) slots: Box<[Slot<T>]>,
    capacity: usize,
    /// The next task's id: ids count from 0, one per task queued, so this is also the
    /// number of tasks submitted.
    next_id: AtomicU64,
    rotor: AtomicUsize,
    /// Per worker: results of the tasks it sent.
    finished: Box<[Sender<Finished<T>>]>,
    /// Per worker: tasks it sent whose last message it has not taken yet (only that worker
    /// changes its count).
    pub(crate) outstanding: Box<[AtomicUsize]>,
    /// Set at shutdown: no new task is taken.
    closed: AtomicBool,
    /// After it, queued tasks are abandoned instead of run.
    pub(crate) deadline: OnceLock<Instant>,
    pub(crate) counters: TaskCounters,
}

impl<T: TaskHandler> std::fmt::Debug for TaskPool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskPool")
            .field("task_worker_num", &self.slots.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Set on task worker threads, which may not send tasks.
    pub(crate) static IN_TASK_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<T: TaskHandler> TaskPool<T> {
    /// A pool of `task_workers` queues of `capacity` tasks each, and `workers` result queues
    /// (returned, one receiver per worker).
    pub(crate) fn new(
        task_workers: usize,
        capacity: usize,
        workers: usize,
    ) -> (Self, Vec<Receiver<Finished<T>>>) {
        let slots = (0..task_workers)
            .map(|_| {
                let (tx, rx) = unbounded();
                Slot {
                    tx,
                    rx,
                    queued: AtomicUsize::new(0),
                    busy: AtomicBool::new(false),
                    occupied: AtomicBool::new(false),
                    unbuilt: AtomicBool::new(false),
                    rebuild_asked: AtomicU64::new(0),
                    messages: AtomicUsize::new(0),
                    tid: std::sync::atomic::AtomicI32::new(0),
                    completed: Counter::default(),
                    failed: Counter::default(),
                }
            })
            .collect();
        let (finished, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| unbounded()).unzip();
        let pool = TaskPool {
            slots,
            capacity,
            next_id: AtomicU64::new(0),
            rotor: AtomicUsize::new(0),
            finished: finished.into(),
            outstanding: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            closed: AtomicBool::new(false),
            deadline: OnceLock::new(),
            counters: TaskCounters::default(),
        };
        (pool, receivers)
    }

    pub(crate) fn task_worker_num(&self) -> usize {
        self.slots.len()
    }

    /// Queue a task: on `target`, or an idle task worker, else the shortest queue.
    pub(crate) fn submit(
        &self,
        target: Option<usize>,
        src: TaskSource,
        payload: T::Task,
        reply: Reply<T>,
    ) -> Result<TaskId, TaskError> {
        if IN_TASK_WORKER.get() {
            return Err(TaskError::InTaskWorker);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(TaskError::ShuttingDown);
        }
        let index = match target {
            Some(id) if id >= self.slots.len() => {
                return Err(TaskError::NoSuchTaskWorker {
                    id,
                    task_worker_num: self.slots.len(),
                })
            }
            Some(id) => id,
            None => self.pick(),
        };
        let slot = &self.slots[index];
        if slot.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            slot.queued.fetch_sub(1, Ordering::AcqRel);
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(TaskError::QueueFull {
                capacity: self.capacity,
            });
        }
        let id = TaskId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let job = Job {
            task: Task { id, src, payload },
            reply,
        };
        // Never fails: the pool holds a receiver of every queue.
        let _ = slot.tx.send(Msg::Job(job));
        Ok(id)
    }

    /// An idle task worker with nothing queued (running no task, timer or message), starting
    /// from a rotating point so the work spreads; otherwise the shortest queue. A task worker
    /// with no handler is passed over unless every one is without.
    fn pick(&self) -> usize {
        let n = self.slots.len();
        let start = self.rotor.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = (usize::MAX, start);
        for k in 0..n {
            let index = (start + k) % n;
            let slot = &self.slots[index];
            if slot.unbuilt.load(Ordering::Relaxed) {
                continue;
            }
            let queued = slot.queued.load(Ordering::Relaxed);
            if queued == 0 && slot.is_idle() {
                return index;
            }
            if queued < best.0 {
                best = (queued, index);
            }
        }
        best.1
    }

    /// Hand one result (or, with `last`, the end of the task) to whoever waits.
    pub(crate) fn deliver(
        &self,
        waker: &dyn WakeWorker,
        running: &mut Running<T>,
        result: Result<T::Output, TaskError>,
        last: bool,
    ) -> Result<(), TaskError> {
        running.results += 1;
        let delivered = match &mut running.reply {
            Reply::None => return Err(TaskError::NoReceiver),
            Reply::Wait { waiter, index } => waiter.put(*index, result),
            Reply::Worker { worker, callback } => {
                let worker = *worker;
                // Results beyond a task's last are bounded: a worker that does not take them
                // refuses more (the last message always goes, there is one per task).
                if !last && self.finished[worker].len() >= self.capacity * self.slots.len() {
                    running.results -= 1;
                    return Err(TaskError::QueueFull {
                        capacity: self.capacity,
                    });
                }
                let finished = Finished {
                    task: running.id,
                    result: Some(result),
                    callback: callback.take(),
                    last,
                };
                let sent = self.finished[worker].send(finished).is_ok();
                if sent {
                    waker.wake_worker(worker);
                } else {
                    running.results -= 1;
                }
                sent
            }
        };
        if delivered {
            Ok(())
        } else {
            self.counters.late.fetch_add(1, Ordering::Relaxed);
            Err(TaskError::Expired)
        }
    }

    /// The task ended (ran, panicked with `error`, or was abandoned with `error`): tell its
    /// waiter if it got nothing yet, and its worker that the task is over.
    pub(crate) fn end(
        &self,
        waker: &dyn WakeWorker,
        running: &mut Running<T>,
        error: Option<TaskError>,
    ) {
        match &mut running.reply {
            Reply::None => {}
            Reply::Wait { .. } => {
                if running.results == 0 {
                    let _ = self.deliver(
                        waker,
                        running,
                        Err(error.unwrap_or(TaskError::NoResult)),
                        true,
                    );
                }
            }
            Reply::Worker { worker, callback } => {
                // A callback always hears of its task; `on_finish` hears of errors only.
                let result = match (error, &callback) {
                    (Some(err), _) => Some(Err(err)),
                    (None, Some(_)) if running.results == 0 => Some(Err(TaskError::NoResult)),
                    _ => None,
                };
                let finished = Finished {
                    task: running.id,
                    result,
                    callback: callback.take(),
                    last: true,
                };
                if self.finished[*worker].send(finished).is_ok() {
                    waker.wake_worker(*worker);
                }
            }
        }
    }

    /// A queued task that will not run: its waiter hears `Abandoned`.
    pub(crate) fn abandon(&self, waker: &dyn WakeWorker, job: Job<T>) {
        self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
        let mut running = Running {
            id: job.task.id,
            reply: job.reply,
            results: 0,
        };
        self.end(waker, &mut running, Some(TaskError::Abandoned));
    }

    /// Whether the shutdown deadline has passed.
    pub(crate) fn past_deadline(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= *d)
    }
}

impl<T: TaskHandler> PoolControl for TaskPool<T> {
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn thread_id(&self, id: usize) -> Option<i32> {
        let tid = self.slots.get(id)?.tid.load(Ordering::Relaxed);
        (tid != 0).then_some(tid)
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn snapshot(&self) -> TaskSnapshot {
        let c = &self.counters;
        TaskSnapshot {
            task_worker_num: self.slots.len(),
            tasking_num: self
                .slots
                .iter()
                .filter(|s| s.busy.load(Ordering::Relaxed))
                .count(),
            task_queue_num: self
                .slots
                .iter()
                .map(|s| s.queued.load(Ordering::Relaxed))
                .sum(),
            submitted: self.next_id.load(Ordering::Relaxed),
            completed: self.slots.iter().map(|s| s.completed.get()).sum(),
            failed: self.slots.iter().map(|s| s.failed.get()).sum(),
            late: c.late.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
            restarts: c.restarts.load(Ordering::Relaxed),
        }
    }

    fn close(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
        self.closed.store(true, Ordering::Release);
        for slot in self.slots.iter() {
            let _ = slot.tx.send(Msg::Stop);
        }
    }

    fn message(&self, id: usize, src: MessageSource, message: Message) -> Result<(), MessageError> {
        let slot = self
            .slots
            .get(id)
            .ok_or(MessageError::NoSuchDestination(Destination::TaskWorker(id)))?;
        if self.closed.load(Ordering::Acquire) {
            return Err(MessageError::ShuttingDown);
        }
        if slot.messages.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            slot.messages.fetch_sub(1, Ordering::AcqRel);
            return Err(MessageError::QueueFull);
        }
        let _ = slot.tx.send(Msg::Message(src, message));
        Ok(())
    }

    fn rebuild_all(&self, generation: u64) {
        for slot in self.slots.iter() {
            if slot.rebuild_asked.swap(generation, Ordering::AcqRel) == 0 {
                let _ = slot.tx.send(Msg::Rebuild);
            }
        }
    }

    fn abandon_queued(&self, waker: &dyn WakeWorker) -> u64 {
        let mut count = 0;
        for slot in self.slots.iter() {
            while let Ok(msg) = slot.rx.try_recv() {
                match msg {
                    Msg::Job(job) => {
                        slot.queued.fetch_sub(1, Ordering::AcqRel);
                        self.abandon(waker, job);
                        count += 1;
                    }
                    Msg::Message(..) => {
                        slot.messages.fetch_sub(1, Ordering::AcqRel);
                    }
                    Msg::Rebuild => slot.rebuild_asked.store(0, Ordering::Release),
                    Msg::Stop => {}
                }
            }
            // The drain took the task worker's Stop: give it back, so that a task worker
            // still in a task stops when it returns (its `on_task_worker_stop` runs, its
            // timers end) rather than wait for a task forever.
            let _ = slot.tx.send(Msg::Stop);
        }
        count
    }
}
