//! Typed bincode messages: decoding any bytes is an error or a value, never a panic, and
//! messages built from the input come back whole whatever the reads.

#![no_main]

use eddy_codec::{Codec, TypedCodec};
use eddy_codec_fuzz::{garbage, max_packet, round_trip, Input};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Kind {
    Get,
    Put(Vec<u8>),
    Note { text: String, urgent: bool },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    delta: i32,
    items: Vec<String>,
    kind: Kind,
    score: Option<f64>,
}

/// A message from some bytes of the input.
fn order(bytes: &[u8]) -> Order {
    let mut input = Input::new(bytes);
    let id = u64::from(input.u16()) << 40 | u64::from(input.u16());
    let delta = i32::from(input.u16() as i16);
    let kind = match input.byte() % 3 {
        0 => Kind::Get,
        1 => Kind::Put(input.bytes(8).to_vec()),
        _ => Kind::Note {
            text: String::from_utf8_lossy(input.bytes(6)).into_owned(),
            urgent: input.byte() & 1 == 1,
        },
    };
    let score = (input.byte() & 1 == 1).then(|| f64::from(input.u16()) / 7.0);
    let items = input
        .rest()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    Order {
        id,
        delta,
        items,
        kind,
        score,
    }
}

fuzz_target!(|data: &[u8]| {
    let codec = TypedCodec::<Order>::new();
    // The whole input as a packet, and as the body of a well-framed one.
    let _ = codec.decode_message(data);
    let mut framed = Vec::new();
    codec.encode(data, &mut framed).unwrap();
    let _ = codec.decode_message(&framed);

    let mut input = Input::new(data);
    let max = max_packet(&codec, &mut input);
    let reads = input.reads();
    let data = input.rest();

    garbage(&codec, max, &reads, data);

    let orders: Vec<Order> = reads.bodies(data).into_iter().map(order).collect();
    let sent: Vec<Vec<u8>> = orders
        .iter()
        .map(|o| {
            let mut packet = Vec::new();
            codec.encode_message(o, &mut packet).unwrap();
            packet
        })
        .collect();
    round_trip(&codec, &reads, &sent);
    for (packet, sent) in sent.iter().zip(&orders) {
        let got = codec.decode_message(packet).unwrap();
        // NaN is never produced, so equality holds.
        assert_eq!(&got, sent);
    }
});
