//! Admitting a connection just accepted: its record, with its TLS session and WebSocket send
//! side, in the table (or refused at `max_conn`), placed on a reactor.

use std::sync::{atomic::Ordering, Arc};

use super::server::Shared;
use crate::{
    conn::{Conn, OutState, Transport, WsOut},
    net::{PeerAddr, Stream},
    sys,
};

impl Shared {
    /// Put a connection just accepted on listener `index` in the table, owned by `reactor`.
    /// `None` when `max_conn` connections are open (it is closed and counted, and the refusal
    /// logged at most once a second) or its TLS session cannot start (logged).
    pub(crate) fn admit(
        &self,
        index: usize,
        reactor: usize,
        stream: Stream,
        peer: PeerAddr,
    ) -> Option<Arc<Conn>> {
        let now = self.now_ms();
        let config = &self.config.listeners[index];
        let tls = match config.tls.as_ref().map(|tls| tls.session()).transpose() {
            Ok(tls) => tls.map(Box::new),
            Err(err) => {
                tracing::error!("cannot start a TLS session: {err}");
                return None;
            }
        };
        let websocket = config.protocol.websocket();
        let conn = self.table.insert(|id| {
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
        });
        let Some(conn) = conn else {
            self.refused(now);
            return None;
        };
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        // SeqCst, with `reactors_stopping` and the reactor's exit check: a reactor that got
        // the shutdown sees every connection counted before an accepting reactor found the
        // flag unset, and so waits for its `Register`; one counted after is `unadmit`ted.
        self.reactor(reactor).open.fetch_add(1, Ordering::SeqCst);
        Some(conn)
    }

    /// Undo `admit` for a connection no reactor will register (the shutdown began while it
    /// was handed over): closed at once, with no `on_connect` and no `on_close`.
    pub(crate) fn unadmit(&self, conn: &Conn) {
        conn.out.lock().state = OutState::Closed;
        sys::shutdown(conn.fd());
        self.table.remove(conn.id);
        // Another reactor's counter (the one it was meant for), written by both: atomic.
        self.stats.reactors[conn.reactor].closed.add_shared(1);
        let reactor = self.reactor(conn.reactor);
        reactor.open.fetch_sub(1, Ordering::SeqCst);
        // It may be waiting for this connection to leave before it exits.
        reactor.poller.notify();
    }

    /// Whether a connection accepted now and counted on another reactor may be handed to
    /// it: not once the reactors are being stopped (it may have exited). While
    /// `on_before_shutdown` runs it may: the server still serves new connections then.
    pub(crate) fn may_hand_over(&self) -> bool {
        !self.reactors_stopping.load(Ordering::SeqCst)
    }

    /// `max_conn` connections are open: the new one was closed (dropping it did that).
    fn refused(&self, now: u64) {
        let refused = self.stats.aborted.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.stats.refusal_logged.load(Ordering::Relaxed);
        let due = last == 0 || now + 1 >= last + 1000;
        if due
            && self
                .stats
                .refusal_logged
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_conn = self.config.max_conn,
                refused,
                "max_conn reached: closing new connections"
            );
        }
    }
}
