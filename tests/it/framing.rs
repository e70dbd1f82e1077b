//! Framing over real sockets: every cut of the stream, coalesced packets, bad packets.

use std::io::Write;

use eddy::{
    codec::{EofCodec, FrameError, LengthCodec},
    Bytes, CloseReason, ConnId, Context, DispatchMode, EventHandler, ServerBuilder,
};

use crate::util::*;

/// Send `stream` cut at every byte boundary (waiting until the server has read the first part,
/// so the cut really reaches the codec) and expect it echoed whole each time.
fn every_cut(builder: ServerBuilder, stream: &[u8]) {
    let (recorder, _events) = Recorder::new(true);
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    let mut client = connect(addr);
    for cut in 0..=stream.len() {
        let before = handle.stats().total_recv_bytes;
        write_all(&mut client, &stream[..cut]);
        wait_until("the first part to be read", || {
            handle.stats().total_recv_bytes >= before + cut as u64
        });
        write_all(&mut client, &stream[cut..]);
        assert_eq!(read_n(&mut client, stream.len()), stream, "cut at {cut}");
    }
    server.shutdown().unwrap();
}

#[test]
fn length_packets_survive_every_cut() {
    let mut stream = frame(b"");
    stream.extend(frame(b"x"));
    stream.extend(frame(&[7u8; 300]));
    every_cut(builder().codec(LengthCodec::new()), &stream);
}

#[test]
fn eof_packets_survive_every_cut() {
    let stream = b"first\r\nsecond has \r inside\r\n\r\nlast\r\n";
    every_cut(builder().codec(EofCodec::new(b"\r\n".to_vec())), stream);
}

#[test]
fn line_packets_survive_every_cut() {
    every_cut(builder().codec(EofCodec::line()), b"a\nbb\n\nccc ccc\n");
}

#[test]
fn coalesced_packets_are_split_in_order() {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(builder().codec(LengthCodec::new()), move || {
        recorder.clone()
    });
    let mut client = connect(addr);
    let bodies: Vec<Vec<u8>> = (0..500u32)
        .map(|i| i.to_be_bytes().repeat(i as usize % 7))
        .collect();
    let stream: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    write_all(&mut client, &stream);
    assert_eq!(read_n(&mut client, stream.len()), stream);
    for body in &bodies {
        let seen = next_where(&events, |s| matches!(s.kind, Kind::Receive(_)));
        assert_eq!(seen.kind, Kind::Receive(frame(body).into()));
    }
    server.shutdown().unwrap();
}

/// Expect the connection to be closed by the server for `why`, and another to keep working.
fn closed_for(builder: ServerBuilder, bad: &[u8], why: impl Fn(&CloseReason) -> bool, good: &[u8]) {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(builder, move || recorder.clone());
    let mut bystander = connect(addr);
    let mut client = connect(addr);
    let id = conn_of(&server, &events, &client);
    client.write_all(bad).unwrap();
    let (_, _) = read_to_close(&mut client);
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    match &closed.kind {
        Kind::Close(reason) => assert!(why(reason), "closed for {reason:?}"),
        _ => unreachable!(),
    }
    assert_eq!(closed.conn, id, "only the offender is closed");
    write_all(&mut bystander, good);
    assert_eq!(
        read_n(&mut bystander, good.len()),
        good,
        "others are unharmed"
    );
    server.shutdown().unwrap();
}

#[test]
fn oversized_length_closes_from_the_header_alone() {
    // Only the header is sent: the server must not wait for the 2000-byte body.
    let header = 2000u32.to_be_bytes();
    closed_for(
        builder().codec(LengthCodec::new()).package_max_length(1024),
        &header,
        |r| {
            matches!(
                r,
                CloseReason::BadPacket(FrameError::TooLarge {
                    length: 2004,
                    max: 1024
                })
            )
        },
        &frame(b"still fine"),
    );
}

#[test]
fn length_smaller_than_header_is_malformed() {
    closed_for(
        builder().codec(LengthCodec::new().body_offset(0)),
        &2u32.to_be_bytes(),
        |r| matches!(r, CloseReason::BadPacket(FrameError::Malformed(_))),
        &[0, 0, 0, 6, b'o', b'k'],
    );
}

#[test]
fn line_without_delimiter_closes_at_the_maximum() {
    closed_for(
        builder().codec(EofCodec::line()).package_max_length(64),
        &[b'x'; 100],
        |r| matches!(r, CloseReason::BadPacket(FrameError::TooLarge { .. })),
        b"short line\n",
    );
}

#[test]
fn raw_codec_echoes_bytes_as_read() {
    let (recorder, _events) = Recorder::new(true);
    let (server, addr) = start(builder(), move || recorder.clone());
    let mut client = connect(addr);
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    write_all(&mut client, &data);
    assert_eq!(read_n(&mut client, data.len()), data);
    server.shutdown().unwrap();
}

#[test]
fn large_packets_at_the_limit_pass() {
    let (recorder, _events) = Recorder::new(true);
    let max = 2 * 1024 * 1024;
    let (server, addr) = start(builder().codec(LengthCodec::new()), move || {
        recorder.clone()
    });
    let mut client = connect(addr);
    let body: Vec<u8> = (0..max - 4).map(|i| (i * 31) as u8).collect();
    let packet = frame(&body);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let packet = packet.clone();
        std::thread::spawn(move || client.write_all(&packet).unwrap())
    };
    assert_eq!(read_n(&mut client, packet.len()), packet);
    writer.join().unwrap();
    server.shutdown().unwrap();
}

#[test]
fn a_partial_packet_buffer_is_bounded_and_freed_once_whole() {
    let (recorder, _events) = Recorder::new(true);
    let (server, addr) = start(builder().codec(LengthCodec::new()), move || {
        recorder.clone()
    });
    let handle = server.handle().clone();
    let packet = frame(&vec![5u8; 1 << 20]);
    let mut client = connect(addr);
    let (first, rest) = packet.split_at(packet.len() / 2);
    write_all(&mut client, first);
    wait_until("half the packet to be buffered", || {
        handle.stats().recv_buffer_bytes >= first.len() as u64
    });
    let held = handle.stats().recv_buffer_bytes;
    assert!(
        held <= packet.len() as u64 + 64 * 1024,
        "sized for one packet: {held}"
    );
    let writer = {
        let mut client = client.try_clone().unwrap();
        let rest = rest.to_vec();
        std::thread::spawn(move || write_all(&mut client, &rest))
    };
    assert!(read_n(&mut client, packet.len()) == packet);
    writer.join().unwrap();
    wait_until("the buffer to be freed", || {
        handle.stats().recv_buffer_bytes == 0
    });
    server.shutdown().unwrap();
}

#[test]
fn a_header_alone_does_not_reserve_the_packet_it_announces() {
    let (recorder, _events) = Recorder::new(true);
    let max = 8 << 20;
    let builder = builder()
        .reactor_num(1)
        .package_max_length(max)
        .codec(LengthCodec::new());
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    // Eight clients each announce a packet of 8 MiB and send nothing more.
    let body = max - 4;
    let header = (body as u32).to_be_bytes();
    let mut clients: Vec<_> = (0..8).map(|_| connect(addr)).collect();
    for client in &mut clients {
        write_all(client, &header);
    }
    wait_until("every header to be read", || {
        handle.stats().recv_buffer_bytes >= 8 * 64 * 1024
    });
    let held = handle.stats().recv_buffer_bytes;
    assert!(
        held <= 8 * 128 * 1024,
        "a chunk each, not the 64 MiB announced: {held}"
    );
    // The buffer grows as the body comes, and the packet arrives whole.
    let data: Vec<u8> = (0..body).map(|i| (i % 251) as u8).collect();
    let mut writer = clients[0].try_clone().unwrap();
    let sending = std::thread::spawn(move || write_all(&mut writer, &data));
    let echoed = read_n(&mut clients[0], max);
    sending.join().unwrap();
    assert!(
        echoed[..4] == header
            && echoed[4..]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8)
    );
    server.shutdown().unwrap();
}

#[test]
fn a_line_near_the_limit_is_held_in_about_the_limit() {
    let (recorder, _events) = Recorder::new(true);
    let max = 1 << 20;
    let builder = builder().package_max_length(max).codec(EofCodec::line());
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    let mut client = connect(addr);
    let line = vec![b'x'; 1_040_000];
    let mut writer = client.try_clone().unwrap();
    let sent = line.clone();
    let sending = std::thread::spawn(move || write_all(&mut writer, &sent));
    wait_until("the line so far to be read", || {
        handle.stats().total_recv_bytes >= line.len() as u64
    });
    sending.join().unwrap();
    let held = handle.stats().recv_buffer_bytes;
    assert!(
        held <= (max + 64 * 1024 + 16 * 1024) as u64,
        "not doubled past the limit: {held}"
    );
    write_all(&mut client, b"\n");
    let echoed = read_n(&mut client, line.len() + 1);
    assert!(echoed[..line.len()] == line[..] && echoed[line.len()] == b'\n');
    server.shutdown().unwrap();
}

/// Answers each packet with `<`, the packet itself, then `>`: three sends, the middle one a
/// slice of the packets being answered, the others copied in.
#[derive(Clone)]
struct Wrap;

impl EventHandler for Wrap {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        for part in [&b"<"[..], &packet, b">"] {
            ctx.send(conn, part).expect("wrap");
        }
    }
}

/// `count` framed packets of sizes around 16 KiB (so reads of the stream end inside packets,
/// at ever different places), each byte naming its connection, packet and place.
fn large_packets(conn: usize, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let body: Vec<u8> = (0..16_000 + i * 37)
                .map(|j| (conn * 131 + i * 7 + j) as u8)
                .collect();
            frame(&body)
        })
        .collect()
}

/// Several connections each send a stream of large packets at once; every reply must come
/// back whole, in order, on its own connection, whether the client reads as it goes or only
/// after the server had to queue what the kernel would not take.
fn large_packets_come_back_in_order(mode: DispatchMode, read_late: bool) {
    const CONNS: usize = 3;
    // Read late: 6 MiB a connection, more than the kernel's buffers can hold (the socket's
    // send buffer grows to 4 MiB at most, and a client that does not read keeps its receive
    // window small), less than `socket_buffer_size` (8 MiB).
    let count = if read_late { 300 } else { 120 };
    let builder = builder()
        .codec(LengthCodec::new())
        .dispatch_mode(mode)
        .worker_num(2)
        .reactor_num(2);
    let (server, addr) = start(builder, || Wrap);
    let handle = server.handle().clone();
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                let packets = large_packets(c, count);
                let expected: Vec<u8> = packets
                    .iter()
                    .flat_map(|p| [&b"<"[..], p, b">"].concat())
                    .collect();
                let mut client = connect(addr);
                let port = client.local_addr().unwrap().port();
                let mut writer = client.try_clone().unwrap();
                let sent = std::thread::spawn(move || write_all(&mut writer, &packets.concat()));
                if read_late {
                    // Every packet is written, and the server holds replies the kernel did not
                    // take: what it queued must survive the batch it was answered in.
                    sent.join().unwrap();
                    wait_until("replies to be queued", || {
                        handle
                            .connections()
                            .filter_map(|id| handle.client_info(id))
                            .any(|info| info.remote_port == port && info.send_queued_bytes > 0)
                    });
                }
                let got = read_n(&mut client, expected.len());
                assert!(got == expected, "connection {c}: replies differ");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    server.shutdown().unwrap();
}

#[test]
fn large_pipelined_packets_come_back_whole_and_in_order() {
    for mode in [DispatchMode::Fd, DispatchMode::Reactor] {
        large_packets_come_back_in_order(mode, false);
    }
}

#[test]
fn large_replies_queued_past_their_batch_come_back_whole_and_in_order() {
    for mode in [DispatchMode::Fd, DispatchMode::Reactor] {
        large_packets_come_back_in_order(mode, true);
    }
}

/// Answers each packet with the packet, 100 bytes of a file, the packet's first 5,000 bytes,
/// then `>`: batch slices, a file and a copy queued behind one another.
#[derive(Clone)]
struct WrapFile(std::path::PathBuf);

impl EventHandler for WrapFile {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        ctx.send(conn, &packet).expect("packet");
        ctx.sendfile(conn, &self.0, 7, Some(100)).expect("file");
        ctx.send(conn, &packet[..5000]).expect("part");
        ctx.send(conn, b">").expect("end");
    }
}

#[test]
fn batch_slices_and_files_queued_in_one_batch_keep_their_order() {
    let path = std::env::temp_dir().join(format!("eddy-{}-slices", std::process::id()));
    let file: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&path, &file).unwrap();
    for mode in [DispatchMode::Fd, DispatchMode::Reactor] {
        let builder = builder()
            .codec(LengthCodec::new())
            .dispatch_mode(mode)
            .worker_num(1)
            .reactor_num(1);
        let handler = WrapFile(path.clone());
        let (server, addr) = start(builder, move || handler.clone());
        let packets = large_packets(0, 60);
        let expected: Vec<u8> = packets
            .iter()
            .flat_map(|p| [&p[..], &file[7..107], &p[..5000], b">"].concat())
            .collect();
        let mut client = connect(addr);
        let mut writer = client.try_clone().unwrap();
        let sent = std::thread::spawn(move || write_all(&mut writer, &packets.concat()));
        let got = read_n(&mut client, expected.len());
        assert!(got == expected, "replies differ");
        sent.join().unwrap();
        server.shutdown().unwrap();
    }
    let _ = std::fs::remove_file(path);
}
