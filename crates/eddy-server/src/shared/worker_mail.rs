//! A worker's mailbox: the events reactors hand it, its messages and control requests, and
//! what other threads see of it (busy, asleep, who waits for it).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    thread::Thread,
    time::Instant,
};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::reload::{Rebuild, WorkerStatus};
use eddy_ws::deflate::DeflateParams;

use crate::{
    conn::Conn,
    message::{Message, MessageSource},
    net::PacketInfo,
    ws::{HttpRequest, Opcode},
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
    /// A WebSocket upgrade request, for `on_handshake` (then `on_open`).
    Handshake(Arc<Conn>, Box<PendingHandshake>),
    /// A plain HTTP request on a WebSocket listener, for `on_request`.
    Request(Arc<Conn>, Box<HttpRequest>),
    /// A whole WebSocket message.
    Message(Arc<Conn>, Opcode, Bytes),
    /// Several whole WebSocket messages of one connection from one read (stateful modes:
    /// one hand-over and one write for all their answers).
    Messages(Arc<Conn>, Box<[(Opcode, Bytes)]>),
    /// A datagram, for `on_packet` (no connection: not counted anywhere).
    Packet(Box<Datagram>),
}

/// A datagram on its way to `on_packet`.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub(crate) data: Bytes,
    pub(crate) info: PacketInfo,
}

/// A WebSocket upgrade request waiting for the handler's decision, with what the reactor
/// negotiated for it.
#[derive(Debug)]
pub(crate) struct PendingHandshake {
    pub(crate) request: HttpRequest,
    /// The `Sec-WebSocket-Extensions` answer, when permessage-deflate was agreed.
    pub(crate) extension: Option<String>,
    /// The deflate parameters agreed (the reactor inflates with them, the sender deflates).
    pub(crate) deflate: Option<DeflateParams>,
}

impl Event {
    /// The connection the event is about (`None` for a datagram).
    pub(crate) fn conn(&self) -> Option<&Arc<Conn>> {
        Some(match self {
            Event::Connect { conn, .. }
            | Event::Receive(conn, _)
            | Event::Batch(conn, ..)
            | Event::BufferFull(conn)
            | Event::BufferDrain(conn)
            | Event::Close(conn)
            | Event::Handshake(conn, _)
            | Event::Request(conn, _)
            | Event::Message(conn, ..)
            | Event::Messages(conn, _) => conn,
            Event::Packet(_) => return None,
        })
    }

    /// Payload bytes carried.
    pub(crate) fn len(&self) -> usize {
        match self {
            Event::Receive(_, data) | Event::Batch(_, data, _) | Event::Message(_, _, data) => {
                data.len()
            }
            Event::Packet(datagram) => datagram.data.len(),
            Event::Messages(_, messages) => messages.iter().map(|(_, data)| data.len()).sum(),
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
    /// Stopped for good (from its last `on_worker_stop` on): it takes no more task results,
    /// so it sends no more tasks that return them. Written and read by the worker only.
    pub(crate) results_closed: AtomicBool,
    thread: OnceLock<Thread>,
    pub(crate) waiters: AtomicU64,
    /// The OS thread id running the worker (0 until it runs).
    tid: std::sync::atomic::AtomicI32,
    inbox: Receiver<Event>,
    /// Rebuild requests (reload, `stop_worker`); a few at most are ever pending.
    control: (Sender<Rebuild>, Receiver<Rebuild>),
    /// A rebuild was asked for and may not have been taken yet (see `take_rebuild`).
    rebuild_asked: AtomicBool,
    /// Messages for `on_pipe_message`, bounded by `worker_queue_capacity`.
    pub(crate) messages: (Sender<Mail>, Receiver<Mail>),
}

impl WorkerShared {
    pub(crate) fn new(inbox: Receiver<Event>, capacity: usize) -> Self {
        WorkerShared {
            busy: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            results_closed: AtomicBool::new(false),
            thread: OnceLock::new(),
            waiters: AtomicU64::new(0),
            tid: std::sync::atomic::AtomicI32::new(0),
            inbox,
            control: crossbeam_channel::bounded(8),
            rebuild_asked: AtomicBool::new(false),
            messages: crossbeam_channel::bounded(capacity),
        }
    }

    /// The worker runs a callback that is not an event's (a timer, a message, a task
    /// result): busy too, for the idle dispatch mode. Written only when it changes (the
    /// reactors read the line for every packet they place); the worker's next look at an
    /// empty inbox clears it.
    pub(crate) fn occupy(&self) {
        if !self.busy.load(Ordering::Relaxed) {
            self.busy.store(true, Ordering::Relaxed);
        }
    }

    /// The worker's callbacks are done (an inline worker between events, or a stopped one):
    /// written only when it changes, as [`occupy`](Self::occupy).
    pub(crate) fn rest(&self) {
        if self.busy.load(Ordering::Relaxed) {
            self.busy.store(false, Ordering::Relaxed);
        }
    }

    /// Whether the worker waits for work: neither busy nor rebuilding its handler (a reload
    /// or `stop_worker` taken while it was idle runs with `busy` clear).
    pub(crate) fn is_idle(&self) -> bool {
        !self.busy.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed)
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

    /// Ask the worker to rebuild its handler. False when its queue is full: the rebuilds it
    /// holds would repeat this one.
    pub(crate) fn ask_rebuild(&self, cause: Rebuild) -> bool {
        let sent = self.control.0.try_send(cause).is_ok();
        // After the request: a worker that reads the flag sees the request too.
        self.rebuild_asked.store(true, Ordering::Release);
        sent
    }

    /// Worker side, between every two packets and before it sleeps: whether a rebuild may have
    /// been asked for (then `take_rebuild`). A plain load: the channel's `is_empty`, asked there
    /// before, was 0.6% of the server's CPU on the pipelined benchmark. (A sleeping worker is
    /// woken after the flag is set, with a fence between: see `Shared::wake_worker`.)
    #[inline]
    pub(crate) fn rebuild_asked(&self) -> bool {
        self.rebuild_asked.load(Ordering::Relaxed)
    }

    /// Worker side: the next rebuild asked for.
    pub(crate) fn take_rebuild(&self) -> Option<Rebuild> {
        // Reading the flag a sender set makes its request visible; one sent after this sets
        // the flag again.
        self.rebuild_asked.swap(false, Ordering::Acquire);
        let cause = self.control.1.try_recv().ok();
        if cause.is_some() {
            // More may wait: the next look takes them.
            self.rebuild_asked.store(true, Ordering::Relaxed);
        }
        cause
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.inbox.len()
    }

    /// Worker side: this thread is the worker (so that `wake` can unpark it, and
    /// `worker_pid` can name it).
    pub(crate) fn attach_current_thread(&self) {
        let _ = self.thread.set(std::thread::current());
        self.tid.store(crate::sys::thread_id(), Ordering::Relaxed);
    }

    /// The OS thread id of the thread running this worker, once it runs.
    pub(crate) fn thread_id(&self) -> Option<i32> {
        Some(self.tid.load(Ordering::Relaxed)).filter(|tid| *tid != 0)
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
    fn handle(&mut self, event: Event);
    /// Run `on_finish` (or callbacks) for the task results that have arrived, rebuild the
    /// handler if asked to, and run the timers that are due.
    fn take_mail(&mut self);
    /// When the next timer is due, for a reactor running this worker inline to wake then.
    fn next_due(&self) -> Option<Instant>;
}

/// A message and its sender, on its way to a worker.
pub(crate) type Mail = (MessageSource, Message);

/// Wakes worker `id` after something was queued for it outside its inbox (a task result, a
/// message): what the task pool needs of the server.
pub(crate) trait WakeWorker {
    /// Wake worker `id` if it sleeps.
    fn wake_worker(&self, id: usize);
}
