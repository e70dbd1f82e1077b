//! EOF framing in split mode, with a 1 to 8 byte delimiter and the maximum from the input.

#![no_main]

use eddy_codec::{Codec, EofCodec};
use eddy_codec_fuzz::{delimiter, garbage, max_packet, round_trip, without_delimiter, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let delimiter = delimiter(&mut input);
    let codec = EofCodec::new(delimiter.clone());
    assert!(codec.validate().is_ok());
    let max = max_packet(&codec, &mut input);
    let reads = input.reads();
    let data = input.rest();

    garbage(&codec, max, &reads, data);

    let sent: Vec<Vec<u8>> = reads
        .bodies(data)
        .into_iter()
        .map(|body| {
            let body = without_delimiter(body, &delimiter);
            let mut packet = Vec::new();
            codec.encode(&body, &mut packet).unwrap();
            assert_eq!(packet[..body.len()], body);
            assert_eq!(packet[body.len()..], delimiter);
            packet
        })
        .collect();
    round_trip(&codec, &reads, &sent);
});
