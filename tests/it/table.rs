//! The connection table from any thread: listing, uid routing, broadcast, heartbeat, flow
//! control, stats.

use std::{collections::HashSet, net::TcpStream, time::Duration};

use eddy::{codec::EofCodec, Bytes, CloseReason, ConnId, Cursor, Delivery, EventHandler, Uid};

use crate::util::*;

/// `n` clients and their server-side ids.
fn clients(
    server: &eddy::RunningServer,
    events: &crossbeam_channel::Receiver<Seen>,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<(TcpStream, ConnId)> {
    (0..n)
        .map(|_| {
            let client = connect(addr);
            let id = conn_of(server, events, &client);
            (client, id)
        })
        .collect()
}

#[test]
fn client_list_pages_through_every_connection_once() {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(builder().worker_num(2), move || recorder.clone());
    let handle = server.handle().clone();
    let mut open = clients(&server, &events, addr, 25);
    let all: HashSet<ConnId> = open.iter().map(|(_, id)| *id).collect();
    assert_eq!(handle.connections().collect::<HashSet<_>>(), all);
    assert_eq!(handle.connection_count_on(0), 25);
    // Walk in pages of 7 while closing some connections behind and ahead of the cursor.
    let mut seen = Vec::new();
    let mut cursor = Cursor::START;
    let mut closed = HashSet::new();
    loop {
        let (page, next) = handle.client_list(cursor, 7);
        if page.is_empty() {
            break;
        }
        seen.extend(&page);
        cursor = next;
        if let Some((client, id)) = open.pop() {
            drop(client);
            closed.insert(id);
            next_where(&events, |s| {
                s.conn == id && matches!(s.kind, Kind::Close(_))
            });
        }
    }
    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates in one walk");
    assert!(unique.is_subset(&all));
    let still_open: HashSet<_> = all.difference(&closed).copied().collect();
    assert!(
        still_open.is_subset(&unique),
        "every connection open throughout was listed"
    );
    assert_eq!(
        handle.client_list(cursor, 7).0,
        Vec::<ConnId>::new(),
        "done stays done"
    );
    assert_eq!(handle.client_list(Cursor::START, 0).0.len(), 0);
    drop(open);
    server.shutdown().unwrap();
}

#[test]
fn send_to_uid_reaches_every_bound_connection_from_any_thread() {
    let (recorder, events) = Recorder::new(false);
    let builder = builder().worker_num(4).codec(EofCodec::line());
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    let mut conns = clients(&server, &events, addr, 6);
    for (i, (_, id)) in conns.iter().enumerate() {
        let uid: Uid = if i < 3 { "alice".into() } else { 42u64.into() };
        handle.bind(*id, uid).unwrap();
    }
    let alice: Uid = "alice".into();
    let sender = {
        let handle = handle.clone();
        let alice = alice.clone();
        std::thread::spawn(move || handle.send_to_uid(&alice, b"for alice\n"))
    };
    let delivery = sender.join().unwrap();
    assert_eq!(delivery.delivered(), 3);
    for (client, _) in conns.iter_mut().take(3) {
        assert_eq!(read_n(client, 10), b"for alice\n");
    }
    let d = handle.send_to_uid(&Uid::Int(42), b"for 42\n");
    assert_eq!((d.delivered(), d.failed), (3, 0));
    for (client, _) in conns.iter_mut().skip(3) {
        assert_eq!(read_n(client, 7), b"for 42\n");
    }
    assert_eq!(
        handle.send_to_uid(&"nobody".into(), b"x"),
        Delivery::default()
    );
    // Rebinding moves a connection; closing removes it.
    handle.bind(conns[0].1, 42u64).unwrap();
    assert_eq!(handle.uid_connections(&alice).len(), 2);
    handle.unbind(conns[1].1).unwrap();
    assert_eq!(handle.uid_connections(&alice), vec![conns[2].1]);
    let (gone, id) = conns.remove(2);
    drop(gone);
    next_where(&events, |s| {
        s.conn == id && matches!(s.kind, Kind::Close(_))
    });
    assert!(handle.uid_connections(&alice).is_empty());
    assert_eq!(handle.uid_connections(&Uid::Int(42)).len(), 4);
    server.shutdown().unwrap();
}

#[test]
fn broadcast_reaches_everyone_and_filters() {
    let (recorder, events) = Recorder::new(false);
    let (server, addr) = start(builder().worker_num(2), move || recorder.clone());
    let handle = server.handle().clone();
    let mut conns = clients(&server, &events, addr, 10);
    let d = handle.broadcast(b"all");
    assert_eq!((d.delivered(), d.failed), (10, 0));
    for (client, _) in &mut conns {
        assert_eq!(read_n(client, 3), b"all");
    }
    handle.bind(conns[3].1, 7u64).unwrap();
    let d = handle.broadcast_where(b"bound", |t| t.is_bound());
    assert_eq!(d.delivered(), 1);
    assert_eq!(read_n(&mut conns[3].0, 5), b"bound");
    let except = conns[0].1;
    assert_eq!(
        handle
            .broadcast_where(b"x", |t| t.id() != except)
            .delivered(),
        9
    );
    server.shutdown().unwrap();
}

#[test]
fn heartbeat_closes_idle_connections_but_not_protected_or_active_ones() {
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .codec(EofCodec::line())
        .heartbeat_idle_time(Duration::from_millis(300))
        .heartbeat_check_interval(Duration::from_millis(50));
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    let conns = clients(&server, &events, addr, 3);
    let (idle, protected, active) = (conns[0].1, conns[1].1, conns[2].1);
    handle.protect(protected, true).unwrap();
    // The active client keeps talking until the idle one is closed.
    let mut talker = conns[2].0.try_clone().unwrap();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let talking = std::thread::spawn(move || {
        while stop_rx.try_recv().is_err() {
            write_all(&mut talker, b"ping\n");
            assert_eq!(read_n(&mut talker, 5), b"ping\n");
        }
    });
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    assert_eq!(closed.conn, idle, "the idle connection goes first");
    assert_eq!(closed.kind, Kind::Close(CloseReason::HeartbeatTimeout));
    stop_tx.send(()).unwrap();
    talking.join().unwrap();
    assert!(handle.exists(protected) && handle.exists(active));
    // A manual check lists without closing.
    handle.protect(protected, false).unwrap();
    let mut idle_now = Vec::new();
    wait_until("the unprotected connection to be idle", || {
        idle_now = handle.heartbeat(false);
        idle_now.contains(&protected)
    });
    assert!(handle.exists(protected), "heartbeat(false) does not close");
    drop(conns);
    server.shutdown().unwrap();
}

#[test]
fn the_heartbeat_spares_a_client_whose_bytes_the_server_has_not_read() {
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .codec(EofCodec::line())
        .reactor_num(1)
        .enable_delay_receive(true)
        .heartbeat_idle_time(Duration::from_millis(300))
        .heartbeat_check_interval(Duration::from_millis(50));
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    // The unread one first: a pass looks at it before the quiet one.
    let mut conns = clients(&server, &events, addr, 2);
    let (unread, quiet) = (conns[0].1, conns[1].1);
    handle.confirm(quiet).unwrap();
    // Not confirmed, so not read: its client is talking, the server is not listening.
    write_all(&mut conns[0].0, b"early\n");
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    assert_eq!(closed.conn, quiet, "only the quiet one is idle");
    assert_eq!(closed.kind, Kind::Close(CloseReason::HeartbeatTimeout));
    assert!(
        !handle.heartbeat(false).contains(&unread),
        "its unread bytes count as activity"
    );
    assert!(handle.exists(unread));
    handle.confirm(unread).unwrap();
    assert_eq!(read_n(&mut conns[0].0, 6), b"early\n", "nothing lost");
    server.shutdown().unwrap();
}

/// Answers every line with 256 KiB; reports why a connection closed.
#[derive(Clone)]
struct Flood {
    closed: crossbeam_channel::Sender<CloseReason>,
}

impl EventHandler for Flood {
    fn on_receive(&mut self, ctx: &mut eddy::Context<'_>, conn: ConnId, _packet: Bytes) {
        let _ = ctx.send(conn, vec![b'x'; 256 * 1024]);
    }

    fn on_close(&mut self, _: &mut eddy::Context<'_>, _: ConnId, reason: CloseReason) {
        let _ = self.closed.send(reason);
    }
}

#[test]
fn the_heartbeat_still_closes_a_client_that_sends_but_never_reads() {
    let builder = builder()
        .codec(EofCodec::line())
        .buffer_watermarks(512 * 1024, 64 * 1024)
        .heartbeat_idle_time(Duration::from_secs(1));
    let (closed, why) = crossbeam_channel::unbounded();
    let (server, addr) = start(builder, move || Flood {
        closed: closed.clone(),
    });
    let handle = server.handle().clone();
    let mut client = connect(addr);
    // Far more replies than the kernel's buffers hold, never read: the output passes its
    // high watermark and the server stops reading.
    write_all(&mut client, &b"more\n".repeat(40));
    wait_until("a connection", || handle.connection_count() == 1);
    let id = handle.connections().next().unwrap();
    // Every request answered (the output may drain below its low watermark between them,
    // while the kernel's buffers fill: only after the last is it surely past the high one).
    wait_until(
        "every request answered, the output past its high watermark",
        || {
            let stats = handle.stats();
            stats.request_count == 40
                && stats.idle_worker_num == stats.worker_num
                && handle
                    .client_info(id)
                    .is_some_and(|info| info.send_queued_bytes >= 512 * 1024)
        },
    );
    // What it sends now waits unread; that is not activity: it is the client that
    // stopped reading.
    write_all(&mut client, b"unread\n");
    assert_eq!(
        why.recv_timeout(WAIT).expect("closed in time"),
        CloseReason::HeartbeatTimeout
    );
    server.shutdown().unwrap();
}

#[test]
fn pause_resume_and_delay_receive_lose_nothing() {
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .codec(EofCodec::line())
        .reactor_num(1)
        .enable_delay_receive(true);
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    let mut conns = clients(&server, &events, addr, 2);
    let (waiting, other) = (conns[0].1, conns[1].1);
    handle.confirm(other).unwrap();
    // Not confirmed: what it sends is not read, while the other connection is served.
    write_all(&mut conns[0].0, b"early\n");
    for _ in 0..3 {
        write_all(&mut conns[1].0, b"ping\n");
        assert_eq!(read_n(&mut conns[1].0, 5), b"ping\n");
    }
    assert_eq!(
        handle.stats().request_count,
        3,
        "nothing read from the unconfirmed one"
    );
    handle.confirm(waiting).unwrap();
    assert_eq!(read_n(&mut conns[0].0, 6), b"early\n");
    // Paused the same way, then resumed.
    handle.pause(waiting).unwrap();
    write_all(&mut conns[1].0, b"sync\n");
    assert_eq!(read_n(&mut conns[1].0, 5), b"sync\n");
    write_all(&mut conns[0].0, b"later\n");
    write_all(&mut conns[1].0, b"ping\n");
    assert_eq!(read_n(&mut conns[1].0, 5), b"ping\n");
    assert_eq!(handle.stats().request_count, 6);
    handle.resume(waiting).unwrap();
    assert_eq!(read_n(&mut conns[0].0, 6), b"later\n");
    assert_eq!(
        handle.pause(ConnId::from_u64(u64::MAX)),
        Err(eddy::SendError::NotFound)
    );
    server.shutdown().unwrap();
}

#[test]
fn stats_stay_exact_after_churn_and_serialise() {
    let (recorder, _events) = Recorder::new(true);
    let (server, addr) = start(builder().worker_num(3), move || recorder.clone());
    let handle = server.handle().clone();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    let mut client = connect(addr);
                    if i % 3 == 0 {
                        write_all(&mut client, b"hi");
                        assert_eq!(read_n(&mut client, 2), b"hi");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Clients may finish before the server has even accepted them: wait for both.
    wait_until("every connection to be accepted and closed", || {
        let stats = handle.stats();
        stats.accept_count == 2000 && stats.connection_num == 0
    });
    let stats = handle.stats();
    assert_eq!(stats.accept_count, 2000);
    assert_eq!(stats.close_count, 2000);
    assert_eq!(stats.abort_count, 0);
    assert!(stats.request_count >= 664 && stats.request_count <= stats.dispatch_count);
    assert_eq!(
        stats.worker_request_count.iter().sum::<u64>(),
        stats.request_count
    );
    let json = serde_json::to_value(&stats).unwrap();
    for key in [
        "start_time",
        "connection_num",
        "accept_count",
        "close_count",
        "request_count",
        "worker_num",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    server.shutdown().unwrap();
}

#[test]
fn client_info_serialises_with_swoole_fields() {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(builder(), move || recorder.clone());
    let handle = server.handle().clone();
    let client = connect(addr);
    let id = conn_of(&server, &events, &client);
    handle.bind(id, "bob").unwrap();
    let info = handle.client_info(id).unwrap();
    assert_eq!(info.peer(), Some(client.local_addr().unwrap()));
    assert_eq!(info.server_port, addr.port());
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["id"], id.as_u64());
    assert_eq!(json["uid"], "bob");
    assert_eq!(json["remote_port"], client.local_addr().unwrap().port());
    for key in [
        "remote_ip",
        "reactor_id",
        "worker_id",
        "connect_time",
        "last_recv_time",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert!(
        json["connect_time"].as_f64().unwrap() > 1.6e9,
        "unix seconds"
    );
    server.shutdown().unwrap();
}

#[test]
fn a_check_interval_longer_than_half_the_idle_time_is_lowered_to_it() {
    let (recorder, events) = Recorder::new(true);
    // Asked to look once an hour, with a 300 ms idle time: it looks every 150 ms.
    let builder = builder()
        .heartbeat_idle_time(Duration::from_millis(300))
        .heartbeat_check_interval(Duration::from_secs(3600));
    let (server, addr) = start(builder, move || recorder.clone());
    let client = connect(addr);
    let id = conn_of(&server, &events, &client);
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    assert_eq!(
        (closed.conn, closed.kind),
        (id, Kind::Close(CloseReason::HeartbeatTimeout))
    );
    server.shutdown().unwrap();
    // An idle time whose half is under the shortest interval (10 ms) is checked every 10 ms,
    // not refused for a setting that was not given.
    let built = eddy::Server::builder()
        .listen("127.0.0.1:0")
        .heartbeat_idle_time(Duration::from_millis(15))
        .handle_signals(false)
        .build(|| Recorder::new(false).0);
    assert!(built.is_ok(), "{:?}", built.err());
}

#[test]
fn heartbeat_idle_time_can_differ_per_listener() {
    let (recorder, events) = Recorder::new(true);
    let server = eddy::Server::builder()
        .listen("127.0.0.1:0")
        .listen("127.0.0.1:0")
        .listener_heartbeat_idle_time(1, Duration::from_millis(200))
        .handle_signals(false)
        .build(move || recorder.clone())
        .unwrap();
    let addrs: Vec<_> = server
        .local_addrs()
        .iter()
        .map(|a| match a {
            eddy::ListenAddr::Tcp(addr) => *addr,
            other => panic!("{other}"),
        })
        .collect();
    let server = server.start().unwrap();
    let handle = server.handle().clone();
    let calm = connect(addrs[0]);
    let calm_id = conn_of(&server, &events, &calm);
    let watched = connect(addrs[1]);
    let watched_id = conn_of(&server, &events, &watched);
    let closed = next_where(&events, |s| matches!(s.kind, Kind::Close(_)));
    assert_eq!(closed.conn, watched_id);
    assert_eq!(closed.kind, Kind::Close(CloseReason::HeartbeatTimeout));
    assert!(handle.exists(calm_id), "listener 0 has no heartbeat");
    let err = eddy::Server::builder()
        .listen("127.0.0.1:0")
        .listener_heartbeat_idle_time(3, Duration::from_secs(1))
        .build(|| Recorder::new(true).0)
        .unwrap_err();
    assert!(
        err.to_string().contains("listener_heartbeat_idle_time"),
        "{err}"
    );
    server.shutdown().unwrap();
}

#[test]
fn activity_times_and_per_worker_counts_are_reported() {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(builder().worker_num(2), move || recorder.clone());
    let handle = server.handle().clone();
    let mut client = connect(addr);
    let id = conn_of(&server, &events, &client);
    let before = handle.client_info(id).unwrap();
    assert!(before.last_send_time.is_none());
    write_all(&mut client, b"ping");
    assert_eq!(read_n(&mut client, 4), b"ping");
    let after = handle.client_info(id).unwrap();
    assert!(after.last_send_time.is_some() && after.last_dispatch_time.is_some());
    // Activity is stamped on the kernel's coarse clock: up to a tick (10 ms at HZ=100) early.
    assert!(after.last_recv_time >= before.connect_time - Duration::from_millis(25));
    let stats = handle.stats();
    let worker = after.worker_id;
    assert!(
        stats.worker_dispatch_count[worker] >= 2,
        "connect and the packet"
    );
    assert_eq!(stats.worker_response_count[worker], 1);
    assert_eq!(
        stats.worker_dispatch_count.iter().sum::<u64>(),
        stats.dispatch_count
    );
    assert!(stats.idle_worker_num <= 2);
    server.shutdown().unwrap();
}

#[test]
fn a_client_that_stops_reading_never_blocks_a_broadcast() {
    let (recorder, events) = Recorder::new(false);
    let builder = builder().socket_buffer_size(64 * 1024);
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    let mut conns = clients(&server, &events, addr, 4);
    let chunk = vec![9u8; 16 * 1024];
    // conns[0] never reads: its kernel buffers, then its output buffer fill up, and from then
    // on it counts as failed, while the others (read below) keep getting everything.
    let mut rounds = 0;
    loop {
        let d = handle.broadcast(&chunk);
        rounds += 1;
        for (client, _) in conns.iter_mut().skip(1) {
            assert_eq!(read_n(client, chunk.len()), chunk);
        }
        if d.failed == 1 {
            assert_eq!(d.delivered(), 3);
            break;
        }
        assert!(rounds < 10_000, "the slow client never filled up");
    }
    let slow = handle.client_info(conns[0].1).unwrap();
    assert!(
        slow.send_queued_bytes <= 64 * 1024,
        "bounded: {}",
        slow.send_queued_bytes
    );
    server.shutdown().unwrap();
}

#[test]
fn a_broadcast_to_many_connections_is_queued_and_written_by_the_reactors() {
    let (recorder, events) = Recorder::new(false);
    let builder = builder().reactor_num(2).worker_num(2);
    let (server, addr) = start(builder, move || recorder.clone());
    let mut clients: Vec<_> = (0..200).map(|_| connect(addr)).collect();
    for _ in 0..200 {
        next_where(&events, |s| s.kind == Kind::Connect);
    }
    for round in 0..3u8 {
        let delivery = server.handle().broadcast([b'r', b'0' + round]);
        assert_eq!((delivery.delivered(), delivery.failed), (200, 0));
        for client in &mut clients {
            assert_eq!(read_n(client, 2), [b'r', b'0' + round]);
        }
    }
    server.shutdown().unwrap();
}
