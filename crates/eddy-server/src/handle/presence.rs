//! Who is online: on this node from the uid index, in a cluster from presence.

use crate::{conn::Uid, error::ClusterError, shared::ServerHandle};

impl ServerHandle {
    /// Whether `uid` is bound to a connection here or, in a cluster, on any node (as
    /// presence says: a node that died stays in it until its presence expires, within
    /// `presence_ttl`). A uid bound here answers at once; one that is not costs a round trip
    /// to Redis. On a single node, always `Ok`.
    pub fn is_uid_online(&self, uid: &Uid) -> Result<bool, ClusterError> {
        if self.shared.uids.contains(uid) {
            return Ok(true);
        }
        match &self.shared.cluster {
            Some(bus) => bus.is_uid_online(uid),
            None => Ok(false),
        }
    }

    /// Distinct uids bound to a connection, here or, in a cluster, on any node (a uid on
    /// two nodes counts once). In a cluster this node's uids count as its presence has them
    /// (a bind is registered within a moment). On a single node, always `Ok`.
    pub fn uid_count(&self) -> Result<usize, ClusterError> {
        match &self.shared.cluster {
            Some(bus) => bus.uid_count(),
            None => Ok(self.shared.uids.len()),
        }
    }

    /// Up to `limit` distinct uids bound here or, in a cluster, on any node, sorted (integer
    /// uids first, in numeric order), for a `/who`. When more are online, which `limit` of
    /// them come back is unspecified.
    pub fn online_uids(&self, limit: usize) -> Result<Vec<Uid>, ClusterError> {
        let mut uids = match &self.shared.cluster {
            Some(bus) => bus.online_uids(limit)?,
            None => self.shared.uids.all(),
        };
        uids.sort();
        uids.truncate(limit);
        Ok(uids)
    }

    /// This node's id in its cluster, if it is a node of one.
    pub fn node_id(&self) -> Option<String> {
        let bus = self.shared.cluster.as_ref()?;
        Some(bus.stats().node_id)
    }
}
