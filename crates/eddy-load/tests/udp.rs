//! UDP mode against a tiny std `UdpSocket` echo thread.

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use eddy_load::{run, Framing, LoadConfig, LoadError};

/// What the echo thread does to the datagrams it receives.
#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    /// Drops every n-th datagram.
    DropEvery(u64),
    /// Flips a bit of byte 20 of every datagram.
    Corrupt,
    /// Answers with one byte less.
    Truncate,
}

/// Starts an echo thread on 127.0.0.1:0 and returns its address.
fn udp_echo(fault: Fault) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("local addr");
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut seen = 0u64;
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            seen += 1;
            let n = match fault {
                Fault::None => n,
                Fault::DropEvery(k) if seen.is_multiple_of(k) => continue,
                Fault::DropEvery(_) => n,
                Fault::Corrupt => {
                    buf[20] ^= 0x01;
                    n
                }
                Fault::Truncate => n - 1,
            };
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
    addr
}

fn config(addr: SocketAddr) -> LoadConfig {
    LoadConfig {
        addr: addr.to_string(),
        connections: 4,
        framing: Framing::Udp,
        duration: None,
        count: Some(1000),
        warmup: Duration::ZERO,
        io_timeout: Duration::from_secs(5),
        udp_timeout: Duration::from_millis(50),
        ..LoadConfig::default()
    }
}

#[test]
fn ping_pong_and_pipelined_count_runs() {
    let addr = udp_echo(Fault::None);
    for (depth, size, threads) in [(1, 64, 1), (8, 64, 2), (4, 1400, 1), (1, 8, 1)] {
        let report = run(&LoadConfig {
            depth,
            size,
            threads,
            ..config(addr)
        })
        .expect("run");
        assert_eq!(report.framing, Framing::Udp);
        assert_eq!(report.packets, 1000, "depth {depth} size {size}");
        assert_eq!(report.all_packets, 1000);
        assert_eq!(report.lost, Some(0));
        assert_eq!(report.packet_len, size);
        assert_eq!(report.bytes, 1000 * size as u64);
        assert!(report.p50_us > 0.0 && report.p99_us >= report.p50_us);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["framing"], "udp");
        assert_eq!(json["lost"], 0);
        assert!(report.to_string().contains("lost        0 datagrams"));
    }
}

#[test]
fn lost_datagrams_are_counted_and_replaced() {
    let addr = udp_echo(Fault::DropEvery(10));
    let report = run(&LoadConfig {
        depth: 4,
        count: Some(500),
        ..config(addr)
    })
    .expect("a lossy run completes");
    // Every measured datagram is echoed in the end: lost ones are owed again.
    assert_eq!(report.packets, 500);
    let lost = report.lost.expect("udp reports losses");
    assert!((40..=70).contains(&lost), "lost {lost}");
}

#[test]
fn a_timed_run_ends_even_when_everything_is_lost_at_the_end() {
    let addr = udp_echo(Fault::DropEvery(3));
    let report = run(&LoadConfig {
        depth: 2,
        count: None,
        duration: Some(Duration::from_millis(300)),
        ..config(addr)
    })
    .expect("run");
    assert!(report.packets > 0);
    assert!(report.lost.unwrap_or(0) > 0);
}

#[test]
fn corrupt_and_truncated_echoes_fail() {
    let err = run(&config(udp_echo(Fault::Corrupt))).expect_err("corrupt");
    match err {
        LoadError::Mismatch(m) => assert_eq!((m.seq, m.offset), (0, 20)),
        other => panic!("expected a mismatch, got {other}"),
    }
    let err = run(&config(udp_echo(Fault::Truncate))).expect_err("truncated");
    assert!(
        matches!(err, LoadError::Protocol { .. }),
        "expected a size error, got {err}"
    );
    assert!(err.to_string().contains("63 bytes"), "{err}");
}

#[test]
fn nobody_listening_stalls_instead_of_hanging() {
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let err = run(&LoadConfig {
        io_timeout: Duration::from_millis(300),
        ..config(silent.local_addr().expect("addr"))
    })
    .expect_err("no echo");
    assert!(matches!(err, LoadError::Stalled { .. }), "{err}");
}

#[test]
fn udp_framing_name_and_length() {
    assert_eq!("udp".parse::<Framing>().ok(), Some(Framing::Udp));
    assert_eq!(Framing::Udp.packet_len(64), 64);
}
