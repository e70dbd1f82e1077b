//! The group index: which connections each group holds (`join_group`, `send_to_group`,
//! GatewayWorker's groups). A connection's groups are kept on its record too, under its uid
//! slot lock, so closing it leaves every group it joined, and a join racing with the close
//! cannot leak an entry.

use std::{fmt, sync::Arc};

use dashmap::DashMap;

use super::{
    bus::Watch,
    members::{members_of, remove_member, Members},
};
use crate::{
    conn::{Conn, ConnId},
    error::SendError,
};

/// Group name to the connections in it, from any thread; a cluster bus watches it.
#[derive(Default)]
pub(crate) struct GroupIndex {
    map: DashMap<Arc<str>, Members>,
    watch: Option<Arc<dyn Watch>>,
}

impl fmt::Debug for GroupIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupIndex")
            .field("groups", &self.map.len())
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

impl GroupIndex {
    /// An empty index whose changes `watch` hears of.
    pub(crate) fn new(watch: Option<Arc<dyn Watch>>) -> GroupIndex {
        GroupIndex {
            map: DashMap::new(),
            watch,
        }
    }

    /// The connections in `group` now, in no particular order.
    pub(crate) fn get(&self, group: &str) -> Vec<ConnId> {
        members_of(&self.map, group)
    }

    /// Groups with at least one member.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// How many connections `group` holds here.
    pub(crate) fn count(&self, group: &str) -> usize {
        self.map.get(group).map_or(0, |conns| conns.len())
    }

    /// Every group with a member here, with its member count (for the cluster's resync).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn all(&self) -> Vec<(Arc<str>, usize)> {
        let entries = self.map.iter();
        entries
            .map(|e| (e.key().clone(), e.value().len()))
            .collect()
    }

    /// Put `conn` in `group` (again is a no-op). Refused once the connection is closed.
    pub(crate) fn join(&self, conn: &Conn, group: &str) -> Result<(), SendError> {
        let mut slot = conn.uid_slot();
        if slot.released {
            return Err(SendError::Closed);
        }
        if slot
            .groups
            .iter()
            .flat_map(|g| g.iter())
            .any(|g| &**g == group)
        {
            return Ok(());
        }
        let group: Arc<str> = Arc::from(group);
        slot.groups
            .get_or_insert_with(Box::default)
            .push(group.clone());
        self.map.entry(group.clone()).or_default().insert(conn.id);
        drop(slot);
        self.changed(&group);
        Ok(())
    }

    /// Take `conn` out of `group`; `false` if it was not in it.
    pub(crate) fn leave(&self, conn: &Conn, group: &str) -> bool {
        let mut slot = conn.uid_slot();
        let Some(list) = slot.groups.as_mut() else {
            return false;
        };
        let Some(at) = list.iter().position(|g| &**g == group) else {
            return false;
        };
        let group = list.swap_remove(at);
        if list.is_empty() {
            slot.groups = None;
        }
        self.remove(&group, conn.id);
        drop(slot);
        self.changed(&group);
        true
    }

    /// The connection is gone: it leaves every group for good (before its `on_close`).
    pub(crate) fn release(&self, conn: &Conn) {
        let mut slot = conn.uid_slot();
        slot.released = true;
        let groups = slot.groups.take().map(|list| *list).unwrap_or_default();
        for group in &groups {
            self.remove(group, conn.id);
        }
        drop(slot);
        for group in &groups {
            self.changed(group);
        }
    }

    fn remove(&self, group: &Arc<str>, conn: ConnId) {
        remove_member(&self.map, group, conn);
    }

    fn changed(&self, group: &Arc<str>) {
        if let Some(watch) = &self.watch {
            watch.group_changed(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::net::{PeerAddr, Stream};

    fn conn(slot: u32) -> (Conn, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        let id = ConnId::new(slot, 1);
        (Conn::new(id, Stream::from(a), 0, 0, PeerAddr::Unix, 1), b)
    }

    #[test]
    fn joins_leaves_and_closes_keep_the_index_exact() {
        let index = GroupIndex::default();
        let ((a, _a), (b, _b)) = (conn(1), conn(2));
        index.join(&a, "room").unwrap();
        index.join(&a, "room").unwrap();
        index.join(&b, "room").unwrap();
        index.join(&a, "other").unwrap();
        let mut room = index.get("room");
        room.sort();
        assert_eq!(room, vec![a.id, b.id]);
        assert_eq!(index.count("other"), 1);
        assert!(index.leave(&b, "room"));
        assert!(!index.leave(&b, "room"), "not in it any more");
        index.release(&a);
        assert!(index.map.is_empty(), "closing left every group");
        assert_eq!(index.join(&a, "room"), Err(SendError::Closed));
        assert!(index.map.is_empty(), "a late join leaks nothing");
    }
}
