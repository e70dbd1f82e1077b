//! A listener's protocol: the layer between a connection's transport and dispatch.
//!
//! Today every listener frames its byte stream with a codec; WebSocket (and later HTTP) come
//! as more variants: the reactor asks the protocol to cut packets from what it read, and the
//! send path asks it to frame a body, without knowing which protocol it is.

use std::sync::Arc;

use eddy_codec::Codec;

use crate::ws::WebSocketConfig;

/// What a listener's connections speak.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub(crate) enum Protocol {
    /// A byte stream cut into packets by a codec (length field, delimiter, line, raw…).
    Framed(Arc<dyn Codec>),
    /// WebSocket (RFC 6455, with RFC 7692 deflate): an HTTP upgrade, then messages.
    WebSocket(Arc<WebSocketConfig>),
    /// Datagrams (UDP, unix datagram): each datagram is one packet, no framing.
    Datagram,
}

impl Protocol {
    /// The smallest packet the protocol can produce (the lower bound of `package_max_length`).
    pub(crate) fn min_packet(&self) -> usize {
        match self {
            Protocol::Framed(codec) => codec.min_packet(),
            Protocol::WebSocket(_) | Protocol::Datagram => 1,
        }
    }

    /// The codec of a framed listener; `None` for WebSocket, whose framing is per connection
    /// (the send path does it).
    pub(crate) fn codec(&self) -> Option<&dyn Codec> {
        match self {
            Protocol::Framed(codec) => Some(&**codec),
            Protocol::WebSocket(_) | Protocol::Datagram => None,
        }
    }

    /// The WebSocket settings, for a WebSocket listener.
    pub(crate) fn websocket(&self) -> Option<&Arc<WebSocketConfig>> {
        match self {
            Protocol::WebSocket(config) => Some(config),
            Protocol::Framed(_) | Protocol::Datagram => None,
        }
    }
}
