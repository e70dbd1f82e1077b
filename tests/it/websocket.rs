//! WebSocket listeners against a real client library (tungstenite) and hand-made frames:
//! the handshake, messages both ways, control frames, the close handshake, bad input, limits,
//! plain HTTP, broadcast, and shutdown.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crossbeam_channel::{Receiver, Sender};
use eddy::{
    Bytes, CloseReason, ConnId, Context, DispatchMode, EventHandler, Handshake, HttpRequest,
    HttpResponse, Opcode, RunningServer, SendError, ServerBuilder, Uid, WebSocketConfig, WsMessage,
    WsStatus,
};
use tungstenite::{
    protocol::{frame::coding::CloseCode, CloseFrame},
    stream::MaybeTlsStream,
    Message, WebSocket,
};

use crate::util::*;

/// What a WebSocket handler saw.
#[derive(Clone, Debug, PartialEq)]
enum Ws {
    Handshake(String),
    Open(ConnId),
    Message(ConnId, Opcode, Bytes),
    Close(ConnId, CloseReason),
}

/// Echoes messages with their opcode; `/uid NAME` binds; rejects the path `/private`;
/// picks the subprotocol `chat` when offered; serves `GET /page`.
#[derive(Clone)]
struct WsEcho {
    tx: Sender<Ws>,
}

impl EventHandler for WsEcho {
    fn on_handshake(&mut self, _: &mut Context<'_>, _: ConnId, request: &HttpRequest) -> Handshake {
        let _ = self.tx.send(Ws::Handshake(request.path().to_string()));
        if request.path() == "/private" {
            return Handshake::reject(403, "no entry");
        }
        if request.path() == "/sneaky" {
            // Built by hand, past `reject`'s clamp: still answered as a refusal.
            return Handshake::Reject {
                status: 101,
                body: "no".into(),
            };
        }
        if request.subprotocols().contains(&"chat") {
            return Handshake::accept_protocol("chat");
        }
        Handshake::accept()
    }

    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        let _ = self.tx.send(Ws::Open(conn));
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: WsMessage) {
        // Bound before the test hears of the message, so it can send to the uid at once.
        let uid = message.text().and_then(|t| t.strip_prefix("/uid "));
        if let Some(uid) = uid {
            ctx.bind(conn, uid).unwrap();
        }
        let _ = self
            .tx
            .send(Ws::Message(conn, message.opcode, message.data.clone()));
        if uid.is_some() {
            return;
        }
        ctx.send_opcode(conn, message.opcode, &message.data)
            .unwrap();
    }

    fn on_request(
        &mut self,
        _: &mut Context<'_>,
        _: ConnId,
        request: &HttpRequest,
    ) -> HttpResponse {
        match request.path() {
            "/page" => HttpResponse::html("<p>hi</p>"),
            _ => HttpResponse::upgrade_required(),
        }
    }

    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {
        unreachable!("WebSocket messages go to on_message")
    }

    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let _ = self.tx.send(Ws::Close(conn, reason));
    }
}

fn ws_builder(config: WebSocketConfig) -> ServerBuilder {
    eddy::Server::builder()
        .listen_ws("127.0.0.1:0")
        .websocket(config)
        .worker_num(2)
        .handle_signals(false)
}

fn ws_server(config: WebSocketConfig) -> (RunningServer, SocketAddr, Receiver<Ws>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (server, addr) = start(ws_builder(config), move || WsEcho { tx: tx.clone() });
    (server, addr, rx)
}

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

fn client(addr: SocketAddr, path: &str) -> Client {
    let stream = connect(addr);
    let url = format!("ws://{addr}{path}");
    let (socket, _) = tungstenite::client::client(url, MaybeTlsStream::Plain(stream))
        .expect("the handshake succeeds");
    socket
}

/// The next message, retrying a read that a signal interrupted (a socket with a read
/// timeout returns EINTR even under SA_RESTART; other tests signal this process).
fn read_msg(socket: &mut Client) -> tungstenite::Result<Message> {
    loop {
        match socket.read() {
            Err(tungstenite::Error::Io(err)) if err.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Whether another message came (false once the connection is closed).
fn read_msg_ok(socket: &mut Client) -> bool {
    read_msg(socket).is_ok()
}

#[track_caller]
fn next_ws(rx: &Receiver<Ws>, pred: impl Fn(&Ws) -> bool) -> Ws {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let seen = rx
            .recv_deadline(deadline)
            .expect("a WebSocket event in time");
        if pred(&seen) {
            return seen;
        }
    }
}

fn opened(rx: &Receiver<Ws>) -> ConnId {
    match next_ws(rx, |w| matches!(w, Ws::Open(_))) {
        Ws::Open(conn) => conn,
        _ => unreachable!(),
    }
}

fn close_of(rx: &Receiver<Ws>, conn: ConnId) -> CloseReason {
    match next_ws(rx, |w| matches!(w, Ws::Close(c, _) if *c == conn)) {
        Ws::Close(_, reason) => reason,
        _ => unreachable!(),
    }
}

/// A masked client frame, written by hand.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A raw TCP client after a successful upgrade (the 101 read and checked).
fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    stream
}

/// An HTTP response head, byte by byte up to the blank line.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// The server's close frame on a raw client: its code and reason, then the TCP close.
fn read_close(stream: &mut TcpStream) -> (u16, String) {
    let (bytes, _) = read_to_close(stream);
    let at = bytes
        .windows(1)
        .position(|w| w[0] == 0x88)
        .expect("a close frame");
    let len = (bytes[at + 1] & 0x7f) as usize;
    let payload = &bytes[at + 2..at + 2 + len];
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}

#[test]
fn text_and_binary_messages_echo_with_their_opcode_in_order() {
    let (server, addr, rx) = ws_server(WebSocketConfig::default());
    let mut socket = client(addr, "/");
    assert_eq!(
        next_ws(&rx, |w| matches!(w, Ws::Handshake(_))),
        Ws::Handshake("/".into())
    );
    let conn = opened(&rx);
    let info = server.handle().client_info(conn).unwrap();
    assert_eq!(info.websocket_status, Some(WsStatus::Open));
    assert!(server.handle().is_established(conn));
    for i in 0..50 {
        socket.send(Message::text(format!("text {i}"))).unwrap();
        socket
            .send(Message::binary(vec![i as u8, 0xff, 0]))
            .unwrap();
    }
    for i in 0..50 {
        assert_eq!(
            read_msg(&mut socket).unwrap(),
            Message::text(format!("text {i}"))
        );
        assert_eq!(
            read_msg(&mut socket).unwrap(),
            Message::binary(vec![i as u8, 0xff, 0])
        );
    }
    // Empty messages are messages: echoed, and sent from outside a handler too.
    socket.send(Message::text("")).unwrap();
    socket.send(Message::binary(Vec::new())).unwrap();
    assert_eq!(read_msg(&mut socket).unwrap(), Message::text(""));
    assert_eq!(read_msg(&mut socket).unwrap(), Message::binary(Vec::new()));
    assert!(server.handle().send(conn, b"").is_ok());
    assert_eq!(read_msg(&mut socket).unwrap(), Message::text(""));
    // A large message, in many frames from the client's side of the wire.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    socket.send(Message::binary(big.clone())).unwrap();
    assert_eq!(read_msg(&mut socket).unwrap(), Message::binary(big));
    socket.close(None).unwrap();
    while read_msg_ok(&mut socket) {}
    match close_of(&rx, conn) {
        CloseReason::WebSocket { code, by_peer, .. } => assert_eq!((code, by_peer), (1005, true)),
        other => panic!("closed for {other:?}"),
    }
    server.shutdown().unwrap();
}

#[test]
fn fragments_and_pings_between_them_make_one_message_and_pongs() {
    let (server, addr, rx) = ws_server(WebSocketConfig::default());
    let mut stream = raw_client(addr);
    let conn = opened(&rx);
    let mut bytes = frame(0x01, b"hel"); // text, not final
    bytes.extend(frame(0x89, b"ping!")); // a ping in between
    bytes.extend(frame(0x00, b"lo ")); // continuation
    bytes.extend(frame(0x80, "wörld".as_bytes())); // final continuation
                                                   // Any split of the stream: here one byte at a time.
    for b in &bytes {
        stream.write_all(&[*b]).unwrap();
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(
        reply, *b"\x8a\x05ping!",
        "the pong carries the ping's payload"
    );
    let seen = next_ws(&rx, |w| matches!(w, Ws::Message(..)));
    assert_eq!(
        seen,
        Ws::Message(conn, Opcode::Text, Bytes::from("hello wörld"))
    );
    let echo = read_n(&mut stream, 2 + "hello wörld".len());
    assert_eq!(&echo[..2], &[0x81, "hello wörld".len() as u8]);
    // Many pings in one write, a message among them: every pong, in order, and the echo
    // (which a worker sends, so anywhere among the pongs of a later read).
    let mut burst = Vec::new();
    for i in 0..500u32 {
        burst.extend(frame(0x89, &i.to_be_bytes()));
        if i == 250 {
            burst.extend(frame(0x82, b"mid"));
        }
    }
    stream.write_all(&burst).unwrap();
    let (mut pongs, mut echoed) = (Vec::new(), false);
    while pongs.len() < 500 || !echoed {
        let head = read_n(&mut stream, 2);
        let payload = read_n(&mut stream, head[1] as usize);
        match head[0] {
            0x8a => pongs.push(u32::from_be_bytes(payload.try_into().unwrap())),
            0x82 if payload == b"mid" && !echoed => echoed = true,
            other => panic!("frame {other:#x} {payload:?}"),
        }
    }
    assert_eq!(pongs, (0..500).collect::<Vec<u32>>());
    server.shutdown().unwrap();
}

#[test]
fn bad_frames_close_only_their_connection_with_the_rfc_code() {
    let (server, addr, rx) = ws_server(WebSocketConfig::default().max_message_size(1000));
    let mut good = client(addr, "/");
    opened(&rx);
    let unmasked = vec![0x81, 0x02, b'h', b'i'];
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (unmasked, 1002, "masked"),
        (frame(0x81, &[0xff, 0xfe]), 1007, "UTF-8"),
        (frame(0x82, &[0; 1001]), 1009, "1000"),
        (frame(0x89, &[0; 126]), 1002, "control"),
        (frame(0x09, b"x"), 1002, "fragmented"),
        (frame(0xc1, b"x"), 1002, "reserved"),
        (frame(0x83, b"x"), 1002, "opcode"),
        (frame(0x80, b"x"), 1002, "continuation"),
        (frame(0x88, &[0x03, 0xed]), 1002, "1005"),
    ];
    for (bytes, want, says) in cases {
        let mut stream = raw_client(addr);
        let conn = opened(&rx);
        stream.write_all(&bytes).unwrap();
        let (code, reason) = read_close(&mut stream);
        assert_eq!(code, want, "{reason}");
        assert!(reason.contains(says), "`{reason}` should say `{says}`");
        match close_of(&rx, conn) {
            CloseReason::WebSocket { code, by_peer, .. } => {
                assert_eq!((code, by_peer), (want, false))
            }
            other => panic!("closed for {other:?}"),
        }
    }
    // The first client never noticed.
    good.send(Message::text("still here")).unwrap();
    assert_eq!(read_msg(&mut good).unwrap(), Message::text("still here"));
    server.shutdown().unwrap();
}

#[test]
fn the_close_handshake_echoes_the_peers_code() {
    let (server, addr, rx) = ws_server(WebSocketConfig::default());
    let mut socket = client(addr, "/");
    let conn = opened(&rx);
    socket
        .close(Some(CloseFrame {
            code: CloseCode::Library(4321),
            reason: "done".into(),
        }))
        .unwrap();
    let echoed = loop {
        match read_msg(&mut socket) {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(err) => panic!("no close frame: {err}"),
        }
    };
    assert_eq!(echoed.map(|f| u16::from(f.code)), Some(4321));
    assert_eq!(
        close_of(&rx, conn),
        CloseReason::WebSocket {
            code: 4321,
            reason: "done".into(),
            by_peer: true
        }
    );
    server.shutdown().unwrap();
}

#[test]
fn disconnect_sends_a_close_frame_after_queued_messages_and_checks_the_code() {
    let (server, addr, rx) = ws_server(WebSocketConfig::default());
    let handle = server.handle();
    let mut socket = client(addr, "/");
    let conn = opened(&rx);
    assert_eq!(
        handle.disconnect(conn, 1001, "x"),
        Err(SendError::InvalidCloseCode(1001))
    );
    assert_eq!(
        handle.disconnect(conn, 2999, "x"),
        Err(SendError::InvalidCloseCode(2999))
    );
    handle.send_text(conn, "first").unwrap();
    handle.send_binary(conn, [1, 2, 3]).unwrap();
    handle.disconnect(conn, 4000, "bye now").unwrap();
    assert_eq!(handle.send_text(conn, "late"), Err(SendError::Closed));
    assert_eq!(read_msg(&mut socket).unwrap(), Message::text("first"));
    assert_eq!(
        read_msg(&mut socket).unwrap(),
        Message::binary(vec![1, 2, 3])
    );
    match read_msg(&mut socket).unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!(
                (u16::from(frame.code), frame.reason.as_str()),
                (4000, "bye now")
            )
        }
        other => panic!("expected the close frame, got {other:?}"),
    }
    assert_eq!(
        close_of(&rx, conn),
        CloseReason::WebSocket {
            code: 4000,
            reason: "bye now".into(),
            by_peer: false
        }
    );
    server.shutdown().unwrap();
}

#[test]
fn handshakes_can_be_rejected_pick_a_subprotocol_and_plain_http_gets_an_answer() {
    let (server, addr, rx) = ws_server(WebSocketConfig::default());
    // Rejected by on_handshake.
    let stream = connect(addr);
    let refused = tungstenite::client::client(
        format!("ws://{addr}/private"),
        MaybeTlsStream::Plain(stream),
    );
    match refused {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    // A Reject made with a 101 (or any status under 400) is answered with a 400.
    let stream = connect(addr);
    let refused =
        tungstenite::client::client(format!("ws://{addr}/sneaky"), MaybeTlsStream::Plain(stream));
    match refused {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 400)
        }
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    // A subprotocol chosen from the client's offers.
    let stream = connect(addr);
    let request =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/chat"))
            .unwrap();
    let mut request = request;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "superchat, chat".parse().unwrap());
    let (_socket, response) =
        tungstenite::client::client(request, MaybeTlsStream::Plain(stream)).unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    // Plain HTTP: on_request answers, then the connection closes.
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, _) = read_to_close(&mut stream);
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("<p>hi</p>"), "{answer}");
    let mut stream = connect(addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, _) = read_to_close(&mut stream);
    assert!(String::from_utf8(answer)
        .unwrap()
        .starts_with("HTTP/1.1 426 "));
    // A broken upgrade (wrong version) is answered 426 with the version we speak.
    let mut stream = connect(addr);
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .unwrap();
    let (answer, _) = read_to_close(&mut stream);
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Version: 13"), "{answer}");
    drop(rx);
    server.shutdown().unwrap();
}

#[test]
fn an_oversized_or_unfinished_handshake_is_closed() {
    let config = WebSocketConfig::default()
        .max_handshake_bytes(1024)
        .handshake_timeout(Duration::from_millis(200));
    let (server, addr, _rx) = ws_server(config);
    let mut stream = connect(addr);
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    request.extend(std::iter::repeat_n(b"X-Pad: aaaaaaaaaaaaaaaaaaaa\r\n", 100).flatten());
    stream.write_all(&request).unwrap();
    let (answer, _) = read_to_close(&mut stream);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431 "));
    // Half a request, then silence: closed by the handshake timeout (a bounded wait).
    let mut slow = connect(addr);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (answer, _) = read_to_close(&mut slow);
    assert!(answer.is_empty());
    server.shutdown().unwrap();
}

#[test]
fn broadcast_and_send_to_uid_reach_websocket_and_tcp_connections_alike() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = ws_builder(WebSocketConfig::default()).listen("127.0.0.1:0");
    let (server, addr) = start(builder, move || WsEcho { tx: tx.clone() });
    let tcp_addr = match &server.handle().local_addrs()[1] {
        eddy::ListenAddr::Tcp(addr) => *addr,
        other => panic!("{other}"),
    };
    let mut sockets: Vec<Client> = (0..3).map(|_| client(addr, "/")).collect();
    for _ in 0..3 {
        opened(&rx);
    }
    let mut tcp = connect(tcp_addr);
    // One more, still in its upgrade: passed over, and counted neither way.
    let upgrading = connect(addr);
    wait_until("five connections", || {
        server.handle().connection_count() == 5
    });
    let delivery = server.handle().broadcast("to everyone");
    assert_eq!((delivery.delivered(), delivery.failed), (4, 0));
    for socket in &mut sockets {
        assert_eq!(read_msg(socket).unwrap(), Message::text("to everyone"));
    }
    assert_eq!(read_n(&mut tcp, 11), b"to everyone");
    sockets[1].send(Message::text("/uid bob")).unwrap();
    next_ws(
        &rx,
        |w| matches!(w, Ws::Message(_, _, data) if &data[..] == b"/uid bob"),
    );
    let delivery = server.handle().send_to_uid(&Uid::from("bob"), "hi bob");
    assert_eq!(delivery.delivered(), 1);
    assert_eq!(read_msg(&mut sockets[1]).unwrap(), Message::text("hi bob"));
    // A text send of bytes that are not UTF-8 is refused on WebSockets, delivered raw on TCP.
    let delivery = server.handle().broadcast([0xff, 0xfe]);
    assert_eq!((delivery.delivered(), delivery.failed), (1, 3));
    assert_eq!(read_n(&mut tcp, 2), [0xff, 0xfe]);
    drop(upgrading);
    server.shutdown().unwrap();
}

#[test]
fn a_graceful_shutdown_sends_going_away_after_the_queued_messages() {
    let (server, addr, rx) = ws_server(WebSocketConfig::default());
    let mut socket = client(addr, "/");
    let conn = opened(&rx);
    server.handle().send_text(conn, "last words").unwrap();
    let report = server.shutdown().unwrap();
    assert!(report.graceful, "{report:?}");
    assert_eq!(read_msg(&mut socket).unwrap(), Message::text("last words"));
    match read_msg(&mut socket).unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected going away, got {other:?}"),
    }
}

#[test]
fn the_heartbeat_pings_quiet_websockets_and_closes_those_that_do_not_answer() {
    heartbeat_pings_then_closes(false);
}

#[test]
fn a_heartbeat_pass_too_late_to_ping_in_time_pings_before_it_closes() {
    // A pass that finds a connection already past its idle time, never pinged (passes come
    // late on a loaded machine; here the connection was protected until then), pings it
    // then, and closes it only if it does not answer.
    heartbeat_pings_then_closes(true);
}

fn heartbeat_pings_then_closes(late: bool) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder =
        ws_builder(WebSocketConfig::default()).heartbeat_idle_time(Duration::from_millis(400));
    let (server, addr) = start(builder, move || WsEcho { tx: tx.clone() });
    let mut alive = raw_client(addr);
    let alive_id = opened(&rx);
    let mut dead = raw_client(addr);
    let dead_id = opened(&rx);
    if late {
        server.handle().protect(dead_id, true).unwrap();
    }
    // Each ping is answered with a pong: three pings in a row means the connection outlived
    // its idle time more than once because it answered (and the quiet one, opened before
    // the first ping, is past its idle time by then).
    for _ in 0..3 {
        assert_eq!(read_n(&mut alive, 2), [0x89, 0x00], "a ping");
        alive.write_all(&frame(0x8a, b"")).unwrap();
    }
    if late {
        // (The one that answered stops answering now: protected, it is not closed for it.)
        server.handle().protect(alive_id, true).unwrap();
        server.handle().protect(dead_id, false).unwrap();
    }
    // The silent one got a ping too, and was closed.
    let (bytes, _) = read_to_close(&mut dead);
    assert!(bytes.starts_with(&[0x89, 0x00]), "{bytes:?}");
    assert_eq!(close_of(&rx, dead_id), CloseReason::HeartbeatTimeout);
    alive.write_all(&frame(0x81, b"still")).unwrap();
    assert_eq!(read_n(&mut alive, 7), b"\x81\x05still");
    server.shutdown().unwrap();
}

#[test]
fn a_slow_reader_gets_every_echo_in_order_and_a_reload_keeps_websockets_open() {
    let (server, addr, rx) = ws_server(WebSocketConfig::default());
    let mut socket = client(addr, "/");
    opened(&rx);
    // The writer sends far more than the buffers between us hold while this thread reads
    // nothing: the server stops reading at its high watermark, then catches up.
    const MESSAGES: u32 = 2000;
    let writer_stream = match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.try_clone().unwrap(),
        _ => unreachable!(),
    };
    let (written, wrote) = crossbeam_channel::bounded(1);
    let writer = std::thread::spawn(move || {
        let mut stream = writer_stream;
        for i in 0..MESSAGES {
            let mut body = i.to_be_bytes().to_vec();
            body.resize(10_000, (i % 251) as u8);
            stream.write_all(&frame(0x82, &body)).unwrap();
            if i == 100 {
                let _ = written.send(());
            }
        }
    });
    wrote.recv_timeout(WAIT).expect("the writer got going");
    for i in 0..MESSAGES {
        let Message::Binary(body) = read_msg(&mut socket).unwrap() else {
            panic!("a binary echo")
        };
        assert_eq!(body.len(), 10_000);
        assert_eq!(
            u32::from_be_bytes(body[..4].try_into().unwrap()),
            i,
            "in order"
        );
        assert!(
            body[4..].iter().all(|b| *b == (i % 251) as u8),
            "byte-exact"
        );
    }
    writer.join().unwrap();
    // A reload rebuilds the handlers; the WebSocket stays open and keeps echoing.
    let before = server.handle().stats().reload_count;
    server.handle().reload().unwrap();
    wait_until("the reload", || {
        server.handle().stats().reload_count > before
    });
    socket.send(Message::text("after reload")).unwrap();
    assert_eq!(
        read_msg(&mut socket).unwrap(),
        Message::text("after reload")
    );
    server.shutdown().unwrap();
}

#[test]
fn every_dispatch_mode_serves_websockets() {
    for mode in ["fd", "round-robin", "idle", "ip", "uid", "reactor"] {
        let (tx, rx) = crossbeam_channel::unbounded();
        let builder = ws_builder(WebSocketConfig::default())
            .dispatch_mode(mode.parse().unwrap())
            .worker_num(2)
            .reactor_num(2);
        let (server, addr) = start(builder, move || WsEcho { tx: tx.clone() });
        let mut sockets: Vec<Client> = (0..4).map(|_| client(addr, "/")).collect();
        for round in 0..20 {
            for (n, socket) in sockets.iter_mut().enumerate() {
                socket
                    .send(Message::text(format!("{mode} {n} {round}")))
                    .unwrap();
            }
            for (n, socket) in sockets.iter_mut().enumerate() {
                let want = Message::text(format!("{mode} {n} {round}"));
                assert_eq!(read_msg(socket).unwrap(), want, "{mode}");
            }
        }
        drop(rx);
        server.shutdown().unwrap();
    }
}

/// `wss://`: the upgrade and the frames travel inside TLS; in a stateless mode the upgrade
/// request that came with the handshake's end waits for `on_connect`, and is not lost.
#[test]
fn wss_upgrades_and_echoes_in_stateful_and_stateless_modes() {
    let ca = crate::pki::Ca::new("eddy test CA");
    let pem = ca.server(&["localhost"]);
    for mode in [DispatchMode::Fd, DispatchMode::RoundRobin] {
        let (tx, rx) = crossbeam_channel::unbounded();
        let tls = eddy::TlsConfig::from_pem(pem.cert.clone(), pem.key.clone());
        let builder = ws_builder(WebSocketConfig::default().deflate(true))
            .tls(tls)
            .dispatch_mode(mode.clone());
        let (server, addr) = start(builder, move || WsEcho { tx: tx.clone() });
        let stream =
            crate::pki::tls_connect(addr, ca.client_config(&[], None), "localhost").unwrap();
        let (mut socket, _) = tungstenite::client::client("wss://localhost/secure", stream)
            .expect("the upgrade over TLS succeeds");
        assert_eq!(
            next_ws(&rx, |w| matches!(w, Ws::Handshake(_))),
            Ws::Handshake("/secure".into())
        );
        let conn = opened(&rx);
        for text in ["hello over wss", "and again"] {
            socket.send(Message::text(text)).unwrap();
            let echo = loop {
                match socket.read() {
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::Interrupted => {}
                    other => break other.unwrap(),
                }
            };
            assert_eq!(echo, Message::text(text), "{mode:?}");
        }
        let info = server.handle().client_info(conn).unwrap();
        assert!(
            info.tls.is_some() && info.websocket_status.is_some(),
            "{info:?}"
        );
        socket.close(None).unwrap();
        let reason = close_of(&rx, conn);
        assert!(
            matches!(
                reason,
                CloseReason::WebSocket {
                    code: 1005,
                    by_peer: true,
                    ..
                }
            ),
            "{reason:?}"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn messages_just_before_the_peers_close_or_a_bad_frame_are_answered_first() {
    for reactor in [false, true] {
        let mut builder = ws_builder(WebSocketConfig::default());
        if reactor {
            builder = builder
                .dispatch_mode(eddy::DispatchMode::Reactor)
                .reactor_num(2);
        }
        let (tx, _events) = crossbeam_channel::unbounded();
        let (server, addr) = start(builder, move || WsEcho { tx: tx.clone() });
        // A message, then the close, in one write: the echo goes out before the close's.
        let mut stream = raw_client(addr);
        let mut bytes = frame(0x81, b"last");
        bytes.extend(frame(0x88, &1000u16.to_be_bytes()));
        stream.write_all(&bytes).unwrap();
        let (answer, _) = read_to_close(&mut stream);
        let mut expected = vec![0x81, 4];
        expected.extend_from_slice(b"last");
        expected.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
        assert_eq!(answer, expected, "reactor mode {reactor}");
        // A message, then a bad frame (unmasked): the same, the close saying 1002.
        let mut stream = raw_client(addr);
        let mut bytes = frame(0x81, b"first");
        bytes.extend_from_slice(&[0x81, 0x01, b'x']);
        stream.write_all(&bytes).unwrap();
        let (answer, _) = read_to_close(&mut stream);
        assert_eq!(&answer[..7], b"\x81\x05first", "reactor mode {reactor}");
        assert_eq!(answer[7], 0x88, "then the close frame");
        assert_eq!(&answer[9..11], &1002u16.to_be_bytes());
        server.shutdown().unwrap();
    }
}

#[test]
fn a_message_that_fits_the_buffer_with_its_header_is_sent() {
    const LIMIT: usize = 256 * 1024;
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder =
        ws_builder(WebSocketConfig::default().max_message_size(LIMIT)).socket_buffer_size(LIMIT);
    let (server, addr) = start(builder, move || WsEcho { tx: tx.clone() });
    let mut socket = client(addr, "/");
    let conn = opened(&rx);
    // 20 bytes short of the limit: its 10-byte header fits (it was refused as TooLarge
    // against an estimate of 32 bytes and more).
    let message = vec![b'a'; LIMIT - 20];
    assert!(server.handle().send(conn, &message).is_ok());
    assert_eq!(read_msg(&mut socket).unwrap().into_data().len(), LIMIT - 20);
    // Over the limit with its header: refused, naming the frame's size.
    assert_eq!(
        server.handle().send(conn, vec![b'a'; LIMIT - 5]),
        Err(SendError::TooLarge {
            len: LIMIT + 5,
            limit: LIMIT
        })
    );
    server.shutdown().unwrap();
}

/// Holds the first `on_connect` (saying so) until the gate's sender is dropped; echoes.
struct SlowFirstConnect {
    first: std::sync::Arc<std::sync::atomic::AtomicBool>,
    holding: Sender<()>,
    gate: Receiver<()>,
}

impl EventHandler for SlowFirstConnect {
    fn on_connect(&mut self, _: &mut Context<'_>, _: ConnId) {
        if self.first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let _ = self.holding.send(());
            let _ = self.gate.recv();
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: WsMessage) {
        let _ = ctx.send_opcode(conn, message.opcode, &message.data);
    }

    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

#[test]
fn the_handshake_timeout_does_not_count_the_time_the_server_holds_the_request_unread() {
    let (gate_tx, gate) = crossbeam_channel::bounded::<()>(0);
    let (holding_tx, holding) = crossbeam_channel::unbounded();
    let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let config = WebSocketConfig::default().handshake_timeout(Duration::from_millis(200));
    // Round robin is stateless: a connection is read once its on_connect has returned. One
    // reactor, so the two connections' on_connect go to the two workers in turn.
    let builder = ws_builder(config)
        .dispatch_mode(DispatchMode::RoundRobin)
        .reactor_num(1);
    let (server, addr) = start(builder, move || SlowFirstConnect {
        first: first.clone(),
        holding: holding_tx.clone(),
        gate: gate.clone(),
    });
    // The first client sends its request at once; its on_connect does not return.
    let mut held = connect(addr);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    held.write_all(request.as_bytes()).unwrap();
    holding
        .recv_timeout(WAIT)
        .expect("the first on_connect holds");
    // A second client (its on_connect on the other worker) sends nothing: timed out, which
    // shows the first one's deadline has passed too.
    let mut silent = connect(addr);
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let (answer, _) = read_to_close(&mut silent);
    assert!(answer.is_empty());
    // The first was held by the server, not slow: once on_connect returns it upgrades
    // (before, it was closed with HandshakeTimeout while held).
    drop(gate_tx);
    held.set_read_timeout(Some(WAIT)).unwrap();
    let head = read_head(&mut held);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    server.shutdown().unwrap();
}

#[test]
fn a_frame_many_times_the_package_limit_echoes_then_the_next_frame_too() {
    // A frame far past `package_max_length` (which bounds packets of unknown size, not
    // frames): its buffer grows toward the frame's size, and the frame behind it, sent in
    // the same burst, is read and answered after it.
    const BIG: usize = 6 << 20;
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = ws_builder(WebSocketConfig::default())
        .package_max_length(64 * 1024)
        .socket_buffer_size(2 * BIG);
    let (server, addr) = start(builder, move || WsEcho { tx: tx.clone() });
    let mut socket = client(addr, "/");
    opened(&rx);
    let big: Vec<u8> = (0..BIG as u32).map(|i| (i % 253) as u8).collect();
    socket.write(Message::binary(big.clone())).unwrap();
    socket.write(Message::text("after")).unwrap();
    socket.flush().unwrap();
    assert_eq!(read_msg(&mut socket).unwrap(), Message::binary(big));
    assert_eq!(read_msg(&mut socket).unwrap(), Message::text("after"));
    server.shutdown().unwrap();
}

/// Sends `big` bytes as soon as a connection opens (more than the kernel's buffers take, so
/// the output buffer is past its high watermark); echoes.
struct FloodsOnOpen {
    big: usize,
}

impl EventHandler for FloodsOnOpen {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        ctx.send_opcode(conn, Opcode::Binary, &vec![b'x'; self.big])
            .unwrap();
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: WsMessage) {
        let _ = ctx.send_opcode(conn, message.opcode, &message.data);
    }

    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

#[test]
fn a_frame_sent_with_the_upgrade_is_answered_after_what_on_open_sends() {
    // The frame that came with the request, read and kept while the handler decided, is
    // answered once the connection is open, behind what `on_open` sent: more than the
    // kernel's buffers take, so the output is past its high watermark meanwhile, inline
    // (reactor mode) and from a worker.
    const BIG: usize = 16 << 20;
    for mode in [DispatchMode::Reactor, DispatchMode::Fd] {
        let builder = ws_builder(WebSocketConfig::default())
            .socket_buffer_size(2 * BIG)
            .dispatch_mode(mode);
        upgrade_frame_answered_after_drain(builder, BIG);
    }
}

fn upgrade_frame_answered_after_drain(builder: ServerBuilder, big: usize) {
    let (server, addr) = start(builder, move || FloodsOnOpen { big });
    let mut stream = connect(addr);
    let mut request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    request.extend(frame(0x81, b"with the request"));
    stream.write_all(&request).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut flood = vec![0u8; 10 + big];
    stream.read_exact(&mut flood).unwrap();
    assert_eq!(&flood[..2], &[0x82, 127]);
    let mut echo = [0u8; 2 + 16];
    stream.read_exact(&mut echo).expect("the frame's echo");
    assert_eq!(&echo[..2], &[0x81, 16]);
    assert_eq!(&echo[2..], b"with the request");
    server.shutdown().unwrap();
}
