//! The read side of a listener's protocol: each connection's decoder state, and cutting whole
//! packets from the bytes its transport produced.
//!
//! A protocol's answer is checked, not trusted, and a panic in it (a user codec) is caught:
//! either closes only the connection it was reading, never the reactor.

use std::panic::{catch_unwind, AssertUnwindSafe};

use eddy_codec::{Codec, DecodeState, Decoded};

use super::ws_read::WsRead;
use crate::{config::Protocol, conn::CloseReason};

/// One connection's decoder state for its listener's protocol.
#[derive(Debug)]
#[non_exhaustive]
pub(super) enum ProtocolState {
    /// A codec's memory between reads.
    Framed(DecodeState),
    /// A WebSocket's handshake or frame decoder.
    WebSocket(Box<WsRead>),
}

/// What one cut found: the whole packets' total length (their lengths pushed on the list),
/// the full length of the pending one when known, and why the connection must close.
#[derive(Debug)]
pub(super) struct Cut {
    pub(super) whole: usize,
    pub(super) expect: Option<usize>,
    pub(super) failure: Option<CloseReason>,
}

impl ProtocolState {
    /// A fresh state for a connection of a listener speaking `protocol`.
    pub(super) fn new(protocol: &Protocol) -> Self {
        match protocol {
            // A datagram listener has no connections: never asked.
            Protocol::Framed(_) | Protocol::Datagram => {
                ProtocolState::Framed(DecodeState::default())
            }
            Protocol::WebSocket(config) => {
                ProtocolState::WebSocket(Box::new(WsRead::new(config.clone())))
            }
        }
    }

    /// Whether packets are cut from the reactor's shared scratch buffer (`cut`), rather than
    /// decoded from the connection's own buffer (WebSocket: `Reactor::ws_process`).
    pub(super) fn is_framed(&self) -> bool {
        matches!(self, ProtocolState::Framed(_))
    }

    /// Whether it is a WebSocket past its handshake.
    pub(super) fn is_open_websocket(&self) -> bool {
        matches!(self, ProtocolState::WebSocket(ws) if ws.is_open())
    }

    /// Cut every whole packet at the front of `buf` (none longer than `max`), pushing each
    /// one's length on `lens`.
    pub(super) fn cut(
        &mut self,
        protocol: &Protocol,
        buf: &[u8],
        max: usize,
        lens: &mut Vec<u32>,
    ) -> Cut {
        match (protocol, self) {
            (Protocol::Framed(codec), ProtocolState::Framed(state)) => {
                cut_framed(&**codec, state, buf, max, lens)
            }
            // Decoded by `Reactor::ws_process`, never cut.
            _ => Cut {
                whole: 0,
                expect: None,
                failure: None,
            },
        }
    }
}

fn cut_framed(
    codec: &dyn Codec,
    state: &mut DecodeState,
    buf: &[u8],
    max: usize,
    lens: &mut Vec<u32>,
) -> Cut {
    let mut whole = 0;
    let mut expect = None;
    // One unwind guard per read, not per packet: free unless the codec panics.
    let outcome = catch_unwind(AssertUnwindSafe(|| loop {
        // A user codec cannot make the reactor loop forever, slice out of bounds, pass the
        // packet limit, or make the reader reserve past it (`Decoded::checked`).
        let decoded = codec.decode(&buf[whole..], state, max);
        match decoded.and_then(|d| d.checked(buf.len() - whole, max)) {
            Ok(Decoded::Packet(n)) => {
                lens.push(n as u32);
                whole += n;
            }
            Ok(Decoded::Incomplete { total }) => {
                expect = total;
                return Ok(());
            }
            Err(err) => return Err(err),
        }
    }));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(CloseReason::BadPacket(err)),
        Err(_) => Some(CloseReason::CodecPanic),
    };
    Cut {
        whole,
        expect,
        failure,
    }
}
