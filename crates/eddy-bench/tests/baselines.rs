//! Loads both baselines in-process with eddy-load, and spawns the
//! `eddy-baseline` binary as a child.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use eddy_bench::child::ServerChild;
use eddy_bench::tls_cert::TestCert;
use eddy_bench::{epoll_echo, tokio_echo, tokio_udp_echo, tokio_ws_echo, Framing};
use eddy_load::{run, LoadConfig, LoadError, Mode, Payload, TlsClient};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tokio,
    Epoll,
}

/// Runs `load` against a fresh in-process server of `kind`.
fn check(kind: Kind, framing: Framing, load: LoadConfig) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || match kind {
            Kind::Tokio => tokio_echo::run_until(listener, framing, 2, stop),
            Kind::Epoll => epoll_echo::run_until(listener, framing, &stop),
        })
    };
    let count = load.count.expect("count set");
    let report = run(&LoadConfig {
        addr: addr.to_string(),
        framing,
        duration: None,
        warmup: Duration::ZERO,
        io_timeout: Duration::from_secs(10),
        ..load
    });
    stop.store(true, Ordering::Relaxed);
    let served = server.join().expect("server thread");
    let report = report.unwrap_or_else(|e| panic!("{kind:?} {framing}: {e}"));
    assert_eq!(report.packets, count, "{kind:?} {framing}");
    served.expect("server exits cleanly");
}

fn small(depth: usize) -> LoadConfig {
    LoadConfig {
        connections: 8,
        depth,
        count: Some(4000),
        ..LoadConfig::default()
    }
}

#[test]
fn both_baselines_echo_both_framings() {
    for kind in [Kind::Tokio, Kind::Epoll] {
        for framing in [Framing::Length, Framing::Line] {
            check(kind, framing, small(1));
            check(kind, framing, small(16));
        }
    }
}

#[test]
fn large_pipelined_packets_echo_whole() {
    let big = LoadConfig {
        connections: 3,
        depth: 8,
        size: 300_000,
        count: Some(240),
        ..LoadConfig::default()
    };
    check(Kind::Epoll, Framing::Length, big.clone());
    check(Kind::Tokio, Framing::Line, big);
}

/// A client that writes 32 MiB of packets while not reading for a while:
/// the server's writes back must hit a full socket, queue, watch for
/// writability and pause reading above its high-water mark.
fn slow_reader(kind: Kind) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || match kind {
            Kind::Tokio => tokio_echo::run_until(listener, Framing::Length, 1, stop),
            Kind::Epoll => epoll_echo::run_until(listener, Framing::Length, &stop),
        })
    };
    let mut packet = vec![0u8; 4 + 64 * 1024];
    packet[..4].copy_from_slice(&(64u32 * 1024).to_be_bytes());
    let mut sent = Vec::new();
    for i in 0..512usize {
        packet[4..].fill((i % 251) as u8);
        sent.extend_from_slice(&packet);
    }
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        let sent = sent.clone();
        thread::spawn(move || stream.write_all(&sent))
    };
    // The slow reader: it reads nothing for a while, so the server's output backs up (a
    // simulated client, not a wait for the server; correctness does not depend on how long).
    thread::sleep(Duration::from_millis(300));
    let mut got = vec![0u8; sent.len()];
    stream.read_exact(&mut got).expect("echo");
    writer.join().expect("writer").expect("write");
    assert!(got == sent, "{kind:?}: echo differs");
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server").expect("serve");
}

#[test]
fn slow_reader_gets_everything_back() {
    slow_reader(Kind::Epoll);
    slow_reader(Kind::Tokio);
}

#[test]
fn baseline_binary_announces_its_address() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy-baseline"));
    cmd.args([
        "--serve",
        "epoll",
        "--listen",
        "127.0.0.1:0",
        "--framing",
        "line",
    ]);
    let child = ServerChild::spawn(&mut cmd, Duration::from_secs(10)).expect("spawn");
    let report = run(&LoadConfig {
        addr: child.addr().to_string(),
        framing: Framing::Line,
        connections: 2,
        count: Some(500),
        duration: None,
        warmup: Duration::ZERO,
        ..LoadConfig::default()
    })
    .expect("load");
    assert_eq!(report.packets, 500);
    assert!(child.cpu_time().is_ok());
    assert!(child.rss_bytes().expect("rss") > 0);
    child.kill().expect("kill");
}

#[test]
fn eddy_serves_both_dispatch_modes_and_framings() {
    for dispatch in ["fd", "reactor"] {
        for framing in [Framing::Length, Framing::Line] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy-baseline"));
            cmd.args(["--serve", "eddy", "--dispatch", dispatch, "--workers", "2"])
                .args(["--framing", framing.as_str()]);
            let child = ServerChild::spawn(&mut cmd, Duration::from_secs(10)).expect("spawn");
            let report = run(&LoadConfig {
                addr: child.addr().to_string(),
                framing,
                connections: 4,
                depth: 8,
                count: Some(2000),
                duration: None,
                warmup: Duration::ZERO,
                ..LoadConfig::default()
            })
            .unwrap_or_else(|e| panic!("eddy {dispatch} {framing}: {e}"));
            assert_eq!(report.packets, 2000);
            child.kill().expect("kill");
        }
    }
}

/// A WebSocket load of `count` messages.
fn ws_load(addr: std::net::SocketAddr, depth: usize, size: usize, count: u64) -> LoadConfig {
    LoadConfig {
        addr: addr.to_string(),
        framing: Framing::WebSocket,
        connections: 4,
        depth,
        size,
        count: Some(count),
        duration: None,
        warmup: Duration::ZERO,
        io_timeout: Duration::from_secs(10),
        ..LoadConfig::default()
    }
}

#[test]
fn tokio_tungstenite_echoes_websocket_messages() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || tokio_ws_echo::run_until(listener, 2, stop))
    };
    let runs = [
        (1, 64, 2000),
        (16, 64, 4000),
        (1, 4096, 1000),
        (4, 200_000, 80),
    ];
    let results: Vec<_> = runs
        .iter()
        .map(|&(depth, size, count)| (count, run(&ws_load(addr, depth, size, count))))
        .collect();
    // No permessage-deflate: an offer is declined, and the run says so.
    let declined = run(&LoadConfig {
        deflate: true,
        ..ws_load(addr, 1, 64, 10)
    });
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server").expect("serve");
    for (count, report) in results {
        let report = report.expect("tokio-tungstenite echo");
        assert_eq!(report.packets, count);
    }
    assert!(
        matches!(declined, Err(LoadError::Handshake { .. })),
        "{declined:?}"
    );
}

#[test]
fn eddy_serves_websocket_with_and_without_deflate() {
    for dispatch in ["fd", "reactor"] {
        for deflate in [false, true] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy-baseline"));
            cmd.args(["--serve", "eddy", "--dispatch", dispatch, "--workers", "2"])
                .args(["--framing", "ws"]);
            if deflate {
                cmd.arg("--deflate");
            }
            let child = ServerChild::spawn(&mut cmd, Duration::from_secs(10)).expect("spawn");
            for (depth, size) in [(1, 64), (8, 4096)] {
                let report = run(&LoadConfig {
                    deflate,
                    payload: if deflate {
                        Payload::Json
                    } else {
                        Payload::Pattern
                    },
                    ..ws_load(child.addr(), depth, size, 2000)
                })
                .unwrap_or_else(|e| panic!("eddy {dispatch} deflate {deflate}: {e}"));
                assert_eq!(report.packets, 2000);
                let uncompressed = 2000 * report.packet_len as u64;
                assert_eq!(report.bytes < uncompressed, deflate, "{report}");
            }
            if !deflate {
                // The server declines what it was not told to accept.
                let declined = run(&LoadConfig {
                    deflate: true,
                    ..ws_load(child.addr(), 1, 64, 10)
                });
                assert!(matches!(declined, Err(LoadError::Handshake { .. })));
            }
            child.kill().expect("kill");
        }
    }
}

#[test]
fn eddy_and_tokio_rustls_serve_tls_echo_and_handshakes() {
    let cert = TestCert::generate().expect("certificate");
    let servers: [&[&str]; 3] = [
        &["--serve", "eddy", "--dispatch", "fd", "--workers", "2"],
        &["--serve", "eddy", "--dispatch", "reactor"],
        &["--serve", "tokio", "--threads", "2"],
    ];
    for server in servers {
        for framing in [Framing::Length, Framing::Line] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy-baseline"));
            cmd.args(server)
                .args(["--framing", framing.as_str()])
                .args(cert.serve_args());
            let child = ServerChild::spawn(&mut cmd, Duration::from_secs(10)).expect("spawn");
            let tls = LoadConfig {
                tls: Some(TlsClient::from_pem(cert.pem())),
                framing,
                connections: 4,
                warmup: Duration::ZERO,
                duration: None,
                io_timeout: Duration::from_secs(10),
                ..small(1)
            };
            for (depth, size) in [(1, 64), (8, 16 * 1024)] {
                let report = run(&LoadConfig {
                    addr: child.addr().to_string(),
                    depth,
                    size,
                    count: Some(1000),
                    ..tls.clone()
                })
                .unwrap_or_else(|e| panic!("{server:?} {framing} {depth}x{size}: {e}"));
                assert_eq!(report.packets, 1000);
                assert_eq!(report.handshakes.map(|h| h.count), Some(4));
            }
            let report = run(&LoadConfig {
                addr: child.addr().to_string(),
                mode: Mode::Handshakes,
                count: Some(100),
                ..tls.clone()
            })
            .unwrap_or_else(|e| panic!("{server:?} {framing} handshakes: {e}"));
            assert_eq!(report.packets, 100);
            // A client that does not trust the certificate is refused, and the server serves on.
            let other = TestCert::generate().expect("certificate");
            let refused = run(&LoadConfig {
                addr: child.addr().to_string(),
                tls: Some(TlsClient::from_pem(other.pem())),
                ..tls.clone()
            });
            assert!(matches!(refused, Err(LoadError::Tls { .. })), "{refused:?}");
            let again = run(&LoadConfig {
                addr: child.addr().to_string(),
                count: Some(10),
                ..tls.clone()
            });
            assert_eq!(again.expect("serves on").packets, 10);
            child.kill().expect("kill");
        }
    }
}

#[test]
fn baselines_refuse_what_they_cannot_serve() {
    for args in [
        &["--serve", "epoll", "--framing", "ws"][..],
        &["--serve", "tokio", "--framing", "ws", "--deflate"],
        &["--serve", "epoll", "--framing", "udp"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_eddy-baseline"))
            .args(args)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("WebSocket")
                || String::from_utf8_lossy(&out.stderr).contains("deflate")
                || String::from_utf8_lossy(&out.stderr).contains("UDP")
        );
    }
}

/// A UDP load of `count` datagrams.
fn udp_load(addr: std::net::SocketAddr, depth: usize, size: usize, count: u64) -> LoadConfig {
    LoadConfig {
        framing: Framing::Udp,
        size,
        ..ws_load(addr, depth, size, count)
    }
}

#[test]
fn tokio_udp_echoes_datagrams() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || tokio_udp_echo::run_until(socket, 2, stop))
    };
    let results: Vec<_> = [(1, 64, 2000), (16, 64, 4000), (2, 8000, 500)]
        .iter()
        .map(|&(depth, size, count)| (count, run(&udp_load(addr, depth, size, count))))
        .collect();
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server").expect("serve");
    for (count, report) in results {
        let report = report.expect("tokio udp echo");
        assert_eq!(report.packets, count);
        assert!(report.lost.is_some());
    }
}

#[test]
fn eddy_echoes_udp_datagrams_in_both_dispatch_modes() {
    for dispatch in ["fd", "reactor"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy-baseline"));
        cmd.args(["--serve", "eddy", "--dispatch", dispatch, "--workers", "2"])
            .args(["--framing", "udp"]);
        let child = ServerChild::spawn(&mut cmd, Duration::from_secs(10)).expect("spawn");
        for (depth, size) in [(1, 64), (8, 1400)] {
            let report = run(&udp_load(child.addr(), depth, size, 2000))
                .unwrap_or_else(|e| panic!("eddy {dispatch} udp: {e}"));
            assert_eq!(report.packets, 2000);
            assert_eq!(report.bytes, 2000 * size as u64);
        }
        child.kill().expect("kill");
    }
}
