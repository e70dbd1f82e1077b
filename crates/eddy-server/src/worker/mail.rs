//! Waiting for the next event, and what arrives beside events: task results, messages,
//! admin commands, rebuild requests, timers.

use std::{
    sync::atomic::{fence, Ordering},
    time::Instant,
};

use crossbeam_channel::TryRecvError;

use super::{callback::Callback, Worker};
use crate::{
    context::WorkerCallback,
    message::CommandTarget,
    shared::{CommandCall, Event, WorkerShared},
    sys::idle,
    task::{Finished, TaskHandler},
};

impl<T: TaskHandler> Worker<T> {
    /// Take the results still owed to this worker's tasks, until the shutdown deadline.
    pub(super) fn take_owed_results(&mut self) {
        if let (Some(pool), Some(results)) = (self.tasks.clone(), self.results.clone()) {
            let deadline = self.server.shared.shutdown_deadline();
            while pool.outstanding[self.id].load(Ordering::Relaxed) > 0 {
                match results.recv_deadline(deadline) {
                    Ok(finished) => self.finished(finished),
                    Err(_) => break,
                }
            }
        }
    }

    /// The next event, parking while there is none; `None` once every reactor has hung up.
    /// Task results that arrive meanwhile are handled here.
    ///
    /// Before it parks it looks again a few times, yielding the CPU in between, as a reactor
    /// does before it sleeps (`sys::idle`): parking and being unparked cost two context
    /// switches.
    pub(super) fn next_event(&mut self, shared: &WorkerShared) -> Option<Event> {
        let mut spun = false;
        loop {
            self.take_all_mail();
            match self.inbox.try_recv() {
                Ok(event) => {
                    shared.busy.store(true, Ordering::Relaxed);
                    return Some(event);
                }
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            shared.busy.store(false, Ordering::Relaxed);
            if !spun {
                spun = true;
                let _ =
                    idle::look_again(|| Ok::<_, ()>(!self.inbox.is_empty() || self.mail_waiting()));
                continue;
            }
            shared.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let results_waiting = self.mail_waiting();
            match self.inbox.try_recv() {
                Ok(event) => {
                    shared.sleeping.store(false, Ordering::Relaxed);
                    shared.busy.store(true, Ordering::Relaxed);
                    return Some(event);
                }
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) if !results_waiting => self.park(),
                Err(TryRecvError::Empty) => {}
            }
            shared.sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// Sleep until woken or the next timer is due.
    fn park(&mut self) {
        match self.timers.get_mut().next_due() {
            Some(due) => std::thread::park_timeout(due.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }

    /// Whether task results, control requests or messages are waiting.
    fn mail_waiting(&self) -> bool {
        self.results.as_ref().is_some_and(|r| !r.is_empty())
            || self.server.shared.workers[self.id].rebuild_asked()
            || !self.messages.is_empty()
    }

    /// Task results, messages, rebuilds and due timers: everything but events.
    pub(super) fn take_all_mail(&mut self) {
        // The results and messages waiting now (more may come while they run: they wait for
        // the next pass, so a flood, say a task streaming results faster than `on_finish`
        // takes them, cannot starve the events).
        let results = self.results.as_ref().map_or(0, |r| r.len());
        for _ in 0..results {
            let Some(finished) = self.results.as_ref().and_then(|r| r.try_recv().ok()) else {
                break;
            };
            self.finished(finished);
        }
        let waiting = self.messages.len();
        if waiting > 0 {
            self.take_messages(waiting);
        }
        self.maintain();
        self.run_timers();
    }

    /// Run `on_pipe_message` (or, for a command, the command) for `count` waiting messages.
    pub(super) fn take_messages(&mut self, count: usize) {
        self.server.shared.workers[self.id].occupy();
        for _ in 0..count {
            let Ok((src, message)) = self.messages.try_recv() else {
                break;
            };
            let message = match message.downcast::<CommandCall>() {
                Ok(call) => {
                    call.run(&self.server, CommandTarget::Worker(self.id));
                    continue;
                }
                Err(message) => message,
            };
            self.guard(Callback::PipeMessage, None, |h, ctx| {
                h.on_pipe_message(ctx, src, message)
            });
        }
    }

    /// Handle one task result.
    pub(super) fn finished(&mut self, finished: Finished<T>) {
        let Finished {
            task,
            result,
            callback,
            last,
        } = finished;
        if last {
            if let Some(pool) = &self.tasks {
                pool.outstanding[self.id].fetch_sub(1, Ordering::Relaxed);
            }
        }
        let Some(result) = result else { return };
        self.server.shared.workers[self.id].occupy();
        // The pool carried the callback untouched; this worker made it, so it is its type.
        match callback.map(|c| c.downcast::<WorkerCallback<T>>()) {
            Some(Ok(callback)) => {
                self.guard(Callback::TaskThen, None, |_, ctx| {
                    callback(ctx, task, result)
                });
            }
            Some(Err(_)) => tracing::error!(worker = self.id, "task callback of another type"),
            None => {
                self.guard(Callback::Finish, None, |h, ctx| {
                    h.on_finish(ctx, task, result)
                });
            }
        }
    }

    /// Run the timers that are due: those due when it starts, then once more those due by
    /// the end of that pass, so a `defer` made in a timer callback runs before the next
    /// event too. (A timer that comes due during the second pass waits for the next one: a
    /// callback that defers itself again and again cannot hold the events up.)
    fn run_timers(&mut self) {
        for _ in 0..2 {
            // No clock read on the way to the next event unless a timer exists.
            if self.timers.get_mut().next_due().is_none() {
                return;
            }
            let now = Instant::now();
            let mut ran = false;
            while let Some(mut due) = self.timers.get_mut().pop_due(now) {
                ran = true;
                self.server.shared.workers[self.id].occupy();
                let id = due.id;
                self.guard(Callback::Timer, None, |_, ctx| (due.callback)(ctx, id));
                self.timers.get_mut().restore(due);
            }
            if !ran {
                return;
            }
        }
    }
}
