//! Flow control and the heartbeat: pause, resume, confirm, protect, idle connections.

use std::sync::atomic::Ordering;

use crate::{
    conn::{inflight, CloseReason, Conn, ConnId, OutState},
    error::SendError,
    shared::ServerHandle,
    sys,
};

/// Whether the client of a quiet connection has in fact sent bytes the server has not read
/// because the server stopped reading it for reasons of its own (a backed-up worker,
/// `max_queued_bytes`, `pause`, `enable_delay_receive`): then it is not idle, as for a
/// WebSocket handshake's deadline. Not when the client is the cause: it does not read its
/// replies (the output's high watermark), or the connection is closing (the application
/// closed it, or the reactor did: its FIN, a bad packet, a protocol close), and a flush its
/// peer never reads is ended here however much it sends.
fn server_paused(conn: &Conn) -> bool {
    let draining = conn.inflight.load(Ordering::Acquire) & inflight::DRAINING != 0;
    !draining
        && !conn.closing.load(Ordering::Acquire)
        && !conn.high_crossed.load(Ordering::Acquire)
        && sys::has_unread_input(conn.fd())
}

impl ServerHandle {
    fn open_conn(&self, conn: ConnId) -> Result<std::sync::Arc<Conn>, SendError> {
        let conn = self.shared.table.get(conn).ok_or(SendError::NotFound)?;
        if !conn.is_open() {
            return Err(SendError::Closed);
        }
        Ok(conn)
    }

    /// Stop reading from a connection (Swoole's `pause`). Packets already read are still
    /// handled and output still flows; nothing more is read until [`resume`](Self::resume).
    pub fn pause(&self, conn: ConnId) -> Result<(), SendError> {
        let conn = self.open_conn(conn)?;
        self.shared.outlet.pause(conn);
        Ok(())
    }

    /// Read from a connection again after [`pause`](Self::pause), or for the first time
    /// after `enable_delay_receive` (Swoole's `resume`; [`confirm`](Self::confirm) is the same).
    pub fn resume(&self, conn: ConnId) -> Result<(), SendError> {
        let conn = self.open_conn(conn)?;
        self.shared.outlet.resume(conn);
        Ok(())
    }

    /// Start reading a connection accepted with `enable_delay_receive` (Swoole's `confirm`).
    pub fn confirm(&self, conn: ConnId) -> Result<(), SendError> {
        self.resume(conn)
    }

    /// Exempt a connection from the heartbeat (`true`) or subject it again (`false`).
    pub fn protect(&self, conn: ConnId, protected: bool) -> Result<(), SendError> {
        let conn = self.open_conn(conn)?;
        conn.protected.store(protected, Ordering::Relaxed);
        Ok(())
    }

    /// The open, unprotected connections that sent nothing for their listener's heartbeat
    /// idle time, and, with `close`, close them through the normal close path (Swoole's
    /// `heartbeat`). Empty when no idle time is configured. A connection the server stopped
    /// reading (a backed-up worker, `max_queued_bytes`, `pause`, `enable_delay_receive`)
    /// whose client sent bytes meanwhile is not idle: they wait, unread, in its socket.
    /// Unread bytes do not spare a client that does not read its replies (paused at the
    /// output's high watermark) nor a closing connection (a close waiting for a flush its
    /// peer does not read).
    ///
    /// With `close`, a WebSocket connection (of a listener whose `ping_idle` is on) quiet for
    /// half its idle time is sent a ping, once: its pong counts as activity, and it is closed
    /// only once that ping went unanswered for half the idle time (never unasked, however
    /// late a pass comes).
    pub fn heartbeat(&self, close: bool) -> Vec<ConnId> {
        let idle: Vec<Option<u64>> = self
            .shared
            .config
            .heartbeat_idle_time
            .iter()
            .map(|idle| idle.map(|d| d.as_millis() as u64))
            .collect();
        if idle.iter().all(Option::is_none) {
            return Vec::new();
        }
        let now = self.shared.now_ms();
        let mut expired = Vec::new();
        let mut next = 0;
        while let Some((slot, conn)) = self.shared.table.next_from(next) {
            next = slot + 1;
            let Some(idle) = idle.get(conn.listener).copied().flatten() else {
                continue;
            };
            // Both stamps are on the coarse clock: idleness is known to within a tick (1–10 ms).
            let last_recv = conn.last_recv.load(Ordering::Relaxed);
            let quiet = now.saturating_sub(last_recv);
            if quiet < idle / 2 || conn.protected.load(Ordering::Relaxed) {
                continue;
            }
            // A WebSocket half-way to its idle time is pinged; its pong is activity.
            let may_close = !close || self.shared.outlet.keepalive(&conn, now, last_recv, idle);
            if quiet < idle || !may_close {
                continue;
            }
            let state = conn.out.lock().state;
            if state == OutState::Closed {
                continue;
            }
            if state == OutState::Open && server_paused(&conn) {
                continue;
            }
            if !close
                || self
                    .shared
                    .outlet
                    .close(&conn, CloseReason::HeartbeatTimeout)
                    .is_ok()
            {
                expired.push(conn.id);
            }
        }
        if close && !expired.is_empty() {
            tracing::info!(closed = expired.len(), "heartbeat: closed idle connections");
        }
        expired
    }
}
