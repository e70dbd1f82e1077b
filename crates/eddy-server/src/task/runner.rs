//! The task worker thread: take tasks in order, run them, deliver, rebuild when told.

use std::{
    cell::RefCell,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use super::{
    pool::{Msg, Running, Slot, IN_TASK_WORKER},
    TaskContext, TaskHandler, TaskPool, TaskTimer,
};
use crate::{
    error::{panic_message, replace_guarded, TaskError},
    message::{CommandTarget, Message, MessageSource},
    shared::{jittered, CommandCall, ServerHandle, FIRST_BACKOFF, MAX_BACKOFF},
    timer::{TimerOwner, Timers},
};

/// Makes a task worker's handler.
pub(crate) type TaskFactory<T> = Arc<dyn Fn() -> T + Send + Sync>;

/// One task worker: its handler and how many tasks it has run since it was built.
struct TaskWorker<T: TaskHandler> {
    id: usize,
    pool: Arc<TaskPool<T>>,
    factory: TaskFactory<T>,
    server: ServerHandle,
    handler: T,
    handled: usize,
    /// `task_max_request`, if set.
    max_request: Option<usize>,
    /// Rebuild the handler after this many tasks: `task_max_request` plus a random grace.
    limit: Option<usize>,
    /// This handler generation's timers.
    timers: RefCell<Timers<TaskTimer<T>>>,
}

/// The task worker thread's body: start, run tasks until told to stop, stop.
pub(crate) fn run_task_worker<T: TaskHandler>(
    id: usize,
    pool: Arc<TaskPool<T>>,
    factory: TaskFactory<T>,
    server: ServerHandle,
    max_request: Option<usize>,
    started: impl FnOnce(),
) {
    IN_TASK_WORKER.set(true);
    if let Some(slot) = pool.slots.get(id) {
        slot.tid.store(crate::sys::thread_id(), Ordering::Relaxed);
    }
    // The first handler: if the factory panics, the server still starts (this thread retries
    // with back-off; its queue fills and refuses, QueueFull) and can still be shut down.
    let first = catch_unwind(AssertUnwindSafe(|| factory()));
    let handler = match first {
        Ok(handler) => handler,
        Err(panic) => {
            tracing::error!(
                task_worker = id,
                "task handler factory panicked: {}; retrying",
                panic_message(&*panic)
            );
            let unbuilt = |yes| {
                if let Some(slot) = pool.slots.get(id) {
                    slot.unbuilt.store(yes, Ordering::Relaxed);
                }
            };
            unbuilt(true);
            started();
            let built = build_with_backoff(id, &factory, &server);
            unbuilt(false);
            let Some(handler) = built else {
                return; // shut down before a handler could be made
            };
            return run_with_handler(id, pool, factory, server, max_request, handler, || {});
        }
    };
    run_with_handler(id, pool, factory, server, max_request, handler, started)
}

/// Call the factory until it returns a handler, waiting 10 ms doubling to 1 s between
/// panics; `None` if the server shuts down first.
fn build_with_backoff<T: TaskHandler>(
    id: usize,
    factory: &TaskFactory<T>,
    server: &ServerHandle,
) -> Option<T> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if server.shared.shutdown_requested.load(Ordering::Acquire) {
            return None;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match catch_unwind(AssertUnwindSafe(|| factory())) {
            Ok(handler) => return Some(handler),
            Err(panic) => tracing::error!(
                task_worker = id,
                "task handler factory panicked: {}; retrying",
                panic_message(&*panic)
            ),
        }
    }
}

/// The task worker's loop, once it has a handler.
fn run_with_handler<T: TaskHandler>(
    id: usize,
    pool: Arc<TaskPool<T>>,
    factory: TaskFactory<T>,
    server: ServerHandle,
    max_request: Option<usize>,
    handler: T,
    started: impl FnOnce(),
) {
    let mut worker = TaskWorker {
        id,
        pool,
        factory,
        server,
        handler,
        handled: 0,
        max_request,
        limit: max_request.map(jittered),
        timers: RefCell::new(Timers::new(TimerOwner::TaskWorker(id))),
    };
    worker.lifecycle(true);
    started();
    let pool = worker.pool.clone();
    let slot = &pool.slots[id];
    loop {
        // No clock read on the way to the next task unless a timer exists.
        if let Some(due) = worker.timers.get_mut().next_due() {
            let now = Instant::now();
            if due <= now {
                occupied(slot, || worker.run_timers(now));
            }
        }
        let due = worker.timers.get_mut().next_due();
        let job = match next(slot, due) {
            Next::Timer => continue,
            Next::Msg(Msg::Job(job)) => job,
            Next::Msg(Msg::Rebuild) => {
                let generation = slot.rebuild_asked.swap(0, Ordering::AcqRel);
                mark_busy(slot, false);
                occupied(slot, || worker.rebuild());
                let shared = &worker.server.shared;
                shared.reload.ack(generation, &shared.supervisor);
                continue;
            }
            Next::Msg(Msg::Message(src, message)) => {
                mark_busy(slot, false);
                slot.messages.fetch_sub(1, Ordering::AcqRel);
                occupied(slot, || worker.message(src, message));
                continue;
            }
            Next::Msg(Msg::Stop) | Next::Closed => break,
        };
        mark_busy(slot, true);
        slot.queued.fetch_sub(1, Ordering::AcqRel);
        if pool.past_deadline() {
            pool.abandon(&worker.server, job);
        } else {
            worker.run(job);
        }
    }
    mark_busy(slot, false);
    worker.lifecycle(false);
    // Timers end with the task worker.
    worker.timers.get_mut().clear_all();
}

/// Set the slot's running flag, writing it only when it changes: senders read it for every
/// task they place, and a write takes the cache line from them.
fn mark_busy<T: TaskHandler>(slot: &Slot<T>, busy: bool) {
    if slot.busy.load(Ordering::Relaxed) != busy {
        slot.busy.store(busy, Ordering::Relaxed);
    }
}

/// Run a timer or message callback, or a rebuild's stop and start, with the slot marked
/// occupied, so that the tasks placed meanwhile go to an idle task worker rather than wait
/// behind it. (The callbacks catch their panics; the flag is cleared on an unwind all the
/// same.)
fn occupied<T: TaskHandler>(slot: &Slot<T>, run: impl FnOnce()) {
    struct Clear<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Clear<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
    slot.occupied.store(true, Ordering::Relaxed);
    let _clear = Clear(&slot.occupied);
    run();
}

/// What a task worker waits for.
enum Next<M> {
    Msg(M),
    /// A timer is due.
    Timer,
    /// Every sender is gone.
    Closed,
}

/// The next message, after a short spin: a task worker that just finished a task often gets
/// the next one within microseconds (a worker's `task_wait` loop), and sleeping would add a
/// futex wake-up to each round trip. Then it blocks until a message or `due` (no polling
/// while idle).
fn next<T: TaskHandler>(slot: &Slot<T>, due: Option<Instant>) -> Next<Msg<T>> {
    use crossbeam_channel::{RecvTimeoutError, TryRecvError};
    let rx = &slot.rx;
    // The next task is often there already: take it before reading the clock.
    if let Ok(msg) = rx.try_recv() {
        return Next::Msg(msg);
    }
    // Nothing queued: this task worker is idle until the next one comes (while tasks follow
    // each other it stays busy, and senders see one write of the flag, not two per task).
    mark_busy(slot, false);
    let spin_until = Instant::now() + SPIN;
    loop {
        match rx.try_recv() {
            Ok(msg) => return Next::Msg(msg),
            Err(TryRecvError::Disconnected) => return Next::Closed,
            Err(TryRecvError::Empty) => {}
        }
        let now = Instant::now();
        if due.is_some_and(|due| due <= now) {
            return Next::Timer;
        }
        if now < spin_until {
            std::thread::yield_now();
            continue;
        }
        return match due {
            Some(due) => match rx.recv_deadline(due) {
                Ok(msg) => Next::Msg(msg),
                Err(RecvTimeoutError::Timeout) => Next::Timer,
                Err(RecvTimeoutError::Disconnected) => Next::Closed,
            },
            None => rx.recv().map_or(Next::Closed, Next::Msg),
        };
    }
}

/// How long an idle task worker looks for its next task before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

impl<T: TaskHandler> TaskWorker<T> {
    /// Run a callback of the handler with a context, catching a panic (logged with the task
    /// worker, the callback and the task); returns its value or the panic's message.
    fn guard<R>(
        &mut self,
        what: &'static str,
        current: Option<&mut Running<T>>,
        f: impl FnOnce(&mut T, &mut TaskContext<'_, T>) -> R,
    ) -> Result<R, String> {
        let task = current.as_ref().map(|running| running.id.as_u64());
        let mut ctx = TaskContext {
            server: &self.server,
            task_worker_id: self.id,
            pool: &self.pool,
            current,
            timers: &self.timers,
        };
        let handler = &mut self.handler;
        catch_unwind(AssertUnwindSafe(|| f(handler, &mut ctx))).map_err(|panic| {
            let message = panic_message(&*panic);
            tracing::error!(
                task_worker = self.id,
                callback = what,
                task,
                "handler panicked: {message}"
            );
            message
        })
    }

    fn run(&mut self, job: super::pool::Job<T>) {
        let mut running = Running {
            id: job.task.id,
            reply: job.reply,
            results: 0,
        };
        let outcome = self.guard("on_task", Some(&mut running), |h, ctx| {
            h.on_task(ctx, job.task)
        });
        let slot = &self.pool.slots[self.id];
        match outcome {
            Ok(Some(output)) => {
                slot.completed.add(1);
                let _ = self
                    .pool
                    .deliver(&self.server, &mut running, Ok(output), true);
            }
            Ok(None) => {
                slot.completed.add(1);
                self.pool.end(&self.server, &mut running, None);
            }
            Err(message) => {
                slot.failed.add(1);
                self.pool.end(
                    &self.server,
                    &mut running,
                    Some(TaskError::Panicked(message)),
                );
                // Whatever state the handler had may be half-updated: start afresh.
                self.rebuild();
                return;
            }
        }
        self.handled += 1;
        if self.limit.is_some_and(|limit| self.handled >= limit) {
            self.rebuild();
        }
    }

    /// Run `on_pipe_message` (or, for a command, the command).
    fn message(&mut self, src: MessageSource, message: Message) {
        let message = match message.downcast::<CommandCall>() {
            Ok(call) => return call.run(&self.server, CommandTarget::TaskWorker(self.id)),
            Err(message) => message,
        };
        let _ = self.guard("on_pipe_message", None, |h, ctx| {
            h.on_pipe_message(ctx, src, message)
        });
    }

    /// Run the timers that are due by `now`.
    fn run_timers(&mut self, now: Instant) {
        while let Some(mut due) = self.timers.get_mut().pop_due(now) {
            let id = due.id;
            let _ = self.guard("timer", None, |_, ctx| (due.callback)(ctx, id));
            self.timers.get_mut().restore(due);
        }
    }

    /// Replace the handler with a new one from the factory (`task_max_request`, a panic, a
    /// reload). A factory that panics leaves the old handler in place.
    fn rebuild(&mut self) {
        self.lifecycle(false);
        // Timers belong to the handler that set them: the new one sets its own.
        self.timers.get_mut().clear_all();
        match catch_unwind(AssertUnwindSafe(|| (self.factory)())) {
            Ok(handler) => replace_guarded(&mut self.handler, handler, "task handler"),
            Err(panic) => tracing::error!(
                task_worker = self.id,
                "task handler factory panicked: {}; keeping the old handler",
                panic_message(&*panic)
            ),
        }
        self.handled = 0;
        self.limit = self.max_request.map(jittered);
        self.pool.counters.restarts.fetch_add(1, Ordering::Relaxed);
        self.lifecycle(true);
    }

    /// Run `on_task_worker_start` or `on_task_worker_stop`.
    fn lifecycle(&mut self, start: bool) {
        let _ = if start {
            self.guard("on_task_worker_start", None, |h, ctx| {
                h.on_task_worker_start(ctx)
            })
        } else {
            self.guard("on_task_worker_stop", None, |h, ctx| {
                h.on_task_worker_stop(ctx)
            })
        };
    }
}
