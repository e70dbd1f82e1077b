//! No framing: every byte comes out, in order, in packets no larger than the maximum.

#![no_main]

use eddy_codec::RawCodec;
use eddy_codec_fuzz::{max_packet, Input, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let max = max_packet(&RawCodec, &mut input);
    let reads = input.reads();
    let data = input.rest();
    let (got, end) = Reader::new(&RawCodec, max).feed(&reads.cut(data));
    assert_eq!(end, Ok(()));
    assert_eq!(got.concat(), data);
});
