//! A listener's protocol: the layer between a connection's transport and dispatch.
//!
//! Today every listener frames its byte stream with a codec; WebSocket (and later HTTP) come
//! as more variants: the reactor asks the protocol to cut packets from what it read, and the
//! send path asks it to frame a body, without knowing which protocol it is.

use std::sync::Arc;

use eddy_codec::{Codec, FrameError};

/// What a listener's connections speak.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub(crate) enum Protocol {
    /// A byte stream cut into packets by a codec (length field, delimiter, line, raw…).
    Framed(Arc<dyn Codec>),
}

impl Protocol {
    /// The smallest packet the protocol can produce (the lower bound of `package_max_length`).
    pub(crate) fn min_packet(&self) -> usize {
        match self {
            Protocol::Framed(codec) => codec.min_packet(),
        }
    }

    /// Frame `body` as one message of this protocol, appended to `out` (`send_framed`).
    pub(crate) fn frame(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        match self {
            Protocol::Framed(codec) => codec.encode(body, out),
        }
    }
}
