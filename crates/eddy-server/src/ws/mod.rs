//! WebSocket, as handlers and settings see it: messages, the handshake decision, plain HTTP
//! answers, and a listener's settings. The protocol itself (frames, handshake parsing,
//! deflate) is the `eddy-ws` crate; the reactor drives it (`reactor::websocket`) and the send
//! path encodes with it (`shared::send`).
//!
//! Above `error`: plain types, no threads.

mod config;
mod http;

pub use config::WebSocketConfig;
pub use eddy_ws::deflate::DeflateConfig;
pub use eddy_ws::handshake::Request as HttpRequest;
pub(crate) use http::{reason_phrase, refusal_status};
pub use http::{Handshake, HttpResponse};

use bytes::Bytes;

/// The two kinds of WebSocket data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Opcode {
    /// UTF-8 text (opcode 1).
    Text,
    /// Bytes (opcode 2).
    Binary,
}

impl Opcode {
    pub(crate) fn kind(self) -> eddy_ws::MessageKind {
        match self {
            Opcode::Text => eddy_ws::MessageKind::Text,
            Opcode::Binary => eddy_ws::MessageKind::Binary,
        }
    }

    pub(crate) fn of(kind: eddy_ws::MessageKind) -> Opcode {
        match kind {
            eddy_ws::MessageKind::Text => Opcode::Text,
            eddy_ws::MessageKind::Binary => Opcode::Binary,
        }
    }
}

/// One whole WebSocket message from a client: fragments joined, unmasked, inflated, and for
/// text, checked to be UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsMessage {
    /// Text or binary.
    pub opcode: Opcode,
    /// The payload.
    pub data: Bytes,
}

impl WsMessage {
    /// The payload as text, for a text message.
    pub fn text(&self) -> Option<&str> {
        match self.opcode {
            Opcode::Text => std::str::from_utf8(&self.data).ok(),
            Opcode::Binary => None,
        }
    }
}

/// Where a WebSocket connection is in its life (`client_info`'s `websocket_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WsStatus {
    /// The upgrade request has not been answered yet.
    Handshaking,
    /// Open: messages flow both ways.
    Open,
    /// A close frame was sent; nothing more will be.
    Closing,
}

/// Whether a server may send this close code: 1000 (normal) or 3000 to 4999 (registered and
/// private codes), as Swoole's `disconnect` allows.
pub(crate) fn is_sendable_close_code(code: u16) -> bool {
    code == 1000 || (3000..=4999).contains(&code)
}
