//! What the uid and group indexes tell a cluster bus (`Watch`), and what `stats()` shows
//! of it. The rest of the bus's seam (`ClusterBus`) is in `server.rs`, beside the `Shared`
//! state that holds it; the bus itself (Redis pub/sub and presence keys) is the `cluster`
//! module, layers above.

use std::sync::Arc;

use crate::conn::Uid;

/// Told by the indexes when this node's members change, so presence follows. Each call
/// returns at once (the bus queues the change).
pub(crate) trait Watch: Send + Sync {
    /// A uid's bindings on this node changed (bound, unbound, closed).
    fn uid_changed(&self, uid: &Uid);
    /// A group's members on this node changed (joined, left, closed).
    fn group_changed(&self, group: &Arc<str>);
}

/// Whether the node can reach the cluster's Redis now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClusterState {
    /// Connected: remote sends are published, presence is kept.
    Up,
    /// Not connected (never yet, or lost): remote sends fail at once with
    /// [`ClusterError::Unavailable`](crate::ClusterError::Unavailable); local delivery goes
    /// on; the bus reconnects with back-off and then registers this node's presence again.
    Down,
}

/// The cluster bus of a node, in [`Stats::cluster`](crate::Stats::cluster).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterStats {
    /// This node's id (`ClusterConfig::node_id`).
    pub node_id: String,
    /// Whether Redis is reachable for publishing and presence.
    pub state: ClusterState,
    /// Whether the subscriber is subscribed (it receives what others publish).
    pub subscribed: bool,
    /// Messages this node published (one per node reached for a uid or a group, one per
    /// broadcast).
    pub published: u64,
    /// Remote parts that could not be published (Redis unavailable, too large, a name too
    /// long, refused).
    pub publish_failed: u64,
    /// Messages the subscriber read on this node's own channel (sends to its uids and groups).
    pub received_direct: u64,
    /// Broadcasts from other nodes the subscriber read.
    pub received_broadcast: u64,
    /// Connections on this node that messages from the bus were delivered to.
    pub delivered: u64,
    /// Messages from the bus dropped: the delivery queue was full (a slow node), or the
    /// message was undecodable or over `max_message_bytes`. Each drop is logged.
    pub dropped: u64,
    /// Presence updates dropped because their queue was full while Redis was up (while it
    /// is down the queue is not drained, and the reconnection resyncs everything); a full
    /// resync follows.
    pub presence_dropped: u64,
    /// Connections to Redis re-established after a loss.
    pub reconnects: u64,
    /// Uids bound here that another node holds too (a send to one of them is also
    /// published to the others).
    pub shared_uids: usize,
}
