use std::{fmt, marker::PhantomData};

use serde::{de::DeserializeOwned, Serialize};

use crate::{Codec, DecodeState, Decoded, FrameError, LengthCodec};

/// The most bytes a typed message may make bincode allocate while decoding, whatever its
/// bytes claim: garbage cannot exhaust memory.
pub const MAX_MESSAGE_ALLOCATION: usize = 64 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_MESSAGE_ALLOCATION>,
>;

const CONFIG: Config = bincode::config::standard().with_limit::<MAX_MESSAGE_ALLOCATION>();

/// Why a typed message could not be encoded or decoded.
#[derive(Debug)]
#[non_exhaustive]
pub enum MessageError {
    /// The packet's framing is wrong (not a whole packet).
    Frame(FrameError),
    /// The body is not a valid encoding of the message type.
    Decode(bincode::error::DecodeError),
    /// The value could not be encoded.
    Encode(bincode::error::EncodeError),
    /// The body decoded to a message but bytes were left over.
    TrailingBytes(usize),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Frame(err) => write!(f, "bad message frame: {err}"),
            MessageError::Decode(err) => write!(f, "cannot decode message: {err}"),
            MessageError::Encode(err) => write!(f, "cannot encode message: {err}"),
            MessageError::TrailingBytes(n) => write!(f, "{n} bytes left after the message"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Typed messages: each packet is a `u32` big-endian length and a bincode-encoded `T` (serde,
/// bincode 2 standard configuration).
///
/// As a [`Codec`] it frames packets (so a server hands each whole message to `on_receive`);
/// [`decode_message`](Self::decode_message) and [`encode_message`](Self::encode_message) turn
/// packets into values and back, on a server or in a Rust client. Decoding garbage is an
/// error, never a panic, and never allocates more than [`MAX_MESSAGE_ALLOCATION`].
///
/// ```
/// use eddy_codec::TypedCodec;
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// enum Request { Get { key: String }, Quit }
///
/// let codec = TypedCodec::<Request>::new();
/// let mut packet = Vec::new();
/// codec.encode_message(&Request::Get { key: "a".into() }, &mut packet)?;
/// assert_eq!(codec.decode_message(&packet)?, Request::Get { key: "a".into() });
/// assert!(codec.decode_message(b"\0\0\0\x01\x09").is_err());
/// # Ok::<(), eddy_codec::MessageError>(())
/// ```
pub struct TypedCodec<T> {
    frame: LengthCodec,
    _message: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for TypedCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedCodec<{}>", std::any::type_name::<T>())
    }
}

impl<T> Clone for TypedCodec<T> {
    fn clone(&self) -> Self {
        TypedCodec::new()
    }
}

impl<T> Default for TypedCodec<T> {
    fn default() -> Self {
        TypedCodec::new()
    }
}

impl<T> TypedCodec<T> {
    /// A codec for messages of type `T`.
    pub fn new() -> Self {
        TypedCodec {
            frame: LengthCodec::new(),
            _message: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> TypedCodec<T> {
    /// Append `message` as one packet (header and body) to `out`.
    pub fn encode_message(&self, message: &T, out: &mut Vec<u8>) -> Result<(), MessageError> {
        let body = bincode::serde::encode_to_vec(message, CONFIG).map_err(MessageError::Encode)?;
        self.frame.encode(&body, out).map_err(MessageError::Frame)
    }

    /// The message in one whole packet (header included, as `on_receive` gets it).
    pub fn decode_message(&self, packet: &[u8]) -> Result<T, MessageError> {
        match self
            .frame
            .decode(packet, &mut DecodeState::default(), packet.len().max(4))
        {
            Ok(Decoded::Packet(n)) if n == packet.len() => {}
            Ok(_) => {
                return Err(MessageError::Frame(FrameError::Malformed(
                    "not one whole packet",
                )))
            }
            Err(err) => return Err(MessageError::Frame(err)),
        }
        let body = &packet[self.frame.header_len()..];
        let (message, used) =
            bincode::serde::decode_from_slice(body, CONFIG).map_err(MessageError::Decode)?;
        if used != body.len() {
            return Err(MessageError::TrailingBytes(body.len() - used));
        }
        Ok(message)
    }
}

impl<T: 'static> Codec for TypedCodec<T> {
    fn decode(
        &self,
        buf: &[u8],
        state: &mut DecodeState,
        max_packet: usize,
    ) -> Result<Decoded, FrameError> {
        self.frame.decode(buf, state, max_packet)
    }

    fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        self.frame.encode(body, out)
    }

    fn min_packet(&self) -> usize {
        self.frame.header_len()
    }

    fn name(&self) -> &'static str {
        "typed"
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Order {
        id: u64,
        items: Vec<String>,
        note: Option<String>,
    }

    #[test]
    fn round_trips_and_frames() {
        let codec = TypedCodec::<Order>::new();
        let order = Order {
            id: 7,
            items: vec!["tea".into(), "cake".into()],
            note: None,
        };
        let mut packet = Vec::new();
        codec.encode_message(&order, &mut packet).unwrap();
        let mut st = DecodeState::default();
        assert_eq!(
            codec.decode(&packet, &mut st, 1024),
            Ok(Decoded::Packet(packet.len()))
        );
        assert_eq!(codec.decode_message(&packet).unwrap(), order);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let codec = TypedCodec::<Order>::new();
        for bad in [
            &b""[..],
            b"\0\0\0",
            b"\0\0\0\x05abc",
            b"\0\0\0\x01\xff",
            // A vector claiming 2^60 strings: refused, not allocated.
            b"\0\0\0\x0b\x07\xff\x00\x00\x00\x00\x00\x00\x00\x10\x00",
        ] {
            assert!(codec.decode_message(bad).is_err(), "{bad:?}");
        }
        let mut packet = Vec::new();
        codec
            .encode_message(
                &Order {
                    id: 1,
                    items: vec![],
                    note: None,
                },
                &mut packet,
            )
            .unwrap();
        packet.push(0);
        packet[3] += 1;
        assert!(matches!(
            codec.decode_message(&packet),
            Err(MessageError::TrailingBytes(1))
        ));
    }
}
