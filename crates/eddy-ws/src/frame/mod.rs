//! RFC 6455 §5 frames: read a client frame's header, write a server frame's, masks and close
//! payloads.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |            (16/64)            |
//! |N|V|V|V|       |S|             |  (if payload len==126/127)    |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! ```

mod close;
mod mask;

pub use close::{
    close_code, is_valid_close_code, parse_close_payload, CloseFrame, MAX_CLOSE_REASON,
};
pub use mask::apply_mask;

use crate::ProtocolError;

/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a frame carries (the opcodes RFC 6455 defines; the others are reserved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: the next fragment of a text or binary message.
    Continuation,
    /// 0x1: the first (or only) frame of a UTF-8 text message.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping; the peer answers with a pong carrying the same payload.
    Ping,
    /// 0xA: a pong (an answer, or unsolicited as a heartbeat).
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, `None` for the reserved ones.
    pub const fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit value on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping or pong: never fragmented, at most 125 bytes, allowed between fragments.
    pub const fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of its message.
    pub fin: bool,
    /// RSV1: the message is compressed (permessage-deflate), on its first frame only.
    pub rsv1: bool,
    /// RSV2: never set without an extension that defines it (none here).
    pub rsv2: bool,
    /// RSV3: never set without an extension that defines it (none here).
    pub rsv3: bool,
    /// What the frame carries.
    pub opcode: OpCode,
    /// Whether the payload is masked (every client frame is).
    pub masked: bool,
    /// The masking key (zeros when unmasked).
    pub mask: [u8; 4],
    /// The payload's length in bytes.
    pub payload_len: u64,
}

/// Read the header of a client-to-server frame at the front of `buf`: the header and its
/// length in bytes, or `Ok(None)` while more bytes are needed.
///
/// `allow_rsv1` is whether permessage-deflate was negotiated. Refused, as soon as the first
/// two bytes show it: a reserved opcode, RSV2 or RSV3, RSV1 unless allowed and on a text or
/// binary frame, an unmasked frame, a fragmented control frame; then a control payload over
/// 125 bytes and a length not in its shortest form or with bit 63 set.
///
/// ```
/// use eddy_ws::frame::{decode_header, OpCode};
///
/// // RFC 6455 §5.7: a masked text frame "Hello".
/// let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (header, len) = decode_header(&frame, false).unwrap().unwrap();
/// assert_eq!((header.opcode, header.fin, header.payload_len, len), (OpCode::Text, true, 5, 6));
/// assert_eq!(decode_header(&frame[..5], false), Ok(None));
/// ```
pub fn decode_header(
    buf: &[u8],
    allow_rsv1: bool,
) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    let rsv2 = b0 & 0x20 != 0;
    let rsv3 = b0 & 0x10 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
    if rsv2 || rsv3 {
        return Err(ProtocolError::ReservedBits("RSV2 or RSV3 set"));
    }
    if rsv1 {
        if opcode.is_control() {
            return Err(ProtocolError::ReservedBits("RSV1 on a control frame"));
        }
        if opcode == OpCode::Continuation {
            return Err(ProtocolError::ReservedBits("RSV1 on a continuation frame"));
        }
        if !allow_rsv1 {
            return Err(ProtocolError::ReservedBits(
                "RSV1 without permessage-deflate",
            ));
        }
    }
    let masked = b1 & 0x80 != 0;
    if !masked {
        return Err(ProtocolError::Unmasked);
    }
    if opcode.is_control() && !fin {
        return Err(ProtocolError::ControlFragmented);
    }
    let (payload_len, len_bytes) = match b1 & 0x7f {
        126 => {
            let Some(ext) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([ext[0], ext[1]]));
            if len < 126 {
                return Err(ProtocolError::InvalidLength(
                    "16-bit length under 126 (not the shortest form)",
                ));
            }
            (len, 2)
        }
        127 => {
            let Some(ext) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut raw = [0; 8];
            raw.copy_from_slice(ext);
            let len = u64::from_be_bytes(raw);
            if len >> 63 != 0 {
                return Err(ProtocolError::InvalidLength(
                    "64-bit length with its most significant bit set",
                ));
            }
            if len <= 0xffff {
                return Err(ProtocolError::InvalidLength(
                    "64-bit length under 65536 (not the shortest form)",
                ));
            }
            (len, 8)
        }
        len => (u64::from(len), 0),
    };
    if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD as u64 {
        return Err(ProtocolError::ControlTooLong(payload_len));
    }
    let header_len = 2 + len_bytes + 4;
    let Some(key) = buf.get(2 + len_bytes..header_len) else {
        return Ok(None);
    };
    let mask = [key[0], key[1], key[2], key[3]];
    let header = FrameHeader {
        fin,
        rsv1,
        rsv2,
        rsv3,
        opcode,
        masked,
        mask,
        payload_len,
    };
    Ok(Some((header, header_len)))
}

/// Write the header of a server-to-client (unmasked) frame into `out`; returns its length
/// (2, 4 or 10). Send `out[..n]` then the payload, with `writev`, without copying the payload.
///
/// ```
/// use eddy_ws::frame::{frame_header_into, OpCode};
///
/// let mut header = [0; 10];
/// let n = frame_header_into(OpCode::Binary, true, false, 256, &mut header);
/// assert_eq!(&header[..n], &[0x82, 0x7e, 0x01, 0x00]);
/// ```
#[inline]
pub fn frame_header_into(
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    len: u64,
    out: &mut [u8; 10],
) -> usize {
    out[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode.as_u8();
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= 0xffff {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    }
}

/// The length of the header [`frame_header_into`] writes for a payload of `len` bytes.
#[inline]
pub const fn header_len(len: u64) -> usize {
    if len < 126 {
        2
    } else if len <= 0xffff {
        4
    } else {
        10
    }
}

/// Append one server-to-client (unmasked) frame to `out`.
///
/// ```
/// use eddy_ws::frame::{encode_frame, OpCode};
///
/// let mut out = Vec::new();
/// encode_frame(OpCode::Text, true, false, b"Hello", &mut out);
/// assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// ```
pub fn encode_frame(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0; 10];
    let n = frame_header_into(opcode, fin, rsv1, payload.len() as u64, &mut header);
    out.reserve(n + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::encode_client_frame;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        decode_header(buf, false)
    }

    #[test]
    fn rfc_6455_section_5_7_examples() {
        // A single-frame unmasked text message (what a server sends).
        let mut out = Vec::new();
        encode_frame(OpCode::Text, true, false, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // A single-frame masked text message (what a client sends).
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = header(&masked).unwrap().unwrap();
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv1: false,
                rsv2: false,
                rsv3: false,
                opcode: OpCode::Text,
                masked: true,
                mask: MASK,
                payload_len: 5
            }
        );
        let mut payload = masked[n..].to_vec();
        apply_mask(&mut payload, h.mask, 0);
        assert_eq!(payload, b"Hello");
        let mut again = Vec::new();
        encode_client_frame(OpCode::Text, true, false, MASK, b"Hello", &mut again);
        assert_eq!(again, masked);
        // A fragmented unmasked text message: "Hel" then "lo".
        let mut out = Vec::new();
        encode_frame(OpCode::Text, false, false, b"Hel", &mut out);
        encode_frame(OpCode::Continuation, true, false, b"lo", &mut out);
        assert_eq!(out, [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
        let mut client = Vec::new();
        encode_client_frame(OpCode::Text, false, false, MASK, b"Hel", &mut client);
        let (h, _) = header(&client).unwrap().unwrap();
        assert!(!h.fin && h.opcode == OpCode::Text);
        // Unmasked ping "Hello", and a masked pong "Hello".
        let mut out = Vec::new();
        encode_frame(OpCode::Ping, true, false, b"Hello", &mut out);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, _) = header(&pong).unwrap().unwrap();
        assert_eq!((h.opcode, h.payload_len), (OpCode::Pong, 5));
        // 256 bytes and 64 KiB binary messages in a single unmasked frame.
        let mut head = [0; 10];
        let n = frame_header_into(OpCode::Binary, true, false, 256, &mut head);
        assert_eq!(head[..n], [0x82, 0x7e, 0x01, 0x00]);
        let n = frame_header_into(OpCode::Binary, true, false, 65536, &mut head);
        assert_eq!(
            head[..n],
            [0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        assert_eq!(
            (header_len(125), header_len(65535), header_len(65536)),
            (2, 4, 10)
        );
    }

    #[test]
    fn extended_lengths_round_trip_and_wait_for_bytes() {
        for len in [0u64, 125, 126, 65535, 65536, 1 << 40] {
            let mut head = [0; 10];
            let n = frame_header_into(OpCode::Binary, true, false, len, &mut head);
            let mut client = head[..n].to_vec();
            client[1] |= 0x80;
            client.extend_from_slice(&MASK);
            for cut in 0..client.len() {
                assert_eq!(header(&client[..cut]), Ok(None), "len {len} cut {cut}");
            }
            let (h, hl) = header(&client).unwrap().unwrap();
            assert_eq!((h.payload_len, hl), (len, n + 4));
        }
    }

    #[test]
    fn bad_headers() {
        use ProtocolError::*;
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0x83, 0x80], ReservedOpcode(3)),
            (&[0x8b, 0x80], ReservedOpcode(0xb)),
            (&[0xa1, 0x80], ReservedBits("RSV2 or RSV3 set")),
            (&[0x91, 0x80], ReservedBits("RSV2 or RSV3 set")),
            (
                &[0xc1, 0x80],
                ReservedBits("RSV1 without permessage-deflate"),
            ),
            (&[0xc9, 0x80], ReservedBits("RSV1 on a control frame")),
            (&[0xc0, 0x80], ReservedBits("RSV1 on a continuation frame")),
            (&[0x81, 0x05], Unmasked),
            (&[0x09, 0x80], ControlFragmented),
            (&[0x89, 0xfe, 0x00, 0x7e], ControlTooLong(126)),
            (
                &[0x82, 0xfe, 0x00, 0x7d],
                InvalidLength("16-bit length under 126 (not the shortest form)"),
            ),
            (
                &[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                InvalidLength("64-bit length under 65536 (not the shortest form)"),
            ),
            (
                &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
                InvalidLength("64-bit length with its most significant bit set"),
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(header(bytes).as_ref(), Err(err), "{bytes:02x?}");
            assert_eq!(err.close_code(), 1002);
        }
        // RSV1 on a data frame is fine once deflate is negotiated.
        assert!(decode_header(&[0xc1, 0x80, 1, 2, 3, 4], true)
            .unwrap()
            .is_some());
    }

    #[test]
    fn opcodes_round_trip() {
        for v in 0..16u8 {
            if let Some(op) = OpCode::from_u8(v) {
                assert_eq!(op.as_u8(), v);
                assert_eq!(op.is_control(), v >= 8);
            } else {
                assert!(matches!(v, 3..=7 | 0xb..=0xf));
            }
        }
    }
}
