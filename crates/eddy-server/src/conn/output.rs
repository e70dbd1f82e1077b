//! A connection's output buffer and the send side's state, behind the record's lock.

use std::os::fd::BorrowedFd;

use super::{close::CloseReason, transport::Transport};
use crate::ws::{Opcode, WsStatus};

/// The send side's state, as senders see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum OutState {
    /// Sends are accepted.
    #[default]
    Open,
    /// A close was requested; queued bytes are still flushed.
    Closing,
    /// A send found the peer gone; the reactor will close.
    Broken,
    /// The reactor closed the socket.
    Closed,
}

/// A connection's output buffer: bytes the kernel has not taken yet, in order.
#[derive(Debug, Default)]
pub(crate) struct Output {
    buf: Vec<u8>,
    /// Where the unsent bytes start. `u32` keeps the record's hot part in two cache lines: a
    /// buffer never holds more than twice `socket_buffer_size` (at most 1 GiB).
    head: u32,
    pub(crate) state: OutState,
    /// The owning reactor was told there is something to flush.
    pub(crate) flush_requested: bool,
    /// A worker holds writes back until it has answered a whole batch (see `Outlet::cork`).
    pub(crate) corked: bool,
    /// The close asked for, kept so a reactor that registers the connection later applies it.
    pub(crate) requested_close: Option<Box<CloseReason>>,
    /// A WebSocket connection's send side (`None` for other protocols).
    pub(crate) ws: Option<Box<WsOut>>,
}

/// A WebSocket connection's send side: where its handshake is, and its encoder (which holds
/// the deflate context, so messages are compressed in the order they are written).
#[derive(Debug)]
pub(crate) struct WsOut {
    pub(crate) status: WsStatus,
    /// The opcode of a plain `send`.
    pub(crate) default_opcode: Opcode,
    pub(crate) encoder: eddy_ws::Encoder,
    /// permessage-deflate was negotiated.
    pub(crate) deflate: bool,
    /// The heartbeat pings it when it is quiet.
    pub(crate) ping_idle: bool,
    /// When the heartbeat last pinged it (milliseconds on the server's clock; 0: never).
    pub(crate) pinged_at: u64,
}

impl WsOut {
    /// A connection whose upgrade has not been answered yet.
    pub(crate) fn new(default_opcode: Opcode, ping_idle: bool) -> Self {
        WsOut {
            status: WsStatus::Handshaking,
            default_opcode,
            encoder: eddy_ws::Encoder::new(None),
            deflate: false,
            ping_idle,
            pinged_at: 0,
        }
    }

    /// The 101 went out: messages may follow, compressed as negotiated.
    pub(crate) fn open(&mut self, deflate: Option<eddy_ws::deflate::DeflateParams>) {
        self.status = WsStatus::Open;
        self.deflate = deflate.is_some();
        self.encoder = eddy_ws::Encoder::new(deflate);
    }

    /// A close frame with `code` and `reason`, if none was sent yet (the status becomes
    /// closing: nothing more goes out).
    pub(crate) fn close_frame(&mut self, code: u16, reason: &str) -> Option<Vec<u8>> {
        if self.status != WsStatus::Open {
            return None;
        }
        self.status = WsStatus::Closing;
        let mut frame = Vec::with_capacity(8 + reason.len());
        let close = eddy_ws::CloseFrame::new(code, truncate(reason, 123));
        eddy_ws::encode_close(Some(&close), &mut frame);
        Some(frame)
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A drained buffer larger than this is freed, so idle connections cost nothing.
const KEEP_CAPACITY: usize = 64 * 1024;

impl Output {
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.head as usize
    }

    /// Queue `data` behind what is pending.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.head > 0 && self.head as usize >= self.buf.len() / 2 {
            self.buf.drain(..self.head as usize);
            self.head = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Write as much as the kernel takes. Returns the bytes still pending.
    pub(crate) fn flush(
        &mut self,
        transport: &Transport,
        fd: BorrowedFd<'_>,
    ) -> std::io::Result<usize> {
        while self.pending() > 0 {
            match transport.write(fd, &self.buf[self.head as usize..]) {
                Ok(n) => self.head += n as u32,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        if self.pending() == 0 {
            self.clear();
        }
        Ok(self.pending())
    }

    /// Drop everything queued; returns how many bytes were dropped.
    pub(crate) fn discard(&mut self) -> usize {
        let dropped = self.pending();
        self.clear();
        dropped
    }

    fn clear(&mut self) {
        self.head = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}
