//! WebSocket frames (eddy-ws): arbitrary bytes cut into arbitrary reads never panic the
//! decoder nor make it buffer past its limits; messages a client encodes from the input
//! (text and binary, fragmented, compressed, with pings between) come back exactly.

#![no_main]

use bytes::Bytes;
use eddy_codec_fuzz::Input;
use eddy_ws::deflate::DeflateParams;
use eddy_ws::frame::OpCode;
use eddy_ws::fuzzing::{feed_frames, ClientEncoder};
use eddy_ws::{DecoderConfig, Event, Message, MessageKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let deflate = (flags & 1 != 0).then(|| DeflateParams {
        client_max_window_bits: 8 + (flags >> 1) % 8,
        client_no_context_takeover: flags & 0x10 != 0,
        ..DeflateParams::default()
    });
    let max_frame_size = usize::from(input.u16() % 4096);
    let max_message_size = usize::from(input.u16());
    let reads = input.reads();
    let data = input.rest();

    // Garbage, under small limits.
    let small = DecoderConfig {
        max_frame_size,
        max_message_size,
        deflate,
    };
    let _ = feed_frames(small, &reads.cut(data));

    // Messages.
    let mut client = ClientEncoder::new(deflate.as_ref(), u64::from(flags));
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (i, body) in reads.bodies(data).into_iter().enumerate() {
        let (kind, payload) = if i % 2 == 0 {
            let text = String::from_utf8_lossy(body).into_owned();
            (MessageKind::Text, text.into_bytes())
        } else {
            (MessageKind::Binary, body.to_vec())
        };
        let cuts = [payload.len() / 3, payload.len() / 2, payload.len() / 2];
        let frames = client.message(kind, &payload, i % 3 != 0, &cuts[..i % 4]);
        for (f, frame) in frames.iter().enumerate() {
            stream.extend_from_slice(frame);
            if f + 1 < frames.len() {
                let ping = &body[..body.len().min(125)];
                stream.extend(client.control(OpCode::Ping, ping));
                expected.push(Event::Ping(Bytes::copy_from_slice(ping)));
            }
        }
        expected.push(Event::Message(Message {
            kind,
            data: Bytes::from(payload),
        }));
    }
    let roomy = DecoderConfig {
        deflate,
        ..DecoderConfig::default()
    };
    let (got, end) = feed_frames(roomy, &reads.cut(&stream));
    assert_eq!(end, Ok(()));
    assert_eq!(got, expected);
});
