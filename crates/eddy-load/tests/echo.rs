//! Runs the generator against tiny in-test echo servers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use eddy_load::{run, Framing, LoadConfig, LoadError};

/// Starts a thread-per-connection echo server on 127.0.0.1:0. When
/// `corrupt_at` is set, the byte at that stream offset is altered on every
/// connection.
fn echo_server(corrupt_at: Option<usize>) -> SocketAddr {
    echo_server_with_delay(corrupt_at, Duration::ZERO)
}

/// Like [`echo_server`], but each connection starts reading only after
/// `delay`, so a client sending a lot fills its socket buffers first.
fn echo_server_with_delay(corrupt_at: Option<usize>, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                thread::sleep(delay);
                echo(stream, corrupt_at);
            });
        }
    });
    addr
}

fn echo(mut stream: TcpStream, corrupt_at: Option<usize>) {
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(at) = corrupt_at {
            if (total..total + n).contains(&at) {
                buf[at - total] ^= 0x01;
            }
        }
        total += n;
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn config(addr: SocketAddr) -> LoadConfig {
    LoadConfig {
        addr: addr.to_string(),
        connections: 4,
        duration: None,
        count: Some(1000),
        warmup: Duration::ZERO,
        io_timeout: Duration::from_secs(5),
        ..LoadConfig::default()
    }
}

#[test]
fn ping_pong_length_counts_exactly() {
    let addr = echo_server(None);
    let report = run(&config(addr)).expect("run succeeds");
    assert_eq!(report.packets, 1000);
    assert_eq!(report.bytes, 1000 * 68);
    assert_eq!(report.all_packets, 1000);
    assert_eq!(report.packet_len, 68);
    // `lost` is UDP's: left out of a stream framing's report and JSON.
    assert_eq!(report.lost, None);
    assert!(!report.to_string().contains("lost"));
    let json = serde_json::to_value(&report).expect("json");
    assert!(json.get("lost").is_none(), "{json}");
    assert!(report.packets_per_sec > 0.0);
    assert!(report.p50_us > 0.0 && report.p50_us <= report.p99_us);
    assert!(report.p99_us <= report.p999_us && report.p999_us <= report.max_us);
}

#[test]
fn pipelined_line_two_threads_with_warmup() {
    let addr = echo_server(None);
    let cfg = LoadConfig {
        framing: Framing::Line,
        connections: 5,
        depth: 8,
        size: 100,
        threads: 2,
        count: Some(2003),
        warmup: Duration::from_millis(100),
        ..config(addr)
    };
    let report = run(&cfg).expect("run succeeds");
    assert_eq!(report.packets, 2003);
    assert!(report.all_packets >= 2003);
    assert_eq!(report.bytes, 2003 * 101);
    assert_eq!(report.threads, 2);
}

#[test]
fn blocked_writes_resume_when_server_reads() {
    // 16 MiB in flight per connection cannot fit in socket buffers while
    // the server is not reading: the client must wait for writability.
    let addr = echo_server_with_delay(None, Duration::from_millis(300));
    let cfg = LoadConfig {
        connections: 2,
        depth: 64,
        size: 256 * 1024,
        count: Some(256),
        ..config(addr)
    };
    let report = run(&cfg).expect("run succeeds");
    assert_eq!(report.packets, 256);
}

#[test]
fn duration_mode_stops_by_itself() {
    let addr = echo_server(None);
    let cfg = LoadConfig {
        duration: Some(Duration::from_millis(300)),
        count: None,
        depth: 4,
        ..config(addr)
    };
    let report = run(&cfg).expect("run succeeds");
    assert!(report.packets > 0);
    assert!(report.elapsed >= Duration::from_millis(300));
    assert!(report.elapsed < Duration::from_secs(5));
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["framing"], "length");
    assert_eq!(json["packets"], report.packets);
    assert!(json["elapsed_secs"].as_f64().is_some());
}

#[test]
fn corrupted_echo_is_a_hard_error() {
    let addr = echo_server(Some(68 * 3 + 10));
    let err = run(&config(addr)).expect_err("corruption detected");
    match err {
        LoadError::Mismatch(m) => {
            assert_eq!((m.seq, m.offset), (3, 10));
            assert_eq!(m.got, m.expected ^ 0x01);
        }
        other => panic!("expected mismatch, got {other}"),
    }
}

#[test]
fn refuses_non_loopback_and_unreachable() {
    let cfg = LoadConfig {
        addr: "192.0.2.1:9".into(),
        ..LoadConfig::default()
    };
    assert!(matches!(run(&cfg), Err(LoadError::NotLoopback { .. })));

    // A port with nothing listening: refused until the connect deadline.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let cfg = LoadConfig {
        addr: format!("127.0.0.1:{port}"),
        connect_timeout: Duration::from_millis(200),
        ..LoadConfig::default()
    };
    assert!(matches!(run(&cfg), Err(LoadError::Connect { .. })));
}
