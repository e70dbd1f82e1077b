//! A user length function (a decimal length and `:`, netstring-like), with its window and
//! the maximum taken from the input.

#![no_main]

use eddy_codec::{Codec, LengthFnCodec, PacketLength};
use eddy_codec_fuzz::{garbage, max_packet, round_trip, Input};
use libfuzzer_sys::fuzz_target;

fn decimal(buf: &[u8]) -> PacketLength {
    let Some(colon) = buf.iter().position(|&b| b == b':') else {
        return if buf.iter().all(u8::is_ascii_digit) {
            PacketLength::NeedMore
        } else {
            PacketLength::Malformed
        };
    };
    match std::str::from_utf8(&buf[..colon])
        .ok()
        .and_then(|d| d.parse::<usize>().ok())
    {
        Some(len) => colon
            .checked_add(1 + len)
            .map_or(PacketLength::Malformed, PacketLength::Total),
        None => PacketLength::Malformed,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let window = match input.byte() {
        0 => 8152,
        w => usize::from(w),
    };
    let codec = LengthFnCodec::new(decimal).window(window);
    assert!(codec.validate().is_ok());
    let max = max_packet(&codec, &mut input);
    let reads = input.reads();
    let data = input.rest();

    garbage(&codec, max, &reads, data);

    let sent: Vec<Vec<u8>> = reads
        .bodies(data)
        .into_iter()
        .filter_map(|body| {
            let mut packet = format!("{}:", body.len()).into_bytes();
            // The window must hold the header for this framing to work at all.
            (packet.len() < window).then(|| {
                codec.encode(body, &mut packet).unwrap();
                packet
            })
        })
        .collect();
    round_trip(&codec, &reads, &sent);
});
