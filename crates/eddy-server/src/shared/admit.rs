//! Admitting a connection just accepted: its record, with its TLS session and WebSocket send
//! side, in the table (or refused at `max_conn`), placed on a reactor.

use std::sync::{atomic::Ordering, Arc};

use super::server::Shared;
use crate::{
    conn::{Conn, Transport, WsOut},
    net::{PeerAddr, Stream},
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
        self.reactor(reactor).open.fetch_add(1, Ordering::Relaxed);
        Some(conn)
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
