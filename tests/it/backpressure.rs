//! Backpressure: a slow reader, a slow worker. Memory stays bounded; nothing is lost.

use std::io::Read;

use eddy::{codec::LengthCodec, Bytes, ConnId, Context, EventHandler};

use crate::util::*;

#[test]
fn slow_reader_is_paused_bounded_and_loses_nothing() {
    // Room for a reply to all that was read: 512 KiB - 64 KiB queued - 32 KiB packet - 64 KiB
    // read = a high watermark of 352 KiB.
    let cap = 512 * 1024;
    let high = cap - (64 + 32 + 64) * 1024;
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .codec(LengthCodec::new())
        .worker_num(1)
        .socket_buffer_size(cap)
        .max_queued_bytes(64 * 1024)
        .package_max_length(32 * 1024);
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    let mut slow = connect(addr);
    let id = conn_of(&server, &events, &slow);
    let stream: Vec<u8> = (0..400u32)
        .flat_map(|i| frame(&i.to_be_bytes().repeat(4096)))
        .collect();
    let writer = {
        let mut slow = slow.try_clone().unwrap();
        let stream = stream.clone();
        std::thread::spawn(move || write_all(&mut slow, &stream))
    };
    // The client reads nothing: the output buffer fills to the high watermark and the server
    // stops reading from it.
    let full = next_where(&events, |s| matches!(s.kind, Kind::Full(_)));
    let Kind::Full(queued) = full.kind else {
        unreachable!()
    };
    assert!(queued >= high, "full at the high watermark ({queued})");
    let queued_now = handle.client_info(id).unwrap().send_queued_bytes;
    assert!(
        queued_now <= cap,
        "bounded by socket_buffer_size ({queued_now})"
    );
    assert!(
        handle.stats().total_recv_bytes < stream.len() as u64,
        "reading paused before everything was read"
    );
    // Other clients are not slowed down.
    let mut other = connect(addr);
    for i in 0..20u8 {
        let packet = frame(&[i; 10]);
        write_all(&mut other, &packet);
        assert_eq!(read_n(&mut other, packet.len()), packet);
    }
    // Now read everything: all of it arrives, in order.
    let mut echoed = vec![0u8; stream.len()];
    slow.read_exact(&mut echoed).unwrap();
    assert!(echoed == stream, "every byte echoed in order");
    writer.join().unwrap();
    // Full and drain alternate, starting with the full above, one drain per full.
    let mut crossings = vec![true];
    let mut drains = 0;
    let mut fulls = 1;
    while drains < fulls {
        let seen = next_where(&events, |s| {
            matches!(s.kind, Kind::Full(_) | Kind::Drain(_))
        });
        let is_full = matches!(seen.kind, Kind::Full(_));
        fulls += is_full as usize;
        drains += !is_full as usize;
        crossings.push(is_full);
    }
    for pair in crossings.windows(2) {
        assert_ne!(pair[0], pair[1], "full and drain alternate: {crossings:?}");
    }
    server.shutdown().unwrap();
}

struct Slow;

impl EventHandler for Slow {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        // Simulate slow work so the worker queue fills.
        std::thread::sleep(std::time::Duration::from_micros(100));
        let depth = ctx.server().stats().worker_queue[ctx.worker_id()];
        assert!(depth <= 2, "queue over capacity: {depth}");
        ctx.send(conn, &packet).unwrap();
    }
}

#[test]
fn full_worker_queue_pauses_reading_and_loses_nothing() {
    let builder = builder()
        .codec(LengthCodec::new())
        .worker_num(1)
        .worker_queue_capacity(2);
    let (server, addr) = start(builder, || Slow);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = connect(addr);
                let stream: Vec<u8> = (0..1000u32)
                    .flat_map(|i| frame(&[c as u8, i as u8]))
                    .collect();
                let writer = {
                    let mut client = client.try_clone().unwrap();
                    let stream = stream.clone();
                    std::thread::spawn(move || write_all(&mut client, &stream))
                };
                assert_eq!(read_n(&mut client, stream.len()), stream);
                writer.join().unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(server.handle().stats().request_count, 4000);
    server.shutdown().unwrap();
}
