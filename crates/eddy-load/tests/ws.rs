//! The WebSocket framing against tiny in-test servers built from eddy-ws's server side
//! (handshake parsing, permessage-deflate negotiation, the frame decoder and encoder).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use bytes::BytesMut;
use eddy_load::{run, Framing, LoadConfig, LoadError, Payload};
use eddy_ws::deflate::{negotiate, DeflateConfig};
use eddy_ws::handshake::{parse_request, response_101, RequestKind};
use eddy_ws::{Decoder, DecoderConfig, Encoder, Event};

/// How the test server behaves.
#[derive(Clone, Copy, Debug, Default)]
struct Behaviour {
    /// Accept permessage-deflate offers with these settings.
    deflate: Option<DeflateConfig>,
    /// Answer with a wrong `Sec-WebSocket-Accept`.
    wrong_accept: bool,
    /// Flip a bit of this echoed message's first payload byte (uncompressed only).
    corrupt_message: Option<u64>,
}

/// A thread-per-connection WebSocket echo server on 127.0.0.1:0.
fn ws_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || serve(stream, behaviour));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, behaviour: Behaviour) {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (request, len) = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        head.extend_from_slice(&buf[..n]);
        match parse_request(&head, 8192) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => {}
            Err(_) => return,
        }
    };
    assert_eq!(request.kind(), RequestKind::WebSocket);
    let agreed = behaviour
        .deflate
        .and_then(|cfg| negotiate(&request.extensions(), &cfg));
    let key = if behaviour.wrong_accept {
        "dGhlIHNhbXBsZSBub25jZQ=="
    } else {
        request.key().expect("key")
    };
    let extension = agreed.as_ref().map(|(_, value)| value.as_str());
    if stream
        .write_all(&response_101(key, None, extension))
        .is_err()
    {
        return;
    }
    let params = agreed.map(|(params, _)| params);
    let mut decoder = Decoder::new(DecoderConfig {
        deflate: params,
        ..DecoderConfig::default()
    });
    let mut encoder = Encoder::new(params);
    let mut input = BytesMut::from(&head[len..]);
    let mut out = Vec::new();
    let mut echoed = 0u64;
    loop {
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(Event::Message(message))) => {
                    let mut data = message.data.to_vec();
                    if behaviour.corrupt_message == Some(echoed) {
                        data[0] ^= 0x01;
                    }
                    encoder
                        .encode(message.kind, &data, &mut out)
                        .expect("encode");
                    echoed += 1;
                }
                Ok(Some(other)) => panic!("unexpected event {other:?}"),
                Ok(None) => break,
                // The client closed mid-frame or sent garbage: a test assertion elsewhere.
                Err(_) => return,
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        input.extend_from_slice(&buf[..n]);
    }
}

fn config(addr: SocketAddr) -> LoadConfig {
    LoadConfig {
        addr: addr.to_string(),
        framing: Framing::WebSocket,
        connections: 4,
        duration: None,
        count: Some(1000),
        warmup: Duration::ZERO,
        io_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..LoadConfig::default()
    }
}

fn deflating() -> Behaviour {
    Behaviour {
        deflate: Some(DeflateConfig {
            enabled: true,
            ..DeflateConfig::default()
        }),
        ..Behaviour::default()
    }
}

#[test]
fn ping_pong_counts_exactly() {
    let addr = ws_server(Behaviour::default());
    let report = run(&config(addr)).expect("run succeeds");
    assert_eq!(report.packets, 1000);
    // A 64-byte binary message comes back as a 2-byte header and the body.
    assert_eq!(report.packet_len, 66);
    assert_eq!(report.bytes, 1000 * 66);
    assert!(report.p50_us > 0.0);
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["framing"], "ws");
    assert!(json.get("deflate").is_none());
}

#[test]
fn pipelined_large_messages_two_threads() {
    let addr = ws_server(Behaviour::default());
    let cfg = LoadConfig {
        connections: 3,
        depth: 16,
        size: 70_000,
        threads: 2,
        count: Some(600),
        ..config(addr)
    };
    let report = run(&cfg).expect("run succeeds");
    assert_eq!(report.packets, 600);
    assert_eq!(report.packet_len, 10 + 70_000);
}

#[test]
fn deflate_compresses_both_ways() {
    let addr = ws_server(deflating());
    for (size, depth) in [(4096, 1), (64, 8), (20, 1)] {
        let cfg = LoadConfig {
            deflate: true,
            payload: Payload::Json,
            size,
            depth,
            ..config(addr)
        };
        let report = run(&cfg).unwrap_or_else(|e| panic!("{size} B: {e}"));
        assert_eq!(report.packets, 1000);
        let uncompressed = 1000 * report.packet_len as u64;
        if size >= 32 {
            // The server compresses messages from 32 bytes on.
            assert!(report.bytes < uncompressed, "{size} B: {report}");
        } else {
            assert_eq!(report.bytes, uncompressed);
        }
        assert!(report.deflate);
        assert!(report.to_string().contains("permessage-deflate"));
    }
}

#[test]
fn deflate_without_context_takeover() {
    let addr = ws_server(Behaviour {
        deflate: Some(DeflateConfig {
            enabled: true,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            client_max_window_bits: 9,
            ..DeflateConfig::default()
        }),
        ..Behaviour::default()
    });
    let cfg = LoadConfig {
        deflate: true,
        payload: Payload::Json,
        size: 2000,
        depth: 4,
        ..config(addr)
    };
    assert_eq!(run(&cfg).expect("run succeeds").packets, 1000);
}

#[test]
fn a_declined_deflate_offer_fails_the_run() {
    let addr = ws_server(Behaviour::default());
    let cfg = LoadConfig {
        deflate: true,
        ..config(addr)
    };
    match run(&cfg) {
        Err(LoadError::Handshake { reason, .. }) => assert!(reason.contains("declined")),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn a_wrong_accept_key_fails_the_handshake() {
    let addr = ws_server(Behaviour {
        wrong_accept: true,
        ..Behaviour::default()
    });
    match run(&config(addr)) {
        Err(LoadError::Handshake { reason, .. }) => {
            assert!(reason.contains("Sec-WebSocket-Accept"), "{reason}")
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn a_plain_echo_server_is_no_websocket_server() {
    // It echoes the request back: not a 101.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let err = run(&config(addr)).expect_err("not a WebSocket server");
    assert!(matches!(err, LoadError::Handshake { .. }), "{err}");
    assert!(err.to_string().contains("101"), "{err}");
}

#[test]
fn corrupted_echoes_are_caught_with_and_without_deflate() {
    let addr = ws_server(Behaviour {
        corrupt_message: Some(5),
        ..Behaviour::default()
    });
    match run(&config(addr)) {
        Err(LoadError::Mismatch(m)) => assert_eq!((m.seq, m.offset), (5, 2)),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let addr = ws_server(Behaviour {
        corrupt_message: Some(7),
        ..deflating()
    });
    let cfg = LoadConfig {
        deflate: true,
        payload: Payload::Json,
        ..config(addr)
    };
    match run(&cfg) {
        Err(LoadError::Mismatch(m)) => assert_eq!((m.seq, m.offset), (7, 0)),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}
