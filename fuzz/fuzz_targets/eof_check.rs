//! EOF framing in check mode: the whole buffer goes once it ends with the delimiter.

#![no_main]

use eddy_codec::{Codec, EofCodec};
use eddy_codec_fuzz::{delimiter, garbage, max_packet, Input, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let delimiter = delimiter(&mut input);
    let codec = EofCodec::new(delimiter.clone()).check_only();
    assert!(codec.validate().is_ok());
    let max = max_packet(&codec, &mut input);
    let reads = input.reads();
    let data = input.rest();

    garbage(&codec, max, &reads, data);

    // Messages (which may hold the delimiter: check mode does not look inside them).
    let mut stream = Vec::new();
    for body in reads.bodies(data) {
        codec.encode(body, &mut stream).unwrap();
    }
    let cut = reads.cut(&stream);
    let (got, end) = Reader::new(&codec, stream.len().max(1)).feed(&cut);
    // The model: after each read, the whole buffer goes if it ends with the delimiter.
    let mut expected = Vec::new();
    let mut buffered = Vec::new();
    for read in cut {
        buffered.extend_from_slice(read);
        if buffered.ends_with(&delimiter) {
            expected.push(std::mem::take(&mut buffered));
        }
    }
    assert_eq!(got, expected);
    assert_eq!(end.is_ok(), buffered.is_empty());
});
