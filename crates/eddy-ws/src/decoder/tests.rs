//! The decoder's unit tests: RFC examples, every protocol error, the limits.

use super::*;
use crate::frame::CloseFrame;
use crate::fuzzing::{encode_client_frame, feed_frames};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frame(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(opcode, fin, rsv1, MASK, payload, &mut out);
    out
}

fn text(data: &str) -> Event {
    Event::Message(Message {
        kind: MessageKind::Text,
        data: Bytes::copy_from_slice(data.as_bytes()),
    })
}

/// All events of `stream` read at once, and how it ended.
fn decode_all(config: DecoderConfig, stream: &[u8]) -> (Vec<Event>, Result<(), ProtocolError>) {
    feed_frames(config, &[stream])
}

fn error_of(config: DecoderConfig, stream: &[u8]) -> ProtocolError {
    decode_all(config, stream).1.unwrap_err()
}

fn deflate() -> DecoderConfig {
    DecoderConfig {
        deflate: Some(DeflateParams::default()),
        ..DecoderConfig::default()
    }
}

#[test]
fn rfc_masked_hello_is_zero_copy() {
    let mut buf = BytesMut::from(
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ][..],
    );
    let start = buf.as_ptr() as usize;
    let mut decoder = Decoder::new(DecoderConfig::default());
    let Ok(Some(Event::Message(m))) = decoder.decode(&mut buf) else {
        panic!()
    };
    assert_eq!(m.as_text(), Some("Hello"));
    assert_eq!(m.data.as_ptr() as usize, start + 6, "payload was copied");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn fragments_with_control_frames_between() {
    let mut stream = frame(OpCode::Text, false, false, b"Hel");
    stream.extend(frame(OpCode::Ping, true, false, b"p"));
    stream.extend(frame(OpCode::Continuation, false, false, b""));
    stream.extend(frame(OpCode::Pong, true, false, b""));
    stream.extend(frame(OpCode::Continuation, true, false, b"lo"));
    stream.extend(frame(OpCode::Binary, true, false, &[0, 255]));
    stream.extend(frame(OpCode::Close, true, false, b"\x03\xe8ok"));
    let expected = vec![
        Event::Ping(Bytes::from_static(b"p")),
        Event::Pong(Bytes::new()),
        text("Hello"),
        Event::Message(Message {
            kind: MessageKind::Binary,
            data: Bytes::from_static(&[0, 255]),
        }),
        Event::Close(Some(CloseFrame::new(1000, "ok"))),
    ];
    assert_eq!(
        decode_all(DecoderConfig::default(), &stream),
        (expected.clone(), Ok(()))
    );
    // A byte at a time.
    let reads: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        feed_frames(DecoderConfig::default(), &reads),
        (expected, Ok(()))
    );
    // An empty close.
    let close = frame(OpCode::Close, true, false, b"");
    assert_eq!(
        decode_all(DecoderConfig::default(), &close).0,
        [Event::Close(None)]
    );
}

#[test]
fn rfc_7692_compressed_hello() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut stream = frame(OpCode::Text, true, true, &hello);
    // The same, in two fragments (§7.2.3.1's second example), then uncompressed.
    stream.extend(frame(OpCode::Text, false, true, &hello[..3]));
    stream.extend(frame(OpCode::Continuation, true, false, &hello[3..]));
    stream.extend(frame(OpCode::Text, true, false, b"Hello"));
    let (events, end) = decode_all(deflate(), &stream);
    assert_eq!(end, Ok(()));
    assert_eq!(events, [text("Hello"), text("Hello"), text("Hello")]);
}

#[test]
fn every_protocol_error_and_its_close_code() {
    use ProtocolError::*;
    let config = DecoderConfig::default();
    let small = DecoderConfig {
        max_frame_size: 10,
        max_message_size: 15,
        deflate: None,
    };
    let two = |a: Vec<u8>, b: Vec<u8>| [a, b].concat();
    let cases: Vec<(DecoderConfig, Vec<u8>, ProtocolError, u16)> = vec![
        (config, b"\x81\x00".to_vec(), Unmasked, 1002),
        (
            config,
            frame(OpCode::Text, true, true, b"x"),
            ReservedBits("RSV1 without permessage-deflate"),
            1002,
        ),
        (
            deflate(),
            frame(OpCode::Ping, true, true, b""),
            ReservedBits("RSV1 on a control frame"),
            1002,
        ),
        (
            deflate(),
            two(
                frame(OpCode::Text, false, true, b""),
                frame(OpCode::Continuation, true, true, b""),
            ),
            ReservedBits("RSV1 on a continuation frame"),
            1002,
        ),
        (
            config,
            b"\xa1\x80".to_vec(),
            ReservedBits("RSV2 or RSV3 set"),
            1002,
        ),
        (config, b"\x85\x80".to_vec(), ReservedOpcode(5), 1002),
        (
            config,
            frame(OpCode::Ping, true, false, &[0; 126]),
            ControlTooLong(126),
            1002,
        ),
        (
            config,
            frame(OpCode::Ping, false, false, b""),
            ControlFragmented,
            1002,
        ),
        (
            config,
            frame(OpCode::Continuation, true, false, b"x"),
            UnexpectedContinuation,
            1002,
        ),
        (
            config,
            two(
                frame(OpCode::Text, false, false, b"a"),
                frame(OpCode::Binary, true, false, b"b"),
            ),
            ExpectedContinuation,
            1002,
        ),
        (
            config,
            b"\x82\xfe\x00\x05".to_vec(),
            InvalidLength("16-bit length under 126 (not the shortest form)"),
            1002,
        ),
        (
            small,
            b"\x82\x8b\x01\x02\x03\x04".to_vec(),
            FrameTooLarge { len: 11, max: 10 },
            1009,
        ),
        (
            small,
            two(
                frame(OpCode::Binary, false, false, &[1; 10]),
                frame(OpCode::Continuation, true, false, &[1; 6]),
            ),
            MessageTooLarge { max: 15 },
            1009,
        ),
        (
            config,
            frame(OpCode::Text, true, false, b"\xff"),
            InvalidUtf8,
            1007,
        ),
        (
            config,
            frame(OpCode::Text, true, false, b"\xe2\x82"),
            InvalidUtf8,
            1007,
        ),
        (
            config,
            frame(OpCode::Close, true, false, b"\x03\xed"),
            InvalidCloseCode(1005),
            1002,
        ),
        (
            config,
            frame(OpCode::Close, true, false, b"\x03"),
            InvalidClosePayload,
            1002,
        ),
        (
            config,
            frame(OpCode::Close, true, false, b"\x03\xe8\xc0"),
            InvalidCloseReason,
            1007,
        ),
        (
            deflate(),
            frame(OpCode::Binary, true, true, &[0xff, 0xff, 0xff]),
            Deflate(crate::DeflateError::Corrupt("invalid block type".into())),
            1007,
        ),
    ];
    for (config, stream, expected, code) in cases {
        let err = error_of(config, &stream);
        match (&err, &expected) {
            (Deflate(_), Deflate(_)) => {}
            _ => assert_eq!(err, expected, "{stream:02x?}"),
        }
        assert_eq!(err.close_code(), code, "{err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn utf8_fails_fast() {
    // The first fragment ends inside a code point, the second proves it invalid: the
    // error comes before the message's end.
    let mut stream = frame(OpCode::Text, false, false, "ok €".as_bytes().split_at(5).0);
    stream.extend(frame(OpCode::Continuation, false, false, b"\x20"));
    assert_eq!(
        error_of(DecoderConfig::default(), &stream),
        ProtocolError::InvalidUtf8
    );
    // Inside one frame whose end has not arrived yet.
    let frame = frame(OpCode::Text, true, false, b"abc\xf4\x90\x80\x80def");
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut buf = BytesMut::from(&frame[..6 + 3]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&frame[9..11]);
    assert_eq!(decoder.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
    // And it stays failed.
    buf.extend_from_slice(&frame[11..]);
    assert_eq!(decoder.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
    decoder.reset();
    assert!(!decoder.in_message());
}

#[test]
fn limits_are_checked_before_buffering() {
    let small = DecoderConfig {
        max_frame_size: 100,
        max_message_size: 150,
        deflate: None,
    };
    // Only the header has arrived.
    let mut buf = BytesMut::from(&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4][..]);
    assert_eq!(
        Decoder::new(small).decode(&mut buf),
        Err(ProtocolError::FrameTooLarge { len: 256, max: 100 })
    );
    let mut decoder = Decoder::new(small);
    let mut buf = BytesMut::from(&frame(OpCode::Binary, false, false, &[0; 100])[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(decoder.in_message());
    buf.extend_from_slice(&frame(OpCode::Continuation, true, false, &[0; 51])[..6]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::MessageTooLarge { max: 150 })
    );
    // Exactly at the limits is fine.
    let mut stream = frame(OpCode::Binary, false, false, &[0; 100]);
    stream.extend(frame(OpCode::Continuation, true, false, &[0; 50]));
    let (events, end) = decode_all(small, &stream);
    assert_eq!((events.len(), end), (1, Ok(())));
}

#[test]
fn a_compressed_bomb_is_too_large() {
    let params = DeflateParams::default();
    let mut client = crate::fuzzing::ClientEncoder::new(Some(&params), 7);
    let frames = client.message(MessageKind::Binary, &vec![0; 1 << 20], true, &[10, 20]);
    let config = DecoderConfig {
        max_message_size: 1000,
        ..deflate()
    };
    let stream = frames.concat();
    assert!(stream.len() < 2000);
    let err = error_of(config, &stream);
    assert_eq!(
        (err.clone(), err.close_code()),
        (ProtocolError::MessageTooLarge { max: 1000 }, 1009)
    );
}
