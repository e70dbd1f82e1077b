//! Connections: many at once, ids that never alias, sends from anywhere, closes, listeners.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
};

use eddy::{
    codec::LengthCodec, BuildError, Bytes, CloseReason, ConnId, Context, EventHandler, ListenAddr,
    SendError, SendStatus, Server,
};

use crate::util::*;

#[test]
fn two_hundred_connections_pipelining() {
    let (recorder, _events) = Recorder::new(true);
    let builder = builder()
        .codec(LengthCodec::new())
        .worker_num(4)
        .reactor_num(2);
    let (server, addr) = start(builder, move || recorder.clone());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut conns: Vec<_> = (0..50).map(|_| connect(addr)).collect();
                let streams: Vec<Vec<u8>> = (0..50)
                    .map(|c| {
                        (0..100)
                            .flat_map(|p| frame(format!("t{t} c{c} p{p}").as_bytes()))
                            .collect()
                    })
                    .collect();
                for (conn, stream) in conns.iter_mut().zip(&streams) {
                    write_all(conn, stream);
                }
                for (conn, stream) in conns.iter_mut().zip(&streams) {
                    assert_eq!(read_n(conn, stream.len()), *stream, "echo in order");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = server.handle().stats();
    assert_eq!(stats.accept_count, 200);
    assert_eq!(stats.request_count, 200 * 100);
    server.shutdown().unwrap();
}

#[test]
fn stale_ids_never_reach_a_newer_connection() {
    let (recorder, events) = Recorder::new(true);
    // One slot only: the second connection must reuse the first one's slot (and likely its fd).
    let (server, addr) = start(builder().max_conn(1), move || recorder.clone());
    let handle = server.handle().clone();
    let first = connect(addr);
    let old = conn_of(&server, &events, &first);
    drop(first);
    next_where(&events, |s| {
        s.conn == old && matches!(s.kind, Kind::Close(_))
    });
    wait_until("the slot to be free", || handle.connection_count() == 0);
    let mut second = connect(addr);
    let new = conn_of(&server, &events, &second);
    assert_eq!(old.slot(), new.slot(), "the slot was reused");
    assert_ne!(old, new, "under a new id");
    assert_eq!(handle.send(old, b"not for you"), Err(SendError::NotFound));
    assert_eq!(handle.close(old), Err(SendError::NotFound));
    assert_eq!(handle.bind(old, 1u64), Err(SendError::NotFound));
    assert!(!handle.exists(old) && handle.client_info(old).is_none());
    assert!(handle.exists(new));
    handle.send(new, b"for you").unwrap();
    assert_eq!(read_n(&mut second, 7), b"for you");
    server.shutdown().unwrap();
}

#[test]
fn connections_over_max_conn_are_closed_and_counted() {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(builder().max_conn(2), move || recorder.clone());
    let mut a = connect(addr);
    let _b = connect(addr);
    let _ = conn_of(&server, &events, &a);
    let mut c = connect(addr);
    let (data, _) = read_to_close(&mut c);
    assert!(data.is_empty());
    wait_until("the refusal to be counted", || {
        server.handle().stats().abort_count == 1
    });
    write_all(&mut a, b"ok");
    assert_eq!(read_n(&mut a, 2), b"ok", "open connections are unaffected");
    server.shutdown().unwrap();
}

#[test]
fn any_thread_can_send_and_sends_report_what_happened() {
    let (recorder, events) = Recorder::new(false);
    let (server, addr) = start(builder().socket_buffer_size(64 * 1024), move || {
        recorder.clone()
    });
    let handle = server.handle().clone();
    let mut client = connect(addr);
    let id = conn_of(&server, &events, &client);
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    handle.send(id, format!("[t{t} {i:03}]")).unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let got = String::from_utf8(read_n(&mut client, 4 * 100 * 8)).unwrap();
    for t in 0..4 {
        // Each sender's messages arrive whole and in its order.
        let mine: Vec<&str> = got
            .split_inclusive(']')
            .filter(|m| m.starts_with(&format!("[t{t} ")))
            .collect();
        let expected: Vec<String> = (0..100).map(|i| format!("[t{t} {i:03}]")).collect();
        assert_eq!(mine, expected);
    }
    assert_eq!(handle.send(id, b""), Err(SendError::Empty));
    assert_eq!(
        handle.send(id, vec![0u8; 64 * 1024 + 1]),
        Err(SendError::TooLarge {
            len: 64 * 1024 + 1,
            limit: 64 * 1024
        })
    );
    // The client does not read: sends end up queued, then refused whole when full.
    let mut queued = false;
    let mut full = false;
    for _ in 0..10_000 {
        match handle.send(id, vec![1u8; 16 * 1024]) {
            Ok(SendStatus::Sent) => {}
            Ok(SendStatus::Queued { pending }) => {
                queued = true;
                assert!(pending <= 64 * 1024);
            }
            Err(SendError::BufferFull { pending, limit }) => {
                assert!(pending + 16 * 1024 > limit);
                full = true;
                break;
            }
            Err(err) => panic!("unexpected {err}"),
        }
    }
    assert!(queued && full);
    server.shutdown().unwrap();
}

struct BigReply {
    size: usize,
    reset: bool,
    sent: crossbeam_channel::Sender<Result<SendStatus, SendError>>,
}

impl EventHandler for BigReply {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, _packet: Bytes) {
        let body: Vec<u8> = (0..self.size).map(|i| (i % 251) as u8).collect();
        let status = ctx.send(conn, &body);
        if self.reset {
            ctx.close_reset(conn).unwrap();
        } else {
            ctx.close(conn).unwrap();
            assert_eq!(ctx.send(conn, b"late"), Err(SendError::Closed));
            assert_eq!(ctx.close(conn), Err(SendError::Closed));
        }
        let _ = self.sent.send(status);
    }
}

/// The client asks for `size` bytes and reads nothing until the server has sent and closed,
/// so most of the reply is still queued at the close.
fn big_reply_then_close(reset: bool) -> (Vec<u8>, bool) {
    let size = 32 << 20;
    let (sent, sent_rx) = crossbeam_channel::unbounded();
    let builder = builder().socket_buffer_size(64 << 20);
    let (server, addr) = start(builder, move || BigReply {
        size,
        reset,
        sent: sent.clone(),
    });
    let mut client = connect(addr);
    write_all(&mut client, b"go");
    let status = sent_rx.recv_timeout(WAIT).unwrap();
    assert!(
        matches!(status, Ok(SendStatus::Queued { .. })),
        "{status:?}"
    );
    let result = read_to_close(&mut client);
    server.shutdown().unwrap();
    result
}

#[test]
fn close_flushes_queued_output_first() {
    let (data, reset) = big_reply_then_close(false);
    assert!(!reset);
    assert_eq!(data.len(), 32 << 20);
    assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

#[test]
fn close_reset_drops_queued_output() {
    let (data, reset) = big_reply_then_close(true);
    assert!(reset, "the peer sees a reset");
    assert!(data.len() < 32 << 20);
}

#[test]
fn peer_close_reason_and_on_close_once() {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(builder(), move || recorder.clone());
    let client = connect(addr);
    let id = conn_of(&server, &events, &client);
    drop(client);
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    assert_eq!(
        (closed.conn, closed.kind),
        (id, Kind::Close(CloseReason::PeerClosed))
    );
    let report = server.shutdown().unwrap();
    assert!(report.graceful);
    assert!(
        events.try_iter().all(|s| !matches!(s.kind, Kind::Close(_))),
        "one close only"
    );
}

#[test]
fn unix_and_ipv6_listeners() {
    let dir = std::env::temp_dir().join(format!("eddy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let (recorder, _events) = Recorder::new(true);
    let server = Server::builder()
        .listen(format!("unix:{}", path.display()))
        .listen("[::1]:0")
        .handle_signals(false)
        .build(move || recorder.clone())
        .unwrap();
    let v6 = match &server.local_addrs()[1] {
        ListenAddr::Tcp(addr) => *addr,
        other => panic!("{other}"),
    };
    assert_eq!(server.local_addrs()[0], ListenAddr::Unix(path.clone()));
    let server = server.start().unwrap();
    let mut unix = UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(WAIT)).unwrap();
    unix.write_all(b"over unix").unwrap();
    let mut buf = [0u8; 9];
    unix.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"over unix");
    let mut tcp6 = connect(v6);
    write_all(&mut tcp6, b"over v6");
    assert_eq!(read_n(&mut tcp6, 7), b"over v6");
    server.shutdown().unwrap();
    assert!(!path.exists(), "the socket file is removed at shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn build_errors_name_the_setting_or_address() {
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .worker_num(0)
        .build(|| Recorder::new(true).0)
        .unwrap_err();
    match err {
        BuildError::Config(err) => assert_eq!(err.setting, "worker_num"),
        other => panic!("{other}"),
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Server::builder()
        .listen(addr.to_string())
        .build(|| Recorder::new(true).0)
        .unwrap_err();
    assert!(matches!(err, BuildError::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()));
}

struct Panicky;

impl EventHandler for Panicky {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        if &packet[..] == b"boom\n" {
            panic!("boom requested");
        }
        ctx.send(conn, &packet).unwrap();
    }
}

#[test]
fn a_panicking_handler_does_not_take_the_server_down() {
    let builder = builder().worker_num(1).codec(eddy::codec::EofCodec::line());
    let (server, addr) = start(builder, || Panicky);
    let mut client = connect(addr);
    write_all(&mut client, b"boom\n");
    // The panic is caught and its connection closed (`close_on_panic`, on by default); the
    // same worker, with a rebuilt handler, serves the next packet.
    let (echoed, _) = read_to_close(&mut client);
    assert!(echoed.is_empty());
    let mut other = connect(addr);
    write_all(&mut other, b"fine\n");
    assert_eq!(read_n(&mut other, 5), b"fine\n");
    server.shutdown().unwrap();
}

struct Framed;

impl EventHandler for Framed {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        // Strip this listener's framing, answer with a body, and let the codec frame it.
        let payload = match ctx.client_info(conn).unwrap().listener {
            0 => &packet[..packet.len() - 1], // line
            _ => &packet[1..],                // one-byte length
        };
        if payload == b"big" {
            assert_eq!(
                ctx.send_framed(conn, [0u8; 300]),
                Err(SendError::Unframable)
            );
            ctx.send_framed(conn, "refused").unwrap();
        } else {
            ctx.send_framed(conn, [&b"got "[..], payload].concat())
                .unwrap();
        }
    }
}

#[test]
fn send_framed_uses_the_listeners_codec() {
    use eddy::codec::{EofCodec, LengthCodec, LengthType};
    let server = Server::builder()
        .listen_with("127.0.0.1:0", EofCodec::line())
        .listen_with(
            "127.0.0.1:0",
            LengthCodec::new()
                .length_type(LengthType::U8)
                .body_offset(1),
        )
        .handle_signals(false)
        .build(|| Framed)
        .unwrap();
    let addrs: Vec<_> = server
        .local_addrs()
        .iter()
        .map(|a| match a {
            ListenAddr::Tcp(addr) => *addr,
            other => panic!("{other}"),
        })
        .collect();
    let server = server.start().unwrap();
    let mut lines = connect(addrs[0]);
    write_all(&mut lines, b"tea\n");
    assert_eq!(read_n(&mut lines, 8), b"got tea\n");
    let mut short = connect(addrs[1]);
    write_all(&mut short, b"\x03abc");
    assert_eq!(read_n(&mut short, 8), b"\x07got abc");
    // 300 bytes do not fit a one-byte length: refused whole, nothing sent.
    write_all(&mut short, b"\x03big");
    assert_eq!(read_n(&mut short, 8), b"\x07refused");
    server.shutdown().unwrap();
}

/// Answers each packet after some (simulated) work.
struct SlowEcho;

impl EventHandler for SlowEcho {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let _ = ctx.send(conn, &packet);
    }
}

#[test]
fn a_client_that_half_closes_still_gets_its_whole_reply() {
    let (server, addr) = start(builder().codec(eddy::codec::EofCodec::line()), || SlowEcho);
    let mut client = connect(addr);
    write_all(&mut client, b"first\nsecond\n");
    // End of stream right away: the server reads it before the (slow) replies are sent.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let (data, reset) = read_to_close(&mut client);
    assert!(!reset);
    assert_eq!(data, b"first\nsecond\n");
    server.shutdown().unwrap();
}

#[test]
fn packets_before_a_bad_one_are_still_answered() {
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .codec(eddy::codec::LengthCodec::new())
        .package_max_length(100);
    let (server, addr) = start(builder, move || recorder.clone());
    let mut client = connect(addr);
    let mut stream: Vec<u8> = (0..3u8).flat_map(|i| frame(&[i; 10])).collect();
    let good = stream.len();
    stream.extend(5000u32.to_be_bytes()); // over package_max_length
    write_all(&mut client, &stream);
    let (data, _) = read_to_close(&mut client);
    assert_eq!(
        data,
        &stream[..good],
        "every good packet answered, then closed"
    );
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    assert!(matches!(
        closed.kind,
        Kind::Close(CloseReason::BadPacket(_))
    ));
    server.shutdown().unwrap();
}

#[test]
fn close_reset_ends_a_graceful_close_the_peer_never_reads() {
    let (recorder, events) = Recorder::new(false);
    let (server, addr) = start(builder().socket_buffer_size(64 << 20), move || {
        recorder.clone()
    });
    let handle = server.handle().clone();
    let mut client = connect(addr);
    let id = conn_of(&server, &events, &client);
    // More than the kernel holds: the rest waits in the output buffer, and the client does
    // not read, so the flush (and the graceful close) cannot finish.
    assert!(matches!(
        handle.send(id, vec![3u8; 32 << 20]),
        Ok(SendStatus::Queued { .. })
    ));
    handle.close(id).unwrap();
    assert_eq!(handle.close(id), Err(SendError::Closed), "already closing");
    handle.close_reset(id).unwrap();
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    assert_eq!(closed.kind, Kind::Close(CloseReason::ServerReset));
    let (_, reset) = read_to_close(&mut client);
    assert!(reset);
    server.shutdown().unwrap();
}

/// Cuts every read into packets of zero bytes: an impossible answer.
#[derive(Debug)]
struct BrokenCodec;

impl eddy::codec::Codec for BrokenCodec {
    fn decode(
        &self,
        buf: &[u8],
        _state: &mut eddy::codec::DecodeState,
        _max: usize,
    ) -> Result<eddy::codec::Decoded, eddy::codec::FrameError> {
        Ok(if buf.is_empty() {
            eddy::codec::Decoded::Incomplete { total: None }
        } else {
            eddy::codec::Decoded::Packet(0)
        })
    }

    fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), eddy::codec::FrameError> {
        out.extend_from_slice(body);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "broken"
    }
}

#[test]
fn an_impossible_codec_answer_closes_the_connection_instead_of_looping() {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(builder().codec(BrokenCodec), move || recorder.clone());
    let mut client = connect(addr);
    write_all(&mut client, b"anything");
    let (data, _) = read_to_close(&mut client);
    assert!(data.is_empty());
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    assert!(matches!(
        closed.kind,
        Kind::Close(CloseReason::BadPacket(eddy::codec::FrameError::Malformed(
            _
        )))
    ));
    server.shutdown().unwrap();
}

/// Reactors accept for themselves, and keep what they accept only while they hold no more
/// than a few connections over the least loaded: a burst of connections ends up spread.
#[test]
fn reactors_accepting_for_themselves_spread_a_burst_of_connections_evenly() {
    let (recorder, events) = Recorder::new(false);
    let builder = builder().reactor_num(4).worker_num(2);
    let (server, addr) = start(builder, move || recorder.clone());
    let clients: Vec<_> = (0..200).map(|_| connect(addr)).collect();
    wait_until("every connection is admitted", || {
        server.handle().connection_count() == clients.len()
    });
    let mut per_reactor = [0usize; 4];
    for _ in 0..clients.len() {
        let conn = next_where(&events, |s| s.kind == Kind::Connect).conn;
        per_reactor[server.handle().client_info(conn).unwrap().reactor_id] += 1;
    }
    let (least, most) = (
        per_reactor.iter().min().unwrap(),
        per_reactor.iter().max().unwrap(),
    );
    // Within the slack of one, and one more for two reactors accepting at the same moment.
    assert!(most - least <= 3, "{per_reactor:?}");
    server.shutdown().unwrap();
}
