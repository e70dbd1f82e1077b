//! One message on the bus: a version byte, a bincode header (the sending node and whom the
//! message is for), then the payload as it is. Decoding checks everything and never panics:
//! what another program (or another version) put on a channel is dropped and counted.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::{Deserialize, Serialize};

use crate::conn::Uid;

/// The format's version; a message of another is dropped.
const VERSION: u8 = 1;

/// The largest header accepted (a node id, a uid or a group name, and tags).
const MAX_HEADER: usize = 64 * 1024;

type Wire = Configuration<LittleEndian, Varint, Limit<MAX_HEADER>>;

fn wire() -> Wire {
    config::standard().with_limit::<MAX_HEADER>()
}

/// Whom a message is for, on the node that receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Target {
    /// The connections bound to a uid.
    Uid(WireUid),
    /// The members of a group.
    Group(String),
    /// Every connection.
    All,
}

/// A uid on the wire (`Uid`'s own serde form is untagged, which bincode cannot read back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireUid {
    Int(u64),
    Str(String),
}

impl From<&Uid> for WireUid {
    fn from(uid: &Uid) -> Self {
        match uid {
            Uid::Int(n) => WireUid::Int(*n),
            Uid::Str(s) => WireUid::Str(s.to_string()),
        }
    }
}

impl From<WireUid> for Uid {
    fn from(uid: WireUid) -> Self {
        match uid {
            WireUid::Int(n) => Uid::Int(n),
            WireUid::Str(s) => Uid::from(s),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    from: String,
    target: Target,
}

/// A message read from the bus.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Inbound {
    /// The node that published it.
    pub(crate) from: String,
    pub(crate) target: Target,
    pub(crate) payload: Vec<u8>,
}

/// Why a message from the bus was dropped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Empty, or of another version.
    Version,
    /// The header does not decode.
    Header,
}

/// The bytes to publish for `target` from node `from`; `Err` with the header's length when
/// it is over what a receiver decodes ([`MAX_HEADER`]: a uid or group name of about 64 KiB),
/// which used to be published and dropped by every receiver.
pub(crate) fn encode(
    from: &str,
    target: Target,
    payload: &[u8],
) -> Result<Vec<u8>, HeaderTooLarge> {
    let header = Header {
        from: from.to_string(),
        target,
    };
    let mut out = Vec::with_capacity(payload.len() + from.len() + 32);
    out.push(VERSION);
    // Writing to a Vec cannot fail (the limit is enforced when decoding only).
    let _ = bincode::serde::encode_into_std_write(&header, &mut out, wire());
    let len = out.len() - 1;
    // A receiver counts a little more than the bytes against the limit (each length and
    // tag at its in-memory size), so a long header is checked the way it will be read.
    if len > MAX_HEADER / 2
        && bincode::serde::decode_from_slice::<Header, _>(&out[1..], wire()).is_err()
    {
        return Err(HeaderTooLarge {
            len,
            limit: MAX_HEADER,
        });
    }
    out.extend_from_slice(payload);
    Ok(out)
}

/// A message's header (its uid or group name) is too long for the bus.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeaderTooLarge {
    pub(crate) len: usize,
    pub(crate) limit: usize,
}

/// A message read from a channel.
pub(crate) fn decode(bytes: &[u8]) -> Result<Inbound, Malformed> {
    let (&version, rest) = bytes.split_first().ok_or(Malformed::Version)?;
    if version != VERSION {
        return Err(Malformed::Version);
    }
    let (header, used): (Header, usize) =
        bincode::serde::decode_from_slice(rest, wire()).map_err(|_| Malformed::Header)?;
    let payload = rest.get(used..).ok_or(Malformed::Header)?.to_vec();
    Ok(Inbound {
        from: header.from,
        target: header.target,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for target in [
            Target::Uid(WireUid::Int(7)),
            Target::Uid(WireUid::Str("bob".into())),
            Target::Group("room".into()),
            Target::All,
        ] {
            let bytes = encode("n1", target.clone(), b"hello\n").unwrap();
            let inbound = decode(&bytes).unwrap();
            assert_eq!(inbound.from, "n1");
            assert_eq!(inbound.target, target);
            assert_eq!(inbound.payload, b"hello\n");
        }
        let empty = decode(&encode("n", Target::All, b"").unwrap()).unwrap();
        assert!(empty.payload.is_empty());
        // A group name a receiver would refuse is refused here.
        let long = "g".repeat(MAX_HEADER);
        let refused = encode("n", Target::Group(long), b"x").unwrap_err();
        assert!(refused.len > MAX_HEADER && refused.limit == MAX_HEADER);
        // Under the limit in bytes, over it as a receiver counts: refused too.
        let edge = "g".repeat(MAX_HEADER - 20);
        assert!(encode("n", Target::Group(edge), b"x").is_err());
        let fits = "g".repeat(MAX_HEADER - 64);
        assert!(decode(&encode("n", Target::Group(fits), b"x").unwrap()).is_ok());
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert_eq!(decode(b""), Err(Malformed::Version));
        assert_eq!(decode(b"\x02abc"), Err(Malformed::Version));
        assert_eq!(decode(b"\x01"), Err(Malformed::Header));
        // A huge length prefix must not allocate it.
        assert_eq!(decode(b"\x01\xfc\xff\xff\xff\xff"), Err(Malformed::Header));
        let good = encode("node", Target::Group("g".into()), b"x").unwrap();
        for cut in 0..good.len() - 1 {
            let _ = decode(&good[..cut]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (state % 40) as usize;
            let mut bytes = vec![1u8];
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            let _ = decode(&bytes);
        }
    }
}
