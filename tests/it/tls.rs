//! TLS listeners with a real rustls client: round trips in plaintext to the handler, what the
//! handshake negotiated (version, ALPN, SNI, the client certificate's subject), refusals of
//! bad files at build, hot reload under load, clean and truncated closes, bad input that
//! closes only its connection, and `sendfile` over TLS.

use std::{
    io::{Read, Write},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use eddy::{
    codec::LengthCodec, ClientAuth, CloseReason, DispatchMode, TlsConfig, TlsFailure, TlsVersion,
};

use crate::{pki::*, util::*};

fn tls_of(pem: &Pem) -> TlsConfig {
    TlsConfig::from_pem(pem.cert.clone(), pem.key.clone())
}

/// A recording echo server with TLS on its listener.
fn tls_server(
    tls: TlsConfig,
    mode: DispatchMode,
) -> (
    eddy::RunningServer,
    std::net::SocketAddr,
    crossbeam_channel::Receiver<Seen>,
) {
    let (recorder, events) = Recorder::new(true);
    let builder = builder().tls(tls).dispatch_mode(mode).worker_num(2);
    let (server, addr) = start(builder, move || recorder.clone());
    (server, addr, events)
}

fn round_trip(stream: &mut TlsStream, data: &[u8]) {
    stream.write_all(data).unwrap();
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn a_tls_echo_round_trips_plaintext_after_on_connect_and_reports_the_session() {
    let ca = Ca::new("eddy test CA");
    let server_pem = ca.server(&["localhost"]);
    for mode in [DispatchMode::Fd, DispatchMode::RoundRobin] {
        let tls = tls_of(&server_pem).alpn(["eddy/1", "http/1.1"]);
        let (server, addr, events) = tls_server(tls, mode.clone());
        let mut client =
            tls_connect(addr, ca.client_config(&["eddy/1"], None), "localhost").unwrap();
        // The first bytes travel with the client's Finished: they must wait for on_connect.
        round_trip(&mut client, b"hello over tls");
        let connect = next(&events);
        assert_eq!(connect.kind, Kind::Connect, "{mode:?}");
        let received = next(&events);
        assert_eq!(
            received.kind,
            Kind::Receive(b"hello over tls"[..].into()),
            "{mode:?}"
        );
        assert!(
            connect.end <= received.start,
            "on_connect returned first ({mode:?})"
        );
        let info = server
            .handle()
            .client_info(connect.conn)
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(info.version, Some(TlsVersion::Tls13));
        assert_eq!(info.alpn.as_deref(), Some("eddy/1"));
        assert_eq!(info.server_name.as_deref(), Some("localhost"));
        assert!(
            info.cipher_suite.starts_with("TLS13_"),
            "{}",
            info.cipher_suite
        );
        assert_eq!(info.peer_subject, None);
        assert_eq!(client.conn.alpn_protocol(), Some(&b"eddy/1"[..]));
        server.shutdown().unwrap();
    }
}

#[test]
fn tls_1_2_only_and_a_client_offering_no_common_alpn_is_refused() {
    let ca = Ca::new("eddy test CA");
    let pem = ca.server(&["localhost"]);
    let tls = tls_of(&pem).versions(&[TlsVersion::Tls12]).alpn(["h2"]);
    let (server, addr, events) = tls_server(tls, DispatchMode::Fd);
    let mut client = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
    round_trip(&mut client, b"twelve");
    let conn = next(&events).conn;
    let info = server.handle().client_info(conn).unwrap().tls.unwrap();
    assert_eq!(info.version, Some(TlsVersion::Tls12));
    assert_eq!(info.alpn, None, "a client without ALPN is served");
    let refused = tls_connect(addr, ca.client_config(&["http/1.1"], None), "localhost");
    assert!(
        refused.is_err(),
        "no protocol in common: the handshake fails"
    );
    server.shutdown().unwrap();
}

#[test]
fn sni_picks_the_certificate_the_client_names() {
    let ca = Ca::new("eddy test CA");
    let default = ca.server(&["localhost"]);
    let api = ca.server(&["api.localhost"]);
    let tls = tls_of(&default).sni_pem("API.localhost", api.cert.clone(), api.key.clone());
    let (server, addr, _events) = tls_server(tls, DispatchMode::Fd);
    for (name, want) in [("api.localhost", &api), ("localhost", &default)] {
        let mut client = tls_connect(addr, ca.client_config(&[], None), name).unwrap();
        round_trip(&mut client, b"which certificate?");
        let served = client.conn.peer_certificates().unwrap()[0].to_vec();
        assert_eq!(served, want.der, "the certificate for {name}");
    }
    server.shutdown().unwrap();
}

#[test]
fn client_certificates_are_verified_against_the_ca_and_their_subject_reported() {
    let ca = Ca::new("eddy test CA");
    let server_pem = ca.server(&["localhost"]);
    let alice = ca.client("alice", "Example Org");
    let stranger = Ca::new("another CA").client("mallory", "Elsewhere");
    let tls = tls_of(&server_pem).client_ca_pem(ca.pem.clone(), ClientAuth::Required);
    let (server, addr, events) = tls_server(tls, DispatchMode::Fd);

    let mut client = tls_connect(addr, ca.client_config(&[], Some(&alice)), "localhost").unwrap();
    round_trip(&mut client, b"it is alice");
    let conn = next(&events).conn;
    next(&events);
    let subject = server
        .handle()
        .client_info(conn)
        .unwrap()
        .tls
        .unwrap()
        .peer_subject;
    let subject = subject.expect("the client certificate's subject");
    assert!(
        subject.contains("CN=alice") && subject.contains("O=Example Org"),
        "{subject}"
    );

    for identity in [None, Some(&stranger)] {
        // TLS 1.3 clients finish before the server has checked them: the refusal comes as
        // the first read's error, or as the end of the stream.
        let refused = tls_connect(addr, ca.client_config(&[], identity), "localhost").and_then(
            |mut client| {
                client.write_all(b"let me in")?;
                let mut buf = [0; 16];
                match client.read(&mut buf)? {
                    0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
                    _ => Ok(()),
                }
            },
        );
        assert!(refused.is_err(), "refused without a trusted certificate");
    }
    // Neither refused client was ever announced to the handler.
    wait_until("the refused connections close", || {
        server.handle().connection_count() == 1
    });
    assert!(events.try_recv().is_err(), "no event for refused clients");
    server.shutdown().unwrap();
}

#[test]
fn close_sends_close_notify_a_peer_close_notify_is_clean_and_a_bare_close_is_truncation() {
    let ca = Ca::new("eddy test CA");
    let (server, addr, events) = tls_server(tls_of(&ca.server(&["localhost"])), DispatchMode::Fd);
    let config = ca.client_config(&[], None);

    // The server closes: everything queued, then close_notify (a clean end for rustls).
    let mut client = tls_connect(addr, config.clone(), "localhost").unwrap();
    round_trip(&mut client, b"one");
    let conn = next(&events).conn;
    next(&events);
    server.handle().send(conn, b"last words").unwrap();
    server.handle().close(conn).unwrap();
    let mut got = Vec::new();
    client
        .read_to_end(&mut got)
        .expect("a clean close_notify, not a truncation");
    assert_eq!(got, b"last words");
    assert_eq!(next(&events).kind, Kind::Close(CloseReason::ServerClosed));

    // The client says close_notify: `PeerClosed`.
    let mut client = tls_connect(addr, config.clone(), "localhost").unwrap();
    round_trip(&mut client, b"two");
    next(&events);
    next(&events);
    client.conn.send_close_notify();
    client.flush().unwrap();
    assert_eq!(next(&events).kind, Kind::Close(CloseReason::PeerClosed));

    // The client closes the socket without it: truncation.
    let mut client = tls_connect(addr, config, "localhost").unwrap();
    round_trip(&mut client, b"three");
    next(&events);
    next(&events);
    drop(client);
    assert_eq!(
        next(&events).kind,
        Kind::Close(CloseReason::Tls(TlsFailure::Truncated))
    );
    server.shutdown().unwrap();
}

/// Whether the server ends the connection (EOF or reset) within the test's wait.
fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(err) => panic!("the server never closed: {err}"),
        }
    }
}

#[test]
fn garbage_a_stalled_handshake_and_an_oversized_record_close_only_their_connection() {
    let ca = Ca::new("eddy test CA");
    let tls = tls_of(&ca.server(&["localhost"])).handshake_timeout(Duration::from_millis(300));
    let (server, addr, events) = tls_server(tls, DispatchMode::Fd);
    let mut good = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
    round_trip(&mut good, b"still here");
    next(&events);
    next(&events);

    let mut garbage = connect(addr);
    write_all(&mut garbage, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        closed_by_server(&mut garbage),
        "plain HTTP instead of a ClientHello"
    );

    let mut stalled = connect(addr);
    write_all(&mut stalled, &[0x16, 0x03, 0x01]);
    assert!(
        closed_by_server(&mut stalled),
        "a handshake that never finishes"
    );

    let mut oversized = connect(addr);
    let mut record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    record.extend_from_slice(&[0u8; 1024]);
    write_all(&mut oversized, &record);
    assert!(
        closed_by_server(&mut oversized),
        "a record over the size limit"
    );

    // Renegotiation does not exist in TLS 1.3; a record that does not decrypt ends only its
    // own session.
    let mut forged = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
    round_trip(&mut forged, b"then garbage");
    next(&events);
    next(&events);
    forged
        .sock
        .write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])
        .unwrap();
    forged.sock.write_all(&[0x5a; 0x20]).unwrap();
    assert!(
        closed_by_server(&mut forged.sock),
        "a record that does not decrypt"
    );
    match next(&events).kind {
        Kind::Close(CloseReason::Tls(TlsFailure::Session(_))) => {}
        other => panic!("closed for {other:?}"),
    }

    round_trip(&mut good, b"and still here");
    assert_eq!(
        next(&events).kind,
        Kind::Receive(b"and still here"[..].into())
    );
    wait_until("only the good connection is left", || {
        server.handle().connection_count() == 1
    });
    server.shutdown().unwrap();
}

/// A recording echo that, on a packet `hold`, holds its thread until told to go on (or
/// `WAIT` passes): in the reactor dispatch mode, that is the reactor, which reads nothing
/// meanwhile.
struct Holding {
    recorder: Recorder,
    go_on: crossbeam_channel::Receiver<()>,
}

impl eddy::EventHandler for Holding {
    fn on_connect(&mut self, ctx: &mut eddy::Context<'_>, conn: eddy::ConnId) {
        self.recorder.on_connect(ctx, conn);
    }

    fn on_receive(&mut self, ctx: &mut eddy::Context<'_>, conn: eddy::ConnId, packet: eddy::Bytes) {
        let hold = &packet[..] == b"hold";
        self.recorder.on_receive(ctx, conn, packet);
        if hold {
            let _ = self.go_on.recv_timeout(WAIT);
        }
    }

    fn on_close(&mut self, ctx: &mut eddy::Context<'_>, conn: eddy::ConnId, reason: CloseReason) {
        self.recorder.on_close(ctx, conn, reason);
    }
}

#[test]
fn a_record_that_does_not_decrypt_from_a_peer_already_gone_is_a_tls_failure_not_a_reset() {
    // The forged record and the peer's reset are both in when the server reads (its reactor
    // is held meanwhile): the alert it owes cannot be sent, and the close still says why the
    // session failed (it said the peer reset it).
    let ca = Ca::new("eddy test CA");
    let (recorder, events) = Recorder::new(true);
    let (go, go_on) = crossbeam_channel::bounded(1);
    let builder = builder()
        .tls(tls_of(&ca.server(&["localhost"])))
        .dispatch_mode(DispatchMode::Reactor)
        .worker_num(1);
    let (server, addr) = start(builder, move || Holding {
        recorder: recorder.clone(),
        go_on: go_on.clone(),
    });
    let mut forged = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
    forged.write_all(b"hold").unwrap();
    next(&events);
    // The reactor is in the handler now, and reads nothing until it returns.
    assert_eq!(next(&events).kind, Kind::Receive(b"hold"[..].into()));
    forged
        .sock
        .write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])
        .unwrap();
    forged.sock.write_all(&[0x5a; 0x20]).unwrap();
    // Closed with a reset: SO_LINGER on, for no time.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&forged.sock),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    drop(forged);
    go.send(()).unwrap();
    match next(&events).kind {
        Kind::Close(CloseReason::Tls(TlsFailure::Session(_))) => {}
        other => panic!("closed for {other:?}"),
    }
    server.shutdown().unwrap();
}

#[test]
fn bad_files_and_a_key_that_does_not_match_are_refused_at_build_naming_the_file() {
    let ca = Ca::new("eddy test CA");
    let one = ca.server(&["localhost"]);
    let two = ca.server(&["localhost"]);
    let (cert, key) = one.write("refusals");
    let missing = cert.with_file_name("missing.pem");
    let garbage = cert.with_file_name("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let (_, other_key) = two.write("refusals-other");
    let cases = [
        (TlsConfig::from_pem_files(&missing, &key), "missing.pem"),
        (
            TlsConfig::from_pem_files(&garbage, &key),
            "no PEM certificate found",
        ),
        (
            TlsConfig::from_pem_files(&cert, &garbage),
            "no PEM private key found",
        ),
        (
            TlsConfig::from_pem_files(&cert, &other_key),
            "does not match",
        ),
        (
            TlsConfig::from_pem_files(&cert, &key).versions(&[]),
            "no protocol version",
        ),
        // A deadline past what an Instant can hold panicked the reactor at the first connect.
        (
            TlsConfig::from_pem_files(&cert, &key).handshake_timeout(Duration::MAX),
            "tls_handshake_timeout",
        ),
        (
            TlsConfig::from_pem_files(&cert, &key).handshake_timeout(Duration::ZERO),
            "tls_handshake_timeout",
        ),
    ];
    for (tls, want) in cases {
        let Err(err) = builder().tls(tls).build(|| Recorder::new(false).0) else {
            panic!("refused: {want}");
        };
        let text = err.to_string();
        assert!(text.contains("tls") && text.contains(want), "{text}");
    }
    let built = eddy::Server::builder()
        .tls(TlsConfig::from_pem_files(&cert, &key))
        .listen("127.0.0.1:0")
        .build(|| Recorder::new(false).0);
    let Err(err) = built else {
        panic!("tls before any listener is refused");
    };
    assert!(err.to_string().contains("after the listener"), "{err}");
}

#[test]
fn reload_tls_swaps_the_certificate_for_new_connections_without_dropping_open_ones() {
    let ca = Ca::new("eddy test CA");
    let first = ca.server(&["localhost"]);
    let second = ca.server(&["localhost"]);
    let (cert, key) = first.write("reload");
    let (server, addr, _events) =
        tls_server(TlsConfig::from_pem_files(&cert, &key), DispatchMode::Fd);
    let config = ca.client_config(&[], None);
    let served = |config: &Arc<rustls::ClientConfig>| {
        let mut client = tls_connect(addr, config.clone(), "localhost").unwrap();
        round_trip(&mut client, b"which?");
        client.conn.peer_certificates().unwrap()[0].to_vec()
    };
    assert_eq!(served(&config), first.der);

    // Clients under load across the reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let loaders: Vec<_> = rounds
        .iter()
        .map(|count| {
            let (stop, count, config) = (stop.clone(), count.clone(), config.clone());
            std::thread::spawn(move || {
                let mut client = tls_connect(addr, config, "localhost").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    round_trip(&mut client, b"ping under reload");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let progressed = |rounds: &[Arc<AtomicU64>]| {
        let at: Vec<u64> = rounds.iter().map(|r| r.load(Ordering::Relaxed)).collect();
        wait_until("every client goes on", || {
            rounds
                .iter()
                .zip(&at)
                .all(|(r, at)| r.load(Ordering::Relaxed) > *at + 10)
        });
    };
    progressed(&rounds);
    std::fs::write(&cert, &second.cert).unwrap();
    std::fs::write(&key, &second.key).unwrap();
    server.handle().reload_tls(0).unwrap();
    assert_eq!(
        served(&config),
        second.der,
        "new connections get the new certificate"
    );
    progressed(&rounds);

    // A broken file: the reload fails, naming it, and the certificate in use stays.
    std::fs::write(&key, "garbage").unwrap();
    let err = server.handle().reload_tls(0).unwrap_err();
    assert!(err.to_string().contains("key.pem"), "{err}");
    assert_eq!(served(&config), second.der);
    assert!(server.handle().reload_tls(1).is_err(), "no listener 1");
    progressed(&rounds);
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.join().expect("no client dropped or failed");
    }
    server.shutdown().unwrap();
}

#[test]
fn sendfile_and_large_messages_over_tls_arrive_byte_exact_in_order() {
    const LEN: usize = 3 << 20;
    let ca = Ca::new("eddy test CA");
    let path = std::env::temp_dir().join(format!("eddy-{}-tls-file", std::process::id()));
    let content: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let codec = LengthCodec::new();
    let (recorder, events) = Recorder::new(true);
    let builder = eddy::Server::builder()
        .listen_with("127.0.0.1:0", codec)
        .handle_signals(false)
        .tls(tls_of(&ca.server(&["localhost"])));
    let (server, addr) = start(builder, move || recorder.clone());
    let mut client = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
    client.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    let body = vec![7u8; 1 << 20];
    let packet = frame(&body);
    round_trip(&mut client, &packet);
    let conn = next(&events).conn;
    next(&events);
    let handle = server.handle();
    handle.send_raw(conn, b"before").unwrap();
    handle.sendfile(conn, &path, 0, None).unwrap();
    handle.send_raw(conn, b"after").unwrap();
    let got = read_n(&mut client, 6 + LEN + 5);
    assert_eq!(&got[..6], b"before");
    assert!(got[6..6 + LEN] == content[..], "the file, byte exact");
    assert_eq!(&got[6 + LEN..], b"after");
    server.shutdown().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_send_before_the_handshake_finishes_is_queued_and_arrives_after_it() {
    let ca = Ca::new("eddy test CA");
    let (server, addr, events) = tls_server(tls_of(&ca.server(&["localhost"])), DispatchMode::Fd);
    // Connected, no handshake yet: the server knows the connection, the handler does not.
    let tcp = connect(addr);
    wait_until("the connection is in the table", || {
        server.handle().connection_count() == 1
    });
    let conn = server.handle().connections().next().expect("listed");
    let status = server.handle().send(conn, b"early words").unwrap();
    assert!(
        matches!(status, eddy::SendStatus::Queued { .. }),
        "{status:?}"
    );
    let mut client = tls_client(tcp, ca.client_config(&[], None), "localhost");
    let mut got = [0; 11];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"early words");
    assert_eq!(next(&events).kind, Kind::Connect);
    round_trip(&mut client, b"and then");
    server.shutdown().unwrap();
}

/// A read's worth of pipelined packets is answered as one corked batch: over TLS its replies
/// are encrypted together at the flush (the large ones as they come), in order, none lost.
#[test]
fn pipelined_packets_over_tls_come_back_in_order() {
    let ca = Ca::new("eddy test CA");
    for mode in [DispatchMode::Fd, DispatchMode::Reactor] {
        let (recorder, _events) = Recorder::new(true);
        let builder = eddy::Server::builder()
            .listen_with("127.0.0.1:0", LengthCodec::new())
            .handle_signals(false)
            .dispatch_mode(mode.clone())
            .tls(tls_of(&ca.server(&["localhost"])));
        let (server, addr) = start(builder, move || recorder.clone());
        let mut client = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
        let stream: Vec<u8> = (0..500)
            .flat_map(|i| frame(format!("packet {i}").as_bytes()))
            .collect();
        for _ in 0..3 {
            round_trip(&mut client, &stream);
        }
        // Replies of a record's worth and more are encrypted as they are sent, the small ones
        // between them staged: all in order, byte exact.
        let sizes = [
            10,
            16 * 1024,
            3,
            40 * 1024,
            16 * 1024 - 5,
            100,
            20 * 1024,
            1,
        ];
        let mixed: Vec<u8> = (0..40)
            .flat_map(|i: usize| {
                let body: Vec<u8> = (0..sizes[i % sizes.len()])
                    .map(|j| (i * 7 + j) as u8)
                    .collect();
                frame(&body)
            })
            .collect();
        for _ in 0..2 {
            round_trip(&mut client, &mixed);
        }
        server.shutdown().unwrap();
    }
}

/// Answers every packet with small and large replies in turn (unframed), in its read's corked
/// batch.
struct MixedReplies;

/// The replies `MixedReplies` sends for each packet, in order.
fn mixed_replies() -> Vec<Vec<u8>> {
    [1, 16 * 1024, 2, 20 * 1024, 16 * 1024 + 1, 1]
        .iter()
        .enumerate()
        .map(|(i, &len)| vec![b'a' + i as u8; len])
        .collect()
}

impl eddy::EventHandler for MixedReplies {
    fn on_receive(&mut self, ctx: &mut eddy::Context<'_>, conn: eddy::ConnId, _: bytes::Bytes) {
        for reply in mixed_replies() {
            ctx.send_raw(conn, &reply).unwrap();
        }
    }
}

/// In a corked batch a reply of a record's worth or more is encrypted at once, the small ones
/// staged until the flush: the peer gets them in the order they were sent, in both modes.
#[test]
fn small_and_large_replies_of_one_batch_arrive_in_order() {
    let ca = Ca::new("eddy test CA");
    let expected: Vec<u8> = mixed_replies().concat();
    for mode in [DispatchMode::Fd, DispatchMode::Reactor] {
        let builder = eddy::Server::builder()
            .listen_with("127.0.0.1:0", LengthCodec::new())
            .handle_signals(false)
            .dispatch_mode(mode.clone())
            .tls(tls_of(&ca.server(&["localhost"])));
        let (server, addr) = start(builder, || MixedReplies);
        let mut client = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
        client.get_mut().set_read_timeout(Some(WAIT)).unwrap();
        // Two packets in one record, so one read: a batch of two.
        let two = [frame(b"go"), frame(b"on")].concat();
        for _ in 0..3 {
            client.write_all(&two).unwrap();
            let got = read_n(&mut client, 2 * expected.len());
            let expected = expected.repeat(2);
            assert!(got == expected, "{mode:?}: the replies out of order");
        }
        server.shutdown().unwrap();
    }
}

/// `sendwait` over TLS waits for the records, not the plaintext's length: it times out while
/// the peer reads nothing, and when it returns `Sent` nothing of it is left in eddy.
#[test]
fn sendwait_over_tls_waits_for_its_records() {
    let ca = Ca::new("eddy test CA");
    let (server, addr, events) = tls_server(tls_of(&ca.server(&["localhost"])), DispatchMode::Fd);
    let mut client = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
    client.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    let conn = next(&events).conn;
    let handle = server.handle();
    assert_eq!(
        handle.sendwait(conn, b"quick", WAIT),
        Ok(eddy::SendStatus::Sent)
    );
    assert_eq!(read_n(&mut client, 5), b"quick");
    // Fill the kernel's buffers while the client reads nothing, then queue 1 MiB more: the
    // kernel may still find room for some (it collapses what the client holds), never for that.
    loop {
        match handle.send(conn, vec![7u8; 64 * 1024]) {
            Ok(eddy::SendStatus::Queued { pending }) if pending >= 1 << 20 => break,
            Ok(_) => {}
            Err(err) => panic!("filling the buffers: {err}"),
        }
    }
    assert_eq!(
        handle.sendwait(conn, vec![8u8; 64 * 1024], Duration::from_millis(300)),
        Err(eddy::SendError::TimedOut)
    );
    // A reader makes room; the last wait returns once its record is in the kernel, and then
    // nothing is queued (nothing was sent after it). The reader hands the client back rather
    // than closing it, so the connection is still there to be asked.
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut sink = vec![0u8; 1 << 16];
        while !tail.ends_with(b"last") {
            let n = client.read(&mut sink).unwrap();
            assert!(n > 0, "the stream ended early");
            tail.extend_from_slice(&sink[..n]);
            let keep = tail.len().saturating_sub(8);
            tail.drain(..keep);
        }
        client
    });
    let last = handle.sendwait(conn, b"last", WAIT);
    if last.is_err() {
        // Say why the connection went, if it did.
        let seen: Vec<Kind> = events.try_iter().map(|seen| seen.kind).collect();
        panic!("sendwait of the last bytes: {last:?}; events since: {seen:?}");
    }
    let queued = handle.client_info(conn).map(|info| info.send_queued_bytes);
    assert_eq!(queued, Some(0), "sendwait returned with bytes still queued");
    let client = reader.join().unwrap();
    server.shutdown().unwrap();
    drop(client);
}

/// The one connection the server has.
fn good_id(server: &eddy::RunningServer) -> eddy::ConnId {
    let mut ids = server.handle().connections();
    let id = ids.next().expect("one connection");
    assert!(ids.next().is_none(), "only one connection");
    id
}

/// A close the server asks for while the handshake is going on ends the connection at once
/// when nothing is queued, not when the handshake timeout expires; what was queued before it
/// is still delivered once the client finishes the handshake, then the connection closes.
#[test]
fn a_close_during_the_handshake_ends_it_at_once_or_after_what_was_queued() {
    let ca = Ca::new("eddy test CA");
    let tls = tls_of(&ca.server(&["localhost"])).handshake_timeout(Duration::from_secs(60));
    for mode in [DispatchMode::Fd, DispatchMode::Reactor] {
        let (server, addr, events) = tls_server(tls.clone(), mode.clone());
        let listed = || {
            wait_until("the connection is in the table", || {
                server.handle().connection_count() == 1
            });
            server.handle().connections().next().expect("listed")
        };
        for request in [&[][..], &[0x16, 0x03, 0x01]] {
            let mut stalled = connect(addr);
            write_all(&mut stalled, request);
            server.handle().close(listed()).unwrap();
            // The handshake timeout is a minute: a close that waited for it fails here.
            stalled
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            assert!(closed_by_server(&mut stalled), "{request:?} ({mode:?})");
            wait_until("the connection is gone", || {
                server.handle().connection_count() == 0
            });
        }
        let tcp = connect(addr);
        let conn = listed();
        server.handle().send(conn, b"early words").unwrap();
        server.handle().close(conn).unwrap();
        let mut client = tls_client(tcp, ca.client_config(&[], None), "localhost");
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"early words", "{mode:?}");
        // The handler never saw those connections: the first events are the next one's.
        let mut good = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
        round_trip(&mut good, b"next");
        let first = next(&events);
        assert_eq!(first.kind, Kind::Connect, "{mode:?}");
        assert_eq!(next(&events).kind, Kind::Receive(b"next"[..].into()));
        wait_until("only the good connection is left", || {
            server.handle().connection_count() == 1
        });
        assert_eq!(first.conn, good_id(&server), "{mode:?}");
        server.shutdown().unwrap();
    }
}

/// A handshake message larger than rustls buffers (64 KiB) closes its connection, and only
/// it. (That it is reported as a TLS handshake failure is `tls::session`'s unit test.)
#[test]
fn an_oversized_handshake_message_closes_only_its_connection() {
    let ca = Ca::new("eddy test CA");
    let (server, addr, events) = tls_server(tls_of(&ca.server(&["localhost"])), DispatchMode::Fd);
    let mut good = tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
    round_trip(&mut good, b"before");
    let mut huge = connect(addr);
    // A ClientHello just under rustls's 64 KiB limit for a handshake message, sent in
    // full-size handshake records: with their headers it overflows rustls's buffer.
    let mut first = vec![0x01, 0x00, 0xff, 0xfb];
    first.resize(16 * 1024, 0);
    let mut sent = 0;
    let mut payload = first;
    while sent < 128 * 1024 {
        let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        record.extend_from_slice(&payload);
        if huge.write_all(&record).is_err() {
            break;
        }
        sent += payload.len();
        payload = vec![0; 16 * 1024];
    }
    assert!(closed_by_server(&mut huge), "a 64 KiB ClientHello");
    round_trip(&mut good, b"after");
    assert_eq!(next(&events).kind, Kind::Connect);
    assert_eq!(next(&events).kind, Kind::Receive(b"before"[..].into()));
    assert_eq!(next(&events).kind, Kind::Receive(b"after"[..].into()));
    wait_until("only the good connection is left", || {
        server.handle().connection_count() == 1
    });
    server.shutdown().unwrap();
}

#[test]
fn each_tls_listener_times_handshakes_out_with_its_own_timeout() {
    let ca = Ca::new("eddy test CA");
    let server_cert = ca.server(&["localhost"]);
    let patient = tls_of(&server_cert).handshake_timeout(Duration::from_secs(3600));
    let strict = tls_of(&server_cert).handshake_timeout(Duration::from_millis(200));
    let builder = builder()
        .reactor_num(1)
        .tls(patient)
        .listen("127.0.0.1:0")
        .tls(strict);
    let (server, addr) = start(builder, || Recorder::new(false).0);
    let strict_addr = match &server.handle().local_addrs()[1] {
        eddy::ListenAddr::Tcp(addr) => *addr,
        other => panic!("{other}"),
    };
    // A stalled client on the patient listener first, then one on the strict listener: the
    // second is due first (before, its deadline waited behind the first's hour).
    let mut first = connect(addr);
    write_all(&mut first, &[0x16, 0x03, 0x01]);
    let mut second = connect(strict_addr);
    write_all(&mut second, &[0x16, 0x03, 0x01]);
    second.set_read_timeout(Some(WAIT)).unwrap();
    assert!(
        closed_by_server(&mut second),
        "the strict listener's timeout"
    );
    first
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(first.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the patient listener's client is still waited for"
    );
    server.shutdown().unwrap();
}
