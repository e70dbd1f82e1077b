//! Datagram listeners: UDP over IPv4 and IPv6 and unix datagram sockets, beside stream
//! listeners; `on_packet` and `sendto` from every kind of thread; floods, oversized
//! datagrams, bad `sendto` calls, and shutdown with datagrams queued.

use std::{
    net::{SocketAddr, UdpSocket},
    os::unix::net::UnixDatagram,
    time::Duration,
};

use crossbeam_channel::{Receiver, Sender};
use eddy::{
    Bytes, ConnId, Context, EventHandler, ListenAddr, PacketInfo, PacketPeer, SendStatus,
    SendToError, Server, ServerBuilder,
};

use crate::util::*;

/// Echoes datagrams with `sendto`, and reports each.
#[derive(Clone)]
struct PacketEcho {
    tx: Sender<(Bytes, PacketInfo)>,
    /// A datagram `slow` holds its worker until this says go (or `WAIT` passes).
    hold: Option<Receiver<()>>,
}

impl PacketEcho {
    fn new(tx: &Sender<(Bytes, PacketInfo)>) -> Self {
        PacketEcho {
            tx: tx.clone(),
            hold: None,
        }
    }
}

impl EventHandler for PacketEcho {
    fn on_packet(&mut self, ctx: &mut Context<'_>, packet: Bytes, from: PacketInfo) {
        let _ = self.tx.send((packet.clone(), from.clone()));
        if let Some(hold) = self.hold.as_ref().filter(|_| &packet[..] == b"slow") {
            // Hold this worker: datagrams behind it pile up in its queue.
            let _ = hold.recv_timeout(WAIT);
        }
        let _ = ctx.sendto(from.listener, &from.peer, &packet);
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        let _ = ctx.send(conn, &packet);
    }
}

fn dgram_builder() -> ServerBuilder {
    Server::builder().handle_signals(false).worker_num(2)
}

fn udp_client(server: SocketAddr) -> UdpSocket {
    let bind: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(bind).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket.connect(server).unwrap();
    socket
}

fn addr_of(server: &eddy::RunningServer, listener: usize) -> SocketAddr {
    server.handle().local_addrs()[listener]
        .socket_addr()
        .expect("an IP listener")
}

#[test]
fn udp_over_ipv4_and_ipv6_echoes_many_peers_beside_a_tcp_listener() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = dgram_builder()
        .listen_udp("127.0.0.1:0")
        .listen_udp("[::1]:0")
        .listen("127.0.0.1:0");
    let server = builder.build(move || PacketEcho::new(&tx)).unwrap();
    assert!(matches!(server.local_addrs()[0], ListenAddr::Udp(_)));
    let server = server.start().unwrap();
    for listener in [0, 1] {
        let clients: Vec<UdpSocket> = (0..20)
            .map(|_| udp_client(addr_of(&server, listener)))
            .collect();
        for round in 0..5 {
            for (i, client) in clients.iter().enumerate() {
                client
                    .send(format!("{listener} {i} {round}").as_bytes())
                    .unwrap();
            }
            for (i, client) in clients.iter().enumerate() {
                let mut buf = [0u8; 64];
                let n = client.recv(&mut buf).expect("the echo");
                assert_eq!(&buf[..n], format!("{listener} {i} {round}").as_bytes());
            }
        }
    }
    let (_, info) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(info.listener, 0);
    assert_eq!(info.server_port, addr_of(&server, 0).port());
    // The TCP listener beside them still works.
    let mut tcp = connect(addr_of(&server, 2));
    write_all(&mut tcp, b"tcp too");
    assert_eq!(read_n(&mut tcp, 7), b"tcp too");
    let stats = server.handle().stats();
    assert!(
        stats.packet_recv_count >= 200 && stats.packet_send_count >= 200,
        "{stats:?}"
    );
    server.shutdown().unwrap();
}

#[test]
fn unix_datagrams_are_answered_at_the_senders_path() {
    let dir = std::env::temp_dir().join(format!("eddy-dgram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server_path = dir.join("server.sock");
    let client_path = dir.join("client.sock");
    let _ = std::fs::remove_file(&server_path);
    let _ = std::fs::remove_file(&client_path);
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = dgram_builder().listen_unix_dgram(server_path.to_str().unwrap());
    let server = builder
        .build(move || PacketEcho::new(&tx))
        .unwrap()
        .start()
        .unwrap();
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(b"over unix", &server_path).unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"over unix");
    let (_, info) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(info.peer, PacketPeer::Unix(Some(client_path.clone())));
    // An unnamed client cannot be answered: the echo's sendto says why, nothing breaks.
    let unnamed = UnixDatagram::unbound().unwrap();
    unnamed.send_to(b"who am i", &server_path).unwrap();
    let (_, info) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(info.peer, PacketPeer::Unix(None));
    assert_eq!(
        server.handle().sendto(0, &info.peer, b"x"),
        Err(SendToError::FamilyMismatch)
    );
    server.shutdown().unwrap();
    assert!(
        !server_path.exists(),
        "the socket file is removed at shutdown"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sendto_works_from_any_thread_and_refuses_bad_calls_with_a_reason() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = dgram_builder()
        .listen_udp("127.0.0.1:0")
        .listen("127.0.0.1:0")
        .add_process("pinger", |ctx| {
            // A user thread sends to whoever asks, through its server handle.
            let _ = ctx.wait_stop(Duration::from_secs(3600));
        });
    let server = builder
        .build(move || PacketEcho::new(&tx))
        .unwrap()
        .start()
        .unwrap();
    let client = udp_client(addr_of(&server, 0));
    client.send(b"hello").unwrap();
    let (_, info) = rx.recv_timeout(WAIT).unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    // From another thread, holding a handle.
    let handle = server.handle().clone();
    let peer = info.peer.clone();
    let status = std::thread::spawn(move || handle.sendto(0, &peer, b"from a thread"))
        .join()
        .unwrap();
    assert_eq!(status, Ok(SendStatus::Sent));
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from a thread");
    let handle = server.handle();
    assert_eq!(
        handle.sendto(9, &info.peer, b"x"),
        Err(SendToError::UnknownListener(9))
    );
    assert_eq!(
        handle.sendto(1, &info.peer, b"x"),
        Err(SendToError::NotDatagram(1))
    );
    assert_eq!(handle.sendto(0, &info.peer, b""), Err(SendToError::Empty));
    let v6: PacketPeer = "[::1]:9".parse::<SocketAddr>().unwrap().into();
    assert_eq!(
        handle.sendto(0, &v6, b"x"),
        Err(SendToError::FamilyMismatch)
    );
    assert!(matches!(
        handle.sendto(0, &info.peer, vec![0u8; 70_000]),
        Err(SendToError::TooLarge { len: 70_000, .. })
    ));
    server.shutdown().unwrap();
}

/// Echoes datagrams on the reactor's thread, reporting each `sendto`'s status; the first
/// datagram holds the reactor until the test lets it go.
struct GatedEcho {
    gate: crossbeam_channel::Receiver<()>,
    statuses: Sender<SendStatus>,
}

impl EventHandler for GatedEcho {
    fn on_packet(&mut self, ctx: &mut Context<'_>, packet: Bytes, from: PacketInfo) {
        if &packet[..] == b"gate" {
            self.gate
                .recv_timeout(WAIT)
                .expect("the test opens the gate");
        }
        let status = ctx.sendto(from.listener, &from.peer, &packet).unwrap();
        let _ = self.statuses.send(status);
    }

    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

#[test]
fn in_reactor_mode_a_batch_of_datagrams_is_answered_with_its_replies_sent_together() {
    let (open, gate) = crossbeam_channel::bounded(1);
    let (statuses, reported) = crossbeam_channel::unbounded();
    let server = dgram_builder()
        .dispatch_mode(eddy::DispatchMode::Reactor)
        .worker_num(1)
        .reactor_num(1)
        .listen_udp("127.0.0.1:0")
        .build(move || GatedEcho {
            gate: gate.clone(),
            statuses: statuses.clone(),
        })
        .unwrap()
        .start()
        .unwrap();
    let addr = addr_of(&server, 0);
    let held = udp_client(addr);
    held.send(b"gate").unwrap();
    // The reactor is inside `on_packet`, so these wait in the socket and are read together.
    let clients: Vec<UdpSocket> = (0..40).map(|_| udp_client(addr)).collect();
    for (i, client) in clients.iter().enumerate() {
        client.send(format!("{i}").as_bytes()).unwrap();
        client.send(format!("{i} again").as_bytes()).unwrap();
    }
    open.send(()).unwrap();
    let mut buf = [0u8; 64];
    let n = held.recv(&mut buf).expect("the gate's echo");
    assert_eq!(&buf[..n], b"gate");
    for (i, client) in clients.iter().enumerate() {
        for expected in [format!("{i}"), format!("{i} again")] {
            let n = client
                .recv(&mut buf)
                .expect("every reply of a batch goes out");
            assert_eq!(&buf[..n], expected.as_bytes());
        }
    }
    let statuses: Vec<SendStatus> = (0..81)
        .map(|_| reported.recv_timeout(WAIT).unwrap())
        .collect();
    // The replies to a batch were held, then sent together: `Queued`, as a corked TCP
    // connection's are. A datagram read alone is sent at once.
    let queued = statuses
        .iter()
        .filter(|s| matches!(s, SendStatus::Queued { .. }))
        .count();
    assert!(queued >= 40, "{statuses:?}");
    // The reactor counts a batch's replies once `sendmmsg` returns, which may be just after
    // the client read them.
    wait_until("every reply counted", || {
        server.handle().stats().packet_send_count == 81
    });
    let stats = server.handle().stats();
    assert_eq!(stats.packet_send_count, 81, "{stats:?}");
    assert_eq!(stats.packet_queued, (0, 0), "{stats:?}");
    assert_eq!(stats.packet_send_failed, 0, "{stats:?}");
    server.shutdown().unwrap();
}

#[test]
fn a_flood_the_workers_cannot_keep_up_with_is_dropped_and_counted_not_buffered() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = dgram_builder()
        .listen_udp("127.0.0.1:0")
        .worker_num(1)
        .worker_queue_capacity(16);
    let (release, hold) = crossbeam_channel::bounded(1);
    let server = builder
        .build(move || PacketEcho {
            hold: Some(hold.clone()),
            ..PacketEcho::new(&tx)
        })
        .unwrap()
        .start()
        .unwrap();
    let client = udp_client(addr_of(&server, 0));
    client.send(b"slow").unwrap();
    rx.recv_timeout(WAIT)
        .expect("the slow datagram is being handled");
    // While the only worker sleeps, far more arrive than its queue holds.
    for i in 0..2000u32 {
        let _ = client.send(&i.to_be_bytes());
    }
    wait_until("drops to be counted", || {
        server.handle().stats().packet_drop_inbox_full > 0
    });
    release.send(()).unwrap();
    // The server still answers afterwards.
    wait_until("the queue to drain", || {
        client.send(b"ping").unwrap();
        let mut buf = [0u8; 16];
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        matches!(client.recv(&mut buf), Ok(4) if &buf[..4] == b"ping")
    });
    let stats = server.handle().stats();
    assert!(stats.packet_recv_count > 16, "{stats:?}");
    server.shutdown().unwrap();
}

#[test]
fn without_on_packet_datagrams_are_logged_and_counted() {
    struct TcpOnly;
    impl EventHandler for TcpOnly {
        fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
    }
    let server = dgram_builder()
        .listen_udp("127.0.0.1:0")
        .build(|| TcpOnly)
        .unwrap()
        .start()
        .unwrap();
    let client = udp_client(addr_of(&server, 0));
    for _ in 0..3 {
        client.send(b"anyone?").unwrap();
    }
    wait_until("three unhandled datagrams", || {
        server.handle().stats().packet_unhandled == 3
    });
    server.shutdown().unwrap();
}

#[test]
fn the_echo_example_speaks_udp() {
    let example = Example::start("echo", &["--udp"]);
    let client = udp_client(example.addr);
    client.send(b"hello udp").unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello udp");
    assert_eq!(example.signal(libc::SIGTERM), 0);
}

#[test]
fn a_shutdown_flushes_the_datagrams_sendto_queued() {
    let dir = std::env::temp_dir().join(format!("eddy-dgram-q-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_path, client_path) = (dir.join("s.sock"), dir.join("c.sock"));
    let _ = std::fs::remove_file(&server_path);
    let _ = std::fs::remove_file(&client_path);
    let (tx, _rx) = crossbeam_channel::unbounded();
    let server = dgram_builder()
        .listen_unix_dgram(server_path.to_str().unwrap())
        .build(move || PacketEcho::new(&tx))
        .unwrap()
        .start()
        .unwrap();
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    // The client does not read: its receive queue fills and sendto starts queueing.
    let peer = PacketPeer::Unix(Some(client_path.clone()));
    let mut sent = 0u32;
    loop {
        match server.handle().sendto(0, &peer, sent.to_be_bytes()) {
            Ok(SendStatus::Sent) => sent += 1,
            Ok(SendStatus::Queued { .. }) => {
                sent += 1;
                if server.handle().stats().packet_queued.0 >= 50 {
                    break;
                }
            }
            Err(err) => panic!("sendto failed: {err}"),
        }
    }
    let shutdown = std::thread::spawn(move || server.shutdown().unwrap());
    // Every datagram arrives, in order, the queued ones flushed during the shutdown.
    for i in 0..sent {
        let mut buf = [0u8; 4];
        assert_eq!(client.recv(&mut buf).unwrap(), 4);
        assert_eq!(u32::from_be_bytes(buf), i);
    }
    let report = shutdown.join().unwrap();
    assert!(report.graceful, "{report:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A unix datagram echo, a peer bound beside it that never reads, and the path of another
/// peer (not bound yet). The stuck peer's datagrams are dropped at the shutdown's deadline.
struct StuckPeer {
    server: eddy::RunningServer,
    dir: std::path::PathBuf,
    server_path: std::path::PathBuf,
    stuck_path: std::path::PathBuf,
    other_path: std::path::PathBuf,
    _stuck: UnixDatagram,
}

fn stuck_peer(name: &str, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> StuckPeer {
    let dir = std::env::temp_dir().join(format!("eddy-dgram-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server_path = dir.join("s.sock");
    let (stuck_path, other_path) = (dir.join("stuck.sock"), dir.join("other.sock"));
    for path in [&server_path, &stuck_path, &other_path] {
        let _ = std::fs::remove_file(path);
    }
    let (tx, _rx) = crossbeam_channel::unbounded();
    let builder = dgram_builder()
        .listen_unix_dgram(server_path.to_str().unwrap())
        .max_wait_time(Duration::from_millis(100));
    let server = configure(builder)
        .build(move || PacketEcho::new(&tx))
        .unwrap()
        .start()
        .unwrap();
    let _stuck = UnixDatagram::bind(&stuck_path).unwrap();
    StuckPeer {
        server,
        dir,
        server_path,
        stuck_path,
        other_path,
        _stuck,
    }
}

#[test]
fn a_unix_peer_that_stops_reading_does_not_hold_up_the_others() {
    let peers = stuck_peer("p", |b| b);
    // A peer that never reads: its receive queue fills, and well over a flush's look (1024)
    // of datagrams to it wait in the send queue.
    let handle = peers.server.handle();
    let peer = PacketPeer::Unix(Some(peers.stuck_path.clone()));
    for i in 0..1500u32 {
        handle.sendto(0, &peer, i.to_be_bytes()).unwrap();
    }
    assert!(handle.stats().packet_queued.0 > 1024);
    // Another peer is answered all the same (before, every flush looked only at the first
    // 1024 queued datagrams, all to the stuck peer, and its reply waited behind them).
    let other = UnixDatagram::bind(&peers.other_path).unwrap();
    other.set_read_timeout(Some(WAIT)).unwrap();
    other.send_to(b"me too", &peers.server_path).unwrap();
    let mut buf = [0u8; 16];
    let n = other.recv(&mut buf).expect("the other peer's echo");
    assert_eq!(&buf[..n], b"me too");
    peers.server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&peers.dir);
}

#[test]
fn a_unix_peer_that_stops_reading_fills_only_its_share_of_the_send_queue() {
    let peers = stuck_peer("share", |b| b.socket_buffer_size(64 * 1024));
    // Datagrams to a peer that never reads, until the queue says no: at its share (a quarter
    // of the 64 KiB), not the whole queue.
    let handle = peers.server.handle();
    let peer = PacketPeer::Unix(Some(peers.stuck_path.clone()));
    let refusal = loop {
        if let Err(err) = handle.sendto(0, &peer, [7u8; 1024]) {
            break err;
        }
    };
    assert_eq!(
        refusal,
        SendToError::QueueFull {
            pending: 16 * 1024,
            limit: 16 * 1024
        }
    );
    // Another peer is still served (before, the stuck one took the whole queue and every
    // sendto was refused).
    let other = UnixDatagram::bind(&peers.other_path).unwrap();
    other.set_read_timeout(Some(WAIT)).unwrap();
    let to_other = PacketPeer::Unix(Some(peers.other_path.clone()));
    assert!(handle.sendto(0, &to_other, b"still here").is_ok());
    let mut buf = [0u8; 16];
    let n = other.recv(&mut buf).expect("the other peer's datagram");
    assert_eq!(&buf[..n], b"still here");
    peers.server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&peers.dir);
}

#[test]
fn a_codec_given_for_a_datagram_listener_is_refused_at_build() {
    for addr in ["udp:127.0.0.1:0", "unix-dgram:/tmp/eddy-never-bound.sock"] {
        let err = Server::builder()
            .listen_with(addr, eddy::codec::EofCodec::line())
            .handle_signals(false)
            .build(|| Recorder::new(false).0)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("listen_with") && text.contains("datagram"),
            "{text}"
        );
    }
}
