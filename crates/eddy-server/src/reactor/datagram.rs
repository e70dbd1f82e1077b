//! The datagram listeners a reactor owns: read a batch at a time (`recvmmsg`) into shared
//! blocks, one event per datagram to the worker its peer maps to (or, in reactor mode, to the
//! handler right here, its replies sent together with `sendmmsg`); flush `sendto`'s queue
//! when the socket has room. A worker that cannot keep up loses datagrams (counted), as the
//! network would: nothing waits for it and nothing else slows down.

use std::{
    io,
    os::fd::AsFd,
    sync::atomic::Ordering::Relaxed,
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use crossbeam_channel::TrySendError;

use super::{
    datagrams::{UNIX_RETRY, UNIX_RETRY_MAX},
    deliver::Workers,
    Reactor,
};
use crate::{
    net::{PacketInfo, PacketPeer},
    shared::{Datagram, DatagramPort, Event},
};

/// Poller keys of datagram sockets start here (connections use slab keys from 0).
const DATAGRAM_KEY: usize = usize::MAX / 2;

/// Batches read per readiness, so one busy socket cannot starve the others.
const BATCHES_PER_WAKE: usize = 8;

impl Reactor {
    /// Watch this reactor's datagram sockets.
    pub(super) fn watch_datagrams(&mut self) -> io::Result<()> {
        for (i, port) in self.datagrams.ports.iter().enumerate() {
            // The port lives as long as the server; deleted from the poller at exit.
            self.poller
                .add(port.socket.as_fd(), DATAGRAM_KEY + i, true, false)?;
        }
        Ok(())
    }

    /// The datagram port a poller key names, if it names one.
    pub(super) fn datagram_of(&self, key: usize) -> Option<usize> {
        key.checked_sub(DATAGRAM_KEY)
            .filter(|i| *i < self.datagrams.ports.len())
    }

    /// Readiness of datagram port `i`.
    pub(super) fn on_datagram(&mut self, i: usize, readable: bool, writable: bool) {
        if writable {
            self.flush_datagrams(i);
        }
        if readable && !self.datagrams.stopped {
            for _ in 0..BATCHES_PER_WAKE {
                if self.read_batch(i) == 0 {
                    break;
                }
            }
        }
    }

    /// `sendto` queued on the port of `listener`: flush what fits now, watch for the rest.
    pub(super) fn datagram_output(&mut self, listener: usize) {
        let found = self
            .datagrams
            .ports
            .iter()
            .position(|p| p.listener == listener);
        if let Some(i) = found {
            self.datagrams.retry_delay = UNIX_RETRY;
            self.flush_datagrams(i);
        }
    }

    /// Flush port `i`'s queue; what is left waits for writability (UDP) or a retry (unix).
    fn flush_datagrams(&mut self, i: usize) {
        let port = &self.datagrams.ports[i];
        let sent = port.counters.sent.load(Relaxed);
        let empty = port.flush();
        let wait_writable = !empty && port.socket.signals_writable();
        // A flush that sent something starts the back-off over: a peer that reads slowly is
        // retried at the short interval, one that stopped reading backs off.
        if port.counters.sent.load(Relaxed) != sent {
            self.datagrams.retry_delay = UNIX_RETRY;
        }
        if !empty && !wait_writable {
            let retry = Instant::now() + self.datagrams.retry_delay;
            let at = self.datagrams.retry_at.map_or(retry, |t| t.min(retry));
            self.datagrams.retry_at = Some(at);
        }
        if wait_writable != self.datagrams.writing[i] {
            self.datagram_interest(i, wait_writable);
        }
    }

    /// When unix datagram queues are to be retried.
    pub(super) fn datagram_retry(&self) -> Option<Instant> {
        self.datagrams.retry_at
    }

    /// Retry the unix datagram queues, once their time has come.
    pub(super) fn retry_datagrams(&mut self) {
        if self.datagrams.retry_at.is_some_and(|t| Instant::now() >= t) {
            self.datagrams.retry_at = None;
            // The next retry, if this one sends nothing and leaves a queue waiting, comes
            // later (see `flush_datagrams`).
            self.datagrams.retry_delay = (self.datagrams.retry_delay * 2).min(UNIX_RETRY_MAX);
            for i in 0..self.datagrams.ports.len() {
                if !self.datagrams.ports[i].socket.signals_writable() {
                    self.flush_datagrams(i);
                }
            }
        }
    }

    /// Stop reading datagrams (a shutdown); queued ones are still flushed.
    pub(super) fn stop_datagrams(&mut self) {
        self.datagrams.stopped = true;
        for i in 0..self.datagrams.ports.len() {
            let write = self.datagrams.writing[i];
            self.datagram_interest(i, write);
        }
    }

    /// Forget the datagram sockets (the reactor exits).
    pub(super) fn unwatch_datagrams(&mut self) {
        for port in &self.datagrams.ports {
            let _ = self.poller.delete(port.socket.as_fd());
        }
    }

    fn datagram_interest(&mut self, i: usize, write: bool) {
        let d = &mut self.datagrams;
        d.writing[i] = write;
        let fd = d.ports[i].socket.as_fd();
        if let Err(err) = self.poller.modify(fd, DATAGRAM_KEY + i, !d.stopped, write) {
            tracing::error!(listener = d.ports[i].listener, "cannot watch socket: {err}");
        }
    }

    /// Read one batch from port `i` and dispatch it; returns how many datagrams came.
    fn read_batch(&mut self, i: usize) -> usize {
        let port = self.datagrams.ports[i].clone();
        let mut received = std::mem::take(&mut self.datagrams.received);
        received.clear();
        let n = match port
            .socket
            .recv_batch(&mut self.datagrams.block, &mut received)
        {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(listener = port.listener, "datagram read failed: {err}");
                0
            }
        };
        let now = SystemTime::now();
        port.counters.received.fetch_add(n as u64, Relaxed);
        // Answered here, a batch's replies go out together (see `DatagramPort::cork`).
        let corked = self.inline.is_some() && n > 1;
        if corked {
            port.cork();
        }
        let mut at = 0;
        for r in received.drain(..) {
            // Copied out: a kept datagram must not pin the whole receive block.
            let data = Bytes::copy_from_slice(&self.datagrams.block[at..at + r.len]);
            at += r.len;
            if r.truncated {
                port.counters.oversized.fetch_add(1, Relaxed);
                tracing::debug!(listener = port.listener, "datagram over 64 KiB dropped");
                continue;
            }
            let info = PacketInfo {
                listener: port.listener,
                server_port: self.datagrams.server_ports[i],
                peer: r.peer,
                received: now,
            };
            self.deliver_datagram(&port, Datagram { data, info });
        }
        self.datagrams.block.clear();
        self.datagrams.received = received;
        if corked {
            port.uncork();
            self.flush_datagrams(i);
        }
        n
    }

    /// Hand a datagram to the worker its peer maps to; a full queue drops it.
    fn deliver_datagram(&mut self, port: &DatagramPort, datagram: Datagram) {
        let load = Workers(&self.shared.workers);
        let worker = self
            .dispatcher
            .pick_datagram(peer_hash(&datagram.info.peer), &load);
        let event = Event::Packet(Box::new(datagram));
        if let Some(inline) = &mut self.inline {
            return inline.handle(event);
        }
        match self.inboxes[worker].try_send(event) {
            Ok(()) => self.handed(worker),
            Err(TrySendError::Full(_)) => {
                port.counters.inbox_full.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The hash the stateful modes map a datagram peer with.
pub(crate) fn peer_hash(peer: &PacketPeer) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::conn::FnvHasher::default();
    peer.hash(&mut h);
    h.finish()
}
