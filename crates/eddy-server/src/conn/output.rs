//! A connection's output buffer and the send side's state, behind the record's lock.

use std::os::fd::BorrowedFd;

use std::{fs::File, sync::Arc};

use super::{close::CloseReason, tail::OutputExt, transport::Transport};
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
    /// Files and what is queued behind them, `sendwait` callers, a close asked for early.
    pub(crate) ext: Option<Box<OutputExt>>,
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
    /// Bytes queued, in memory and in files: what watermarks and closes look at.
    pub(crate) fn pending(&self) -> usize {
        let tail = self.ext.as_ref().map_or(0, |ext| ext.tail_total());
        self.buf.len() - self.head as usize + tail
    }

    /// Bytes queued in memory: what `socket_buffer_size` caps.
    pub(crate) fn memory(&self) -> usize {
        let tail = self.ext.as_ref().map_or(0, |ext| ext.tail_memory());
        self.buf.len() - self.head as usize + tail
    }

    /// The rare parts, made on first use.
    pub(crate) fn ext(&mut self) -> &mut OutputExt {
        self.ext.get_or_insert_with(Box::default)
    }

    /// The close asked for before the reactor knew the connection.
    pub(crate) fn requested_close(&self) -> Option<&CloseReason> {
        self.ext.as_ref()?.requested_close.as_ref()
    }

    /// Queue `data` behind what is pending.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if let Some(ext) = self.ext.as_mut().filter(|ext| ext.has_tail()) {
            return ext.push_bytes(data);
        }
        if self.head > 0 && self.head as usize >= self.buf.len() / 2 {
            self.buf.drain(..self.head as usize);
            self.head = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Queue `len` bytes of `file` from `offset`, behind what is pending.
    pub(crate) fn push_file(&mut self, file: Arc<File>, offset: u64, len: u64) {
        self.ext().push_file(file, offset, len);
    }

    /// Write as much as the kernel takes. Returns the bytes still pending.
    pub(crate) fn flush(
        &mut self,
        transport: &Transport,
        fd: BorrowedFd<'_>,
    ) -> std::io::Result<usize> {
        let result = self.flush_all(transport, fd);
        if let Some(ext) = &mut self.ext {
            ext.wake_done();
        }
        result?;
        if self.pending() == 0 {
            self.clear();
        }
        Ok(self.pending())
    }

    fn flush_all(&mut self, transport: &Transport, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        while self.buf.len() > self.head as usize {
            match transport.write(fd, &self.buf[self.head as usize..]) {
                Ok(n) => {
                    self.head += n as u32;
                    if let Some(ext) = &mut self.ext {
                        ext.flushed += n as u64;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        match &mut self.ext {
            Some(ext) if ext.has_tail() => ext.flush_tail(transport, fd).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Drop everything queued; returns how many bytes were dropped. Wakes `sendwait`
    /// callers (they find the connection closed).
    pub(crate) fn discard(&mut self) -> usize {
        let mut dropped = self.buf.len() - self.head as usize;
        if let Some(ext) = &mut self.ext {
            dropped += ext.discard();
        }
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
        if self.ext.as_ref().is_some_and(|ext| ext.is_idle()) {
            self.ext = None;
        }
    }
}
