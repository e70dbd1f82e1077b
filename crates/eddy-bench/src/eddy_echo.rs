//! eddy's own echo server, built the way an application would build it,
//! for comparison with the baselines.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use bytes::Bytes;
use eddy_codec::{EofCodec, LengthCodec};
use eddy_server::{
    BuildError, ConnId, Context, DispatchMode, EventHandler, PacketInfo, Server, TlsConfig,
    TlsVersion, WebSocketConfig, WsMessage,
};

use crate::frames::Framing;

/// The dispatch modes the benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// [`DispatchMode::Fd`]: reactor threads hand packets to worker threads.
    #[default]
    Fd,
    /// [`DispatchMode::Reactor`]: each reactor thread runs the handler itself.
    Reactor,
}

impl Dispatch {
    /// The name used on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dispatch::Fd => "fd",
            Dispatch::Reactor => "reactor",
        }
    }
}

impl fmt::Display for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dispatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fd" => Ok(Dispatch::Fd),
            "reactor" => Ok(Dispatch::Reactor),
            other => Err(format!(
                "unknown dispatch mode {other:?} (expected `fd` or `reactor`)"
            )),
        }
    }
}

impl From<Dispatch> for DispatchMode {
    fn from(d: Dispatch) -> Self {
        match d {
            Dispatch::Fd => DispatchMode::Fd,
            Dispatch::Reactor => DispatchMode::Reactor,
        }
    }
}

/// How to build the eddy echo server; `None` keeps eddy's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EddyConfig {
    /// Dispatch mode.
    pub dispatch: Dispatch,
    /// Reactor threads (`reactor_num`).
    pub reactors: Option<usize>,
    /// Worker threads (`worker_num`).
    pub workers: Option<usize>,
    /// WebSocket framing only: accept permessage-deflate offers (eddy's
    /// defaults: level 1, 15-bit windows, context takeover, messages from
    /// 32 bytes on compressed). Off: offers are declined.
    pub deflate: bool,
}

/// Echoes every packet back whole.
#[derive(Debug)]
struct Echo;

impl EventHandler for Echo {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        // A failed send means the connection is closing: nothing to do.
        let _ = ctx.send(conn, &packet);
    }
}

/// Echoes every WebSocket message back whole, with its opcode: the handler
/// of `examples/ws_echo.rs`.
#[derive(Debug)]
struct WsEcho;

impl EventHandler for WsEcho {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: WsMessage) {
        let _ = ctx.send_opcode(conn, message.opcode, &message.data);
    }

    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

/// Echoes every UDP datagram to its sender: the handler of
/// `examples/echo.rs --udp`.
#[derive(Debug)]
struct UdpEcho;

impl EventHandler for UdpEcho {
    fn on_packet(&mut self, ctx: &mut Context<'_>, packet: Bytes, from: PacketInfo) {
        // A full send queue drops the answer, as UDP may.
        let _ = ctx.sendto(from.listener, &from.peer, &packet);
    }

    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

/// The largest WebSocket message the echo takes (as `examples/ws_echo.rs`).
const WS_MAX_MESSAGE: usize = 16 << 20;

/// Binds an eddy echo server on `listen` with `framing` (eddy's
/// `LengthCodec`, `EofCodec::line()`, or a WebSocket listener set up as
/// `examples/ws_echo.rs` sets it up: 16 MiB messages, a 64 MiB output
/// buffer, permessage-deflate per [`EddyConfig::deflate`]; or, for
/// [`Framing::Udp`], a `listen_udp` socket whose `on_packet` sends every
/// datagram back with `sendto`), a backlog of
/// 1024 and otherwise eddy's defaults. Start it with [`Server::run`].
pub fn build(listen: &str, framing: Framing, config: EddyConfig) -> Result<Server, BuildError> {
    build_with(listen, framing, config, None)
}

/// [`build`] with TLS on the listener when `tls` names a certificate chain and key (PEM
/// files): eddy's `TlsConfig::from_pem_files`, TLS 1.3 only, otherwise eddy's defaults (the
/// ring provider, a 10 s handshake timeout, rustls's default session tickets).
pub fn build_with(
    listen: &str,
    framing: Framing,
    config: EddyConfig,
    tls: Option<(&Path, &Path)>,
) -> Result<Server, BuildError> {
    let builder = match framing {
        Framing::Length => Server::builder().listen(listen).codec(LengthCodec::new()),
        Framing::Line => Server::builder().listen(listen).codec(EofCodec::line()),
        Framing::WebSocket => Server::builder()
            .listen_ws(listen)
            .websocket(
                WebSocketConfig::default()
                    .max_message_size(WS_MAX_MESSAGE)
                    .deflate(config.deflate),
            )
            .socket_buffer_size(WS_MAX_MESSAGE * 4),
        Framing::Udp => Server::builder().listen_udp(listen),
    };
    let mut builder = builder.dispatch_mode(config.dispatch.into()).backlog(1024);
    if let Some((cert, key)) = tls {
        builder = builder.tls(TlsConfig::from_pem_files(cert, key).versions(&[TlsVersion::Tls13]));
    }
    if let Some(n) = config.reactors {
        builder = builder.reactor_num(n);
    }
    if let Some(n) = config.workers {
        builder = builder.worker_num(n);
    }
    match framing {
        Framing::WebSocket => builder.build(|| WsEcho),
        Framing::Udp => builder.build(|| UdpEcho),
        Framing::Length | Framing::Line => builder.build(|| Echo),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_names_round_trip() {
        for d in [Dispatch::Fd, Dispatch::Reactor] {
            assert_eq!(d.as_str().parse::<Dispatch>(), Ok(d));
        }
        assert!("idle".parse::<Dispatch>().is_err());
    }

    #[test]
    fn builds_with_every_framing() {
        for framing in [
            Framing::Length,
            Framing::Line,
            Framing::WebSocket,
            Framing::Udp,
        ] {
            let config = EddyConfig {
                dispatch: Dispatch::Reactor,
                workers: Some(1),
                ..EddyConfig::default()
            };
            let server = build("127.0.0.1:0", framing, config).expect("build");
            assert!(server.local_addr().to_string().starts_with("127.0.0.1:"));
        }
    }
}
