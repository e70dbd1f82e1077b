//! Reaching many connections at once: by user id, or all of them.

use std::sync::Arc;

use dashmap::DashMap;

use crate::{conn::Conn, ConnId, SendError, SendStatus, ServerHandle, Uid};

/// Which connections each uid is bound to (sharded: binds and sends on different uids do not
/// contend).
#[derive(Debug, Default)]
pub(crate) struct UidIndex(DashMap<Uid, Vec<ConnId>>);

impl UidIndex {
    pub(crate) fn insert(&self, uid: Uid, conn: ConnId) {
        let mut conns = self.0.entry(uid).or_default();
        if !conns.contains(&conn) {
            conns.push(conn);
        }
    }

    pub(crate) fn remove(&self, uid: &Uid, conn: ConnId) {
        self.0.remove_if_mut(uid, |_, conns| {
            conns.retain(|c| *c != conn);
            conns.is_empty()
        });
    }

    fn get(&self, uid: &Uid) -> Vec<ConnId> {
        self.0
            .get(uid)
            .map(|conns| conns.clone())
            .unwrap_or_default()
    }
}

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
        conn.bind(None, &self.shared.uids)
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
        for id in self.shared.uids.get(uid) {
            let result = match self.shared.table.get(id) {
                Some(conn) => conn.send(data, &self.shared),
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

    /// Send to every open connection `filter` accepts, from any thread.
    ///
    /// The bytes are written straight to each socket whose output buffer is empty (no copy)
    /// and queued behind the others; a slow client never blocks the broadcast, it only counts
    /// as queued, or as failed once its buffer is full.
    pub fn broadcast_where(
        &self,
        data: impl AsRef<[u8]>,
        mut filter: impl FnMut(&Target<'_>) -> bool,
    ) -> Delivery {
        let data = data.as_ref();
        let mut delivery = Delivery::default();
        let mut next = 0;
        while let Some((slot, conn)) = self.shared.table.next_from(next) {
            next = slot + 1;
            if filter(&Target { conn: &conn }) {
                delivery.record(&conn.send(data, &self.shared));
            }
        }
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::{
        conn::Conn,
        net::{PeerAddr, Stream},
    };

    #[test]
    fn a_released_connection_cannot_rejoin_the_uid_index() {
        let index = UidIndex::default();
        let (a, _b) = UnixStream::pair().unwrap();
        let conn = Conn::new(ConnId::new(1, 1), Stream::Unix(a), 0, 0, PeerAddr::Unix, 1);
        let uid = Uid::from("u");
        conn.bind(Some(uid.clone()), &index).unwrap();
        assert_eq!(index.get(&uid), vec![conn.id]);
        conn.release_uid(&index);
        assert!(index.get(&uid).is_empty());
        // A bind racing with the close comes too late: refused, nothing leaks.
        assert_eq!(conn.bind(Some(uid.clone()), &index), Err(SendError::Closed));
        assert!(index.0.is_empty());
    }
}
