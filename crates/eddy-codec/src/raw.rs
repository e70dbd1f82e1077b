use crate::{Codec, DecodeState, Decoded, FrameError};

/// No framing: every read is handed over as it came (Swoole without a protocol).
///
/// Packet boundaries are wherever the kernel split the stream, so an application using it must
/// do its own framing. A read is never longer than the reader's buffer nor `max_packet`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    fn decode(
        &self,
        buf: &[u8],
        _state: &mut DecodeState,
        max_packet: usize,
    ) -> Result<Decoded, FrameError> {
        if buf.is_empty() {
            Ok(Decoded::Incomplete { total: None })
        } else {
            Ok(Decoded::Packet(buf.len().min(max_packet.max(1))))
        }
    }

    fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        out.extend_from_slice(body);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "raw"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_over_what_is_there() {
        let mut st = DecodeState::default();
        assert_eq!(
            RawCodec.decode(b"", &mut st, 10),
            Ok(Decoded::Incomplete { total: None })
        );
        assert_eq!(RawCodec.decode(b"abc", &mut st, 10), Ok(Decoded::Packet(3)));
        assert_eq!(
            RawCodec.decode(b"abcdef", &mut st, 4),
            Ok(Decoded::Packet(4))
        );
    }
}
