//! WebSocket handshake (eddy-ws): arbitrary bytes cut into arbitrary reads never panic the
//! request parser, which answers once the cap is reached; the input as header values of a
//! valid upgrade parses the same whatever the reads, and its extension offers negotiate
//! without panicking.

#![no_main]

use eddy_codec_fuzz::Input;
use eddy_ws::fuzzing::feed_handshake;
use eddy_ws::handshake::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let max = usize::from(input.u16() % 8192);
    let reads = input.reads();
    let data = input.rest();

    let _ = feed_handshake(&reads.cut(data), max);

    // Printable ASCII only, so every value is a valid header value.
    let value: String = data
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                ' '
            }
        })
        .collect();
    let head = format!(
        "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Extensions: {value}\r\nSec-WebSocket-Protocol: {value}\r\n\r\n"
    );
    let whole = parse_request(head.as_bytes(), 1 << 16);
    assert_eq!(feed_handshake(&reads.cut(head.as_bytes()), 1 << 16), whole);
    let Ok(Some((request, len))) = whole else {
        panic!("a valid upgrade did not parse: {whole:?}");
    };
    assert_eq!(len, head.len());
    assert!(request.is_upgrade());
});
