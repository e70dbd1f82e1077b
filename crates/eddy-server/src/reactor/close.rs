//! The one close path, and closes that wait for output to flush or work to finish.

use std::sync::atomic::Ordering;

use super::{local::pause, Reactor};
use crate::{
    conn::{inflight, CloseReason, OutState, Transport},
    shared::Event,
    sys,
};

/// The most unread input a graceful close reads and drops to avoid a reset.
const DISCARD_LIMIT: usize = 256 * 1024;

impl Reactor {
    /// A close the application asked for: `ServerClosed` flushes first, the others now.
    pub(super) fn apply_close(&mut self, key: usize, reason: CloseReason) {
        if reason.flushes_first() {
            self.close_after_drain(key, reason);
        } else {
            self.finalize(key, reason);
        }
    }

    /// Stop reading and close once the output is flushed. For every reason but
    /// `ServerClosed` (which drops what no worker has taken, as Swoole does), the events
    /// already dispatched are handled first, so their replies go out too.
    pub(super) fn close_after_drain(&mut self, key: usize, reason: CloseReason) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        lc.paused |= pause::CLOSING;
        let reason = lc.closing.get_or_insert(reason);
        // A WebSocket close frame owed to the peer waits for the answers in flight (see
        // `check_output`), so this reactor must hear when they are done.
        let notify = !reason.drops_unhandled() || matches!(reason, CloseReason::WebSocket { .. });
        let flags = inflight::DRAINING | if notify { inflight::NOTIFY_IDLE } else { 0 };
        lc.conn.inflight.fetch_or(flags, Ordering::AcqRel);
        self.check_output(key);
    }

    /// The one close path: forget the socket, close it, and see that `on_close` runs once,
    /// after every other event of the connection.
    pub(super) fn finalize(&mut self, key: usize, reason: CloseReason) {
        let Some(lc) = self.conns.try_remove(key) else {
            return;
        };
        self.shared.stats.reactors[self.id]
            .buffered
            .sub(lc.held as u64);
        let conn = lc.conn;
        let _ = self.poller.delete(conn.fd());
        let dropped = {
            let mut out = conn.out.lock();
            out.state = OutState::Closed;
            out.discard()
        };
        match reason {
            CloseReason::ServerReset | CloseReason::HandlerPanic => sys::reset(conn.fd()),
            CloseReason::PeerReset | CloseReason::Error(_) | CloseReason::HeartbeatTimeout => {
                sys::shutdown(conn.fd())
            }
            // A plain read met the peer's FIN: nothing can come after it, so there is no
            // input to drop (a system call saved per connection the peer closes).
            CloseReason::PeerClosed if conn.transport == Transport::Plain => {
                sys::shutdown(conn.fd())
            }
            _ => {
                // Unread input at close makes the kernel send a reset, which can destroy the
                // reply still in flight: read (and drop) what is there first.
                sys::discard_input(conn.fd(), DISCARD_LIMIT);
                sys::shutdown(conn.fd());
            }
        }
        // Atomic: an accepting reactor counts here the connections it could not hand over.
        self.shared.stats.reactors[self.id].closed.add_shared(1);
        self.shared
            .reactor(self.id)
            .open
            .fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(conn = conn.id.as_u64(), %reason, dropped, "connection closed");
        let _ = conn.close_reason.set(Box::new(reason));
        let before = conn.inflight.fetch_or(inflight::CLOSED, Ordering::AcqRel);
        if before & inflight::WEIGHT == 0 {
            let worker = lc.worker.unwrap_or(0);
            self.push(worker, Event::Close(conn));
        }
    }

    /// The shutdown deadline passed: close what is left, drop what no worker took.
    pub(super) fn abandon(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let pending = self.conns[key].conn.out.lock().pending();
            self.report.abandoned_bytes += pending as u64;
            self.finalize(key, CloseReason::Shutdown);
        }
        self.report.abandoned_bytes += self.datagrams.discard() as u64;
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
