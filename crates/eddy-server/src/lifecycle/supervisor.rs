//! The supervisor: the thread that called `run`. It accepts connections and spreads them over
//! the reactors, watches for signals, and leads the shutdown.

use std::{
    os::fd::AsFd,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use super::{
    roles::Lifecycle,
    signals::{SignalAction, Signals},
};
use crate::{
    conn::{Conn, Transport, WsOut},
    error::panic_message,
    message::CommandTarget,
    net::{Listener, PeerAddr, Stream},
    shared::{Command, ReloadScope, ServerHandle, Shared},
    sys::{self, Events},
};

/// Poller key of the first signal pipe; the others count down from it (listeners use their
/// index).
const SIGNAL_KEY: usize = usize::MAX - 1;
/// At most this many accepts per listener per wake-up, so one busy listener cannot starve
/// signals or the other listeners.
const ACCEPT_BATCH: usize = 64;
/// How long accepting pauses when the process runs out of file descriptors or memory.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(200);

/// Accepts until a shutdown is requested (by a handle or a signal).
pub(crate) struct Acceptor<'a> {
    pub(super) shared: &'a Arc<Shared>,
    listeners: &'a [Option<Listener>],
    signals: Option<Signals>,
    /// The main handler: `on_before_reload` and `on_after_reload` run here.
    main: &'a mut dyn Lifecycle,
    next_reactor: usize,
    last_refusal_log: Option<Instant>,
    /// When the running reload must be over.
    pub(super) reload_deadline: Option<Instant>,
}

impl<'a> Acceptor<'a> {
    pub(crate) fn new(
        shared: &'a Arc<Shared>,
        listeners: &'a [Option<Listener>],
        signals: Option<Signals>,
        main: &'a mut dyn Lifecycle,
    ) -> Self {
        Acceptor {
            shared,
            listeners,
            signals,
            main,
            next_reactor: 0,
            last_refusal_log: None,
            reload_deadline: None,
        }
    }

    fn watch_listeners(&self) -> std::io::Result<()> {
        let streams = self.listeners.iter().enumerate();
        for (key, listener) in streams.filter_map(|(i, l)| Some((i, l.as_ref()?))) {
            // Listeners outlive the loop, and are deleted from the poller before it ends.
            self.shared
                .supervisor
                .add(listener.as_fd(), key, true, false)?;
        }
        Ok(())
    }

    fn unwatch_listeners(&self) {
        for listener in self.listeners.iter().flatten() {
            let _ = self.shared.supervisor.delete(listener.as_fd());
        }
    }

    /// Run the accept loop; returns when a shutdown was requested, with the signal handlers
    /// (kept until the end of the shutdown, for a second SIGINT).
    pub(crate) fn run(mut self) -> (std::io::Result<()>, Option<Signals>) {
        let result = self.serve();
        if let Some(signals) = &self.signals {
            signals.shutting_down();
        }
        (result, self.signals.take())
    }

    fn serve(&mut self) -> std::io::Result<()> {
        let poller = self.shared.supervisor.clone();
        if let Some(signals) = &self.signals {
            // The pipes live in `self`, which outlives the loop; deleted below.
            for (index, (rx, _)) in signals.pipes.iter().enumerate() {
                poller.add(rx.as_fd(), SIGNAL_KEY - index, true, false)?;
            }
        }
        self.watch_listeners()?;
        let mut events = Events::with_capacity(64);
        let mut paused_until: Option<Instant> = None;
        let heartbeat = self.shared.config.heartbeat_check_interval;
        let mut next_heartbeat = heartbeat.map(|every| Instant::now() + every);
        let server = ServerHandle {
            shared: self.shared.clone(),
        };
        while !self.shared.shutdown_requested.load(Ordering::Acquire) {
            // Sleep until something happens or a timer is due: nothing polls in between.
            let due = [paused_until, next_heartbeat, self.reload_deadline]
                .into_iter()
                .flatten()
                .min();
            let timeout = due.map(|t| t.saturating_duration_since(Instant::now()));
            poller.wait(&mut events, timeout)?;
            for ev in events.iter() {
                if ev.key > SIGNAL_KEY - 8 {
                    self.on_signal(SIGNAL_KEY - ev.key);
                } else if paused_until.is_none() && self.accept_batch(ev.key) {
                    tracing::warn!("out of file descriptors or memory: pausing accept");
                    self.unwatch_listeners();
                    paused_until = Some(Instant::now() + EXHAUSTED_PAUSE);
                }
            }
            if paused_until.is_some_and(|t| Instant::now() >= t) {
                paused_until = None;
                self.watch_listeners()?;
            }
            if let (Some(due), Some(every)) = (next_heartbeat, heartbeat) {
                if Instant::now() >= due {
                    server.heartbeat(true);
                    next_heartbeat = Some(Instant::now() + every);
                }
            }
            self.step_reload(&server);
            while let Ok(call) = self.shared.supervisor_commands.1.try_recv() {
                call.run(&server, CommandTarget::Supervisor);
            }
        }
        // Still serving: the application's last word before the shutdown proper.
        self.lifecycle("on_before_shutdown", |main| {
            main.on_before_shutdown(&server)
        });
        if paused_until.is_none() {
            self.unwatch_listeners();
        }
        if let Some(signals) = &self.signals {
            for (rx, _) in &signals.pipes {
                let _ = poller.delete(rx.as_fd());
            }
        }
        if self.reload_deadline.is_some() {
            self.end_reload(&server);
        }
        Ok(())
    }

    /// The signal pipe at `index` is readable: act on its signal.
    fn on_signal(&mut self, index: usize) {
        match self.signals.as_mut().and_then(|s| s.drain(index)) {
            Some(SignalAction::Shutdown) => {
                tracing::info!("signal received: shutting down");
                self.shared
                    .shutdown_requested
                    .store(true, Ordering::Release);
            }
            Some(SignalAction::Reload(scope)) => {
                tracing::info!(?scope, "signal received: reloading");
                let _ = self.shared.reload.request(scope);
                if scope == ReloadScope::All {
                    self.reload_tls();
                }
            }
            None => {}
        }
    }

    /// SIGUSR1: every TLS listener reads its files again (a failure keeps the old ones).
    fn reload_tls(&self) {
        for (index, listener) in self.shared.config.listeners.iter().enumerate() {
            let Some(acceptor) = &listener.tls else {
                continue;
            };
            match acceptor.reload() {
                Ok(()) => tracing::info!(listener = index, "TLS certificates reloaded"),
                Err(err) => tracing::error!(
                    listener = index,
                    "TLS reload failed, keeping the certificates in use: {err}"
                ),
            }
        }
    }

    /// Run a main-handler callback, catching a panic so the supervisor carries on.
    pub(super) fn lifecycle(&mut self, what: &'static str, f: impl FnOnce(&mut dyn Lifecycle)) {
        let main = &mut *self.main;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(main))) {
            tracing::error!(
                callback = what,
                "handler panicked: {}",
                panic_message(&*panic)
            );
        }
    }

    /// Accept what is waiting on one listener. Returns true when the process ran out of a
    /// resource and accepting must pause.
    fn accept_batch(&mut self, index: usize) -> bool {
        let Some(listener) = self.listeners.get(index).and_then(Option::as_ref) else {
            return false;
        };
        for _ in 0..ACCEPT_BATCH {
            match listener.accept(self.shared.config.tcp_nodelay) {
                Ok((stream, peer)) => {
                    let reactor = self.next_reactor;
                    let Some(conn) = self.record(index, reactor, stream, peer) else {
                        continue;
                    };
                    match conn {
                        Some(conn) => {
                            self.next_reactor = (reactor + 1) % self.shared.outlet.reactors().len();
                            self.shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                            self.shared
                                .reactor(reactor)
                                .command(Command::Register(conn));
                        }
                        None => self.refuse(),
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) if sys::is_resource_exhaustion(&err) => return true,
                Err(err) => tracing::debug!("accept failed for one connection: {err}"),
            }
        }
        false
    }

    /// Put a connection just accepted on listener `index` in the table, for `reactor`, with
    /// its TLS session and WebSocket send side: `Some(None)` when `max_conn` refused it,
    /// `None` when no TLS session could start (logged).
    fn record(
        &self,
        index: usize,
        reactor: usize,
        stream: Stream,
        peer: PeerAddr,
    ) -> Option<Option<Arc<Conn>>> {
        let now = self.shared.now_ms();
        let config = &self.shared.config.listeners[index];
        let tls = match config.tls.as_ref().map(|tls| tls.session()).transpose() {
            Ok(tls) => tls.map(Box::new),
            Err(err) => {
                tracing::error!("cannot start a TLS session: {err}");
                return None;
            }
        };
        let websocket = config.protocol.websocket();
        Some(self.shared.table.insert(|id| {
            let mut conn = Conn::new(id, stream, reactor, index, peer, now);
            // Before the record is in the table: no sender ever sees it without.
            if tls.is_some() {
                conn.transport = Transport::Tls;
            }
            let out = conn.out.get_mut();
            out.tls = tls;
            if let Some(ws) = websocket {
                out.ws = Some(Box::new(WsOut::new(ws.default_opcode, ws.ping_idle)));
            }
            conn
        }))
    }

    /// `max_conn` connections are open: the new one was closed (dropping it did that).
    fn refuse(&mut self) {
        self.shared.stats.aborted.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|last| now - last >= Duration::from_secs(1))
        {
            self.last_refusal_log = Some(now);
            tracing::warn!(
                max_conn = self.shared.config.max_conn,
                refused = self.shared.stats.aborted.load(Ordering::Relaxed),
                "max_conn reached: closing new connections"
            );
        }
    }
}
