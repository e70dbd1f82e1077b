//! Length-field framing with its type, offsets and maximum taken from the input.

#![no_main]

use eddy_codec::{Codec, DecodeState, Endian, FrameError, LengthCodec, LengthType};
use eddy_codec_fuzz::{garbage, max_packet, round_trip, Input};
use libfuzzer_sys::fuzz_target;

fn length_type(b: u8) -> LengthType {
    let endian = match (b / 8) % 3 {
        0 => Endian::Big,
        1 => Endian::Little,
        _ => Endian::Native,
    };
    match b % 8 {
        0 => LengthType::I8,
        1 => LengthType::U8,
        2 => LengthType::I16(endian),
        3 => LengthType::U16(endian),
        4 => LengthType::I32(endian),
        5 => LengthType::U32(endian),
        6 => LengthType::I64(endian),
        _ => LengthType::U64(endian),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let body_offset = usize::from(input.byte() % 48);
    let codec = LengthCodec::new()
        .length_type(length_type(input.byte()))
        .length_offset(usize::from(input.byte() % 32))
        .body_offset(body_offset);
    assert!(codec.validate().is_ok());
    let max = max_packet(&codec, &mut input);
    let reads = input.reads();
    let data = input.rest();

    garbage(&codec, max, &reads, data);

    let start = codec.header_len().max(body_offset);
    let mut sent = Vec::new();
    for body in reads.bodies(data) {
        let mut packet = Vec::new();
        if codec.encode(body, &mut packet).is_err() {
            assert!(packet.is_empty(), "a refused body leaves nothing behind");
            continue;
        }
        assert_eq!(&packet[start..], body);
        // Too large is known from the header alone.
        let header = &packet[..codec.header_len()];
        let max = packet.len() - 1;
        assert_eq!(
            codec.decode(header, &mut DecodeState::default(), max),
            Err(FrameError::TooLarge {
                length: packet.len() as u64,
                max
            })
        );
        sent.push(packet);
    }
    round_trip(&codec, &reads, &sent);
});
