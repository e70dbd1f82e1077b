use crate::{Codec, DecodeState, Decoded, FrameError};

/// What a reader (or the server's reactor) reports when a codec answers with a packet of no
/// bytes, past the buffered bytes, or over the maximum, or with a pending total no longer
/// than what is buffered: the codec's bug, not the peer's (see [`Decoded::checked`]).
pub const IMPOSSIBLE_LENGTH: &str = "the codec returned an impossible length";

/// Cuts a byte stream into packets with a codec, one read at a time: what a client needs to
/// read a server's replies (the server's reactor does the same, without copies).
///
/// Push each read, then take packets until there are none. What a codec answers is checked,
/// not trusted; bytes held never exceed the maximum packet plus one read.
///
/// ```
/// use eddy_codec::{FrameReader, LengthCodec};
///
/// let codec = LengthCodec::new();
/// let mut reader = FrameReader::new(1024);
/// reader.push(b"\0\0\0\x02hi\0\0");
/// assert_eq!(reader.next_packet(&codec)?, Some(&b"\0\0\0\x02hi"[..]));
/// assert_eq!(reader.next_packet(&codec)?, None); // the next packet is not whole yet
/// reader.push(b"\0\x01!");
/// assert_eq!(reader.next_packet(&codec)?, Some(&b"\0\0\0\x01!"[..]));
/// # Ok::<(), eddy_codec::FrameError>(())
/// ```
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out as packets.
    start: usize,
    state: DecodeState,
    max_packet: usize,
    pending: Option<usize>,
}

impl FrameReader {
    /// A reader of packets of at most `max_packet` bytes, framing included.
    pub fn new(max_packet: usize) -> Self {
        FrameReader {
            max_packet,
            ..FrameReader::default()
        }
    }

    /// Append the bytes of one read.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet (framing included), `None` until more bytes arrive, or why the
    /// stream cannot be cut (then it never can: drop the connection).
    pub fn next_packet<C: Codec + ?Sized>(
        &mut self,
        codec: &C,
    ) -> Result<Option<&[u8]>, FrameError> {
        let rest = &self.buf[self.start..];
        let decoded = codec.decode(rest, &mut self.state, self.max_packet)?;
        match decoded.checked(rest.len(), self.max_packet)? {
            Decoded::Packet(n) => {
                self.pending = None;
                self.start += n;
                Ok(Some(&self.buf[self.start - n..self.start]))
            }
            Decoded::Incomplete { total } => {
                self.pending = total;
                Ok(None)
            }
        }
    }

    /// Bytes held that are not part of a packet handed out yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The full length of the packet being received, when the codec said so.
    pub fn pending_total(&self) -> Option<usize> {
        self.pending
    }
}
