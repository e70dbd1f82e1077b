//! The uid index: which connections each user id is bound to (`bind`, `send_to_uid`).

use std::sync::atomic::Ordering;

use dashmap::DashMap;

use crate::{
    conn::{Conn, ConnId, Uid},
    error::SendError,
};

/// Uid to the connections bound to it, from any thread.
#[derive(Debug, Default)]
pub(crate) struct UidIndex(DashMap<Uid, Vec<ConnId>>);

impl UidIndex {
    fn insert(&self, uid: Uid, conn: ConnId) {
        let mut conns = self.0.entry(uid).or_default();
        if !conns.contains(&conn) {
            conns.push(conn);
        }
    }

    fn remove(&self, uid: &Uid, conn: ConnId) {
        self.0.remove_if_mut(uid, |_, conns| {
            conns.retain(|c| *c != conn);
            conns.is_empty()
        });
    }

    /// The connections bound to `uid` now.
    pub(crate) fn get(&self, uid: &Uid) -> Vec<ConnId> {
        self.0
            .get(uid)
            .map(|conns| conns.clone())
            .unwrap_or_default()
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
        if let Some(old) = slot.uid.take() {
            self.remove(&old, conn.id);
        }
        match &uid {
            Some(uid) => {
                self.insert(uid.clone(), conn.id);
                conn.uid_hash.store(uid.dispatch_hash(), Ordering::Relaxed);
                conn.uid_bound.store(true, Ordering::Release);
            }
            None => conn.uid_bound.store(false, Ordering::Release),
        }
        slot.uid = uid;
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
        assert!(index.0.is_empty());
    }
}
