//! Reactor threads: each owns a share of the sockets, reads them, cuts packets, dispatches
//! them to workers, and flushes output the workers could not write directly.

mod local;

pub(crate) use local::pause;

use std::{
    collections::VecDeque,
    io,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use eddy_codec::{Codec, Decoded, FrameError};
use slab::Slab;

use self::local::{Held, LocalConn};
use crate::{
    config::READ_CHUNK,
    conn::{inflight, Conn},
    dispatch::{Dispatcher, Load, Subject},
    handle::Shared,
    sys::{self, Events, Poller},
    worker::{Event, WorkerRun, WorkerShared},
    CloseReason, ServerHandle,
};

/// What other threads ask of a reactor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Take ownership of a freshly accepted connection.
    Register(Arc<Conn>),
    /// Output was queued, or the high watermark crossed: look at the output buffer.
    Output(Arc<Conn>),
    /// Close for this reason: after flushing (`ServerClosed`) or at once (the others).
    Close(Arc<Conn>, CloseReason),
    /// Stop reading, for the reasons in these `pause` bits.
    Pause(Arc<Conn>, u8),
    /// Clear these `pause` bits (reading resumes when none is left).
    Resume(Arc<Conn>, u8),
    /// Stop reading, let in-flight work finish and output flush, close everything, exit by
    /// the deadline.
    Shutdown(Instant),
}

/// What a reactor gave up on at the shutdown deadline.
#[derive(Debug, Default)]
pub(crate) struct ReactorReport {
    pub(crate) abandoned_events: u64,
    pub(crate) abandoned_bytes: u64,
}

/// The most unread input a graceful close reads and drops to avoid a reset.
const DISCARD_LIMIT: usize = 256 * 1024;

/// Scratch blocks are this big; reads land in them and packets are cut from them without a copy.
const SCRATCH_BLOCK: usize = 256 * 1024;

struct Workers<'a>(&'a [WorkerShared]);

impl Load for Workers<'_> {
    fn is_idle(&self, worker: usize) -> bool {
        !self.0[worker].busy.load(Ordering::Relaxed)
    }

    fn depth(&self, worker: usize) -> usize {
        self.0[worker].queue_len()
    }
}

/// One reactor thread's state.
pub(crate) struct Reactor {
    id: usize,
    /// The server, as the inline worker's callbacks see it; `server.shared` is everything
    /// this reactor reads of the configuration and the other threads.
    server: ServerHandle,
    /// `DispatchMode::Reactor`: this thread is the worker of its connections.
    inline: Option<Box<dyn WorkerRun>>,
    /// The inline worker's `on_worker_start` panicked: retry once the server is up.
    start_failed: bool,
    poller: Arc<Poller>,
    commands: Receiver<Command>,
    inboxes: Vec<Sender<Event>>,
    /// Events a full worker queue could not take yet, in order.
    backlog: Vec<VecDeque<Event>>,
    /// Connections paused because they fed a worker's backlog: (key, id).
    stalled: Vec<Vec<(usize, crate::ConnId)>>,
    conns: Slab<LocalConn>,
    codecs: Vec<Arc<dyn Codec>>,
    dispatcher: Dispatcher,
    scratch: BytesMut,
    /// Workers handed events during this loop, to wake at its end.
    wake_list: Vec<usize>,
    to_wake: Vec<bool>,
    /// Lengths of the packets cut from one read (kept to reuse its allocation).
    lens: Vec<u32>,
    deadline: Option<Instant>,
    report: ReactorReport,
}

impl Reactor {
    pub(crate) fn new(
        id: usize,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        inboxes: Vec<Sender<Event>>,
        inline: Option<Box<dyn WorkerRun>>,
    ) -> Self {
        let workers = shared.config.worker_num;
        Reactor {
            id,
            poller: shared.reactors[id].poller.clone(),
            commands,
            backlog: (0..workers).map(|_| VecDeque::new()).collect(),
            stalled: (0..workers).map(|_| Vec::new()).collect(),
            inboxes,
            conns: Slab::new(),
            codecs: shared
                .config
                .listeners
                .iter()
                .map(|l| l.codec.clone())
                .collect(),
            dispatcher: Dispatcher::new(shared.config.dispatch_mode.clone(), workers, id),
            scratch: BytesMut::new(),
            lens: Vec::new(),
            wake_list: Vec::with_capacity(workers),
            to_wake: vec![false; workers],
            deadline: None,
            report: ReactorReport::default(),
            inline,
            start_failed: false,
            server: ServerHandle { shared },
        }
    }

    /// Run `on_worker_start` if this reactor is also a worker; returns whether it is.
    pub(crate) fn start_worker(&mut self) -> bool {
        match self.inline.as_mut().map(|w| w.start()) {
            Some(ok) => {
                self.start_failed = !ok;
                true
            }
            None => false,
        }
    }

    /// The event loop. Returns once shut down and every connection is closed (or the
    /// shutdown deadline passed).
    pub(crate) fn run(mut self) -> ReactorReport {
        if self.start_failed {
            if let Some(inline) = &mut self.inline {
                inline.finish_start();
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut busy = false;
        loop {
            // Wake for the shutdown deadline, or the inline worker's next timer.
            let timer = self.inline.as_ref().and_then(|w| w.next_due());
            let timeout = [self.deadline, timer]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()));
            let polled = if busy {
                self.poll_briefly(&mut events)
            } else {
                Ok(false)
            };
            let waited = match polled {
                Ok(true) => Ok(()),
                Ok(false) => self.poller.wait(&mut events, timeout),
                Err(err) => Err(err),
            };
            if let Err(err) = waited {
                tracing::error!(reactor = self.id, "poll failed: {err}");
                break;
            }
            busy = !events.is_empty();
            for ev in events.iter() {
                if ev.writable {
                    self.on_writable(ev.key);
                }
                if ev.readable {
                    self.on_readable(ev.key, ev.hangup);
                }
            }
            while let Ok(cmd) = self.commands.try_recv() {
                self.on_command(cmd);
            }
            if let Some(inline) = &mut self.inline {
                inline.take_mail();
            }
            self.flush_backlogs();
            self.wake_workers();
            if let Some(deadline) = self.deadline {
                if self.conns.is_empty() && self.backlog.iter().all(VecDeque::is_empty) {
                    break;
                }
                if Instant::now() >= deadline {
                    self.abandon();
                    break;
                }
            }
        }
        if let Some(inline) = &mut self.inline {
            inline.stop();
        }
        self.wake_workers();
        // Hang up: a worker stops once every reactor has and its queue is empty.
        self.inboxes.clear();
        std::sync::atomic::fence(Ordering::SeqCst);
        for worker in self.server.shared.workers.iter() {
            worker.wake();
        }
        self.report
    }

    /// Look for events without sleeping, a few times (see [`crate::idle`]). Returns whether
    /// some came.
    fn poll_briefly(&self, events: &mut Events) -> io::Result<bool> {
        crate::idle::look_again(|| {
            self.poller.wait(events, Some(Duration::ZERO))?;
            Ok(!events.is_empty())
        })
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Register(conn) => self.register(conn),
            Command::Output(conn) => {
                if let Some(key) = self.key_of(&conn) {
                    self.check_output(key);
                }
            }
            Command::Close(conn, reason) => {
                let Some(key) = self.key_of(&conn) else {
                    return;
                };
                self.apply_close(key, reason);
            }
            Command::Pause(conn, bits) => {
                if let Some(key) = self.key_of(&conn) {
                    self.conns[key].paused |= bits;
                    self.sync_interest(key);
                }
            }
            Command::Resume(conn, bits) => {
                if let Some(key) = self.key_of(&conn) {
                    self.conns[key].paused &= !bits;
                    self.sync_interest(key);
                }
            }
            Command::Shutdown(deadline) => {
                self.deadline = Some(deadline);
                let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
                for key in keys {
                    self.close_after_drain(key, CloseReason::Shutdown);
                }
            }
        }
    }

    /// A close the application asked for: `ServerClosed` flushes first, the others now.
    fn apply_close(&mut self, key: usize, reason: CloseReason) {
        if reason == CloseReason::ServerClosed {
            self.close_after_drain(key, reason);
        } else {
            self.finalize(key, reason);
        }
    }

    /// Stop reading and close once the output is flushed. For every reason but
    /// `ServerClosed` (which drops what no worker has taken, as Swoole does), the events
    /// already dispatched are handled first, so their replies go out too.
    fn close_after_drain(&mut self, key: usize, reason: CloseReason) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        lc.paused |= pause::CLOSING;
        let reason = lc.closing.get_or_insert(reason);
        if *reason != CloseReason::ServerClosed {
            lc.conn
                .inflight
                .fetch_or(inflight::NOTIFY_IDLE, Ordering::AcqRel);
        }
        self.check_output(key);
    }

    /// The slab key of a connection this reactor still holds.
    fn key_of(&self, conn: &Arc<Conn>) -> Option<usize> {
        let key = conn.key.load(Ordering::Relaxed);
        self.conns
            .get(key)
            .filter(|lc| Arc::ptr_eq(&lc.conn, conn))
            .map(|_| key)
    }

    fn register(&mut self, conn: Arc<Conn>) {
        // Stateless modes read nothing before `on_connect` returns, so no packet overtakes it.
        let gated = !self.dispatcher.is_stateful();
        // A pause or confirm may have been asked for before this reactor knew the connection.
        let delayed = self.server.shared.config.enable_delay_receive
            && !conn.confirmed.load(Ordering::Acquire);
        let user_paused = conn.user_paused.load(Ordering::Acquire);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        conn.key.store(key, Ordering::Relaxed);
        let lc = entry.insert(LocalConn::new(
            conn.clone(),
            if gated { pause::GATE } else { 0 }
                | if delayed { pause::DELAY } else { 0 }
                | if user_paused { pause::USER } else { 0 },
        ));
        let (read, write) = lc.registered;
        // The socket stays open while registered: `finalize` deletes it from the poller.
        let added = self.poller.add(conn.fd, key, read, write);
        self.deliver(
            key,
            Event::Connect {
                conn: conn.clone(),
                gated,
            },
        );
        if let Err(err) = added {
            tracing::error!(conn = conn.id.as_u64(), "cannot watch socket: {err}");
            return self.finalize(key, CloseReason::Error(err.kind()));
        }
        // The connection was in the table before this reactor knew it: catch up with a close
        // or output requested in between (their commands found no key and were dropped).
        let requested = conn.out.lock().requested_close.as_deref().cloned();
        match requested {
            Some(reason) => self.apply_close(key, reason),
            None => self.check_output(key),
        }
    }

    fn on_readable(&mut self, key: usize, hangup: bool) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        if lc.paused != 0 {
            if hangup {
                // The peer is gone (reset, or both directions shut) while we were not
                // reading: nothing more can be answered. Close now, or the level-triggered
                // hang-up would wake this loop again and again.
                self.finalize(key, CloseReason::PeerReset);
            }
            return;
        }
        if self.server.shared.config.output_backpressure
            && lc.conn.high_crossed.load(Ordering::Acquire)
        {
            return self.check_output(key);
        }
        let max_queued = self.server.shared.config.max_queued_bytes as u64;
        if lc.conn.inflight.load(Ordering::Acquire) & inflight::WEIGHT >= max_queued {
            // Wait for the workers: the one that takes the weight to zero tells us.
            let before = lc
                .conn
                .inflight
                .fetch_or(inflight::NOTIFY_IDLE, Ordering::AcqRel);
            if before & inflight::WEIGHT != 0 {
                lc.paused |= pause::QUEUED;
                return self.sync_interest(key);
            }
            // The workers caught up in between: nobody needs telling.
            lc.conn
                .inflight
                .fetch_and(!inflight::NOTIFY_IDLE, Ordering::AcqRel);
        }
        let fd = lc.conn.fd;
        let from_scratch = lc.rbuf.is_empty();
        let result = if from_scratch {
            if self.scratch.capacity() - self.scratch.len() < READ_CHUNK {
                self.scratch.reserve(SCRATCH_BLOCK);
            }
            sys::read_into(fd, &mut self.scratch, READ_CHUNK)
        } else {
            let want = lc
                .expect
                .map_or(READ_CHUNK, |total| total.saturating_sub(lc.rbuf.len()))
                .clamp(1, READ_CHUNK);
            sys::read_into(fd, &mut lc.rbuf, want)
        };
        match result {
            // The peer has sent everything: answer what it sent, flush, then close (a client
            // that half-closes after its request still gets the whole reply).
            Ok(0) => self.close_after_drain(key, CloseReason::PeerClosed),
            Ok(n) => {
                lc.conn
                    .last_recv
                    .store(self.server.shared.now_ms(), Ordering::Relaxed);
                self.server.shared.stats.reactors[self.id]
                    .received_bytes
                    .add(n as u64);
                self.cut_packets(key, from_scratch);
                self.account_buffer(key);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => self.finalize(key, close_reason(&err)),
        }
    }

    /// Keep `Stats::recv_buffer_bytes` equal to what this connection's partial packet holds.
    fn account_buffer(&mut self, key: usize) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let now = lc.rbuf.capacity();
        if now != lc.held {
            let counter = &self.server.shared.stats.reactors[self.id].buffered;
            counter.add(now as u64);
            counter.sub(lc.held as u64);
            lc.held = now;
        }
    }

    /// Cut every whole packet from the bytes just read and dispatch them; keep the rest.
    fn cut_packets(&mut self, key: usize, from_scratch: bool) {
        let max = self.server.shared.config.package_max_length;
        let lc = &mut self.conns[key];
        let codec = &self.codecs[lc.conn.listener];
        let buf = if from_scratch {
            &mut self.scratch
        } else {
            &mut lc.rbuf
        };
        let mut lens = std::mem::take(&mut self.lens);
        let mut whole = 0;
        let mut failure = None;
        loop {
            match codec.decode(&buf[whole..], &mut lc.decode, max) {
                // A codec's answer is checked, not trusted: a user codec cannot make the
                // reactor loop forever, slice out of bounds or pass the packet limit.
                Ok(Decoded::Packet(n)) if n == 0 || n > buf.len() - whole || n > max => {
                    failure = Some(FrameError::Malformed(eddy_codec::IMPOSSIBLE_LENGTH));
                    break;
                }
                Ok(Decoded::Packet(n)) => {
                    lens.push(n as u32);
                    whole += n;
                }
                Ok(Decoded::Incomplete { total }) => {
                    lc.expect = total;
                    break;
                }
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        // Every whole packet, back to back, shared with no copy.
        let packets = buf.split_to(whole).freeze();
        if failure.is_none() && !buf.is_empty() && (from_scratch || whole > 0) {
            // Keep the partial packet in a buffer of its own, sized for the whole packet,
            // so it does not pin a shared scratch block or a large old buffer.
            let mut own = BytesMut::with_capacity(lc.expect.unwrap_or(0).max(buf.len()));
            own.extend_from_slice(buf);
            buf.clear();
            lc.rbuf = own;
        } else if buf.is_empty() && !from_scratch {
            lc.rbuf = BytesMut::new();
        }
        if from_scratch {
            self.scratch.clear();
        }
        self.deliver_packets(key, packets, &lens);
        lens.clear();
        self.lens = lens;
        if let Some(err) = failure {
            if let Some(lc) = self.conns.get(key) {
                let conn = &lc.conn;
                tracing::warn!(
                    conn = conn.id.as_u64(),
                    peer = %conn.peer,
                    "closing connection: {err}"
                );
            }
            // The packets before the bad one are answered and flushed; nothing after it is read.
            self.close_after_drain(key, CloseReason::BadPacket(err));
        }
    }

    /// Dispatch the packets of one read. In a stateful mode they all go to one worker as one
    /// event (one hand-over, answered with one write); otherwise each packet picks its worker.
    fn deliver_packets(&mut self, key: usize, packets: Bytes, lens: &[u32]) {
        let Some(conn) = self.conns.get(key).map(|lc| lc.conn.clone()) else {
            return;
        };
        match lens {
            [] => {}
            [_] => self.deliver(key, Event::Receive(conn, packets)),
            _ if self.dispatcher.is_stateful() => {
                self.deliver(key, Event::Batch(conn, packets, lens.into()));
            }
            _ => {
                let mut start = 0;
                for &len in lens {
                    let end = start + len as usize;
                    self.deliver(key, Event::Receive(conn.clone(), packets.slice(start..end)));
                    start = end;
                }
            }
        }
    }

    /// Dispatch a counted event of connection `key` to the worker its mode picks.
    fn deliver(&mut self, key: usize, event: Event) {
        // The connection may have been closed a moment ago (a failed poller call): the event
        // then has nobody to go to, and was never counted.
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let conn = &lc.conn;
        let weight = conn.inflight.load(Ordering::Acquire) & inflight::WEIGHT;
        let data = match &event {
            Event::Receive(_, data) => Some(&data[..]),
            _ => None,
        };
        let subject = Subject {
            conn: conn.id,
            peer: &conn.peer,
            uid_hash: conn
                .uid_bound
                .load(Ordering::Acquire)
                .then(|| conn.uid_hash.load(Ordering::Relaxed)),
            last: lc.worker,
            in_flight: weight != 0,
            data,
        };
        let worker = self
            .dispatcher
            .pick(&subject, &Workers(&self.server.shared.workers));
        lc.worker = Some(worker);
        conn.inflight.fetch_add(event.weight(), Ordering::AcqRel);
        let id = conn.id;
        let counters = &self.server.shared.stats.reactors[self.id];
        counters.dispatched.add(1);
        counters.per_worker[worker].add(1);
        let backlogged = self.push(worker, event);
        if let Some(lc) = self.conns.get_mut(key).filter(|_| backlogged) {
            if lc.paused & pause::INBOX == 0 {
                lc.paused |= pause::INBOX;
                self.stalled[worker].push((key, id));
                self.sync_interest(key);
            }
        }
    }

    /// Hand an event to a worker, or queue it behind that worker's backlog. Returns whether it
    /// went to the backlog.
    fn push(&mut self, worker: usize, event: Event) -> bool {
        if let Some(inline) = &mut self.inline {
            inline.handle(event, &self.server);
            return false;
        }
        if self.backlog[worker].is_empty() {
            match self.try_hand(worker, event) {
                Ok(()) => return false,
                Err(event) => self.backlog[worker].push_back(event),
            }
        } else {
            self.backlog[worker].push_back(event);
        }
        true
    }

    /// `try_send`, and if the queue is full, ask to be woken and try once more (so a worker
    /// that emptied its queue in between cannot be missed).
    fn try_hand(&mut self, worker: usize, event: Event) -> Result<(), Event> {
        match self.inboxes[worker].try_send(event) {
            Ok(()) => {
                self.handed(worker);
                Ok(())
            }
            Err(TrySendError::Full(event)) => {
                self.server.shared.workers[worker].want_wake(self.id);
                std::sync::atomic::fence(Ordering::SeqCst);
                self.inboxes[worker]
                    .try_send(event)
                    .map_err(|err| err.into_inner())?;
                self.handed(worker);
                Ok(())
            }
            Err(TrySendError::Disconnected(event)) => Err(event),
        }
    }

    /// Remember to wake `worker` at the end of this loop (once, however many events it got).
    fn handed(&mut self, worker: usize) {
        if !self.to_wake[worker] {
            self.to_wake[worker] = true;
            self.wake_list.push(worker);
        }
    }

    /// Wake the workers that were handed events and went to sleep.
    fn wake_workers(&mut self) {
        if self.wake_list.is_empty() {
            return;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        for worker in self.wake_list.drain(..) {
            self.to_wake[worker] = false;
            self.server.shared.workers[worker].wake();
        }
    }

    fn flush_backlogs(&mut self) {
        for worker in 0..self.backlog.len() {
            while let Some(event) = self.backlog[worker].pop_front() {
                if let Err(event) = self.try_hand(worker, event) {
                    self.backlog[worker].push_front(event);
                    break;
                }
            }
            if self.backlog[worker].is_empty() && !self.stalled[worker].is_empty() {
                let mut stalled = std::mem::take(&mut self.stalled[worker]);
                for &(key, id) in &stalled {
                    if let Some(lc) = self.conns.get_mut(key).filter(|lc| lc.conn.id == id) {
                        lc.paused &= !pause::INBOX;
                        // Resumes reading, and hands over watermark events held meanwhile.
                        self.check_output(key);
                    }
                }
                // Keep the allocation, and whatever stalled again while we went through it.
                stalled.clear();
                stalled.append(&mut self.stalled[worker]);
                self.stalled[worker] = stalled;
            }
        }
    }

    fn on_writable(&mut self, key: usize) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        if !lc.want_write {
            return;
        }
        let flushed = {
            let mut out = lc.conn.out.lock();
            let result = out.flush(lc.conn.fd);
            if matches!(result, Ok(0)) {
                out.flush_requested = false;
            }
            result
        };
        match flushed {
            Ok(_) => self.check_output(key),
            Err(err) => self.finalize(key, close_reason(&err)),
        }
    }

    /// Look at a connection's output: watermark crossings, a close waiting for the flush,
    /// poller interest.
    fn check_output(&mut self, key: usize) {
        let config = &self.server.shared.config;
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let conn = lc.conn.clone();
        let mut full = false;
        let mut drained = false;
        let idle = conn.inflight.load(Ordering::Acquire) & inflight::WEIGHT == 0;
        let mut done = false;
        let pending = {
            let mut out = conn.out.lock();
            let pending = out.pending();
            // Decide a pending close under the same lock senders take, so no send can be
            // reported queued and then dropped.
            if let Some(reason) = &lc.closing {
                if pending == 0 && (*reason == CloseReason::ServerClosed || idle) {
                    out.state = crate::conn::OutState::Closed;
                    done = true;
                }
            }
            if !lc.full_reported && conn.high_crossed.load(Ordering::Acquire) {
                lc.full_reported = true;
                full = true;
            }
            if lc.full_reported && pending <= config.buffer_low_watermark {
                lc.full_reported = false;
                conn.high_crossed.store(false, Ordering::Release);
                drained = true;
            }
            pending
        };
        lc.want_write = pending > 0;
        if full && config.output_backpressure {
            lc.paused |= pause::WATERMARK;
        }
        if drained {
            lc.paused &= !pause::WATERMARK;
        }
        if done {
            let reason = lc.closing.clone().unwrap_or(CloseReason::ServerClosed);
            return self.finalize(key, reason);
        }
        if lc.paused & pause::QUEUED != 0 && idle {
            lc.paused &= !pause::QUEUED;
            if lc.closing.is_none() {
                conn.inflight
                    .fetch_and(!inflight::NOTIFY_IDLE, Ordering::AcqRel);
            }
        }
        let was_held = lc.held_events != Held::None;
        if full {
            lc.held_events = lc.held_events.then_full();
        }
        if drained {
            lc.held_events = lc.held_events.then_drain();
        }
        if lc.held_events != Held::None {
            match lc.worker.filter(|&w| !self.backlog[w].is_empty()) {
                // The worker is backed up: hold the events (bounded) and look again when its
                // queue drains.
                Some(worker) => {
                    if !was_held {
                        self.stalled[worker].push((key, conn.id));
                    }
                }
                None => {
                    let held = std::mem::take(&mut lc.held_events);
                    if matches!(held, Held::Full | Held::FullDrain) {
                        self.deliver(key, Event::BufferFull(conn.clone()));
                    }
                    if matches!(held, Held::Drain | Held::FullDrain) {
                        self.deliver(key, Event::BufferDrain(conn));
                    }
                }
            }
        }
        self.sync_interest(key);
    }

    fn sync_interest(&mut self, key: usize) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let want = lc.interest();
        if want != lc.registered {
            match self.poller.modify(lc.conn.fd, key, want.0, want.1) {
                Ok(()) => lc.registered = want,
                Err(err) => {
                    tracing::error!(conn = lc.conn.id.as_u64(), "cannot watch socket: {err}");
                    self.finalize(key, CloseReason::Error(err.kind()));
                }
            }
        }
    }

    /// The one close path: forget the socket, close it, and see that `on_close` runs once,
    /// after every other event of the connection.
    fn finalize(&mut self, key: usize, reason: CloseReason) {
        let Some(lc) = self.conns.try_remove(key) else {
            return;
        };
        self.server.shared.stats.reactors[self.id]
            .buffered
            .sub(lc.held as u64);
        let conn = lc.conn;
        let _ = self.poller.delete(conn.fd);
        let dropped = {
            let mut out = conn.out.lock();
            out.state = crate::conn::OutState::Closed;
            out.discard()
        };
        match reason {
            CloseReason::ServerReset | CloseReason::HandlerPanic => sys::reset(conn.fd),
            CloseReason::PeerReset | CloseReason::Error(_) | CloseReason::HeartbeatTimeout => {
                sys::shutdown(conn.fd)
            }
            _ => {
                // Unread input at close makes the kernel send a reset, which can destroy the
                // reply still in flight: read (and drop) what is there first.
                sys::discard_input(conn.fd, DISCARD_LIMIT);
                sys::shutdown(conn.fd);
            }
        }
        self.server.shared.stats.reactors[self.id].closed.add(1);
        tracing::debug!(conn = conn.id.as_u64(), %reason, dropped, "connection closed");
        let _ = conn.close_reason.set(reason);
        let before = conn.inflight.fetch_or(inflight::CLOSED, Ordering::AcqRel);
        if before & inflight::WEIGHT == 0 {
            let worker = lc.worker.unwrap_or(0);
            self.push(worker, Event::Close(conn));
        }
    }

    /// The shutdown deadline passed: close what is left, drop what no worker took.
    fn abandon(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let pending = self.conns[key].conn.out.lock().pending();
            self.report.abandoned_bytes += pending as u64;
            self.finalize(key, CloseReason::Shutdown);
        }
        self.flush_backlogs();
        for backlog in &mut self.backlog {
            for event in backlog.drain(..) {
                self.report.abandoned_events += 1;
                self.report.abandoned_bytes += event.len() as u64;
            }
        }
        if self.report.abandoned_events + self.report.abandoned_bytes > 0 {
            tracing::warn!(
                reactor = self.id,
                events = self.report.abandoned_events,
                bytes = self.report.abandoned_bytes,
                "shutdown deadline passed: abandoned"
            );
        }
    }
}

fn close_reason(err: &io::Error) -> CloseReason {
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => CloseReason::PeerReset,
        kind => CloseReason::Error(kind),
    }
}
