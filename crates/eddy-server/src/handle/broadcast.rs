//! Reaching many connections at once: by user id, or all of them, on this node and, in a
//! cluster, on the others.

use std::sync::Arc;

use crate::{
    conn::{Conn, ConnId, Uid},
    error::{ClusterError, SendError, SendStatus},
    shared::{ServerHandle, SharedMessage},
};

/// Open connections past which a broadcast queues, and leaves the writing to the reactors.
const DEFER_AT: usize = 32;

/// How a message to many connections went: one count per connection of this node it was
/// meant for, and how many other nodes of a cluster took it. A broadcast does not count the
/// WebSocket connections still in their upgrade (it passes them over); a send to a uid or a
/// group counts one as failed ([`SendError::NotEstablished`]), since it was named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// Written to the kernel's socket buffer.
    pub sent: usize,
    /// Waiting in the connection's output buffer (will be flushed).
    pub queued: usize,
    /// Refused: closed, gone, or its output buffer full.
    pub failed: usize,
    /// Other nodes of the cluster the message was published to, each to deliver it to its
    /// own connections (0 on a single node). Counted when Redis handed it to the node's
    /// subscriber; what that node then delivers is in its own stats.
    pub nodes: usize,
    /// Why the part for other nodes was not published, when it had to be (the connections
    /// of this node are counted above either way).
    pub cluster: Option<ClusterError>,
}

impl Delivery {
    /// Whether it reached anyone: a connection here, or another node.
    pub fn reached_anyone(&self) -> bool {
        self.delivered() > 0 || self.nodes > 0
    }

    /// Add the outcome of publishing to the other nodes.
    pub(crate) fn remote(&mut self, published: Result<usize, ClusterError>) {
        match published {
            Ok(nodes) => self.nodes += nodes,
            Err(err) => self.cluster = Some(err),
        }
    }

    fn record(&mut self, result: &Result<SendStatus, SendError>) {
        match result {
            Ok(SendStatus::Sent) => self.sent += 1,
            Ok(SendStatus::Queued { .. }) => self.queued += 1,
            Err(_) => self.failed += 1,
        }
    }

    /// Connections of this node the message reached or will reach.
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

    /// The open connections bound to `uid` (several connections may share one), in no
    /// particular order.
    pub fn uid_connections(&self, uid: &Uid) -> Vec<ConnId> {
        self.shared.uids.get(uid)
    }

    /// Send to every connection bound to `uid`, from any thread or worker. An empty
    /// [`Delivery`] means nobody is bound to it.
    ///
    /// In a cluster (`ServerBuilder::cluster`), a uid bound here is delivered here at once; a
    /// uid bound elsewhere is looked up in presence and published to the channel of the
    /// node(s) that hold it, never to every node ([`Delivery::nodes`]). A uid bound on
    /// several nodes reaches all its connections on all of them: this node learns that a
    /// uid it holds is held elsewhere too when it registers it, or at the latest at its
    /// next heartbeat. The remote part costs one round trip to Redis on the calling thread
    /// (within about twice `command_timeout`, a wait for a free connection then for the
    /// answer; none at all while Redis is known down, when
    /// [`Delivery::cluster`] says [`ClusterError::Unavailable`]).
    pub fn send_to_uid(&self, uid: &Uid, data: impl AsRef<[u8]>) -> Delivery {
        let data = data.as_ref();
        let mut delivery = self.deliver_to_uid(uid, data);
        if let Some(bus) = &self.shared.cluster {
            let here = delivery.sent + delivery.queued + delivery.failed > 0;
            if !here || bus.is_shared(uid) {
                delivery.remote(bus.send_to_uid(uid, data));
            }
        }
        delivery
    }

    /// [`send_to_uid`](Self::send_to_uid) on this node only: what the cluster bus calls for
    /// a message another node published.
    pub(crate) fn deliver_to_uid(&self, uid: &Uid, data: &[u8]) -> Delivery {
        self.deliver_to(self.shared.uids.get(uid), data)
    }

    /// Send `data` to each of `ids` (encoded once), counting each.
    pub(crate) fn deliver_to(
        &self,
        ids: impl IntoIterator<Item = ConnId>,
        data: &[u8],
    ) -> Delivery {
        let mut delivery = Delivery::default();
        let mut message = SharedMessage::new(data);
        for id in ids {
            let result = match self.shared.table.get(id) {
                Some(conn) => self.shared.outlet.send_shared(&conn, &mut message),
                None => Err(SendError::NotFound),
            };
            delivery.record(&result);
        }
        self.count(&delivery, data.len());
        delivery
    }

    /// Send to every open connection, of every node in a cluster. See
    /// [`broadcast_where`](Self::broadcast_where).
    pub fn broadcast(&self, data: impl AsRef<[u8]>) -> Delivery {
        self.broadcast_where(data, |_| true)
    }

    /// Send to every open connection of this node that `filter` accepts, and, in a cluster,
    /// to every connection of every other node: a closure cannot travel, so `filter` decides
    /// only here; the other nodes deliver to all their connections. Published once for all
    /// the other nodes ([`Delivery::nodes`] counts them), each encodes the frame once for
    /// its connections. To reach a chosen set across nodes, put it in a group
    /// ([`send_to_group`](Self::send_to_group)); to stay on this node, use
    /// [`broadcast_local`](Self::broadcast_local).
    pub fn broadcast_where(
        &self,
        data: impl AsRef<[u8]>,
        filter: impl FnMut(&Target<'_>) -> bool,
    ) -> Delivery {
        let data = data.as_ref();
        let mut delivery = self.broadcast_local(data, filter);
        if let Some(bus) = &self.shared.cluster {
            delivery.remote(bus.broadcast(data));
        }
        delivery
    }

    /// Send to every open connection of this node that `filter` accepts (never to other
    /// nodes), from any thread: as it is to framed listeners' connections, as one message of
    /// the default opcode to WebSocket ones (their frame encoded once for the whole
    /// broadcast, except for connections that compress). A WebSocket connection whose
    /// upgrade is not done yet is passed over, and not counted in the [`Delivery`] (Swoole's
    /// broadcast loops test `isEstablished` for the same).
    ///
    /// With a few connections, the bytes are written straight to each socket whose output
    /// buffer is empty and queued behind the others. With more (over 32 open), they are
    /// queued on every connection without a system call, and each reactor is told once to
    /// write its connections' share, in parallel: the call returns in microseconds per
    /// thousand connections, and [`Delivery`] counts them queued. A slow client never blocks
    /// the broadcast, it only counts as queued, or as failed once its buffer is full.
    pub fn broadcast_local(
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
            if !filter(&Target { conn: &conn }) {
                continue;
            }
            let result = self.shared.outlet.send_shared(&conn, &mut message);
            // A WebSocket still in its upgrade is not in the audience yet: neither reached
            // nor refused.
            if !matches!(result, Err(SendError::NotEstablished)) {
                delivery.record(&result);
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
