//! A connection's output buffer and the send side's state, behind the record's lock.

use std::os::fd::BorrowedFd;

use super::{close::CloseReason, transport::Transport};

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
    head: usize,
    pub(crate) state: OutState,
    /// The owning reactor was told there is something to flush.
    pub(crate) flush_requested: bool,
    /// A worker holds writes back until it has answered a whole batch (see `Conn::cork`).
    pub(crate) corked: bool,
    /// The close asked for, kept so a reactor that registers the connection later applies it.
    pub(crate) requested_close: Option<Box<CloseReason>>,
}

/// A drained buffer larger than this is freed, so idle connections cost nothing.
const KEEP_CAPACITY: usize = 64 * 1024;

impl Output {
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Queue `data` behind what is pending.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
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
            match transport.write(fd, &self.buf[self.head..]) {
                Ok(n) => self.head += n,
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
