//! The uid index: which connections each user id is bound to (`bind`, `send_to_uid`).

use std::{
    fmt,
    sync::{atomic::Ordering, Arc},
};

use dashmap::DashMap;

use super::{
    bus::Watch,
    members::{members_of, remove_member, Members},
};
use crate::{
    conn::{Conn, ConnId, Uid},
    error::SendError,
};

/// Uid to the connections bound to it, from any thread; a cluster bus watches it.
#[derive(Default)]
pub(crate) struct UidIndex {
    map: DashMap<Uid, Members>,
    watch: Option<Arc<dyn Watch>>,
}

impl fmt::Debug for UidIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UidIndex")
            .field("uids", &self.map.len())
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

impl UidIndex {
    /// An empty index whose changes `watch` hears of.
    pub(crate) fn new(watch: Option<Arc<dyn Watch>>) -> UidIndex {
        UidIndex {
            map: DashMap::new(),
            watch,
        }
    }

    fn insert(&self, uid: Uid, conn: ConnId) {
        self.map.entry(uid).or_default().insert(conn);
    }

    fn remove(&self, uid: &Uid, conn: ConnId) {
        remove_member(&self.map, uid, conn);
    }

    fn changed(&self, uid: &Uid) {
        if let Some(watch) = &self.watch {
            watch.uid_changed(uid);
        }
    }

    /// Distinct uids bound to at least one connection.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every uid bound now, unsorted.
    pub(crate) fn all(&self) -> Vec<Uid> {
        self.map.iter().map(|entry| entry.key().clone()).collect()
    }

    /// Whether any connection is bound to `uid`.
    pub(crate) fn contains(&self, uid: &Uid) -> bool {
        self.map.contains_key(uid)
    }

    /// The connections bound to `uid` now, in no particular order.
    pub(crate) fn get(&self, uid: &Uid) -> Vec<ConnId> {
        members_of(&self.map, uid)
    }

    /// Bind `conn` to `uid` (or unbind it with `None`), keeping the index in step. The
    /// connection's uid lock is held across the index update, so concurrent binds of one
    /// connection cannot leave the index pointing at a uid it no longer has; once the
    /// connection is released (closed), binding fails, so a late bind cannot leak an entry.
    pub(crate) fn bind(&self, conn: &Conn, uid: Option<Uid>) -> Result<(), SendError> {
        let mut slot = conn.uid_slot();
        if slot.released {
            return Err(SendError::Closed);
        }
        let old = slot.uid.take();
        if let Some(old) = &old {
            self.remove(old, conn.id);
        }
        match &uid {
            Some(uid) => {
                self.insert(uid.clone(), conn.id);
                conn.uid_hash.store(uid.dispatch_hash(), Ordering::Relaxed);
                conn.uid_bound.store(true, Ordering::Release);
            }
            None => conn.uid_bound.store(false, Ordering::Release),
        }
        slot.uid.clone_from(&uid);
        drop(slot);
        for changed in [old, uid].iter().flatten() {
            self.changed(changed);
        }
        Ok(())
    }

    /// The connection is gone: it leaves the index for good (before its `on_close` runs, so
    /// nobody looking a uid up from then on finds it). Its uid stays on the record, for
    /// `client_info` inside `on_close`.
    pub(crate) fn release(&self, conn: &Conn) {
        let mut slot = conn.uid_slot();
        slot.released = true;
        if let Some(old) = &slot.uid {
            self.remove(old, conn.id);
        }
        conn.uid_bound.store(false, Ordering::Release);
        let old = slot.uid.clone();
        drop(slot);
        if let Some(old) = &old {
            self.changed(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::net::{PeerAddr, Stream};

    #[test]
    fn a_released_connection_cannot_rejoin_the_uid_index() {
        let index = UidIndex::default();
        let (a, _b) = UnixStream::pair().unwrap();
        let conn = Conn::new(ConnId::new(1, 1), Stream::from(a), 0, 0, PeerAddr::Unix, 1);
        let uid = Uid::from("u");
        index.bind(&conn, Some(uid.clone())).unwrap();
        assert_eq!(index.get(&uid), vec![conn.id]);
        index.release(&conn);
        assert!(index.get(&uid).is_empty());
        // A bind racing with the close comes too late: refused, nothing leaks.
        assert_eq!(index.bind(&conn, Some(uid.clone())), Err(SendError::Closed));
        assert!(index.map.is_empty());
    }
}
