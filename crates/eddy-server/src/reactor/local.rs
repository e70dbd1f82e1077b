//! What a reactor alone knows about each of its connections.

use std::sync::Arc;

use bytes::BytesMut;

use super::protocol::ProtocolState;
use crate::conn::{CloseReason, Conn};

/// Reasons a connection is not being read. Reading happens only when none is set.
pub(super) mod pause {
    /// The worker queue its packets go to is full.
    pub(in crate::reactor) const INBOX: u8 = 1;
    /// Its output buffer is above the high watermark.
    pub(in crate::reactor) const WATERMARK: u8 = 2;
    /// `on_connect` has not returned yet (stateless dispatch modes).
    pub(in crate::reactor) const GATE: u8 = 4;
    /// It is closing (by the server, or at shutdown).
    pub(in crate::reactor) const CLOSING: u8 = 8;
    /// Its packets waiting for workers weigh `max_queued_bytes` or more.
    pub(in crate::reactor) const QUEUED: u8 = 16;
    /// The application paused it (`pause`).
    pub(in crate::reactor) const USER: u8 = 32;
    /// Accepted with `enable_delay_receive`: not read until `confirm`.
    pub(in crate::reactor) const DELAY: u8 = 64;
    /// A WebSocket request waits for the handler's answer (`on_handshake`, `on_request`).
    pub(in crate::reactor) const HANDSHAKE: u8 = 128;
}

/// Watermark events waiting for a backed-up worker, coalesced: a full and a drain that both
/// happened while the worker was stalled cancel out, so what is held is bounded and the worker
/// still sees full and drain alternate, ending in the connection's current state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Held {
    #[default]
    None,
    Full,
    Drain,
    FullDrain,
}

impl Held {
    pub(crate) fn then_full(self) -> Held {
        match self {
            Held::None | Held::Full => Held::Full,
            // The worker last heard "full": a drain and a new full change nothing for it.
            Held::Drain => Held::None,
            Held::FullDrain => Held::Full,
        }
    }

    pub(crate) fn then_drain(self) -> Held {
        match self {
            Held::None | Held::Drain => Held::Drain,
            Held::Full | Held::FullDrain => Held::FullDrain,
        }
    }
}

/// A connection as its reactor sees it: the read side and poller bookkeeping.
///
/// An idle connection owns no buffer: `rbuf` holds only a partial packet, and is freed as
/// soon as the packet completes.
#[derive(Debug)]
pub(crate) struct LocalConn {
    pub(crate) conn: Arc<Conn>,
    /// Bytes of an incomplete packet (empty: nothing pending, nothing allocated).
    pub(crate) rbuf: BytesMut,
    /// `rbuf`'s capacity as counted in `Stats::recv_buffer_bytes`.
    pub(crate) held: usize,
    /// The full length of the pending packet, when the codec knows it.
    pub(crate) expect: Option<usize>,
    /// The listener's protocol's decoder state.
    pub(crate) protocol: ProtocolState,
    /// The worker its latest event went to.
    pub(crate) worker: Option<usize>,
    /// Bits of [`pause`].
    pub(crate) paused: u8,
    /// Interest registered with the poller: (read, write).
    pub(crate) registered: (bool, bool),
    /// Output is pending: watch for writability.
    pub(crate) want_write: bool,
    /// The output buffer crossed the high watermark and has not drained since.
    pub(crate) full_reported: bool,
    /// Watermark events not handed to the worker yet, because its queue is backed up.
    pub(crate) held_events: Held,
    /// Close once the output is flushed (and, at shutdown, once no event is in flight).
    pub(crate) closing: Option<CloseReason>,
    /// Its TLS handshake has not finished (`on_connect` waits for it).
    pub(crate) tls_handshaking: bool,
}

impl LocalConn {
    pub(crate) fn new(conn: Arc<Conn>, protocol: ProtocolState, paused: u8) -> Self {
        LocalConn {
            conn,
            rbuf: BytesMut::new(),
            held: 0,
            expect: None,
            protocol,
            worker: None,
            paused,
            registered: (paused == 0, false),
            want_write: false,
            full_reported: false,
            held_events: Held::None,
            closing: None,
            tls_handshaking: false,
        }
    }

    /// Whether its socket is read. A connection the server closes during its TLS handshake
    /// is still read until the handshake ends: what was queued for it can be encrypted and
    /// flushed only then (nothing else pauses a handshake).
    pub(crate) fn reads(&self) -> bool {
        self.paused == 0 || (self.tls_handshaking && self.paused == pause::CLOSING)
    }

    /// The interest the poller should have now.
    pub(crate) fn interest(&self) -> (bool, bool) {
        (self.reads(), self.want_write)
    }
}
