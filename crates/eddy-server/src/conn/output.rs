//! A connection's output buffer and the send side's state, behind the record's lock.

use std::{fs::File, io, os::fd::BorrowedFd, sync::Arc};

use bytes::{Bytes, BytesMut};

use super::{close::CloseReason, tail::OutputExt};
use crate::{
    sys,
    tls::{TlsEvents, TlsSession},
    ws::{Opcode, WsStatus},
};

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
    /// The tail (queued files, a batch's slices, what follows them), `sendwait` callers, a
    /// close asked for early.
    pub(crate) ext: Option<Box<OutputExt>>,
    /// A WebSocket connection's send side (`None` for other protocols).
    pub(crate) ws: Option<Box<WsOut>>,
    /// The TLS session of a connection on a TLS listener: what is queued in `buf` is
    /// ciphertext, and what is queued behind a file is plaintext, encrypted when reached.
    pub(crate) tls: Option<Box<TlsSession>>,
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

/// A TLS connection's queued file is read and encrypted this much at a time.
const TLS_FILE_CHUNK: usize = 64 * 1024;

/// The most one [`Output::flush`] writes. A peer that reads as fast as the server writes (a
/// large `sendfile` over loopback or a fast LAN) never fills the socket buffer, so without a
/// budget one flush went on until the whole file was out, holding its reactor (every other
/// connection of it waits) or the worker that sent, and the output lock every sender to the
/// connection takes. What is left goes on at the reactor's next turn, as after a full socket
/// buffer: it still asks for the socket's writability, which the poller reports at once.
pub(crate) const FLUSH_BUDGET: usize = 1 << 20;

impl Output {
    /// Bytes queued, in memory and in files: what watermarks and closes look at.
    pub(crate) fn pending(&self) -> usize {
        let tail = self.ext.as_ref().map_or(0, |ext| ext.tail_total());
        self.buf.len() - self.head as usize + tail + self.held_plaintext()
    }

    /// Bytes queued in memory: what `socket_buffer_size` caps.
    pub(crate) fn memory(&self) -> usize {
        let tail = self.ext.as_ref().map_or(0, |ext| ext.tail_memory());
        self.buf.len() - self.head as usize + tail + self.held_plaintext()
    }

    /// Bytes a flush can write now: what is pending, but for what waits for a TLS session's
    /// handshake to finish (the socket's writability cannot move it): the plaintext it holds
    /// and a queued file.
    pub(crate) fn flushable(&self) -> usize {
        let Some(tls) = &self.tls else {
            return self.pending();
        };
        let mut waiting = tls.early_plaintext();
        if tls.is_handshaking() {
            waiting += self.ext.as_ref().map_or(0, |ext| ext.tail_total());
        }
        self.pending() - waiting
    }

    /// Plaintext a TLS session holds: until its handshake finishes, or staged by a corked
    /// batch until the flush encrypts it.
    fn held_plaintext(&self) -> usize {
        self.tls
            .as_ref()
            .map_or(0, |tls| tls.early_plaintext() + tls.held())
    }

    /// The rare parts, made on first use.
    pub(crate) fn ext(&mut self) -> &mut OutputExt {
        self.ext.get_or_insert_with(Box::default)
    }

    /// The close asked for before the reactor knew the connection.
    pub(crate) fn requested_close(&self) -> Option<&CloseReason> {
        self.ext.as_ref()?.requested_close.as_ref()
    }

    /// The byte buffer, ready to be appended to: what went out is dropped once it is half.
    fn buf_for_append(&mut self) -> &mut Vec<u8> {
        if self.head > 0 && self.head as usize >= self.buf.len() / 2 {
            self.buf.drain(..self.head as usize);
            self.head = 0;
        }
        &mut self.buf
    }

    /// Queue `data` behind what is pending (encrypted first on a TLS connection).
    pub(crate) fn push(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(ext) = self.ext.as_mut().filter(|ext| ext.has_tail()) {
            ext.push_bytes(data);
            return Ok(());
        }
        self.buf_for_append();
        match &mut self.tls {
            // A corked batch (and what follows it until the flush) is encrypted at the flush.
            Some(tls) if self.corked || tls.held() > 0 => tls.stage(data),
            Some(tls) => tls.encrypt(data, &mut self.buf),
            None => {
                self.buf.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// Queue a slice of the packets of the batch the connection is corked for, behind what is
    /// pending, without a copy (a plain connection: TLS encrypts at the flush anyway). The
    /// uncork ends its life with `own_shared`.
    pub(crate) fn push_shared(&mut self, data: Bytes) {
        self.ext().push_shared(data);
    }

    /// Whether slices of a corked batch's packets are queued (see `push_shared`).
    pub(crate) fn holds_shared(&self) -> bool {
        self.ext.as_ref().is_some_and(|ext| ext.holds_shared())
    }

    /// The batch is over: what is left of its slices is copied (see `OutputExt::own_shared`).
    pub(crate) fn own_shared(&mut self) {
        if let Some(ext) = &mut self.ext {
            ext.own_shared();
        }
    }

    /// Write `data` to the socket now (nothing may be pending). Returns how much of it was
    /// taken; a TLS connection takes it all, queueing the records the kernel did not take
    /// or that are past [`FLUSH_BUDGET`] bytes written.
    pub(crate) fn write_now(&mut self, fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => sys::send(fd, data),
            Some(tls) => {
                tls.write_direct(fd, data, &mut self.buf, FLUSH_BUDGET)?;
                Ok(data.len())
            }
        }
    }

    /// Queue `len` bytes of `file` from `offset`, behind what is pending.
    pub(crate) fn push_file(&mut self, file: Arc<File>, offset: u64, len: u64) {
        self.ext().push_file(file, offset, len);
    }

    /// Read and decrypt what a TLS connection's socket holds (see `TlsSession::read`).
    pub(crate) fn tls_read(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut BytesMut,
        max: usize,
        events: &mut TlsEvents,
    ) -> io::Result<usize> {
        self.buf_for_append();
        let before = self.pending();
        let read = match &mut self.tls {
            Some(tls) => tls.read(fd, buf, max, &mut self.buf, events),
            None => sys::read_into(fd, buf, max),
        };
        // Held plaintext the read moved into the buffer as records (and what the session
        // answered): `sendwait` callers wait for those bytes too.
        self.grew_since(before);
        if read
            .as_ref()
            .is_err_and(|err| crate::tls::failure_of(err).is_some())
        {
            // The session failed: its alert, already in the buffer, goes out before the
            // reactor closes the socket (what it held can no longer be encrypted).
            let mut unbounded = usize::MAX;
            let _ = self.write_buf(fd, &mut unbounded);
        }
        read
    }

    /// End a TLS session cleanly: close_notify, written if the kernel takes it.
    pub(crate) fn close_notify(&mut self, fd: BorrowedFd<'_>) {
        self.buf_for_append();
        let before = self.pending();
        if let Some(tls) = &mut self.tls {
            tls.close_notify(&mut self.buf);
            self.grew_since(before);
            let _ = self.flush(fd);
        }
    }

    /// What is pending grew from `before` without a send (records made of held plaintext,
    /// what the session says): the `sendwait` callers still waiting wait for that much more.
    fn grew_since(&mut self, before: usize) {
        let now = self.pending();
        if let Some(ext) = self.ext.as_mut().filter(|_| now > before) {
            ext.grew((now - before) as u64);
        }
    }

    /// Write as much as the kernel takes, at most [`FLUSH_BUDGET`]. Returns the bytes still
    /// pending.
    pub(crate) fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.flush_up_to(fd, FLUSH_BUDGET)
    }

    /// [`flush`](Self::flush), writing at most `budget` bytes.
    fn flush_up_to(&mut self, fd: BorrowedFd<'_>, mut budget: usize) -> io::Result<usize> {
        let result = self.flush_all(fd, &mut budget);
        if let Some(ext) = &mut self.ext {
            ext.wake_done();
        }
        result?;
        if self.pending() == 0 {
            self.clear();
        }
        Ok(self.pending())
    }

    /// Write the byte buffer until the kernel takes no more or `budget` bytes are written;
    /// whether it emptied.
    fn write_buf(&mut self, fd: BorrowedFd<'_>, budget: &mut usize) -> io::Result<bool> {
        while self.buf.len() > self.head as usize {
            if *budget == 0 {
                return Ok(false);
            }
            let head = self.head as usize;
            let end = self.buf.len().min(head.saturating_add(*budget));
            match sys::send(fd, &self.buf[head..end]) {
                Ok(n) => {
                    self.head += n as u32;
                    *budget -= n;
                    if let Some(ext) = &mut self.ext {
                        ext.flushed += n as u64;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    fn flush_all(&mut self, fd: BorrowedFd<'_>, budget: &mut usize) -> io::Result<()> {
        self.flush_held(fd, budget)?;
        loop {
            if !self.write_buf(fd, budget)? {
                return Ok(());
            }
            let Some(ext) = self.ext.as_mut().filter(|ext| ext.has_tail()) else {
                return Ok(());
            };
            let Some(tls) = &mut self.tls else {
                return ext.flush_tail(fd, budget).map(|_| ());
            };
            if *budget == 0 {
                return Ok(());
            }
            if tls.is_handshaking() {
                // Nothing can be encrypted yet: the file waits (the reactor flushes again
                // when the handshake ends), rather than filling the session's buffer.
                return Ok(());
            }
            // TLS: the next piece of the tail, read and encrypted into the emptied buffer
            // (no zero-copy: the kernel would send the file's plaintext).
            self.buf.clear();
            self.head = 0;
            let mut plain = Vec::with_capacity(TLS_FILE_CHUNK);
            if ext.take_front(TLS_FILE_CHUNK, &mut plain)? == 0 {
                return Ok(());
            }
            tls.encrypt(&plain, &mut self.buf)?;
            ext.grew(self.buf.len().saturating_sub(plain.len()) as u64);
        }
    }

    /// Write what a TLS session holds for the flush (a corked batch's replies): straight to
    /// the socket when nothing is queued before it (no copy through the buffer), else behind
    /// what is, writing at most `budget` (taken off it). `sendwait` callers count the
    /// records' bytes, not the plaintext's.
    fn flush_held(&mut self, fd: BorrowedFd<'_>, budget: &mut usize) -> io::Result<()> {
        if self.tls.as_ref().is_none_or(|tls| tls.held() == 0) {
            return Ok(());
        }
        let direct = self.buf.len() == self.head as usize;
        self.buf_for_append();
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        let plain = tls.held();
        let queued = self.buf.len();
        let sent = tls.flush_held(direct.then_some(fd), &mut self.buf, *budget)?;
        *budget = budget.saturating_sub(sent);
        if let Some(ext) = &mut self.ext {
            let records = sent + (self.buf.len() - queued);
            ext.grew(records.saturating_sub(plain) as u64);
            ext.flushed += sent as u64;
        }
        Ok(())
    }

    /// Drop everything queued; returns how many bytes were dropped. Wakes `sendwait`
    /// callers (they find the connection closed).
    pub(crate) fn discard(&mut self) -> usize {
        let mut dropped = self.buf.len() - self.head as usize;
        if let Some(tls) = &mut self.tls {
            dropped += tls.discard_held();
        }
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

#[cfg(test)]
mod tests {
    use std::{io::Read, os::fd::AsFd, os::unix::net::UnixStream, sync::Arc};

    use super::Output;

    #[test]
    fn a_flush_writes_at_most_its_budget_and_the_next_one_goes_on() {
        // The peer's socket has room for all of it: only the budget stops a flush.
        let data: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        let path = std::env::temp_dir().join(format!("eddy-budget-{}", std::process::id()));
        std::fs::write(&path, &data[20_000..40_000]).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        let mut out = Output::default();
        out.push(&data[..20_000]).unwrap();
        out.push_file(file, 0, 20_000);
        out.push(&data[40_000..]).unwrap();
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut flushes = 0;
        while out.pending() > 0 {
            let before = out.pending();
            let left = out.flush_up_to(ours.as_fd(), 8_000).unwrap();
            assert_eq!(before - left, 8_000.min(before), "flush {flushes}");
            flushes += 1;
        }
        assert_eq!(flushes, 8, "60,000 bytes, 8,000 a flush");
        drop(ours);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert!(got == data, "everything, in order");
    }

    #[test]
    fn a_sendwait_met_before_the_close_is_still_met_after_it() {
        let mut out = Output::default();
        // A waiter whose bytes reached the kernel, woken but not yet looking, when the
        // connection closes (the peer read them and hung up).
        out.ext().wait_for(5);
        out.ext().flushed = 5;
        out.ext().wake_done();
        assert_eq!(out.discard(), 0);
        let ext = out.ext.as_mut().expect("the record outlives the close");
        assert!(ext.flushed >= 5, "the waiter finds its bytes flushed");
        ext.stop_waiting();
        assert!(ext.is_idle(), "and leaves nothing behind once it looked");
    }
}
