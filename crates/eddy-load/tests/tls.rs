//! The TLS client against a tiny in-test rustls echo server (a thread per connection,
//! real sockets), in echo and handshakes mode.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use eddy_load::{run, Framing, LoadConfig, LoadError, Mode, TlsClient};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// A self-signed certificate for `localhost`: (certificate PEM, certificate DER, key DER).
fn certificate() -> (String, CertificateDer<'static>, PrivatePkcs8KeyDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
    (made.cert.pem(), made.cert.der().clone(), key)
}

/// Starts a TLS echo server on 127.0.0.1:0 with a fresh certificate; returns its address and
/// the certificate's PEM.
fn tls_echo_server() -> (SocketAddr, String) {
    let (pem, der, key) = certificate();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key.into())
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = config.clone();
            thread::spawn(move || tls_echo(stream, config));
        }
    });
    (addr, pem)
}

fn tls_echo(stream: TcpStream, config: Arc<ServerConfig>) {
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, stream);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
            return;
        }
    }
}

/// A plain (not TLS) echo server: it sends the ClientHello back.
fn plain_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config(addr: SocketAddr, pem: &str) -> LoadConfig {
    LoadConfig {
        addr: addr.to_string(),
        connections: 4,
        duration: None,
        count: Some(1000),
        warmup: Duration::ZERO,
        io_timeout: Duration::from_secs(5),
        tls: Some(TlsClient::from_pem(pem)),
        ..LoadConfig::default()
    }
}

#[test]
fn ping_pong_over_tls_counts_exactly_and_times_the_handshakes() {
    let (addr, pem) = tls_echo_server();
    let report = run(&config(addr, &pem)).expect("run succeeds");
    assert_eq!(report.packets, 1000);
    assert_eq!(report.bytes, 1000 * 68);
    assert!(report.tls);
    let hs = report.handshakes.as_ref().expect("handshakes reported");
    assert_eq!(hs.count, 4);
    assert!(hs.p50_us > 0.0 && hs.p50_us <= hs.max_us);
    assert!(report.to_string().contains("over TLS"), "{report}");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["tls"], true);
    assert_eq!(json["handshakes"]["count"], 4);
}

#[test]
fn pipelined_16k_lines_over_tls_on_two_threads() {
    let (addr, pem) = tls_echo_server();
    let cfg = LoadConfig {
        framing: Framing::Line,
        depth: 16,
        size: 16 * 1024,
        threads: 2,
        count: Some(400),
        ..config(addr, &pem)
    };
    let report = run(&cfg).expect("run succeeds");
    assert_eq!(report.packets, 400);
    assert_eq!(report.bytes, 400 * (16 * 1024 + 1));
}

#[test]
fn handshakes_mode_connects_handshakes_echoes_and_closes() {
    let (addr, pem) = tls_echo_server();
    let cfg = LoadConfig {
        mode: Mode::Handshakes,
        count: Some(60),
        ..config(addr, &pem)
    };
    let report = run(&cfg).expect("run succeeds");
    assert_eq!(report.packets, 60);
    assert_eq!(report.mode, Mode::Handshakes);
    let hs = report.handshakes.as_ref().expect("handshakes reported");
    assert_eq!(hs.count, 60);
    // A cycle (connect, handshake, round trip) takes longer than its handshake.
    assert!(report.max_us >= hs.p50_us, "{report}");
    assert!(report.to_string().contains("handshakes/s"), "{report}");
}

#[test]
fn handshakes_mode_without_tls_counts_connections() {
    let addr = plain_echo_server();
    let cfg = LoadConfig {
        mode: Mode::Handshakes,
        count: Some(40),
        tls: None,
        ..config(addr, "")
    };
    let report = run(&cfg).expect("run succeeds");
    assert_eq!(report.packets, 40);
    assert!(report.handshakes.is_none());
    assert!(report.to_string().contains("connections/s"), "{report}");
}

#[test]
fn an_untrusted_certificate_fails_the_handshake() {
    let (addr, _) = tls_echo_server();
    let (other, _, _) = certificate();
    for mode in [Mode::Echo, Mode::Handshakes] {
        let err = run(&LoadConfig {
            mode,
            ..config(addr, &other)
        })
        .expect_err("refused");
        assert!(matches!(err, LoadError::Tls { conn: Some(_), .. }), "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}

#[test]
fn a_server_that_does_not_speak_tls_is_an_error_not_a_hang() {
    let addr = plain_echo_server();
    let (pem, _, _) = certificate();
    for mode in [Mode::Echo, Mode::Handshakes] {
        let err = run(&LoadConfig {
            mode,
            ..config(addr, &pem)
        })
        .expect_err("refused");
        assert!(matches!(err, LoadError::Tls { .. }), "{err}");
    }
}
