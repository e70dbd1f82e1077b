//! Reaching many connections at once: by user id, or all of them.

use std::sync::Arc;

use crate::{
    conn::{Conn, ConnId, Uid},
    error::{SendError, SendStatus},
    shared::{ServerHandle, SharedMessage},
};

/// Open connections past which a broadcast queues, and leaves the writing to the reactors.
const DEFER_AT: usize = 32;

/// How a message to many connections went: one count per connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// Written to the kernel's socket buffer.
    pub sent: usize,
    /// Waiting in the connection's output buffer (will be flushed).
    pub queued: usize,
    /// Refused: closed, gone, or its output buffer full.
    pub failed: usize,
}

impl Delivery {
    fn record(&mut self, result: &Result<SendStatus, SendError>) {
        match result {
            Ok(SendStatus::Sent) => self.sent += 1,
            Ok(SendStatus::Queued { .. }) => self.queued += 1,
            Err(_) => self.failed += 1,
        }
    }

    /// Connections the message reached or will reach.
    pub fn delivered(&self) -> usize {
        self.sent + self.queued
    }
}

/// A connection a broadcast is about to reach, for its filter.
#[derive(Debug)]
pub struct Target<'a> {
    conn: &'a Arc<Conn>,
}

impl Target<'_> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.conn.id
    }

    /// The index of the listener that accepted it.
    pub fn listener(&self) -> usize {
        self.conn.listener
    }

    /// The uid it is bound to, if any.
    pub fn uid(&self) -> Option<Uid> {
        self.conn.uid()
    }

    /// Whether it is bound to a uid.
    pub fn is_bound(&self) -> bool {
        self.conn
            .uid_bound
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

impl ServerHandle {
    /// Bind no uid any more (see [`bind`](Self::bind)).
    pub fn unbind(&self, conn: ConnId) -> Result<(), SendError> {
        let conn = self.shared.table.get(conn).ok_or(SendError::NotFound)?;
        self.shared.uids.bind(&conn, None)
    }

    /// The open connections bound to `uid` (several connections may share one).
    pub fn uid_connections(&self, uid: &Uid) -> Vec<ConnId> {
        self.shared.uids.get(uid)
    }

    /// Send to every connection bound to `uid`, from any thread or worker. An empty
    /// [`Delivery`] means nobody is bound to it.
    pub fn send_to_uid(&self, uid: &Uid, data: impl AsRef<[u8]>) -> Delivery {
        let data = data.as_ref();
        let mut delivery = Delivery::default();
        let mut message = SharedMessage::new(data);
        for id in self.shared.uids.get(uid) {
            let result = match self.shared.table.get(id) {
                Some(conn) => self.shared.outlet.send_shared(&conn, &mut message),
                None => Err(SendError::NotFound),
            };
            delivery.record(&result);
        }
        self.count(&delivery, data.len());
        delivery
    }

    /// Send to every open connection. See [`broadcast_where`](Self::broadcast_where).
    pub fn broadcast(&self, data: impl AsRef<[u8]>) -> Delivery {
        self.broadcast_where(data, |_| true)
    }

    /// Send to every open connection `filter` accepts, from any thread: as it is to framed
    /// listeners' connections, as one message of the default opcode to WebSocket ones (their
    /// frame encoded once for the whole broadcast, except for connections that compress).
    ///
    /// With a few connections, the bytes are written straight to each socket whose output
    /// buffer is empty and queued behind the others. With more (over 32 open), they are
    /// queued on every connection without a system call, and each reactor is told once to
    /// write its connections' share, in parallel: the call returns in microseconds per
    /// thousand connections, and [`Delivery`] counts them queued. A slow client never blocks
    /// the broadcast, it only counts as queued, or as failed once its buffer is full.
    pub fn broadcast_where(
        &self,
        data: impl AsRef<[u8]>,
        mut filter: impl FnMut(&Target<'_>) -> bool,
    ) -> Delivery {
        let data = data.as_ref();
        let mut delivery = Delivery::default();
        // Past a few connections the bytes are queued, and the reactors write them.
        let many = self.shared.table.len() > DEFER_AT;
        let mut message = match many {
            true => SharedMessage::deferred(data, &self.shared.outlet),
            false => SharedMessage::new(data),
        };
        let mut next = 0;
        while let Some((slot, conn)) = self.shared.table.next_from(next) {
            next = slot + 1;
            if filter(&Target { conn: &conn }) {
                delivery.record(&self.shared.outlet.send_shared(&conn, &mut message));
            }
        }
        // Dropping it tells the reactors.
        drop(message);
        self.count(&delivery, data.len());
        delivery
    }

    fn count(&self, delivery: &Delivery, len: usize) {
        let sends = delivery.delivered();
        self.shared
            .stats
            .other
            .count_shared_responses(sends, sends * len);
    }
}
