//! The supervisor: the thread that called `run`. It accepts connections and spreads them over
//! the reactors, watches for signals, and leads the shutdown.

use std::{
    io::Read,
    os::{fd::AsRawFd, unix::net::UnixStream},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use crate::{
    conn::Conn,
    handle::Shared,
    net::Listener,
    reactor::Command,
    sys::{self, Events},
    ServerHandle,
};

/// Poller key of the signal pipe (listeners use their index).
const SIGNAL_KEY: usize = usize::MAX - 1;
/// At most this many accepts per listener per wake-up, so one busy listener cannot starve
/// signals or the other listeners.
const ACCEPT_BATCH: usize = 64;
/// How long accepting pauses when the process runs out of file descriptors or memory.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(200);

/// SIGTERM and SIGINT, written to a pipe the accept loop watches.
pub(crate) struct Signals {
    rx: UnixStream,
    ids: Vec<signal_hook::SigId>,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Signals> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        let mut ids = Vec::new();
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            ids.push(signal_hook::low_level::pipe::register(
                signal,
                tx.try_clone()?,
            )?);
        }
        Ok(Signals { rx, ids })
    }

    fn drain(&mut self) -> bool {
        let mut buf = [0u8; 16];
        let mut got = false;
        while let Ok(n) = self.rx.read(&mut buf) {
            if n == 0 {
                break;
            }
            got = true;
        }
        got
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Accepts until a shutdown is requested (by a handle or a signal).
pub(crate) struct Acceptor<'a> {
    shared: &'a Arc<Shared>,
    listeners: &'a [Listener],
    signals: Option<Signals>,
    next_reactor: usize,
    last_refusal_log: Option<Instant>,
}

impl<'a> Acceptor<'a> {
    pub(crate) fn new(
        shared: &'a Arc<Shared>,
        listeners: &'a [Listener],
        signals: Option<Signals>,
    ) -> Self {
        Acceptor {
            shared,
            listeners,
            signals,
            next_reactor: 0,
            last_refusal_log: None,
        }
    }

    fn watch_listeners(&self) -> std::io::Result<()> {
        for (key, listener) in self.listeners.iter().enumerate() {
            // Listeners outlive the loop, and are deleted from the poller before it ends.
            self.shared
                .supervisor
                .add(listener.as_raw_fd(), key, true, false)?;
        }
        Ok(())
    }

    fn unwatch_listeners(&self) {
        for listener in self.listeners {
            let _ = self.shared.supervisor.delete(listener.as_raw_fd());
        }
    }

    /// Run the accept loop; returns when a shutdown was requested.
    pub(crate) fn run(mut self) -> std::io::Result<()> {
        let poller = self.shared.supervisor.clone();
        if let Some(signals) = &self.signals {
            // The pipe lives in `self`, which outlives the loop; deleted below.
            poller.add(signals.rx.as_raw_fd(), SIGNAL_KEY, true, false)?;
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
            let due = [paused_until, next_heartbeat].into_iter().flatten().min();
            let timeout = due.map(|t| t.saturating_duration_since(Instant::now()));
            poller.wait(&mut events, timeout)?;
            for ev in events.iter() {
                if ev.key == SIGNAL_KEY {
                    if self.signals.as_mut().is_some_and(Signals::drain) {
                        tracing::info!("signal received: shutting down");
                        self.shared
                            .shutdown_requested
                            .store(true, Ordering::Release);
                    }
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
        }
        if paused_until.is_none() {
            self.unwatch_listeners();
        }
        if let Some(signals) = &self.signals {
            let _ = poller.delete(signals.rx.as_raw_fd());
        }
        Ok(())
    }

    /// Accept what is waiting on one listener. Returns true when the process ran out of a
    /// resource and accepting must pause.
    fn accept_batch(&mut self, index: usize) -> bool {
        let Some(listener) = self.listeners.get(index) else {
            return false;
        };
        for _ in 0..ACCEPT_BATCH {
            match listener.accept(self.shared.config.tcp_nodelay) {
                Ok((stream, peer)) => {
                    let reactor = self.next_reactor;
                    let now = self.shared.now_ms();
                    let conn = self
                        .shared
                        .table
                        .insert(|id| Conn::new(id, stream, reactor, index, peer, now));
                    match conn {
                        Some(conn) => {
                            self.next_reactor = (reactor + 1) % self.shared.reactors.len();
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
