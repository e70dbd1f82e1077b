//! `client_info`: what is known of one connection, as Swoole's `getClientInfo` reports it.

use std::{sync::atomic::Ordering, time::SystemTime};

use crate::{
    conn::{inflight, Conn, ConnId, Uid},
    net::{ListenAddr, PeerAddr},
    shared::Shared,
    sys,
    tls::TlsInfo,
    ws::WsStatus,
};

/// What is known of one connection (Swoole's `getClientInfo`). Serialises (serde) with times
/// as unix seconds and the id as a number.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The connection's id.
    pub id: ConnId,
    /// Index of the listener that accepted it, in the order they were added.
    pub listener: usize,
    /// The port of that listener (`server_port`; 0 for unix sockets).
    pub server_port: u16,
    /// The socket's file descriptor (`socket_fd`).
    pub socket_fd: i32,
    /// `tcp`, `tcp6` or `unix` (`socket_type`).
    pub socket_type: &'static str,
    /// The peer's IP address (`remote_ip`; empty for unix sockets).
    pub remote_ip: String,
    /// The peer's port (`remote_port`; 0 for unix sockets).
    pub remote_port: u16,
    /// The reactor thread that owns the socket.
    pub reactor_id: usize,
    /// The worker the connection's latest event went to.
    pub worker_id: usize,
    /// When the connection was accepted.
    #[serde(serialize_with = "unix_seconds")]
    pub connect_time: SystemTime,
    /// When bytes last arrived from the peer (the connect time if none yet).
    #[serde(serialize_with = "unix_seconds")]
    pub last_recv_time: SystemTime,
    /// When the server last sent to it (a send that got past the checks), if ever.
    #[serde(serialize_with = "unix_seconds_opt")]
    pub last_send_time: Option<SystemTime>,
    /// When a worker last took one of its events, if ever (compare with the receive time to
    /// see queueing delay).
    #[serde(serialize_with = "unix_seconds_opt")]
    pub last_dispatch_time: Option<SystemTime>,
    /// The user id bound with `bind`, if any.
    pub uid: Option<Uid>,
    /// What waits for a worker (`recv_queued_bytes`): the bytes of the packets read but not
    /// handled yet, and 1 for each other event queued for the connection (its connect, a
    /// buffer event, a WebSocket handshake or HTTP request), so it is 0 exactly when nothing
    /// waits.
    pub recv_queued_bytes: u64,
    /// Bytes waiting in the connection's output buffer (`send_queued_bytes`).
    pub send_queued_bytes: usize,
    /// For a WebSocket connection, where its handshake is (Swoole's `websocket_status`).
    pub websocket_status: Option<WsStatus>,
    /// For a WebSocket connection, whether permessage-deflate was agreed.
    pub websocket_deflate: bool,
    /// Exempt from the heartbeat (`protect`).
    pub protected: bool,
    /// For a unix stream connection, the peer process's credentials (`SO_PEERCRED`).
    pub peer_credentials: Option<PeerCredentials>,
    /// Why it closed, once it has (inside `on_close`).
    pub close_reason: Option<String>,
    /// On a TLS listener, what the handshake negotiated, once it finished: version, cipher
    /// suite, ALPN protocol, SNI name, the client certificate's subject (mutual TLS).
    pub tls: Option<TlsInfo>,
}

/// The process at the other end of a unix stream socket, as it was when it connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerCredentials {
    /// Its process id.
    pub pid: i32,
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
}

/// A time as (fractional) unix seconds.
pub(crate) fn unix_seconds<S: serde::Serializer>(
    time: &SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    serializer.serialize_f64(seconds)
}

/// An optional time as unix seconds, or null.
pub(crate) fn unix_seconds_opt<S: serde::Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => unix_seconds(time, serializer),
        None => serializer.serialize_none(),
    }
}

impl ClientInfo {
    pub(crate) fn of(conn: &Conn, shared: &Shared) -> Self {
        let (remote_ip, remote_port, socket_type) = match &conn.peer {
            PeerAddr::Tcp(addr) => (
                addr.ip().to_string(),
                addr.port(),
                if addr.is_ipv6() { "tcp6" } else { "tcp" },
            ),
            PeerAddr::Unix => (String::new(), 0, "unix"),
        };
        let server_port = match shared.local_addrs.get(conn.listener) {
            Some(ListenAddr::Tcp(addr)) => addr.port(),
            _ => 0,
        };
        // Activity is kept as milliseconds since the server's epoch; turn it into wall time.
        let now_ms = shared.now_ms();
        let now = SystemTime::now();
        let at = |ms: u64| now - std::time::Duration::from_millis(now_ms.saturating_sub(ms));
        let ever = |ms: u64| (ms != 0).then(|| at(ms));
        let out = conn.out.lock();
        ClientInfo {
            id: conn.id,
            listener: conn.listener,
            server_port,
            socket_fd: conn.raw_fd(),
            socket_type,
            remote_ip,
            remote_port,
            reactor_id: conn.reactor,
            worker_id: conn.worker.load(Ordering::Relaxed),
            connect_time: conn.connect_time,
            last_recv_time: at(conn.last_recv.load(Ordering::Relaxed)),
            last_send_time: ever(conn.last_send.load(Ordering::Relaxed)),
            last_dispatch_time: ever(conn.last_dispatch.load(Ordering::Relaxed)),
            uid: conn.uid(),
            recv_queued_bytes: conn.inflight.load(Ordering::Relaxed) & inflight::WEIGHT,
            send_queued_bytes: out.pending(),
            websocket_status: out.ws.as_ref().map(|ws| ws.status),
            websocket_deflate: out.ws.as_ref().is_some_and(|ws| ws.deflate),
            protected: conn.protected.load(Ordering::Relaxed),
            peer_credentials: match conn.peer {
                PeerAddr::Unix => sys::peer_credentials(conn.fd())
                    .map(|(pid, uid, gid)| PeerCredentials { pid, uid, gid }),
                PeerAddr::Tcp(_) => None,
            },
            close_reason: conn.close_reason.get().map(ToString::to_string),
            tls: conn.tls_info.get().map(|info| (**info).clone()),
        }
    }

    /// The peer's socket address, for TCP connections.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        Some(std::net::SocketAddr::new(
            self.remote_ip.parse().ok()?,
            self.remote_port,
        ))
    }
}
