//! A TLS connection's session events, as its reads produce them: handshake output to flush,
//! the handshake's end (then `on_connect`), the peer's end of the session, and a handshake
//! that takes too long.

use std::{sync::atomic::Ordering, time::Instant};

use bytes::BytesMut;

use super::{
    local::{pause, LocalConn},
    Reactor,
};
use crate::{
    conn::{CloseReason, ConnId},
    shared::Event,
    tls::{TlsEvents, TlsFailure},
};

impl Reactor {
    /// Act on what a TLS read reported besides plaintext. Returns whether the plaintext just
    /// read is to be cut now; not when the connection closed, or when it must wait for
    /// `on_connect` to return (stateless modes: then it is kept in the connection's buffer,
    /// and cut when the gate opens).
    pub(super) fn tls_progress(
        &mut self,
        key: usize,
        events: TlsEvents,
        from_scratch: bool,
    ) -> bool {
        let mut hold = false;
        let closing = self.conns.get(key).is_some_and(|lc| lc.closing.is_some());
        if events.established && closing {
            // The server closed it during the handshake: what it queued goes out now, then
            // the close; the handler, which never saw it connect, sees nothing of it, and the
            // plaintext that came with the handshake's end is dropped with the rest.
            if let Some(lc) = self.conns.get_mut(key) {
                lc.tls_handshaking = false;
                if from_scratch {
                    self.scratch.clear();
                } else {
                    lc.rbuf.clear();
                }
            }
            self.flush_now(key);
            return false;
        }
        if events.established {
            let asked = self.conns.get(key).map(|lc| self.asked_pauses(&lc.conn));
            if let (Some(lc), Some(asked)) = (self.conns.get_mut(key), asked) {
                lc.tls_handshaking = false;
                let info = lc.conn.out.lock().tls.as_ref().map(|tls| tls.info());
                if let Some(info) = info {
                    let _ = lc.conn.tls_info.set(Box::new(info));
                }
                let gated = !self.dispatcher.is_stateful();
                // The plaintext that came with the handshake's end waits for `on_connect`
                // (stateless modes), `confirm` or `resume`.
                lc.paused |= asked | if gated { pause::GATE } else { 0 };
                hold = gated || asked != 0;
                self.announce(key, gated);
                self.sync_interest(key);
            }
        }
        // The handshake's end frees a queued file (it is not read into the handshake).
        if events.queued || events.established {
            self.flush_now(key);
        }
        let Some(lc) = self.conns.get_mut(key) else {
            if from_scratch {
                self.scratch.clear();
            }
            return false;
        };
        if hold && from_scratch && !self.scratch.is_empty() {
            let mut own = BytesMut::with_capacity(self.scratch.len());
            own.extend_from_slice(&self.scratch);
            self.scratch.clear();
            lc.rbuf = own;
        }
        !hold
    }

    /// Dispatch `on_connect` (held back, on a TLS listener, until the handshake is done).
    pub(super) fn announce(&mut self, key: usize, gated: bool) {
        if let Some(lc) = self.conns.get(key) {
            let conn = lc.conn.clone();
            conn.announced.store(true, Ordering::Release);
            self.deliver(key, Event::Connect { conn, gated });
        }
    }

    /// The session failed on what the peer sent (a bad record, a fatal alert): the alert
    /// rustls queued goes out if the socket takes it, then the connection closes with the
    /// failure as its reason. (Flushed the usual way, a peer that has already gone would
    /// turn it into a reset.)
    pub(super) fn tls_failed(&mut self, key: usize, failure: TlsFailure, from_scratch: bool) {
        if from_scratch {
            self.scratch.clear();
        }
        if let Some(lc) = self.conns.get(key) {
            let _ = lc.conn.out.lock().flush(lc.conn.fd());
        }
        self.finalize(key, CloseReason::Tls(failure));
    }

    /// The peer ended its TLS session: with close_notify (`clean`), or by closing the
    /// connection without it. What it sent is answered first, unless it never got past the
    /// handshake (nothing to answer).
    pub(super) fn tls_ended(&mut self, key: usize, clean: bool) {
        let Some(lc) = self.conns.get(key) else {
            return;
        };
        let reason = if clean {
            CloseReason::PeerClosed
        } else {
            CloseReason::Tls(TlsFailure::Truncated)
        };
        if lc.tls_handshaking {
            self.finalize(key, reason);
        } else {
            self.close_after_drain(key, reason);
        }
    }

    /// Remember when a new TLS connection must have finished its handshake.
    pub(super) fn watch_tls_handshake(&mut self, key: usize, id: ConnId) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let listener = &self.shared.config.listeners[lc.conn.listener];
        if let Some(acceptor) = &listener.tls {
            lc.tls_handshaking = true;
            let timeout = acceptor.handshake_timeout();
            let conns = &self.conns;
            let pending = |key, id| {
                conns
                    .get(key)
                    .is_some_and(|lc: &LocalConn| lc.conn.id == id && lc.tls_handshaking)
            };
            self.tls_handshakes
                .push(timeout, Instant::now(), key, id, pending);
        }
    }

    /// Close the TLS connections whose handshake deadline passed before it finished.
    pub(super) fn expire_tls_handshakes(&mut self, now: Instant) {
        while let Some((key, id)) = self.tls_handshakes.pop_due(now) {
            let late = self
                .conns
                .get(key)
                .is_some_and(|lc| lc.conn.id == id && lc.tls_handshaking);
            if late {
                self.finalize(key, CloseReason::HandshakeTimeout);
            }
        }
    }
}
