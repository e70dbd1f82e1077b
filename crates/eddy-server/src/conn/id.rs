//! Connection ids and user ids.

use std::{
    fmt,
    hash::{BuildHasher, Hasher},
    sync::Arc,
};

/// A connection's id: 64 bits, a table slot plus a generation.
///
/// An id is never given to a second connection while anyone could still hold the first: a
/// slot's generation changes on every reuse, and a slot whose generation would wrap is retired.
/// A call with a stale id fails with [`SendError::NotFound`](crate::SendError::NotFound) even
/// when the operating system reused the file descriptor.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ConnId(u64);

impl ConnId {
    pub(crate) const fn new(slot: u32, generation: u32) -> Self {
        ConnId(((generation as u64) << 32) | slot as u64)
    }

    /// The id as a number, e.g. to put it on the wire.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// An id from a number made by [`ConnId::as_u64`]. Any number is accepted; one that names
    /// no live connection simply finds nothing.
    pub const fn from_u64(raw: u64) -> Self {
        ConnId(raw)
    }

    /// The table slot (stable while the connection lives; reused by later connections).
    pub const fn slot(self) -> u32 {
        self.0 as u32
    }

    #[cfg(test)]
    pub(crate) const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user id bound to connections with `bind` (Swoole's `bind($fd, $uid)`): an integer or a
/// string. Distinct uids never collide: they are compared whole, not by hash.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(untagged)]
pub enum Uid {
    /// A numeric user id.
    Int(u64),
    /// A textual user id.
    Str(Arc<str>),
}

impl Uid {
    /// The number [`DispatchMode::Uid`](crate::DispatchMode::Uid) takes modulo `worker_num`:
    /// the integer itself (as Swoole does), or a fixed hash of the string.
    pub fn dispatch_hash(&self) -> u64 {
        match self {
            Uid::Int(n) => *n,
            Uid::Str(s) => {
                // A fixed-key hasher, so the same uid picks the same worker in every run.
                std::hash::BuildHasherDefault::<FnvHasher>::default().hash_one(s)
            }
        }
    }
}

impl From<u64> for Uid {
    fn from(n: u64) -> Self {
        Uid::Int(n)
    }
}

impl From<&str> for Uid {
    fn from(s: &str) -> Self {
        Uid::Str(s.into())
    }
}

impl From<String> for Uid {
    fn from(s: String) -> Self {
        Uid::Str(s.into())
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uid::Int(n) => n.fmt(f),
            Uid::Str(s) => s.fmt(f),
        }
    }
}

/// FNV-1a: tiny, fixed and good enough to spread ids over workers.
#[derive(Default)]
pub(crate) struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_id_packs_slot_and_generation() {
        let id = ConnId::new(7, 3);
        assert_eq!(id.slot(), 7);
        assert_eq!(id.generation(), 3);
        assert_eq!(ConnId::from_u64(id.as_u64()), id);
        assert_ne!(ConnId::new(7, 4), id);
    }

    #[test]
    fn uid_hash_is_stable_and_distinct_uids_differ() {
        assert_eq!(Uid::from(10u64).dispatch_hash(), 10);
        assert_eq!(
            Uid::from("alice").dispatch_hash(),
            Uid::from("alice").dispatch_hash()
        );
        assert_ne!(Uid::from("alice"), Uid::from("bob"));
    }
}
