//! Worker threads: take events from the inbox, run the handler.

use std::{
    cell::RefCell,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    thread::Thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::{
    command::{CommandCall, CommandTarget},
    conn::{inflight, Conn},
    context::WorkerTimer,
    message::{Message, MessageSource},
    reactor::{pause, Command},
    reload::{jittered, Rebuild, WorkerError, WorkerStatus},
    task::{Finished, TaskPool},
    timer::Timers,
    CloseReason, Context, EventHandler, ServerHandle, TaskHandler,
};

/// What a reactor hands a worker.
#[derive(Debug)]
pub(crate) enum Event {
    /// A new connection. `gated`: the reactor reads nothing until the worker says
    /// `on_connect` returned (stateless modes, so no packet can overtake it).
    Connect { conn: Arc<Conn>, gated: bool },
    /// A whole packet.
    Receive(Arc<Conn>, Bytes),
    /// Several whole packets of one connection, back to back, with their lengths (stateful
    /// modes: one hand-over and one write for all the packets of a read).
    Batch(Arc<Conn>, Bytes, Box<[u32]>),
    /// The output buffer reached the high watermark.
    BufferFull(Arc<Conn>),
    /// The output buffer drained to the low watermark.
    BufferDrain(Arc<Conn>),
    /// The connection closed and no other event of it is in flight. Not counted in
    /// `Conn::inflight`.
    Close(Arc<Conn>),
}

impl Event {
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        match self {
            Event::Connect { conn, .. }
            | Event::Receive(conn, _)
            | Event::Batch(conn, ..)
            | Event::BufferFull(conn)
            | Event::BufferDrain(conn)
            | Event::Close(conn) => conn,
        }
    }

    /// Payload bytes carried.
    pub(crate) fn len(&self) -> usize {
        match self {
            Event::Receive(_, data) | Event::Batch(_, data, _) => data.len(),
            _ => 0,
        }
    }

    /// What the event adds to `Conn::inflight`: its bytes, and at least 1.
    pub(crate) fn weight(&self) -> u64 {
        self.len().max(1) as u64
    }
}

/// What other threads see of a worker.
///
/// # Atomic ordering
/// `busy` is a hint for the idle dispatch mode (`Relaxed`). `sleeping` is set by the worker
/// before its last look at the empty queue and read by reactors after their last send of a
/// loop, both with a `SeqCst` fence in between, so either the worker sees the event or the
/// reactor sees it asleep and unparks it. `waiters` is a bit set of reactors
/// that found this worker's inbox full; both sides use `SeqCst` around their queue operation
/// (reactor: set bit, then retry the send; worker: take an event, then read the bits), so a
/// reactor is never left waiting for a wake-up that nobody sends.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct WorkerShared {
    pub(crate) busy: AtomicBool,
    pub(crate) sleeping: AtomicBool,
    /// Rebuilding its handler, or stopping.
    pub(crate) stopping: AtomicBool,
    thread: OnceLock<Thread>,
    pub(crate) waiters: AtomicU64,
    inbox: Receiver<Event>,
    /// Rebuild requests (reload, `stop_worker`); a few at most are ever pending.
    pub(crate) control: (Sender<Rebuild>, Receiver<Rebuild>),
    /// Messages for `on_pipe_message`, bounded by `worker_queue_capacity`.
    pub(crate) messages: (Sender<Mail>, Receiver<Mail>),
}

impl WorkerShared {
    pub(crate) fn new(inbox: Receiver<Event>, capacity: usize) -> Self {
        WorkerShared {
            busy: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            thread: OnceLock::new(),
            waiters: AtomicU64::new(0),
            inbox,
            control: crossbeam_channel::bounded(8),
            messages: crossbeam_channel::bounded(capacity),
        }
    }

    /// What the worker is doing now.
    pub(crate) fn status(&self) -> WorkerStatus {
        if self.stopping.load(Ordering::Relaxed) {
            WorkerStatus::Stopping
        } else if self.busy.load(Ordering::Relaxed) {
            WorkerStatus::Busy
        } else {
            WorkerStatus::Idle
        }
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.inbox.len()
    }

    /// Reactor side, after handing over events and a `SeqCst` fence: unpark the worker if it
    /// went to sleep.
    pub(crate) fn wake(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }

    /// Reactor side: ask to be woken when this worker takes an event.
    pub(crate) fn want_wake(&self, reactor: usize) {
        self.waiters.fetch_or(1 << reactor, Ordering::SeqCst);
    }
}

/// A worker as the threads that run it see it, whatever its task types: a worker thread
/// runs it whole, a reactor in `DispatchMode::Reactor` calls it inline.
pub(crate) trait WorkerRun: Send {
    /// The worker thread's body: start, handle events until every reactor has hung up, stop.
    fn run(self: Box<Self>, started: Box<dyn FnOnce() + Send>);
    /// Run `on_worker_start`; `false` if it panicked (then call
    /// [`finish_start`](Self::finish_start) once the server is up).
    fn start(&mut self) -> bool;
    /// After a failed `start`: rebuild until a handler starts (back-off), or the server shuts
    /// down. Done after the start-up handshake, so a handler that cannot start never holds the
    /// server's start (or a shutdown signal) up.
    fn finish_start(&mut self);
    /// Take the results owed to this worker (until the shutdown deadline), then run
    /// `on_worker_stop`.
    fn stop(&mut self);
    /// Run the callbacks of one event.
    fn handle(&mut self, event: Event, server: &ServerHandle);
    /// Run `on_finish` (or callbacks) for the task results that have arrived, rebuild the
    /// handler if asked to, and run the timers that are due.
    fn take_mail(&mut self);
    /// When the next timer is due, for a reactor running this worker inline to wake then.
    fn next_due(&self) -> Option<Instant>;
}

/// A message and its sender, on its way to a worker.
pub(crate) type Mail = (MessageSource, Message);

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
    control: Receiver<Rebuild>,
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
        let control = server.shared.workers[id].control.1.clone();
        let messages = server.shared.workers[id].messages.1.clone();
        let limit = server.shared.config.max_request.map(jittered);
        Worker {
            id,
            factory,
            handler,
            inbox,
            control,
            messages,
            server,
            tasks,
            results,
            handled: 0,
            limit,
            failure: None,
            timers: RefCell::default(),
        }
    }

    /// Run the timers that are due (those due when it starts: a timer that comes due again
    /// meanwhile waits for the next pass).
    fn run_timers(&mut self) {
        // No clock read on the way to the next event unless a timer exists.
        if self.timers.get_mut().next_due().is_none() {
            return;
        }
        let now = Instant::now();
        let server = self.server.clone();
        loop {
            let Some(mut due) = self.timers.get_mut().pop_due(now) else {
                return;
            };
            let id = due.id;
            self.guard("timer", None, |_, ctx| (due.callback)(ctx, id), &server);
            self.timers.get_mut().restore(due);
        }
    }

    /// Swap in a new handler from the factory: `on_worker_stop` on the old one,
    /// `on_worker_start` on the new one (retried with back-off while it panics), then
    /// `on_worker_error` if a panic caused it.
    fn rebuild(&mut self, cause: Option<Rebuild>) {
        let server = self.server.clone();
        let shared = &server.shared;
        let status = &shared.workers[self.id];
        status.stopping.store(true, Ordering::Relaxed);
        self.guard(
            "on_worker_stop",
            None,
            |h, ctx| h.on_worker_stop(ctx),
            &server,
        );
        // Timers belong to the handler that set them: the new one sets its own.
        self.timers.get_mut().clear_all();
        self.build_until_started();
        self.handled = 0;
        self.limit = shared.config.max_request.map(jittered);
        shared
            .reload
            .worker_restarts
            .fetch_add(1, Ordering::Relaxed);
        if let Some(error) = self.failure.take() {
            self.guard(
                "on_worker_error",
                None,
                |h, ctx| h.on_worker_error(ctx, &error),
                &server,
            );
        }
        status.stopping.store(false, Ordering::Relaxed);
        if let Some(Rebuild::Reload(generation)) = cause {
            shared.reload.ack(generation, &shared.supervisor);
        }
    }

    /// Make handlers from the factory until one's `on_worker_start` returns, waiting between
    /// tries (10 ms doubling to 1 s) so a crash loop does not eat a core; gives up at a
    /// shutdown request. A factory that panics leaves the old handler in place.
    fn build_until_started(&mut self) {
        let server = self.server.clone();
        let mut backoff = Duration::from_millis(10);
        loop {
            match catch_unwind(AssertUnwindSafe(|| (self.factory)())) {
                Ok(handler) => self.handler = handler,
                Err(panic) => tracing::error!(
                    worker = self.id,
                    "handler factory panicked: {}; keeping the old handler",
                    panic_message(&*panic)
                ),
            }
            let started = self.guard(
                "on_worker_start",
                None,
                |h, ctx| h.on_worker_start(ctx),
                &server,
            );
            if started || server.shared.shutdown_requested.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Between events: rebuild for a panic, `max_request` or a request.
    fn maintain(&mut self) {
        if self.failure.is_some() {
            self.rebuild(None);
        } else if self.limit.is_some_and(|limit| self.handled >= limit) {
            tracing::debug!(
                worker = self.id,
                handled = self.handled,
                "max_request reached"
            );
            self.rebuild(None);
        }
        // `is_empty` is two plain loads; `try_recv` on an empty channel costs a fence, and this
        // runs between every two packets.
        while !self.control.is_empty() {
            let Ok(cause) = self.control.try_recv() else {
                break;
            };
            self.rebuild(Some(cause));
        }
    }

    /// The next event, parking while there is none; `None` once every reactor has hung up.
    /// Task results that arrive meanwhile are handled here.
    ///
    /// Before it parks it looks again a few times, yielding the CPU in between, as a reactor
    /// does before it sleeps ([`crate::idle`]): parking and being unparked cost two context
    /// switches.
    fn next_event(&mut self, shared: &WorkerShared) -> Option<Event> {
        let mut spun = false;
        loop {
            self.take_mail();
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
                let _ = crate::idle::look_again(|| {
                    Ok::<_, ()>(!self.inbox.is_empty() || self.mail_waiting())
                });
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
                Err(TryRecvError::Empty) if !results_waiting => {
                    match self.timers.get_mut().next_due() {
                        Some(due) => {
                            std::thread::park_timeout(due.saturating_duration_since(Instant::now()))
                        }
                        None => std::thread::park(),
                    }
                }
                Err(TryRecvError::Empty) => {}
            }
            shared.sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// Whether task results, control requests or messages are waiting.
    fn mail_waiting(&self) -> bool {
        self.results.as_ref().is_some_and(|r| !r.is_empty())
            || !self.control.is_empty()
            || !self.messages.is_empty()
    }

    /// Run `on_pipe_message` (or, for a command, the command) for `count` waiting messages.
    fn take_messages(&mut self, count: usize) {
        let server = self.server.clone();
        for _ in 0..count {
            let Ok((src, message)) = self.messages.try_recv() else {
                break;
            };
            let message = match message.downcast::<CommandCall>() {
                Ok(call) => {
                    call.run(&server, CommandTarget::Worker(self.id));
                    continue;
                }
                Err(message) => message,
            };
            self.guard(
                "on_pipe_message",
                None,
                |h, ctx| h.on_pipe_message(ctx, src, message),
                &server,
            );
        }
    }

    /// Handle one task result.
    fn finished(&mut self, finished: Finished<T>) {
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
        let server = self.server.clone();
        let _ = match callback {
            Some(callback) => self.guard(
                "task callback",
                None,
                |_, ctx| callback(ctx, task, result),
                &server,
            ),
            None => self.guard(
                "on_finish",
                None,
                |h, ctx| h.on_finish(ctx, task, result),
                &server,
            ),
        };
    }
}

impl<T: TaskHandler> WorkerRun for Worker<T> {
    fn run(mut self: Box<Self>, started: Box<dyn FnOnce() + Send>) {
        let server = self.server.clone();
        let shared = &server.shared.workers[self.id];
        let _ = shared.thread.set(std::thread::current());
        let ok = self.start();
        started();
        if !ok {
            self.finish_start();
        }
        while let Some(event) = self.next_event(shared) {
            self.handle(event, &server);
            fence(Ordering::SeqCst);
            if shared.waiters.load(Ordering::SeqCst) != 0 {
                let bits = shared.waiters.swap(0, Ordering::SeqCst);
                for reactor in (0..64).filter(|r| bits & (1 << r) != 0) {
                    server.shared.reactor(reactor).poller.notify();
                }
            }
        }
        self.stop();
    }

    fn start(&mut self) -> bool {
        let server = self.server.clone();
        self.guard(
            "on_worker_start",
            None,
            |h, ctx| h.on_worker_start(ctx),
            &server,
        )
    }

    fn finish_start(&mut self) {
        self.build_until_started();
    }

    fn stop(&mut self) {
        // Timers end with the worker: none fires during or after the shutdown.
        self.timers.get_mut().clear_all();
        // Results of tasks this worker sent are still owed: take them until the deadline.
        if let (Some(pool), Some(results)) = (self.tasks.clone(), self.results.clone()) {
            let deadline = self.server.shared.shutdown_deadline();
            while pool.outstanding[self.id].load(Ordering::Relaxed) > 0 {
                match results.recv_deadline(deadline) {
                    Ok(finished) => self.finished(finished),
                    Err(_) => break,
                }
            }
        }
        let server = self.server.clone();
        self.guard(
            "on_worker_stop",
            None,
            |h, ctx| h.on_worker_stop(ctx),
            &server,
        );
    }

    fn take_mail(&mut self) {
        while let Some(finished) = self.results.as_ref().and_then(|r| r.try_recv().ok()) {
            self.finished(finished);
        }
        // The messages waiting now (more may come while they run: they wait for the next
        // pass, so a flood cannot starve the events).
        let waiting = self.messages.len();
        if waiting > 0 {
            self.take_messages(waiting);
        }
        self.maintain();
        self.run_timers();
    }

    fn next_due(&self) -> Option<Instant> {
        self.timers.borrow().next_due()
    }

    fn handle(&mut self, event: Event, server: &ServerHandle) {
        let conn = event.conn().clone();
        let id = conn.id;
        let weight = event.weight();
        conn.last_dispatch
            .store(server.shared.now_ms(), Ordering::Relaxed);
        match event {
            Event::Connect { gated, .. } => {
                self.guard(
                    "on_connect",
                    Some(&conn),
                    |h, ctx| h.on_connect(ctx, id),
                    server,
                );
                if gated {
                    server
                        .shared
                        .reactor(conn.reactor)
                        .command(Command::Resume(conn.clone(), pause::GATE));
                }
            }
            Event::Receive(_, packet) => {
                // Input the server has decided to close on is dropped (as Swoole does).
                if !conn.closing.load(Ordering::Acquire) {
                    self.receive(&conn, packet, server);
                }
            }
            Event::Batch(_, data, lens) => {
                // One write for all the answers: held in the output buffer until the end.
                conn.cork();
                let mut start = 0;
                for &len in lens.iter() {
                    if conn.closing.load(Ordering::Acquire) {
                        break;
                    }
                    let end = start + len as usize;
                    self.receive(&conn, data.slice(start..end), server);
                    // Between two packets: a panic, `max_request` or a reload rebuilds the
                    // handler before the next one.
                    self.maintain();
                    start = end;
                }
                conn.uncork(&server.shared);
            }
            Event::BufferFull(_) => {
                self.guard(
                    "on_buffer_full",
                    Some(&conn),
                    |h, ctx| h.on_buffer_full(ctx, id),
                    server,
                );
            }
            Event::BufferDrain(_) => {
                self.guard(
                    "on_buffer_drain",
                    Some(&conn),
                    |h, ctx| h.on_buffer_drain(ctx, id),
                    server,
                );
            }
            Event::Close(_) => {
                self.close(&conn, server);
                return self.maintain();
            }
        }
        self.finish(&conn, weight, server);
        self.maintain();
    }
}

impl<T: TaskHandler> Worker<T> {
    fn receive(&mut self, conn: &Arc<Conn>, packet: Bytes, server: &ServerHandle) {
        server.shared.stats.workers[self.id].requests.add(1);
        self.handled += 1;
        let id = conn.id;
        self.guard(
            "on_receive",
            Some(conn),
            |h, ctx| h.on_receive(ctx, id, packet),
            server,
        );
    }

    /// One counted event of `conn` is done: whoever finishes the last one after the reactor
    /// closed the connection runs `on_close`.
    fn finish(&mut self, conn: &Arc<Conn>, weight: u64, server: &ServerHandle) {
        let before = conn.inflight.fetch_sub(weight, Ordering::AcqRel);
        if before & inflight::WEIGHT == weight {
            if before & inflight::CLOSED != 0 {
                self.close(conn, server);
            } else if before & inflight::NOTIFY_IDLE != 0 {
                server
                    .shared
                    .reactor(conn.reactor)
                    .command(Command::Output(conn.clone()));
            }
        }
    }

    fn close(&mut self, conn: &Arc<Conn>, server: &ServerHandle) {
        let id = conn.id;
        let reason = conn
            .close_reason
            .get()
            .cloned()
            .unwrap_or(CloseReason::PeerClosed);
        self.guard(
            "on_close",
            Some(conn),
            |h, ctx| h.on_close(ctx, id, reason),
            server,
        );
        conn.release_uid(&server.shared.uids);
        server.shared.table.remove(id);
    }

    /// Run a callback with a context, catching a panic so the worker carries on. Returns
    /// whether it returned normally.
    ///
    /// After a panic in an event callback the handler is rebuilt once the event is done
    /// (`maintain`), and the connection the event was about is closed with
    /// [`CloseReason::HandlerPanic`] unless `close_on_panic` is off.
    fn guard(
        &mut self,
        what: &'static str,
        conn: Option<&Arc<Conn>>,
        f: impl FnOnce(&mut dyn EventHandler<T>, &mut Context<'_, T>),
        server: &ServerHandle,
    ) -> bool {
        let mut ctx = Context::new(server, self.id, conn, self.tasks.as_deref(), &self.timers);
        if let Some(conn) = conn {
            conn.worker.store(self.id, Ordering::Relaxed);
        }
        let handler = &mut *self.handler;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(handler, &mut ctx))) {
            let message = panic_message(&*panic);
            tracing::error!(
                worker = self.id,
                conn = conn.map(|c| c.id.as_u64()),
                callback = what,
                "handler panicked: {message}"
            );
            let lifecycle = matches!(
                what,
                "on_worker_start" | "on_worker_stop" | "on_worker_error"
            );
            if !lifecycle {
                let closed = conn.is_some_and(|conn| {
                    server.shared.config.close_on_panic
                        && conn
                            .close(CloseReason::HandlerPanic, &server.shared)
                            .is_ok()
                });
                self.failure = Some(WorkerError {
                    worker_id: self.id,
                    callback: what,
                    conn: conn.map(|c| c.id),
                    message,
                    closed,
                });
            }
            return false;
        }
        true
    }
}

/// The message a panic was raised with.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}
