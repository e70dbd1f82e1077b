//! Reactor threads: each owns a share of the sockets, reads them, cuts packets, dispatches
//! them to workers, and flushes output the workers could not write directly.
//!
//! Runs on the `eddy-reactor-N` threads. It owns its sockets' read side
//! (`local`), imports `shared` (mailboxes, counters, the table's records), `dispatch` and
//! `config`, and never a worker: in `DispatchMode::Reactor` it runs its worker through the
//! `WorkerRun` trait object it was given. The loop is here; reading and cutting packets is in
//! `read` (through the listener's `protocol`), handing events over in `deliver`, output and
//! watermarks in `output`, the one close path in `close`, handshake deadlines in `deadlines`.

mod accept;
mod accepting;
mod close;
mod datagram;
mod datagrams;
mod deadlines;
mod deliver;
mod local;
mod output;
mod protocol;
mod read;
mod tls;
mod websocket;
mod ws_read;

use std::{
    collections::VecDeque,
    io,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender};
use slab::Slab;

use self::{
    accepting::Accepting,
    datagrams::Datagrams,
    deadlines::Deadlines,
    local::{pause, LocalConn},
    protocol::ProtocolState,
};
use crate::{
    config::Protocol,
    conn::{CloseReason, Conn, ConnId, Transport},
    dispatch::Dispatcher,
    shared::{Command, Event, Shared, WorkerRun},
    sys::{self, idle, Event as PollEvent, Events, Poller},
};

/// What a reactor gave up on at the shutdown deadline.
#[derive(Debug, Default)]
pub(crate) struct ReactorReport {
    pub(crate) abandoned_events: u64,
    pub(crate) abandoned_bytes: u64,
}

/// One reactor thread's state.
pub(crate) struct Reactor {
    id: usize,
    /// Everything this reactor reads of the configuration and the other threads.
    shared: Arc<Shared>,
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
    stalled: Vec<Vec<(usize, ConnId)>>,
    conns: Slab<LocalConn>,
    /// Per listener: what its connections speak.
    protocols: Vec<Protocol>,
    dispatcher: Dispatcher,
    scratch: BytesMut,
    /// Workers handed events during this loop, to wake at its end.
    wake_list: Vec<usize>,
    to_wake: Vec<bool>,
    /// Lengths of the packets cut from one read (kept to reuse its allocation).
    lens: Vec<u32>,
    deadline: Option<Instant>,
    /// When WebSocket connections must have finished their handshake.
    handshakes: Deadlines,
    /// The same for TLS handshakes.
    tls_handshakes: Deadlines,
    /// The datagram listeners this reactor reads.
    datagrams: Datagrams,
    /// The stream listeners this reactor accepts on.
    accepting: Accepting,
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
            poller: shared.reactor(id).poller.clone(),
            commands,
            backlog: (0..workers).map(|_| VecDeque::new()).collect(),
            stalled: (0..workers).map(|_| Vec::new()).collect(),
            inboxes,
            conns: Slab::new(),
            protocols: shared
                .config
                .listeners
                .iter()
                .map(|l| l.protocol.clone())
                .collect(),
            dispatcher: Dispatcher::new(shared.config.dispatch_mode.clone(), workers, id),
            scratch: BytesMut::new(),
            lens: Vec::new(),
            wake_list: Vec::with_capacity(workers),
            to_wake: vec![false; workers],
            deadline: None,
            handshakes: Deadlines::default(),
            tls_handshakes: Deadlines::default(),
            datagrams: Datagrams::new(id, &shared.datagrams),
            accepting: Accepting::default(),
            report: ReactorReport::default(),
            inline,
            start_failed: false,
            shared,
        }
    }

    /// Run `on_worker_start` if this reactor is also a worker; returns whether it is.
    pub(crate) fn start_worker(&mut self) -> bool {
        sys::mark_reactor_thread();
        if self.inline.is_some() {
            // This thread is worker `id` too.
            self.shared.workers[self.id].attach_current_thread();
        }
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
        sys::mark_reactor_thread();
        if self.inline.is_some() {
            self.shared.outlet.write_by_round();
        }
        if let Err(err) = self.watch_datagrams() {
            tracing::error!(reactor = self.id, "cannot watch datagram sockets: {err}");
        }
        let mut events = Events::with_capacity(1024);
        let mut busy = false;
        let mut turn = idle::Turn::new();
        loop {
            if busy {
                turn.take_turns();
            } else {
                turn.rest();
            }
            let timeout = self.timeout();
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
            let mut ready = events.iter().peekable();
            while let Some(ev) = ready.next() {
                if let Some(next) = ready.peek() {
                    self.prefetch(next.key);
                }
                self.on_event(ev);
            }
            while let Ok(cmd) = self.commands.try_recv() {
                self.on_command(cmd);
            }
            if let Some(inline) = &mut self.inline {
                inline.take_mail();
            }
            if !self.handshakes.is_empty() || !self.tls_handshakes.is_empty() {
                let now = Instant::now();
                self.expire_handshakes(now);
                self.expire_tls_handshakes(now);
            }
            self.retry_datagrams();
            if self.accepting.paused_until.is_some() {
                self.resume_accepting();
            }
            self.flush_backlogs();
            // The replies of the round's batches, together (see `Outlet::uncork`).
            self.shared.outlet.end_round();
            self.wake_workers();
            if self.finished() {
                break;
            }
        }
        self.stop();
        self.report
    }

    /// Whether a shutting-down reactor is done: every connection closed, or the deadline
    /// passed (then the rest are abandoned).
    fn finished(&mut self) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        // `open` also counts connections another reactor accepted and is handing over (see
        // `Shared::admit`): they are closed here, not lost.
        if self.conns.is_empty()
            && self.shared.reactor(self.id).open.load(Ordering::SeqCst) == 0
            && self.backlog.iter().all(VecDeque::is_empty)
            && self.datagrams.drained()
        {
            return true;
        }
        if Instant::now() >= deadline {
            self.abandon();
            return true;
        }
        false
    }

    /// Leave the loop: stop watching sockets, and hang up on the workers.
    fn stop(&mut self) {
        // Past the deadline: connections still being handed over are closed unannounced.
        while let Ok(cmd) = self.commands.try_recv() {
            if let Command::Register(conn) = cmd {
                self.shared.unadmit(&conn);
            }
        }
        self.unwatch_datagrams();
        self.stop_accepting();
        if let Some(inline) = &mut self.inline {
            inline.stop();
        }
        self.shared.outlet.end_round();
        self.wake_workers();
        // Hang up: a worker stops once every reactor has and its queue is empty.
        self.inboxes.clear();
        std::sync::atomic::fence(Ordering::SeqCst);
        for worker in self.shared.workers.iter() {
            worker.wake();
        }
    }

    /// How long the poller may sleep: until the shutdown deadline, a handshake deadline, a
    /// datagram retry or the inline worker's next timer.
    fn timeout(&self) -> Option<Duration> {
        let timer = self.inline.as_ref().and_then(|w| w.next_due());
        let handshake = self.handshakes.next();
        let tls_handshake = self.tls_handshakes.next();
        let retry = self.datagram_retry();
        let accept = self.accepting.paused_until;
        [
            self.deadline,
            timer,
            handshake,
            tls_handshake,
            retry,
            accept,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Start bringing connection `key`'s records into the cache while the event before it is
    /// handled: with a thousand busy connections, the misses on them were most of the reactor
    /// loop's own time. The slab entry is read here (its first line's miss is taken now); the
    /// rest of it, and the shared record it points at, are prefetched.
    fn prefetch(&self, key: usize) {
        if let Some(lc) = self.conns.get(key) {
            let local: *const LocalConn = lc;
            sys::prefetch(local.cast(), std::mem::size_of::<LocalConn>());
            // The record, and the reference counts in front of it.
            let record = Arc::as_ptr(&lc.conn).cast::<u8>().wrapping_sub(16);
            sys::prefetch(record, 16 + std::mem::size_of::<Conn>());
        }
    }

    fn on_event(&mut self, ev: PollEvent) {
        if let Some(slot) = self.listener_of(ev.key) {
            return self.on_listener(slot, ev.hangup);
        }
        if let Some(port) = self.datagram_of(ev.key) {
            return self.on_datagram(port, ev.readable, ev.writable);
        }
        if ev.writable {
            self.on_writable(ev.key);
        }
        if ev.readable {
            self.on_readable(ev.key, ev.hangup);
        }
    }

    /// Look for events without sleeping, a few times (see `sys::idle`). Returns whether
    /// some came.
    fn poll_briefly(&self, events: &mut Events) -> io::Result<bool> {
        idle::look_again(|| {
            self.poller.wait(events, Some(Duration::ZERO))?;
            Ok(!events.is_empty())
        })
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Register(conn) => self.register(conn),
            Command::Output(conn) | Command::Idle(conn) => {
                if let Some(key) = self.key_of(&conn) {
                    self.check_output(key);
                }
            }
            Command::Flush(conns) => {
                for conn in conns {
                    if let Some(key) = self.key_of(&conn) {
                        self.flush_now(key);
                    }
                }
            }
            Command::Close(conn, reason) => {
                if let Some(key) = self.key_of(&conn) {
                    self.apply_close(key, reason);
                }
            }
            Command::OpenGate(conn) => self.unpause(&conn, pause::GATE),
            Command::Upgraded(conn) => {
                if let Some(key) = self.key_of(&conn) {
                    self.upgraded(key);
                }
            }
            Command::Pause(conn) => {
                // A TLS handshake goes on: the pause starts when it is done (`tls_progress`).
                if let Some(key) = self
                    .key_of(&conn)
                    .filter(|&k| !self.conns[k].tls_handshaking)
                {
                    self.conns[key].paused |= pause::USER;
                    self.sync_interest(key);
                }
            }
            Command::Resume(conn) => self.unpause(&conn, pause::USER | pause::DELAY),
            Command::DatagramOutput(listener) => self.datagram_output(listener),
            Command::Accept(listeners) => self.accept_on(listeners),
            Command::Shutdown(deadline) => {
                self.deadline = Some(deadline);
                self.stop_accepting();
                self.stop_datagrams();
                let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
                for key in keys {
                    self.close_after_drain(key, CloseReason::Shutdown);
                }
            }
        }
    }

    /// Clear these pause bits of a connection (reading resumes when none is left).
    fn unpause(&mut self, conn: &Arc<Conn>, bits: u8) {
        if let Some(key) = self.key_of(conn) {
            self.conns[key].paused &= !bits;
            self.sync_interest(key);
            self.resume_kept(key);
        }
    }

    /// Once connection `key` has no pause left, act on what was read and kept while it was
    /// paused (WebSocket frames, a TLS session's plaintext): the socket will not say. Called
    /// wherever a pause ends (the application's, a worker backlog's, the output buffer's,
    /// the queued weight's, the upgrade's).
    ///
    /// A peer that ended the stream meanwhile still gets them answered (its close waits for
    /// that); a close the server decided on drops them.
    pub(super) fn resume_kept(&mut self, key: usize) {
        let Some(lc) = self.conns.get(key) else {
            return;
        };
        let tls = lc.conn.transport == Transport::Tls;
        let answers = lc.closing.as_ref().is_none_or(|r| !r.drops_unhandled());
        let kept = lc.paused & !pause::CLOSING == 0
            && answers
            && !lc.rbuf.is_empty()
            && (tls || lc.protocol.is_open_websocket());
        if !kept {
            return;
        }
        if lc.protocol.is_framed() {
            self.cut_packets(key, false, false);
        } else {
            self.ws_process(key, false);
        }
    }

    /// The slab key of a connection this reactor still holds.
    fn key_of(&self, conn: &Arc<Conn>) -> Option<usize> {
        let key = conn.key.load(Ordering::Relaxed);
        self.conns
            .get(key)
            .filter(|lc| Arc::ptr_eq(&lc.conn, conn))
            .map(|_| key)
    }

    /// The pauses asked for a connection before it was read: `enable_delay_receive` until
    /// `confirm`, and a `pause` made before this reactor knew it.
    fn asked_pauses(&self, conn: &Conn) -> u8 {
        let delayed =
            self.shared.config.enable_delay_receive && !conn.confirmed.load(Ordering::Acquire);
        let user_paused = conn.user_paused.load(Ordering::Acquire);
        let delay = if delayed { pause::DELAY } else { 0 };
        delay | if user_paused { pause::USER } else { 0 }
    }

    fn register(&mut self, conn: Arc<Conn>) {
        // Stateless modes read nothing before `on_connect` returns, so no packet overtakes it;
        // a TLS connection is read for its handshake, and gated once that is done.
        // Its `enable_delay_receive` and `pause` wait for the handshake's end too.
        let tls = conn.transport == Transport::Tls;
        let gated = !tls && !self.dispatcher.is_stateful();
        let held = if tls { 0 } else { self.asked_pauses(&conn) };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        conn.key.store(key, Ordering::Relaxed);
        let protocol = ProtocolState::new(&self.protocols[conn.listener]);
        let lc = entry.insert(LocalConn::new(
            conn.clone(),
            protocol,
            if gated { pause::GATE } else { 0 } | held,
        ));
        let (read, write) = lc.registered;
        // The socket stays open while registered: `finalize` deletes it from the poller.
        let added = self.poller.add(conn.fd(), key, read, write);
        if tls {
            self.watch_tls_handshake(key, conn.id);
        } else {
            self.announce(key, gated);
        }
        self.watch_handshake(key, conn.id);
        if let Err(err) = added {
            tracing::error!(conn = conn.id.as_u64(), "cannot watch socket: {err}");
            return self.finalize(key, CloseReason::Error(err.kind()));
        }
        // The connection was in the table before this reactor knew it: catch up with a close
        // or output requested in between (their commands found no key and were dropped).
        // Handed over after this reactor began its shutdown: closed as the others were.
        let requested = conn.out.lock().requested_close().cloned();
        match requested {
            Some(reason) => self.apply_close(key, reason),
            None if self.deadline.is_some() => self.close_after_drain(key, CloseReason::Shutdown),
            None => self.check_output(key),
        }
    }
}
