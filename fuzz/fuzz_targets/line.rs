//! Line framing (`\n`), with the maximum from the input.

#![no_main]

use eddy_codec::{Codec, EofCodec};
use eddy_codec_fuzz::{garbage, max_packet, round_trip, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let codec = EofCodec::line();
    let max = max_packet(&codec, &mut input);
    let reads = input.reads();
    let data = input.rest();

    garbage(&codec, max, &reads, data);

    let sent: Vec<Vec<u8>> = reads
        .bodies(data)
        .into_iter()
        .map(|body| {
            let mut packet: Vec<u8> = body.iter().copied().filter(|&b| b != b'\n').collect();
            codec.encode(&packet.clone(), &mut packet).unwrap();
            packet
        })
        .collect();
    round_trip(&codec, &reads, &sent);
});
