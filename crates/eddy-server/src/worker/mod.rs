//! Worker threads: take events from the inbox, run the handler.
//!
//! Runs on the `eddy-worker-N` threads (or inline on a reactor in
//! `DispatchMode::Reactor`, through the `WorkerRun` trait). It owns its handler, its timers
//! and its task results; it reaches connections through `shared` (the send path, the table)
//! and tells reactors what it needs through their mailboxes. `events` runs one event's
//! callbacks (named in `callback`), `mail` waits for the next and takes what arrives beside events, `rebuild`
//! swaps the handler, `guard` runs one callback with its panic caught.

mod callback;
mod events;
mod guard;
mod mail;
mod rebuild;

use std::{
    cell::RefCell,
    sync::{
        atomic::{fence, Ordering},
        Arc,
    },
    time::Instant,
};

use crossbeam_channel::Receiver;

use self::callback::Callback;
use crate::{
    context::WorkerTimer,
    handler::EventHandler,
    shared::{jittered, Event, Mail, ServerHandle, WorkerError, WorkerRun},
    task::{Finished, TaskHandler, TaskPool},
    timer::{TimerOwner, Timers},
};

/// Makes a worker's handlers.
pub(crate) type HandlerFactory<T> = Arc<dyn Fn() -> Box<dyn EventHandler<T>> + Send + Sync>;

/// A worker's way to the task pool: the pool, and where its results arrive.
pub(crate) type TaskLink<T> = (Arc<TaskPool<T>>, Receiver<Finished<T>>);

/// One worker's state.
pub(crate) struct Worker<T: TaskHandler> {
    id: usize,
    factory: HandlerFactory<T>,
    handler: Box<dyn EventHandler<T>>,
    inbox: Receiver<Event>,
    messages: Receiver<Mail>,
    server: ServerHandle,
    tasks: Option<Arc<TaskPool<T>>>,
    /// Results of the tasks this worker sent.
    results: Option<Receiver<Finished<T>>>,
    /// Packets handled since the handler was built.
    handled: usize,
    /// Rebuild after this many (`max_request` plus grace), if set.
    limit: Option<usize>,
    /// A callback panicked: rebuild once the event is done, then report it.
    failure: Option<WorkerError>,
    /// This handler generation's timers.
    timers: RefCell<Timers<WorkerTimer<T>>>,
}

impl<T: TaskHandler> Worker<T> {
    pub(crate) fn new(
        id: usize,
        factory: HandlerFactory<T>,
        inbox: Receiver<Event>,
        server: ServerHandle,
        tasks: Option<TaskLink<T>>,
    ) -> Self {
        let (tasks, results) = tasks.unzip();
        let handler = factory();
        let messages = server.shared.workers[id].messages.1.clone();
        let limit = server.shared.config.max_request.map(jittered);
        Worker {
            id,
            factory,
            handler,
            inbox,
            messages,
            server,
            tasks,
            results,
            handled: 0,
            limit,
            failure: None,
            timers: RefCell::new(Timers::new(TimerOwner::Worker(id))),
        }
    }

    /// After an event: wake the reactors that found this worker's inbox full.
    fn wake_waiters(&self) {
        let shared = &self.server.shared;
        let me = &shared.workers[self.id];
        fence(Ordering::SeqCst);
        if me.waiters.load(Ordering::SeqCst) != 0 {
            let bits = me.waiters.swap(0, Ordering::SeqCst);
            for reactor in (0..64).filter(|r| bits & (1 << r) != 0) {
                shared.reactor(reactor).poller.notify();
            }
        }
    }
}

impl<T: TaskHandler> WorkerRun for Worker<T> {
    fn run(mut self: Box<Self>, started: Box<dyn FnOnce() + Send>) {
        let server = self.server.clone();
        let me = &server.shared.workers[self.id];
        me.attach_current_thread();
        let ok = self.start();
        started();
        if !ok {
            self.finish_start();
        }
        while let Some(event) = self.next_event(me) {
            self.handle_event(event);
            self.wake_waiters();
        }
        self.stop();
    }

    fn start(&mut self) -> bool {
        self.guard(Callback::WorkerStart, None, |h, ctx| h.on_worker_start(ctx))
    }

    fn finish_start(&mut self) {
        self.build_until_started();
    }

    fn stop(&mut self) {
        // Timers end with the worker: none fires during or after the shutdown.
        self.timers.get_mut().clear_all();
        self.take_owed_results();
        // The messages queued since its last look (`send_message` took them, so they are
        // owed), once none is still on its way in; then the results of the tasks they sent.
        self.server.shared.messages_settled();
        let waiting = self.messages.len();
        if waiting > 0 {
            self.take_messages(waiting);
            self.take_owed_results();
        }
        // Nothing takes results from here on: `on_worker_stop`'s tasks that would return
        // them are refused (ShuttingDown), not lost.
        let me = &self.server.shared.workers[self.id];
        me.results_closed.store(true, Ordering::Relaxed);
        self.guard(Callback::WorkerStop, None, |h, ctx| h.on_worker_stop(ctx));
        self.server.shared.workers[self.id].rest();
    }

    fn handle(&mut self, event: Event) {
        self.handle_event(event);
    }

    fn take_mail(&mut self) {
        self.take_all_mail();
        // Between events (this worker never waits in `next_event`, which would clear it).
        self.server.shared.workers[self.id].rest();
    }

    fn next_due(&self) -> Option<Instant> {
        self.timers.borrow().next_due()
    }
}
