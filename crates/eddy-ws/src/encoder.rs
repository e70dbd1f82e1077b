//! Server-to-client messages: one [`Encoder`] per connection when it compresses,
//! [`encode_message`] once for any number of connections when they do not.

use bytes::Bytes;

use crate::deflate::{DeflateParams, Deflater};
use crate::frame::{
    encode_frame, frame_header_into, header_len, CloseFrame, OpCode, MAX_CONTROL_PAYLOAD,
};
use crate::{DeflateError, MessageKind};

/// Encodes one connection's outgoing messages, compressing those at least
/// `min_compress_size` long when permessage-deflate was negotiated.
///
/// ```
/// use eddy_ws::deflate::DeflateParams;
/// use eddy_ws::{Encoder, MessageKind};
///
/// let mut plain = Encoder::new(None);
/// let mut out = Vec::new();
/// plain.encode(MessageKind::Text, b"Hello", &mut out).unwrap();
/// assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
///
/// // RFC 7692 §7.2.3.1: compressed, with RSV1.
/// let params = DeflateParams { level: 6, ..DeflateParams::default() };
/// let mut deflating = Encoder::new(Some(params));
/// out.clear();
/// deflating.encode(MessageKind::Text, b"Hello", &mut out).unwrap();
/// assert_eq!(out, [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
/// ```
#[derive(Debug)]
pub struct Encoder {
    deflate: Option<DeflateParams>,
    /// Made on the first message that is compressed.
    deflater: Option<Deflater>,
}

impl Encoder {
    /// An encoder for a connection; `deflate` as negotiated.
    pub fn new(deflate: Option<DeflateParams>) -> Self {
        Encoder {
            deflate,
            deflater: None,
        }
    }

    /// Whether a message of `len` bytes would be compressed.
    pub fn compresses(&self, len: usize) -> bool {
        self.deflate.is_some_and(|p| len >= p.min_compress_size)
    }

    /// Append `payload` as one message (a single frame) to `out`, compressed with RSV1 when
    /// [`compresses`](Self::compresses) says so.
    pub fn encode(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        let Some(params) = self
            .deflate
            .filter(|p| payload.len() >= p.min_compress_size)
        else {
            encode_frame(kind.opcode(), true, false, payload, out);
            return Ok(());
        };
        let deflater = self.deflater.get_or_insert_with(|| params.deflater());
        // Compress straight after room for the header the input's length would need, then
        // move the body if the compressed length needs another.
        let start = out.len();
        let guess = header_len(payload.len() as u64);
        out.reserve(guess + payload.len() / 2 + 64);
        out.resize(start + guess, 0);
        if let Err(err) = deflater.compress(payload, out) {
            out.truncate(start);
            return Err(err);
        }
        let body_len = out.len() - start - guess;
        let actual = header_len(body_len as u64);
        if actual < guess {
            out.copy_within(start + guess.., start + actual);
            out.truncate(start + actual + body_len);
        } else if actual > guess {
            out.resize(start + actual + body_len, 0);
            out.copy_within(start + guess..start + guess + body_len, start + actual);
        }
        let mut header = [0; 10];
        frame_header_into(kind.opcode(), true, true, body_len as u64, &mut header);
        out[start..start + actual].copy_from_slice(&header[..actual]);
        Ok(())
    }

    /// [`encode`](Self::encode) into a new buffer.
    pub fn encode_to_bytes(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
    ) -> Result<Bytes, DeflateError> {
        let mut out = Vec::with_capacity(header_len(payload.len() as u64) + payload.len());
        self.encode(kind, payload, &mut out)?;
        Ok(Bytes::from(out))
    }
}

/// One uncompressed message as a frame, encoded once: broadcast the same `Bytes` to every
/// connection without permessage-deflate.
///
/// ```
/// let frame = eddy_ws::encode_message(eddy_ws::MessageKind::Binary, &[1, 2, 3]);
/// assert_eq!(&frame[..], &[0x82, 0x03, 1, 2, 3]);
/// ```
pub fn encode_message(kind: MessageKind, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(header_len(payload.len() as u64) + payload.len());
    encode_frame(kind.opcode(), true, false, payload, &mut out);
    Bytes::from(out)
}

/// Append a ping or pong to `out`, its payload cut to 125 bytes. (Any other opcode is sent
/// as given, cut the same way.)
pub fn encode_control(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    encode_frame(opcode, true, false, payload, out);
}

/// Append a Close frame to `out`: with a code and reason, or empty for `None`.
///
/// ```
/// use eddy_ws::frame::CloseFrame;
///
/// let mut out = Vec::new();
/// eddy_ws::encode_close(Some(&CloseFrame::new(1000, "bye")), &mut out);
/// assert_eq!(out, [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
/// ```
pub fn encode_close(close: Option<&CloseFrame>, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
    if let Some(close) = close {
        close.encode_payload(&mut payload);
    }
    encode_frame(OpCode::Close, true, false, &payload, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::Inflater;

    /// Read one server frame back: (first byte, payload).
    fn unframe(frame: &[u8]) -> (u8, &[u8]) {
        let (len, at) = match frame[1] {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert_eq!(frame.len(), at + len);
        (frame[0], &frame[at..])
    }

    #[test]
    fn compressed_sizes_across_header_classes() {
        let params = DeflateParams::default();
        let mut encoder = Encoder::new(Some(params));
        let mut inflater = params.inflater();
        let mut noise = 12345u32;
        for len in [0, 1, 100, 125, 126, 200, 1000, 65535, 65536, 70000, 300_000] {
            for random in [false, true] {
                let payload: Vec<u8> = (0..len)
                    .map(|i| {
                        noise ^= noise << 13;
                        noise ^= noise >> 17;
                        noise ^= noise << 5;
                        if random {
                            noise as u8
                        } else {
                            (i % 7) as u8
                        }
                    })
                    .collect();
                let mut out = vec![0xee]; // something already there stays
                encoder
                    .encode(MessageKind::Binary, &payload, &mut out)
                    .unwrap();
                assert_eq!(out[0], 0xee);
                let (b0, body) = unframe(&out[1..]);
                assert_eq!(b0, 0xc2);
                let mut back = Vec::new();
                inflater.inflate_message(body, &mut back, len).unwrap();
                assert_eq!(back, payload, "len {len} random {random}");
            }
        }
    }

    #[test]
    fn small_messages_and_no_deflate_stay_plain() {
        let params = DeflateParams {
            min_compress_size: 10,
            ..DeflateParams::default()
        };
        let mut encoder = Encoder::new(Some(params));
        assert!(!encoder.compresses(9) && encoder.compresses(10));
        let bytes = encoder
            .encode_to_bytes(MessageKind::Text, b"short")
            .unwrap();
        assert_eq!(&bytes[..], b"\x81\x05short");
        assert_eq!(bytes, encode_message(MessageKind::Text, b"short"));
        assert!(!Encoder::new(None).compresses(1 << 20));
        let mut inflater = Inflater::new(15, false);
        let bytes = encoder
            .encode_to_bytes(MessageKind::Text, b"long enough")
            .unwrap();
        assert_eq!(bytes[0], 0xc1);
        let mut back = Vec::new();
        inflater
            .inflate_message(unframe(&bytes).1, &mut back, 100)
            .unwrap();
        assert_eq!(back, b"long enough");
    }

    #[test]
    fn control_frames() {
        let mut out = Vec::new();
        encode_control(OpCode::Ping, &[7; 200], &mut out);
        assert_eq!(out.len(), 2 + 125);
        assert_eq!(out[..2], [0x89, 125]);
        out.clear();
        encode_close(None, &mut out);
        assert_eq!(out, [0x88, 0x00]);
    }
}
