//! What tests and fuzz targets share: a client-side (masking) encoder, and feeders that run
//! bytes cut into arbitrary reads through [`parse_request`] and [`Decoder`] the way a reactor
//! does, asserting on the way what they promise (no panic, bounded buffers and messages).

use bytes::BytesMut;

use crate::deflate::{negotiate, DeflateConfig, DeflateParams, Deflater};
use crate::frame::{frame_header_into, CloseFrame, OpCode, MAX_HEADER_LEN};
use crate::handshake::{parse_request, response_101, Request, RequestKind};
use crate::{Decoder, DecoderConfig, Event, HandshakeError, MessageKind, ProtocolError};

/// Append one client-to-server frame to `out`, its payload masked with `mask`.
pub fn encode_client_frame(
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    mask: [u8; 4],
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let mut header = [0; 10];
    let n = frame_header_into(opcode, fin, rsv1, payload.len() as u64, &mut header);
    header[1] |= 0x80;
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    crate::frame::apply_mask(&mut out[start..], mask, 0);
}

/// A client's side of a connection: frames masked with keys from a seeded generator,
/// messages compressed as the client would when permessage-deflate was negotiated.
#[derive(Debug)]
pub struct ClientEncoder {
    deflater: Option<Deflater>,
    seed: u64,
}

impl ClientEncoder {
    /// A client that compresses with `deflate` (its `client_*` parameters), masking with keys
    /// drawn from `seed`.
    pub fn new(deflate: Option<&DeflateParams>, seed: u64) -> Self {
        ClientEncoder {
            deflater: deflate
                .map(|p| Deflater::new(p.client_max_window_bits, 6, p.client_no_context_takeover)),
            seed: seed | 1,
        }
    }

    fn mask(&mut self) -> [u8; 4] {
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed as u32).to_le_bytes()
    }

    /// One message as frames, each on its own: its payload (compressed first when `compress`
    /// and the client has deflate) cut at `cuts` (positions in it, any order; repeated ones
    /// make empty fragments).
    pub fn message(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        compress: bool,
        cuts: &[usize],
    ) -> Vec<Vec<u8>> {
        let mut compressed = Vec::new();
        let (payload, rsv1) = match (&mut self.deflater, compress) {
            (Some(deflater), true) => {
                let Ok(()) = deflater.compress(data, &mut compressed) else {
                    unreachable!("compressing into a Vec does not fail")
                };
                (&compressed[..], true)
            }
            _ => (data, false),
        };
        let mut at: Vec<usize> = cuts.iter().map(|&c| c.min(payload.len())).collect();
        at.sort_unstable();
        at.push(payload.len());
        let mut frames = Vec::with_capacity(at.len());
        let mut from = 0;
        for (i, &to) in at.iter().enumerate() {
            let (opcode, rsv1) = if i == 0 {
                (kind.opcode(), rsv1)
            } else {
                (OpCode::Continuation, false)
            };
            let mut frame = Vec::new();
            let mask = self.mask();
            let fin = i + 1 == at.len();
            encode_client_frame(opcode, fin, rsv1, mask, &payload[from..to], &mut frame);
            frames.push(frame);
            from = to;
        }
        frames
    }

    /// A ping, pong or close frame.
    pub fn control(&mut self, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        let mask = self.mask();
        encode_client_frame(opcode, true, false, mask, payload, &mut frame);
        frame
    }

    /// A close frame, with a code and reason or empty.
    pub fn close(&mut self, close: Option<&CloseFrame>) -> Vec<u8> {
        let mut payload = Vec::new();
        if let Some(close) = close {
            close.encode_payload(&mut payload);
        }
        self.control(OpCode::Close, &payload)
    }
}

/// Cut `stream` at `cuts` (positions, any order): the reads, in order.
pub fn cut<'s>(stream: &'s [u8], cuts: &[usize]) -> Vec<&'s [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    at.sort_unstable();
    at.push(stream.len());
    let mut from = 0;
    at.into_iter()
        .map(|to| {
            let read = &stream[from..to];
            from = to;
            read
        })
        .collect()
}

/// Feed `reads` to one [`Decoder`] as a reactor would: the events, then `Ok` or the error
/// that failed the connection. Asserts that the buffer never holds more than a frame, a header
/// and a read, that no message exceeds the maximum, and that text is UTF-8.
pub fn feed_frames(
    config: DecoderConfig,
    reads: &[&[u8]],
) -> (Vec<Event>, Result<(), ProtocolError>) {
    let mut decoder = Decoder::new(config);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut largest_read = 0;
    for read in reads {
        largest_read = largest_read.max(read.len());
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(event)) => {
                    if let Event::Message(message) = &event {
                        assert!(message.data.len() <= config.max_message_size);
                        if message.kind == MessageKind::Text {
                            assert!(std::str::from_utf8(&message.data).is_ok());
                        }
                    }
                    events.push(event);
                }
                Ok(None) => break,
                Err(err) => {
                    assert_eq!(decoder.decode(&mut buf), Err(err.clone()));
                    return (events, Err(err));
                }
            }
        }
        assert!(
            buf.len()
                <= config
                    .max_frame_size
                    .saturating_add(MAX_HEADER_LEN + largest_read),
            "{} bytes buffered",
            buf.len()
        );
    }
    (events, Ok(()))
}

/// Feed `reads` to [`parse_request`] as a reactor would, and check the answer against
/// parsing all of them at once: the request and its head's length, `Ok(None)` when it never
/// completed, or the error. A complete request is also put through everything a server does
/// with one (its kind, subprotocols, a permessage-deflate negotiation, the response).
pub fn feed_handshake(
    reads: &[&[u8]],
    max_header_bytes: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut buf = Vec::new();
    let mut outcome = parse_request(&buf, max_header_bytes);
    for read in reads {
        if !matches!(outcome, Ok(None)) {
            break;
        }
        buf.extend_from_slice(read);
        outcome = parse_request(&buf, max_header_bytes);
    }
    if let Ok(Some((request, len))) = &outcome {
        assert!(*len <= buf.len() && *len <= max_header_bytes);
        assert_eq!(parse_request(&buf[..*len], max_header_bytes), outcome);
        let _ = request.subprotocols();
        let cfg = DeflateConfig {
            enabled: true,
            ..DeflateConfig::default()
        };
        let extension = negotiate(&request.extensions(), &cfg).map(|(_, value)| value);
        let response = match request.kind() {
            RequestKind::WebSocket => {
                let key = request.key().unwrap_or_default();
                response_101(
                    key,
                    request.subprotocols().first().copied(),
                    extension.as_deref(),
                )
            }
            RequestKind::BadUpgrade(err) => err.response(),
            RequestKind::Http => Vec::new(),
        };
        assert!(
            response.is_empty() || response.ends_with(b"\r\n\r\n") || response.ends_with(b"\n")
        );
    } else if buf.len() >= max_header_bytes {
        assert!(outcome.is_err(), "{} bytes and still no answer", buf.len());
    }
    outcome
}
