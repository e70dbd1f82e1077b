//! Accepting: every reactor watches the stream listeners (`EPOLLEXCLUSIVE`: a new connection
//! wakes one waiting reactor), accepts, and keeps the connection, with no hop to another
//! thread, unless it holds more than one connection over the least loaded reactor: then it
//! hands the connection over, so connections stay spread evenly.

use std::{
    os::fd::AsFd,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use super::{accepting::Accepting, Reactor};
use crate::{net::Listener, shared::Command, sys};

/// Poller key of listener 0; listener `i` is `LISTENER_KEY + i` (below the datagram keys).
const LISTENER_KEY: usize = usize::MAX / 4;

/// At most this many accepts per listener per wake-up, so one busy listener cannot starve the
/// connections this reactor already has.
const ACCEPT_BATCH: usize = 32;

/// How long accepting pauses when the process runs out of file descriptors or memory.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(200);

/// A reactor keeps what it accepts while it holds at most this many connections more than the
/// least loaded reactor: connections stay spread within a few of even, as round robin would
/// spread them, and a connection moves to another reactor only when they are not.
const SPREAD_SLACK: usize = 1;

impl Reactor {
    /// Start accepting on these listeners.
    pub(super) fn accept_on(&mut self, listeners: Arc<[(usize, Arc<Listener>)]>) {
        if self.deadline.is_some() {
            return;
        }
        self.accepting.listeners = listeners;
        self.watch_listeners();
    }

    fn watch_listeners(&mut self) {
        for (index, listener) in self.accepting.listeners.iter() {
            // Deleted from the poller before this reactor drops its reference.
            if let Err(err) = self
                .poller
                .add_exclusive(listener.as_fd(), LISTENER_KEY + index)
            {
                tracing::error!(
                    reactor = self.id,
                    listener = index,
                    "cannot watch listener: {err}"
                );
            }
        }
        self.accepting.watched = true;
    }

    fn unwatch_listeners(&mut self) {
        if self.accepting.watched {
            for (_, listener) in self.accepting.listeners.iter() {
                let _ = self.poller.delete(listener.as_fd());
            }
            self.accepting.watched = false;
        }
    }

    /// Stop accepting for good (shutdown): the listeners are dropped.
    pub(super) fn stop_accepting(&mut self) {
        self.unwatch_listeners();
        self.accepting = Accepting::default();
    }

    /// The listener a poller key names, if it names one.
    pub(super) fn listener_of(&self, key: usize) -> Option<usize> {
        let index = key.checked_sub(LISTENER_KEY)?;
        self.accepting
            .listeners
            .iter()
            .position(|(i, _)| *i == index)
    }

    /// Accept what waits on the `slot`th listener; `hangup`: the poller said it hung up
    /// (the shutdown stopped it).
    pub(super) fn on_listener(&mut self, slot: usize, hangup: bool) {
        let (index, listener) = self.accepting.listeners[slot].clone();
        let nodelay = self.shared.config.tcp_nodelay;
        for _ in 0..ACCEPT_BATCH {
            match listener.accept(nodelay) {
                Ok((stream, peer)) => {
                    let reactor = self.place();
                    let Some(conn) = self.shared.admit(index, reactor, stream, peer) else {
                        continue;
                    };
                    if reactor == self.id {
                        self.register(conn);
                    } else if !self.shared.may_hand_over() {
                        self.shared.unadmit(&conn);
                    } else {
                        self.shared
                            .reactor(reactor)
                            .command(Command::Register(conn));
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    // A unix listener the shutdown stopped says EAGAIN, not EINVAL, and stays
                    // readable (hung up): stop watching it rather than wake on it until this
                    // reactor hears of the shutdown. (Not on the shutdown flag alone: the
                    // server still accepts while `on_before_shutdown` runs.)
                    if hangup {
                        self.unwatch_listeners();
                    }
                    break;
                }
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    // The shutdown stopped the listener (`Listener::stop`): it stays readable
                    // (hung up) until this reactor hears of the shutdown; stop watching it now.
                    self.unwatch_listeners();
                    break;
                }
                Err(err) if sys::is_resource_exhaustion(&err) => {
                    tracing::warn!(
                        reactor = self.id,
                        "out of file descriptors or memory: pausing accept"
                    );
                    self.unwatch_listeners();
                    self.accepting.paused_until = Some(Instant::now() + EXHAUSTED_PAUSE);
                    break;
                }
                Err(err) => tracing::debug!("accept failed for one connection: {err}"),
            }
        }
    }

    /// Accept again once the pause for exhaustion is over.
    pub(super) fn resume_accepting(&mut self) {
        if self
            .accepting
            .paused_until
            .is_some_and(|at| Instant::now() >= at)
        {
            self.accepting.paused_until = None;
            if self.deadline.is_none() {
                self.watch_listeners();
            }
        }
    }

    /// The reactor a new connection goes to: this one, unless it holds more than one over the
    /// least loaded.
    fn place(&self) -> usize {
        let reactors = self.shared.outlet.reactors();
        let load = |i: usize| reactors[i].open.load(Ordering::Relaxed);
        let mine = load(self.id);
        let (least, fewest) = (0..reactors.len())
            .map(|i| (i, load(i)))
            .min_by_key(|&(_, n)| n)
            .unwrap_or((self.id, mine));
        if mine <= fewest + SPREAD_SLACK {
            self.id
        } else {
            least
        }
    }
}
