//! The connections one uid or one group holds.

use std::{collections::HashSet, hash::BuildHasherDefault};

use dashmap::DashMap;

use crate::conn::{ConnId, FnvHasher};

/// A set of connections: joining and leaving cost the same however many there are. (A
/// `Vec` made each leave a scan, so a mass disconnect of a 100,000-member group was
/// quadratic, under the map shard's lock every send and join to its groups waits on.)
#[derive(Debug, Default)]
pub(crate) struct Members(HashSet<ConnId, BuildHasherDefault<FnvHasher>>);

impl Members {
    /// Add `conn`; `false` if it was a member already.
    pub(crate) fn insert(&mut self, conn: ConnId) -> bool {
        self.0.insert(conn)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The members now, in no particular order.
    pub(crate) fn to_vec(&self) -> Vec<ConnId> {
        self.0.iter().copied().collect()
    }
}

/// Take `conn` out of `key`'s members, and the entry out of the map once it has none.
pub(crate) fn remove_member<K>(map: &DashMap<K, Members>, key: &K, conn: ConnId)
where
    K: Eq + std::hash::Hash,
{
    map.remove_if_mut(key, |_, members| {
        members.0.remove(&conn);
        if members.0.capacity() > 4 * members.0.len().max(8) {
            // A group that emptied out gives its memory back.
            members.0.shrink_to_fit();
        }
        members.0.is_empty()
    });
}

/// `key`'s members now, in no particular order.
pub(crate) fn members_of<K, Q>(map: &DashMap<K, Members>, key: &Q) -> Vec<ConnId>
where
    K: Eq + std::hash::Hash + std::borrow::Borrow<Q>,
    Q: Eq + std::hash::Hash + ?Sized,
{
    map.get(key).map(|m| m.to_vec()).unwrap_or_default()
}
