use std::{fmt, sync::Arc};

use crate::{Codec, DecodeState, Decoded, FrameError};

/// What a user length function says about the bytes at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketLength {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// The packet is this many bytes long, header included (must be at least 1).
    Total(usize),
    /// The bytes can never start a packet.
    Malformed,
}

type LengthFn = dyn Fn(&[u8]) -> PacketLength + Send + Sync;

/// A user function reads each packet's length (Swoole's `package_length_func`).
///
/// The function sees at most `window` bytes from the start of the packet (default 8152, as
/// in Swoole), and is called again with more bytes while it answers
/// [`PacketLength::NeedMore`]; once it has given a packet's total, it is not asked again
/// until that packet is whole. If it still needs more once `window` bytes are buffered, the
/// packet is malformed; once the maximum packet size is buffered, it is too large. A total
/// over the maximum packet size is refused before the body is buffered, like any
/// length-prefixed packet. It may be called from several threads at once.
#[derive(Clone)]
pub struct LengthFnCodec {
    length: Arc<LengthFn>,
    window: usize,
}

impl fmt::Debug for LengthFnCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LengthFnCodec")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl LengthFnCodec {
    /// Frame packets with `length`.
    pub fn new(length: impl Fn(&[u8]) -> PacketLength + Send + Sync + 'static) -> Self {
        LengthFnCodec {
            length: Arc::new(length),
            window: crate::MAX_LENGTH_OFFSET,
        }
    }

    /// How many bytes the function may need to see (default 8152).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }
}

impl Codec for LengthFnCodec {
    fn decode(
        &self,
        buf: &[u8],
        state: &mut DecodeState,
        max_packet: usize,
    ) -> Result<Decoded, FrameError> {
        if buf.is_empty() {
            return Ok(Decoded::Incomplete { total: None });
        }
        // The total the function gave for this packet at an earlier read (checked then).
        match state.scanned {
            0 => {}
            total if buf.len() >= total => {
                state.scanned = 0;
                return Ok(Decoded::Packet(total));
            }
            total => return Ok(Decoded::Incomplete { total: Some(total) }),
        }
        let seen = &buf[..buf.len().min(self.window)];
        match (self.length)(seen) {
            PacketLength::NeedMore if seen.len() >= self.window => Err(FrameError::Malformed(
                "the length function found no length in its window",
            )),
            // Still no length after `max_packet` bytes: the packet is longer than that.
            PacketLength::NeedMore if buf.len() >= max_packet => Err(FrameError::TooLarge {
                length: buf.len() as u64,
                max: max_packet,
            }),
            PacketLength::NeedMore => Ok(Decoded::Incomplete { total: None }),
            PacketLength::Malformed => Err(FrameError::Malformed(
                "the length function refused the bytes",
            )),
            PacketLength::Total(0) => Err(FrameError::Malformed("the length function returned 0")),
            PacketLength::Total(total) if total > max_packet => Err(FrameError::TooLarge {
                length: total as u64,
                max: max_packet,
            }),
            PacketLength::Total(total) if buf.len() >= total => Ok(Decoded::Packet(total)),
            PacketLength::Total(total) => {
                state.scanned = total;
                Ok(Decoded::Incomplete { total: Some(total) })
            }
        }
    }

    /// A user framing cannot be produced generically: the body is sent as it is, and the
    /// application includes its own header.
    fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        out.extend_from_slice(body);
        Ok(())
    }

    fn validate(&self) -> Result<(), crate::CodecConfigError> {
        if self.window == 0 {
            return Err(crate::CodecConfigError {
                setting: "package_length_func",
                reason: "the window must be at least 1 byte".into(),
            });
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "length-fn"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-byte length that counts itself: `[3, a, b]` is a 3-byte packet; 255 is invalid.
    fn codec() -> LengthFnCodec {
        LengthFnCodec::new(|buf| match buf[0] {
            255 => PacketLength::Malformed,
            n => PacketLength::Total(n as usize),
        })
    }

    fn decode(c: &LengthFnCodec, buf: &[u8], max: usize) -> Result<Decoded, FrameError> {
        c.decode(buf, &mut DecodeState::default(), max)
    }

    #[test]
    fn frames_by_the_function() {
        let c = codec();
        assert_eq!(decode(&c, b"", 10), Ok(Decoded::Incomplete { total: None }));
        assert_eq!(
            decode(&c, b"\x03a", 10),
            Ok(Decoded::Incomplete { total: Some(3) })
        );
        assert_eq!(decode(&c, b"\x03abXX", 10), Ok(Decoded::Packet(3)));
    }

    #[test]
    fn a_known_total_is_not_asked_for_again() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let c = LengthFnCodec::new(move |buf| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            PacketLength::Total(buf[0] as usize)
        });
        // A 100-byte packet, then a 3-byte one, trickled a byte a read.
        let mut stream = vec![100u8; 100];
        stream.extend_from_slice(&[3, 0, 0]);
        let mut reader = crate::FrameReader::new(1000);
        let mut packets = Vec::new();
        for byte in &stream {
            reader.push(&[*byte]);
            while let Some(packet) = reader.next_packet(&c).unwrap() {
                packets.push(packet.len());
            }
        }
        assert_eq!(packets, [100, 3]);
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "once a packet"
        );
    }

    #[test]
    fn bad_answers_are_errors() {
        let c = codec();
        assert!(matches!(
            decode(&c, b"\xff", 10),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode(&c, b"\x00", 10),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(
            decode(&c, b"\x20", 10),
            Err(FrameError::TooLarge {
                length: 32,
                max: 10
            })
        );
        let never = LengthFnCodec::new(|_| PacketLength::NeedMore).window(4);
        assert_eq!(
            decode(&never, b"abc", 10),
            Ok(Decoded::Incomplete { total: None })
        );
        assert!(matches!(
            decode(&never, b"abcd", 10),
            Err(FrameError::Malformed(_))
        ));
        // Needing more than the maximum packet is too large, even inside the window: the
        // buffer never grows past the maximum (it grew to the window before).
        let never = LengthFnCodec::new(|_| PacketLength::NeedMore);
        assert_eq!(
            decode(&never, b"abc", 4),
            Ok(Decoded::Incomplete { total: None })
        );
        assert_eq!(
            decode(&never, b"abcd", 4),
            Err(FrameError::TooLarge { length: 4, max: 4 })
        );
        assert!(LengthFnCodec::new(|_| PacketLength::NeedMore)
            .window(0)
            .validate()
            .is_err());
    }
}
