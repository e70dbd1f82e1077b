//! Groups (GatewayWorker's `joinGroup`, `leaveGroup`, `sendToGroup`,
//! `getClientCountByGroup`): named sets of connections, across the nodes of a cluster.

use crate::{
    conn::ConnId,
    error::{ClusterError, SendError},
    handle::broadcast::Delivery,
    shared::ServerHandle,
};

impl ServerHandle {
    /// Put a connection in a group (a room, a channel); joining again is a no-op. A
    /// connection may be in any number of groups, and leaves them all when it closes
    /// (before its `on_close`). In a cluster, the group spans the nodes: every node's
    /// members receive [`send_to_group`](Self::send_to_group).
    pub fn join_group(&self, conn: ConnId, group: &str) -> Result<(), SendError> {
        self.shared.groups.join(&*self.conn(conn)?, group)
    }

    /// Take a connection out of a group; `Ok(false)` if it was not in it.
    pub fn leave_group(&self, conn: ConnId, group: &str) -> Result<bool, SendError> {
        Ok(self.shared.groups.leave(&*self.conn(conn)?, group))
    }

    /// The connections of this node in `group`, in no particular order.
    pub fn group_connections(&self, group: &str) -> Vec<ConnId> {
        self.shared.groups.get(group)
    }

    /// Connections in `group` on every node: this node's now, the others' as their
    /// presence says. On a single node, always `Ok`.
    pub fn group_count(&self, group: &str) -> Result<usize, ClusterError> {
        let here = self.shared.groups.count(group);
        match &self.shared.cluster {
            Some(bus) => Ok(here + bus.remote_group_count(group)?),
            None => Ok(here),
        }
    }

    /// Send to every connection in `group` but those in `exclude` (ids of this node, e.g.
    /// the sender's), from any thread; the frame is encoded once. In a cluster, published
    /// once to each other node with members in the group, which delivers to its own
    /// ([`Delivery::nodes`]); `exclude` applies on this node only.
    pub fn send_to_group(
        &self,
        group: &str,
        data: impl AsRef<[u8]>,
        exclude: &[ConnId],
    ) -> Delivery {
        let data = data.as_ref();
        let mut delivery = self.deliver_to_group(group, data, exclude);
        if let Some(bus) = &self.shared.cluster {
            delivery.remote(bus.send_to_group(group, data));
        }
        delivery
    }

    /// [`send_to_group`](Self::send_to_group) on this node only.
    pub(crate) fn deliver_to_group(
        &self,
        group: &str,
        data: &[u8],
        exclude: &[ConnId],
    ) -> Delivery {
        let members = self.shared.groups.get(group).into_iter();
        self.deliver_to(members.filter(|id| !exclude.contains(id)), data)
    }
}
