//! User code that runs on a reactor (a codec, a custom dispatch function) and panics: only
//! the connection it was working for is affected, never the reactor or its other connections.

use eddy::{
    codec::{Codec, DecodeState, Decoded, EofCodec, FrameError, IMPOSSIBLE_LENGTH},
    CloseReason, DispatchMode,
};

use crate::util::*;

/// Lines, but a buggy codec on purpose: a line starting with `boom` panics it, one starting
/// with `huge` makes it claim a packet of `usize::MAX` bytes is coming, one starting with
/// `short` a packet shorter than what is already buffered.
#[derive(Debug)]
struct Fragile(EofCodec);

impl Codec for Fragile {
    fn decode(
        &self,
        buf: &[u8],
        state: &mut DecodeState,
        max_packet: usize,
    ) -> Result<Decoded, FrameError> {
        assert!(!buf.starts_with(b"boom"), "codec bug on purpose");
        if buf.starts_with(b"huge") {
            return Ok(Decoded::Incomplete {
                total: Some(usize::MAX),
            });
        }
        if buf.starts_with(b"short") {
            return Ok(Decoded::Incomplete { total: Some(1) });
        }
        self.0.decode(buf, state, max_packet)
    }

    fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        self.0.encode(body, out)
    }

    fn name(&self) -> &'static str {
        "fragile"
    }
}

#[test]
fn a_panicking_codec_closes_only_its_connection_after_answering_what_came_before() {
    let (recorder, events) = Recorder::new(true);
    // One reactor: both connections live on the reactor the panic happens on.
    let builder = builder()
        .reactor_num(1)
        .worker_num(1)
        .codec(Fragile(EofCodec::line()));
    let (server, addr) = start(builder, move || recorder.clone());
    let mut bad = connect(addr);
    let bad_id = conn_of(&server, &events, &bad);
    let mut good = connect(addr);
    conn_of(&server, &events, &good);
    // The packet before the panic is answered; the connection then closes with the reason.
    write_all(&mut bad, b"fine\nboom\n");
    let (answered, _) = read_to_close(&mut bad);
    assert_eq!(answered, b"fine\n");
    let closed = next_where(&events, |s| {
        s.conn == bad_id && matches!(s.kind, Kind::Close(_))
    });
    assert_eq!(closed.kind, Kind::Close(CloseReason::CodecPanic));
    // The reactor carries on: the other connection, and new ones, are served.
    write_all(&mut good, b"still here\n");
    assert_eq!(read_n(&mut good, 11), b"still here\n");
    let mut late = connect(addr);
    write_all(&mut late, b"new\n");
    assert_eq!(read_n(&mut late, 4), b"new\n");
    server.shutdown().unwrap();
}

#[test]
fn a_panicking_custom_dispatch_function_falls_back_to_fd_modulo() {
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .reactor_num(1)
        .worker_num(2)
        .codec(EofCodec::line())
        .dispatch_mode(DispatchMode::custom(|info| {
            assert!(
                !info.data.is_some_and(|d| d.starts_with(b"boom")),
                "dispatch bug"
            );
            Some(1)
        }));
    let (server, addr) = start(builder, move || recorder.clone());
    let mut client = connect(addr);
    let id = conn_of(&server, &events, &client);
    write_all(&mut client, b"ok\n");
    assert_eq!(read_n(&mut client, 3), b"ok\n");
    let seen = next_where(&events, |s| matches!(s.kind, Kind::Receive(_)));
    assert_eq!(seen.worker, 1);
    // The packet the function panics on still reaches a worker: fd modulo's.
    write_all(&mut client, b"boom\n");
    assert_eq!(read_n(&mut client, 5), b"boom\n");
    let seen = next_where(&events, |s| matches!(s.kind, Kind::Receive(_)));
    assert_eq!(seen.worker, id.slot() as usize % 2);
    write_all(&mut client, b"after\n");
    assert_eq!(read_n(&mut client, 6), b"after\n");
    server.shutdown().unwrap();
}

#[test]
fn a_codec_announcing_an_impossible_total_closes_only_its_connection() {
    let (recorder, events) = Recorder::new(true);
    let max = 64 * 1024;
    let builder = builder()
        .reactor_num(1)
        .worker_num(1)
        .package_max_length(max)
        .codec(Fragile(EofCodec::line()));
    let (server, addr) = start(builder, move || recorder.clone());
    let mut good = connect(addr);
    conn_of(&server, &events, &good);
    let cases: [(&[u8], CloseReason); 2] = [
        (
            b"fine\nhuge",
            CloseReason::BadPacket(FrameError::TooLarge {
                length: usize::MAX as u64,
                max,
            }),
        ),
        (
            b"fine\nshort",
            CloseReason::BadPacket(FrameError::Malformed(IMPOSSIBLE_LENGTH)),
        ),
    ];
    for (sent, reason) in cases {
        let mut bad = connect(addr);
        let bad_id = conn_of(&server, &events, &bad);
        write_all(&mut bad, sent);
        let (answered, _) = read_to_close(&mut bad);
        assert_eq!(answered, b"fine\n");
        let closed = next_where(&events, |s| {
            s.conn == bad_id && matches!(s.kind, Kind::Close(_))
        });
        assert_eq!(closed.kind, Kind::Close(reason));
    }
    // The reactor carries on.
    write_all(&mut good, b"still here\n");
    assert_eq!(read_n(&mut good, 11), b"still here\n");
    server.shutdown().unwrap();
}
