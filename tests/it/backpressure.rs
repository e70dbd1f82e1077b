//! Backpressure: a slow reader, a slow worker. Memory stays bounded; nothing is lost.

use std::io::{Read, Write};

use eddy::{codec::LengthCodec, Bytes, ConnId, Context, EventHandler, SendStatus};

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

/// Blocks its worker on a packet `block` until released; reports watermark events.
struct Blocker {
    started: crossbeam_channel::Sender<()>,
    release: crossbeam_channel::Receiver<()>,
    marks: crossbeam_channel::Sender<(ConnId, &'static str)>,
}

impl EventHandler for Blocker {
    fn on_receive(&mut self, _ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        match &packet[..] {
            b"block" => {
                let _ = self.started.send(());
                let _ = self.release.recv_timeout(WAIT);
            }
            b"end" => {
                let _ = self.marks.send((conn, "end"));
            }
            _ => {}
        }
    }

    fn on_buffer_full(&mut self, _ctx: &mut Context<'_>, conn: ConnId) {
        let _ = self.marks.send((conn, "full"));
    }

    fn on_buffer_drain(&mut self, _ctx: &mut Context<'_>, conn: ConnId) {
        let _ = self.marks.send((conn, "drain"));
    }
}

#[test]
fn watermark_events_for_a_stalled_worker_are_coalesced_not_piled_up() {
    let (started, started_rx) = crossbeam_channel::unbounded();
    let (release_tx, release) = crossbeam_channel::unbounded();
    let (marks, marks_rx) = crossbeam_channel::unbounded();
    let builder = builder()
        .worker_num(1)
        .reactor_num(1)
        .worker_queue_capacity(1)
        .socket_buffer_size(64 * 1024)
        .buffer_watermarks(32 * 1024, 8 * 1024);
    let (server, addr) = start(builder, move || Blocker {
        started: started.clone(),
        release: release.clone(),
        marks: marks.clone(),
    });
    let handle = server.handle().clone();
    let mut blocker = connect(addr);
    let mut target = connect(addr);
    // Both connects handed over and taken, so neither lands in the queue filled below.
    wait_until("both connects to reach the worker", || {
        let stats = handle.stats();
        stats.dispatch_count == 2 && stats.worker_queue[0] == 0
    });
    let local = target.local_addr().unwrap();
    let id = handle
        .connections()
        .find(|c| handle.client_info(*c).and_then(|i| i.peer()) == Some(local))
        .unwrap();
    // Stall the only worker, fill its queue (capacity 1), and back it up in the reactor.
    write_all(&mut blocker, b"block");
    started_rx.recv_timeout(WAIT).unwrap();
    write_all(&mut blocker, b"x");
    wait_until("the queue to fill", || handle.stats().worker_queue[0] == 1);
    let dispatched = handle.stats().dispatch_count;
    write_all(&mut blocker, b"y");
    wait_until("an event to wait in the backlog", || {
        handle.stats().dispatch_count == dispatched + 1
    });
    // Five full/drain crossings on the target while the worker cannot hear of them.
    for _ in 0..5 {
        let mut sent = 0;
        loop {
            let status = handle.send(id, vec![1u8; 16 * 1024]).unwrap();
            sent += 16 * 1024;
            if matches!(status, SendStatus::Queued { pending } if pending >= 32 * 1024) {
                break;
            }
        }
        let _ = read_n(&mut target, sent);
        wait_until("the output to drain", || {
            handle.client_info(id).unwrap().send_queued_bytes == 0
        });
    }
    release_tx.send(()).unwrap();
    // The worker now hears one full and one drain, in order: the state, not the history.
    assert_eq!(marks_rx.recv_timeout(WAIT).unwrap(), (id, "full"));
    assert_eq!(marks_rx.recv_timeout(WAIT).unwrap(), (id, "drain"));
    // Anything else held would reach the (single, FIFO) worker before this packet does.
    write_all(&mut blocker, b"end");
    let (_, next) = marks_rx.recv_timeout(WAIT).unwrap();
    assert_eq!(next, "end", "no pile of stale full/drain events");
    server.shutdown().unwrap();
}

/// Pauses its connection on the first packet; reports its connection when it connects, the
/// first packet once it paused, and the close.
struct PauseOnFirst {
    seen: usize,
    tx: crossbeam_channel::Sender<&'static str>,
    conn: crossbeam_channel::Sender<ConnId>,
}

impl EventHandler for PauseOnFirst {
    fn on_connect(&mut self, _: &mut Context<'_>, conn: ConnId) {
        self.conn.send(conn).unwrap();
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: Bytes) {
        self.seen += 1;
        if self.seen == 1 {
            ctx.server().pause(conn).unwrap();
            self.tx.send("paused").unwrap();
        }
    }

    fn on_close(&mut self, _: &mut Context<'_>, _: ConnId, _: eddy::CloseReason) {
        self.tx.send("closed").unwrap();
    }
}

#[test]
fn a_pause_stops_reading_after_the_read_that_asked_for_it() {
    // Reactor mode: the handler runs inside the reactor's read, which must not read on.
    let (tx, rx) = crossbeam_channel::unbounded();
    let (conn_tx, conn_rx) = crossbeam_channel::unbounded();
    let builder = builder()
        .codec(LengthCodec::new())
        .dispatch_mode(eddy::DispatchMode::Reactor)
        .worker_num(1)
        .enable_delay_receive(true);
    let (server, addr) = start(builder, move || PauseOnFirst {
        seen: 0,
        tx: tx.clone(),
        conn: conn_tx.clone(),
    });
    let handle = server.handle().clone();
    let client = connect(addr);
    let id = conn_rx.recv_timeout(WAIT).unwrap();
    // Packets a little over 16 KiB: a 64 KiB read holds three whole ones and ends inside the
    // fourth, where the reactor reads on when more is waiting and nothing asked it to stop.
    let stream: Vec<u8> = (0..40u32)
        .flat_map(|i| frame(&i.to_be_bytes().repeat(4097)))
        .collect();
    let writer = {
        let mut client = client.try_clone().unwrap();
        // Blocks once the server's socket is full (it is not read); the reset ends it.
        std::thread::spawn(move || drop(client.write_all(&stream)))
    };
    // More than a read's worth waits in the server's socket before it reads at all.
    let fd = handle.client_info(id).unwrap().socket_fd;
    wait_until("two reads' worth to wait in the server's socket", || {
        unread(fd) > 80 * 1024
    });
    handle.resume(id).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "paused");
    // Heard after the pause (one mailbox, in order), so no read can come in between.
    handle.close_reset(id).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "closed");
    let read = handle.stats().total_recv_bytes;
    assert!(
        read <= 64 * 1024,
        "nothing is read after the read whose packet asked for the pause: {read} bytes"
    );
    writer.join().unwrap();
    drop(client);
    server.shutdown().unwrap();
}

/// Bytes waiting in the receive queue of socket `fd` (`FIONREAD`).
fn unread(fd: i32) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; `fd` is a socket of this process.
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    n as usize
}
