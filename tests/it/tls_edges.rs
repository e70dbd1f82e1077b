//! TLS at the edges of a connection's life: input that comes in the same segment as the
//! client's Finished (behind `enable_delay_receive`, or followed at once by the peer's close
//! in a stateless dispatch mode), and a file queued before the handshake is done.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    sync::Arc,
};

use eddy::{codec::EofCodec, CloseReason, DispatchMode, TlsConfig};
use rustls::{pki_types::ServerName, ClientConfig, ClientConnection};

use crate::{pki::*, util::*};

fn tls_of(pem: &Pem) -> TlsConfig {
    TlsConfig::from_pem(pem.cert.clone(), pem.key.clone())
}

/// A line-echo server with TLS on its one reactor.
fn line_server(
    ca: &Ca,
    mode: DispatchMode,
    delay: bool,
) -> (
    eddy::RunningServer,
    std::net::SocketAddr,
    crossbeam_channel::Receiver<Seen>,
) {
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .codec(EofCodec::line())
        .reactor_num(1)
        .worker_num(2)
        .dispatch_mode(mode)
        .enable_delay_receive(delay)
        .tls(tls_of(&ca.server(&["localhost"])));
    let (server, addr) = start(builder, move || recorder.clone());
    (server, addr, events)
}

/// Run the handshake up to the client's last flight, without sending it: `last` then adds to
/// the session (plaintext, a close_notify), and all of it goes out in one write, so the server
/// reads the end of the handshake and what follows together.
fn with_finished(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
    last: impl FnOnce(&mut ClientConnection),
) -> (ClientConnection, TcpStream) {
    let mut tcp = connect(addr);
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = ClientConnection::new(config, name).unwrap();
    while tls.wants_write() {
        tls.write_tls(&mut tcp).unwrap();
    }
    while tls.is_handshaking() {
        assert!(tls.read_tls(&mut tcp).unwrap() > 0, "the server hung up");
        tls.process_new_packets().unwrap();
    }
    last(&mut tls);
    let mut flight = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut flight).unwrap();
    }
    tcp.write_all(&flight).unwrap();
    (tls, tcp)
}

/// Read `n` bytes of plaintext from a session driven by hand.
fn read_plain(tls: &mut ClientConnection, tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let mut chunk = [0u8; 4096];
        match tls.reader().read(&mut chunk) {
            Ok(0) => panic!("the session ended after {} of {n} bytes", got.len()),
            Ok(k) => got.extend_from_slice(&chunk[..k]),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(tls.read_tls(tcp).unwrap() > 0, "closed after {}", got.len());
                tls.process_new_packets().unwrap();
            }
            Err(err) => panic!("read failed: {err}"),
        }
    }
    got
}

#[test]
fn delay_receive_lets_the_handshake_finish_and_holds_what_came_with_it_until_confirm() {
    let ca = Ca::new("eddy test CA");
    for mode in [DispatchMode::Fd, DispatchMode::RoundRobin] {
        let (server, addr, events) = line_server(&ca, mode.clone(), true);
        let handle = server.handle().clone();
        let config = ca.client_config(&[], None);
        let (mut waiting, mut waiting_tcp) = with_finished(addr, config.clone(), |tls| {
            tls.writer().write_all(b"early\n").unwrap();
        });
        let first = next(&events);
        assert_eq!(
            first.kind,
            Kind::Connect,
            "the handshake finished ({mode:?})"
        );
        // Another connection on the same reactor, confirmed, is served meanwhile.
        let mut other = tls_connect(addr, config, "localhost").unwrap();
        let second = next(&events);
        assert_eq!(second.kind, Kind::Connect);
        handle.confirm(second.conn).unwrap();
        other.write_all(b"ping\n").unwrap();
        let mut back = [0; 5];
        other.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping\n");
        assert_eq!(
            handle.stats().request_count,
            1,
            "nothing handled from the unconfirmed one ({mode:?})"
        );
        handle.confirm(first.conn).unwrap();
        assert_eq!(
            read_plain(&mut waiting, &mut waiting_tcp, 6),
            b"early\n",
            "{mode:?}"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn a_pause_asked_during_the_handshake_starts_after_it() {
    let ca = Ca::new("eddy test CA");
    let (server, addr, events) = line_server(&ca, DispatchMode::Fd, false);
    let handle = server.handle().clone();
    let tcp = connect(addr);
    wait_until("the connection is in the table", || {
        handle.connection_count() == 1
    });
    let conn = handle.connections().next().expect("listed");
    handle.pause(conn).unwrap();
    let mut client = tls_client(tcp, ca.client_config(&[], None), "localhost");
    client.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    // The handshake completes although the connection is paused.
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock).unwrap();
    }
    assert_eq!(next(&events).kind, Kind::Connect);
    client.write_all(b"held\n").unwrap();
    client.flush().unwrap();
    handle.resume(conn).unwrap();
    let mut back = [0; 5];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"held\n");
    server.shutdown().unwrap();
}

#[test]
fn what_comes_with_the_finished_and_the_peers_close_is_answered_in_stateless_modes() {
    let ca = Ca::new("eddy test CA");
    for mode in [DispatchMode::RoundRobin, DispatchMode::Fd] {
        let (server, addr, events) = line_server(&ca, mode.clone(), false);
        let (mut tls, mut tcp) = with_finished(addr, ca.client_config(&[], None), |tls| {
            tls.writer().write_all(b"last words\n").unwrap();
            tls.send_close_notify();
        });
        tcp.shutdown(Shutdown::Write).unwrap();
        assert_eq!(next(&events).kind, Kind::Connect, "{mode:?}");
        assert_eq!(
            next(&events).kind,
            Kind::Receive(b"last words\n"[..].into()),
            "{mode:?}"
        );
        assert_eq!(
            read_plain(&mut tls, &mut tcp, 11),
            b"last words\n",
            "{mode:?}"
        );
        assert_eq!(
            next(&events).kind,
            Kind::Close(CloseReason::PeerClosed),
            "{mode:?}"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn a_file_queued_before_the_handshake_waits_for_it_and_arrives_whole_and_in_order() {
    const LEN: usize = 2 << 20;
    let ca = Ca::new("eddy test CA");
    let path = std::env::temp_dir().join(format!("eddy-{}-tls-early-file", std::process::id()));
    let content: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .socket_buffer_size(256 << 10)
        .tls(tls_of(&ca.server(&["localhost"])));
    let (server, addr) = start(builder, move || recorder.clone());
    let handle = server.handle().clone();
    let tcp = connect(addr);
    wait_until("the connection is in the table", || {
        handle.connection_count() == 1
    });
    let conn = handle.connections().next().expect("listed");
    handle.send_raw(conn, b"before").unwrap();
    handle.sendfile(conn, &path, 0, None).unwrap();
    // The file stays on disk until the session can encrypt it: it takes no buffer memory.
    handle
        .send_raw(conn, b"after")
        .expect("the file is not read into memory during the handshake");
    let info = handle.client_info(conn).unwrap();
    assert_eq!(
        info.send_queued_bytes,
        6 + LEN + 5,
        "all of it counts as queued"
    );
    let mut client = tls_client(tcp, ca.client_config(&[], None), "localhost");
    client.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    let got = read_n(&mut client, 6 + LEN + 5);
    assert_eq!(&got[..6], b"before");
    assert!(got[6..6 + LEN] == content[..], "the file, byte exact");
    assert_eq!(&got[6 + LEN..], b"after");
    assert_eq!(next(&events).kind, Kind::Connect);
    server.shutdown().unwrap();
    let _ = std::fs::remove_file(&path);
}
