//! Where presence and messages live in Redis, under a namespace `NS` (default `eddy`):
//!
//! | key or channel | type | holds |
//! |---|---|---|
//! | `NS:nodes` | sorted set | node id → when its presence expires (Redis ms) |
//! | `NS:uid:U` | sorted set | node id → when that node's binding of uid `U` expires |
//! | `NS:uids:N` | set | the uids node `N` holds (expires with `N`) |
//! | `NS:groups:N` | hash | group → members on node `N` (expires with `N`) |
//! | `NS:bus:N` | channel | messages for node `N` (its uids and groups) |
//! | `NS:bus` | channel | broadcasts, for every node |
//!
//! Expiry is per key (`PEXPIRE`) and per member (the score, compared with Redis's own
//! clock in the scripts), so Redis 7.0 without per-field TTL is enough, and nodes' clocks
//! need not agree. A uid is written `iN` (integer) or `sTEXT` (string), so `Uid::Int(5)` and
//! `Uid::Str("5")` stay apart.

use crate::conn::Uid;

/// The key and channel names of one node.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `NS:` — the prefix of everything.
    pub(crate) prefix: String,
    /// This node's id.
    pub(crate) node: String,
    /// `NS:nodes`.
    pub(crate) nodes: String,
    /// `NS:uids:NODE`.
    pub(crate) own_uids: String,
    /// `NS:groups:NODE`.
    pub(crate) own_groups: String,
    /// `NS:bus:NODE`.
    pub(crate) own_channel: String,
    /// `NS:bus`.
    pub(crate) broadcast: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str, node: &str) -> Keys {
        let prefix = format!("{namespace}:");
        Keys {
            nodes: format!("{prefix}nodes"),
            own_uids: format!("{prefix}uids:{node}"),
            own_groups: format!("{prefix}groups:{node}"),
            own_channel: format!("{prefix}bus:{node}"),
            broadcast: format!("{prefix}bus"),
            node: node.to_string(),
            prefix,
        }
    }

    /// `NS:uid:U`.
    pub(crate) fn uid(&self, uid: &Uid) -> Vec<u8> {
        let mut key = format!("{}uid:", self.prefix).into_bytes();
        key.extend_from_slice(&encode_uid(uid));
        key
    }

    /// `NS:uid:` — what the scripts prepend to an encoded uid.
    pub(crate) fn uid_prefix(&self) -> String {
        format!("{}uid:", self.prefix)
    }

    /// `NS:uids:` — what the scripts prepend to a node id.
    pub(crate) fn uids_prefix(&self) -> String {
        format!("{}uids:", self.prefix)
    }

    /// `NS:groups:` — what the scripts prepend to a node id.
    pub(crate) fn groups_prefix(&self) -> String {
        format!("{}groups:", self.prefix)
    }

    /// `NS:bus:` — what the scripts prepend to a node id.
    pub(crate) fn channel_prefix(&self) -> String {
        format!("{}bus:", self.prefix)
    }
}

/// A uid as presence writes it.
pub(crate) fn encode_uid(uid: &Uid) -> Vec<u8> {
    match uid {
        Uid::Int(n) => format!("i{n}").into_bytes(),
        Uid::Str(s) => {
            let mut out = Vec::with_capacity(s.len() + 1);
            out.push(b's');
            out.extend_from_slice(s.as_bytes());
            out
        }
    }
}

/// A uid from presence; `None` for anything eddy did not write.
pub(crate) fn decode_uid(raw: &[u8]) -> Option<Uid> {
    let (kind, rest) = raw.split_first()?;
    match kind {
        b'i' => std::str::from_utf8(rest).ok()?.parse().ok().map(Uid::Int),
        b's' => Some(Uid::from(std::str::from_utf8(rest).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_round_trip_and_stay_apart() {
        for uid in [Uid::Int(5), Uid::from("5"), Uid::from(""), Uid::from("a:b")] {
            assert_eq!(decode_uid(&encode_uid(&uid)), Some(uid));
        }
        assert_ne!(encode_uid(&Uid::Int(5)), encode_uid(&Uid::from("5")));
        assert_eq!(decode_uid(b"x1"), None);
        assert_eq!(decode_uid(b"i-1"), None);
        assert_eq!(decode_uid(b""), None);
    }

    #[test]
    fn keys_are_namespaced() {
        let keys = Keys::new("eddy", "n1");
        assert_eq!(keys.uid(&Uid::from("bob")), b"eddy:uid:sbob");
        assert_eq!(keys.own_channel, "eddy:bus:n1");
        assert_eq!(keys.broadcast, "eddy:bus");
    }
}
