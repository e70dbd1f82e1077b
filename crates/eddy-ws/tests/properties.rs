//! Property tests: whatever way a client's stream is cut into reads, the decoder gives back
//! exactly the events that were sent (fragmented or not, with control frames between
//! fragments, compressed or not); what the server encodes decodes back; garbage never
//! panics and never buffers more than the limits allow; a request head parses the same
//! whatever its reads.

use bytes::Bytes;
use eddy_ws::deflate::DeflateParams;
use eddy_ws::frame::{decode_header, CloseFrame, OpCode};
use eddy_ws::fuzzing::{cut, feed_frames, feed_handshake, ClientEncoder};
use eddy_ws::handshake::{parse_request, RequestKind};
use eddy_ws::{DecoderConfig, Encoder, Event, Message, MessageKind, ProtocolError};
use proptest::{collection::vec, prelude::*, sample::Index};

/// One thing the client sends.
#[derive(Clone, Debug)]
enum Sent {
    /// A data message: its kind and payload, whether to compress it, where to cut it into
    /// fragments, and pings to send after some of its fragments.
    Message {
        kind: MessageKind,
        data: Vec<u8>,
        compress: bool,
        cuts: Vec<Index>,
        pings: Vec<(Index, Vec<u8>)>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..400),
        // Repetitive, so compression has something to do.
        (vec(any::<u8>(), 1..6), 0..300usize).prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        ("[a-zé€𝄞 ]{0,8}", 0..100usize).prop_map(|(unit, n)| unit.repeat(n).into_bytes()),
    ]
}

fn sent() -> impl Strategy<Value = Sent> {
    let control = vec(any::<u8>(), 0..=125);
    prop_oneof![
        4 => (
            prop_oneof![
                text().prop_map(|d| (MessageKind::Text, d)),
                payload().prop_map(|d| (MessageKind::Binary, d)),
            ],
            any::<bool>(),
            vec(any::<Index>(), 0..5),
            vec((any::<Index>(), vec(any::<u8>(), 0..20)), 0..3),
        )
            .prop_map(|((kind, data), compress, cuts, pings)| Sent::Message {
                kind,
                data,
                compress,
                cuts,
                pings
            }),
        1 => control.clone().prop_map(Sent::Ping),
        1 => control.prop_map(Sent::Pong),
    ]
}

fn deflate() -> impl Strategy<Value = Option<DeflateParams>> {
    prop_oneof![
        Just(None),
        (8..=15u8, any::<bool>()).prop_map(|(bits, nct)| Some(DeflateParams {
            client_max_window_bits: bits,
            client_no_context_takeover: nct,
            server_max_window_bits: bits,
            server_no_context_takeover: nct,
            ..DeflateParams::default()
        })),
    ]
}

/// The client's stream for `sent`, with a final close, and the events the server should see.
fn client_stream(
    sent: &[Sent],
    deflate: Option<&DeflateParams>,
    seed: u64,
) -> (Vec<u8>, Vec<Event>) {
    let mut client = ClientEncoder::new(deflate, seed);
    let mut stream = Vec::new();
    let mut events = Vec::new();
    for item in sent {
        match item {
            Sent::Message {
                kind,
                data,
                compress,
                cuts,
                pings,
            } => {
                let cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
                let frames = client.message(*kind, data, *compress, &cuts);
                let mut after: Vec<(usize, &Vec<u8>)> = pings
                    .iter()
                    .map(|(i, p)| (i.index(frames.len()), p))
                    .collect();
                after.sort_by_key(|(i, _)| *i);
                for (i, frame) in frames.iter().enumerate() {
                    stream.extend_from_slice(frame);
                    // Pings go between fragments, never after the last one.
                    for (_, ping) in after
                        .iter()
                        .filter(|(at, _)| *at == i && i + 1 < frames.len())
                    {
                        stream.extend(client.control(OpCode::Ping, ping));
                        events.push(Event::Ping(Bytes::copy_from_slice(ping)));
                    }
                }
                events.push(Event::Message(Message {
                    kind: *kind,
                    data: Bytes::copy_from_slice(data),
                }));
            }
            Sent::Ping(p) => {
                stream.extend(client.control(OpCode::Ping, p));
                events.push(Event::Ping(Bytes::copy_from_slice(p)));
            }
            Sent::Pong(p) => {
                stream.extend(client.control(OpCode::Pong, p));
                events.push(Event::Pong(Bytes::copy_from_slice(p)));
            }
        }
    }
    let close = CloseFrame::new(1000, "done");
    stream.extend(client.close(Some(&close)));
    events.push(Event::Close(Some(close)));
    (stream, events)
}

fn positions(cuts: &[Index], len: usize) -> Vec<usize> {
    cuts.iter().map(|i| i.index(len + 1)).collect()
}

/// Make a server (unmasked) frame stream look like a client's: set the mask bit, insert a
/// key, mask each payload.
fn mask_server_stream(mut stream: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    while !stream.is_empty() {
        let mut head = stream[..stream.len().min(10)].to_vec();
        head[1] |= 0x80;
        head.extend_from_slice(&[0; 4]);
        let Ok(Some((header, n))) = decode_header(&head, true) else {
            panic!("bad server frame {:02x?}", &stream[..4.min(stream.len())]);
        };
        let ext = n - 6;
        out.extend_from_slice(&head[..2 + ext]);
        out.extend_from_slice(&key);
        let len = header.payload_len as usize;
        let start = out.len();
        out.extend_from_slice(&stream[2 + ext..2 + ext + len]);
        eddy_ws::frame::apply_mask(&mut out[start..], key, 0);
        stream = &stream[2 + ext + len..];
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn events_survive_any_split(
        sent in vec(sent(), 0..8),
        deflate in deflate(),
        seed in any::<u64>(),
        cuts in vec(any::<Index>(), 0..24),
    ) {
        let (stream, expected) = client_stream(&sent, deflate.as_ref(), seed);
        let config = DecoderConfig { deflate, ..DecoderConfig::default() };
        let reads = cut(&stream, &positions(&cuts, stream.len()));
        let (events, end) = feed_frames(config, &reads);
        prop_assert_eq!(end, Ok(()));
        prop_assert_eq!(events, expected);
    }

    #[test]
    fn what_the_server_encodes_decodes_back(
        messages in vec(prop_oneof![
            text().prop_map(|d| (MessageKind::Text, d)),
            payload().prop_map(|d| (MessageKind::Binary, d)),
        ], 0..8),
        deflate in deflate(),
        min_compress_size in 0..64usize,
        key in any::<[u8; 4]>(),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let deflate = deflate.map(|p| DeflateParams { min_compress_size, ..p });
        let mut encoder = Encoder::new(deflate);
        let mut stream = Vec::new();
        for (kind, data) in &messages {
            encoder.encode(*kind, data, &mut stream).unwrap();
        }
        let masked = mask_server_stream(&stream, key);
        let reads = cut(&masked, &positions(&cuts, masked.len()));
        let (events, end) = feed_frames(DecoderConfig { deflate, ..DecoderConfig::default() }, &reads);
        prop_assert_eq!(end, Ok(()));
        let expected: Vec<Event> = messages
            .iter()
            .map(|(kind, data)| Event::Message(Message { kind: *kind, data: Bytes::copy_from_slice(data) }))
            .collect();
        prop_assert_eq!(events, expected);
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded(
        data in vec(any::<u8>(), 0..600),
        masked_prefix in vec(any::<u8>(), 0..40),
        deflate in deflate(),
        max_frame_size in 0..300usize,
        max_message_size in 0..600usize,
        cuts in vec(any::<Index>(), 0..16),
    ) {
        // Half-plausible frames: a masked header's first bytes, then noise.
        let mut stream = masked_prefix;
        if stream.len() >= 2 {
            stream[1] |= 0x80;
        }
        stream.extend_from_slice(&data);
        let config = DecoderConfig { max_frame_size, max_message_size, deflate };
        let reads = cut(&stream, &positions(&cuts, stream.len()));
        let (_, end) = feed_frames(config, &reads);
        if let Err(err) = end {
            prop_assert!([1002, 1007, 1009].contains(&err.close_code()), "{err}");
        }
    }

    #[test]
    fn messages_over_the_limit_fail_with_1009(
        len in 1..2000usize,
        max in 0..2000usize,
        deflate in deflate(),
        fragments in vec(any::<Index>(), 0..4),
        seed in any::<u64>(),
    ) {
        let data = vec![b'a'; len];
        let mut client = ClientEncoder::new(deflate.as_ref(), seed);
        let frames = client.message(MessageKind::Text, &data, true, &positions(&fragments, len));
        let config = DecoderConfig { max_frame_size: 1 << 20, max_message_size: max, deflate };
        let (events, end) = feed_frames(config, &[&frames.concat()]);
        if len <= max {
            prop_assert_eq!(end, Ok(()));
            prop_assert_eq!(events.len(), 1);
        } else {
            prop_assert_eq!(end, Err(ProtocolError::MessageTooLarge { max }));
        }
    }

    #[test]
    fn a_request_parses_the_same_whatever_its_reads(
        path in "/[a-z0-9/?=&]{0,30}",
        extra in vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..6),
        extensions in "[ -~]{0,80}",
        cuts in vec(any::<Index>(), 0..12),
        garbage in vec(any::<u8>(), 0..200),
    ) {
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: {extensions}\r\n"
        );
        for (name, value) in &extra {
            head.push_str(&format!("X-{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let head = head.as_bytes();
        let whole = parse_request(head, 8192);
        let reads = cut(head, &positions(&cuts, head.len()));
        prop_assert_eq!(feed_handshake(&reads, 8192), whole.clone());
        let (request, len) = whole.unwrap().unwrap();
        prop_assert_eq!(len, head.len());
        prop_assert_eq!(request.kind(), RequestKind::WebSocket);
        // Garbage, cut anyhow, never panics.
        let reads = cut(&garbage, &positions(&cuts, garbage.len()));
        let _ = feed_handshake(&reads, 64);
    }
}
