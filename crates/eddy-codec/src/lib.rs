//! Framing for eddy: cut a byte stream into packets.
//!
//! This crate is pure: no sockets, no threads, no allocation of its own. A reactor keeps the
//! bytes it has read for one connection in a buffer and asks the connection's [`Codec`] where
//! the first packet ends:
//!
//! ```
//! use eddy_codec::{Codec, Decoded, DecodeState, LengthCodec};
//!
//! let codec = LengthCodec::new(); // Swoole's default: u32 big-endian length, then the body
//! let mut state = DecodeState::default();
//! let stream = b"\x00\x00\x00\x02hi\x00\x00";
//! assert_eq!(codec.decode(stream, &mut state, 1024), Ok(Decoded::Packet(6)));
//! // The next packet's header is not complete yet.
//! assert!(matches!(codec.decode(&stream[6..], &mut state, 1024), Ok(Decoded::Incomplete { .. })));
//! ```
//!
//! A packet handed to the application always includes its framing (length header or
//! delimiter), as Swoole does. A length-prefixed codec reports a packet over the limit from
//! its header alone, before the body is buffered; a delimited one once the limit's worth is
//! buffered with no delimiter; none reports a packet longer than the limit it was given.
//!
//! Codecs: [`RawCodec`] (each read as it comes), [`LengthCodec`] (a length field of any
//! width, signedness and byte order at an offset), [`LengthFnCodec`] (a user function reads the
//! length), [`EofCodec`] (packets end with a 1 to 8 byte delimiter; split or check mode),
//! [`EofCodec::line`] (`\n`), and [`TypedCodec`] (length-prefixed bincode messages of a serde
//! type).

mod eof;
mod error;
mod length;
mod length_fn;
mod raw;
mod reader;
mod typed;

use std::fmt::Debug;

pub use eof::{EofCodec, MAX_DELIMITER_LEN};
pub use error::{CodecConfigError, FrameError};
pub use length::{Endian, LengthCodec, LengthType, MAX_LENGTH_OFFSET};
pub use length_fn::{LengthFnCodec, PacketLength};
pub use raw::RawCodec;
pub use reader::{FrameReader, IMPOSSIBLE_LENGTH};
pub use typed::{MessageError, TypedCodec, MAX_MESSAGE_ALLOCATION};

/// What a codec found at the front of a connection's buffered bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The first `n` bytes (`n >= 1`) are one whole packet, framing included.
    Packet(usize),
    /// No whole packet yet. `total` is the length of the packet being received when the codec
    /// already knows it (from a length header), so a reader can reserve exactly that much.
    Incomplete {
        /// The full length of the pending packet, when known.
        total: Option<usize>,
    },
}

impl Decoded {
    /// Check a codec's answer for `available` buffered bytes and a limit of `max`, as a
    /// reader must before it trusts it: a packet of no bytes, past what is buffered or over
    /// the limit, or a pending total no longer than what is buffered, is the codec's bug
    /// ([`FrameError::Malformed`] with [`IMPOSSIBLE_LENGTH`]); a pending total over the limit
    /// is a packet too large ([`FrameError::TooLarge`]), refused before anything is reserved
    /// for it.
    #[inline]
    pub fn checked(self, available: usize, max: usize) -> Result<Decoded, FrameError> {
        match self {
            Decoded::Packet(n) if n == 0 || n > available || n > max => {
                Err(FrameError::Malformed(IMPOSSIBLE_LENGTH))
            }
            Decoded::Incomplete { total: Some(t) } if t > max => Err(FrameError::TooLarge {
                length: t as u64,
                max,
            }),
            Decoded::Incomplete { total: Some(t) } if t <= available => {
                Err(FrameError::Malformed(IMPOSSIBLE_LENGTH))
            }
            decoded => Ok(decoded),
        }
    }
}

/// Per-connection decoder memory, owned by whoever owns the connection's buffer.
///
/// It lets a codec resume work instead of redoing it (an EOF codec remembers how far it has
/// already searched for the delimiter, a length-function codec the total it was given).
/// One state serves one codec and one buffer: reset it when the buffer is replaced by
/// unrelated bytes, and give a codec that delegates to two others a state for each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeState {
    /// The codec's own note about the packet at the front of the buffer: for the EOF codec,
    /// how many bytes are known not to contain its end; for the length function's, its total
    /// once known (0 until then), so the function is not asked again at every read.
    pub(crate) scanned: usize,
}

impl DecodeState {
    /// Forget everything learned about the buffer.
    pub fn reset(&mut self) {
        self.scanned = 0;
    }
}

/// A framing: where packets end in a byte stream, and how to frame a message body for sending.
///
/// Implementations are configuration only (`Send + Sync`, shared by every connection of a
/// listener); per-connection progress lives in [`DecodeState`].
pub trait Codec: Send + Sync + Debug + 'static {
    /// Look at the bytes buffered for one connection (`buf`, starting at a packet boundary) and
    /// say where the first packet ends.
    ///
    /// `max_packet` is the largest packet (framing included) the caller accepts. A packet that
    /// would exceed it is an error as soon as the codec can tell, so its body is never
    /// buffered. Bytes that can never form a valid packet are [`FrameError::Malformed`].
    fn decode(
        &self,
        buf: &[u8],
        state: &mut DecodeState,
        max_packet: usize,
    ) -> Result<Decoded, FrameError>;

    /// Append `body`, framed, to `out` (the length header or delimiter this codec expects).
    fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError>;

    /// Refuse settings that can never frame anything, naming the setting.
    fn validate(&self) -> Result<(), CodecConfigError> {
        Ok(())
    }

    /// The fewest bytes a packet can have; a `max_packet` below it can never be met.
    fn min_packet(&self) -> usize {
        1
    }

    /// A short name for logs ("length", "eof", "raw").
    fn name(&self) -> &'static str;
}
