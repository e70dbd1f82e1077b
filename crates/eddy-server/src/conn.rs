//! The connection record every thread may hold: identity, peer, counters other threads read,
//! and the output buffer behind a short per-connection lock.
//!
//! The reactor that owns the connection keeps the reading side (buffer, codec state, poller
//! interest) to itself; see `reactor::local`.

use std::{
    os::fd::{AsRawFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::SystemTime,
};

use parking_lot::Mutex;

use crate::{
    handle::Shared, handler::CloseReason, net::PeerAddr, net::Stream, reactor::Command,
    routing::UidIndex, sys, ConnId, SendError, SendStatus, Uid,
};

/// Bits of [`Conn::inflight`].
///
/// # Atomic ordering
/// The word holds the weight of the events dispatched to workers and not yet finished (the
/// packet bytes, and at least 1 per event, so zero means nothing is in flight: Swoole's
/// `recv_queued_bytes`) plus two flags. Every change is a read-modify-write with `AcqRel`, so
/// whoever sees the weight reach zero also sees everything the finished handlers did.
pub(crate) mod inflight {
    /// Mask of the weight.
    pub(crate) const WEIGHT: u64 = (1 << 56) - 1;
    /// The reactor closed the connection; whoever takes the weight to zero runs `on_close`.
    pub(crate) const CLOSED: u64 = 1 << 62;
    /// The reactor waits for the weight to reach zero (reading paused at `max_queued_bytes`,
    /// or a graceful shutdown): tell it.
    pub(crate) const NOTIFY_IDLE: u64 = 1 << 61;
}

/// One connection, shared by its reactor, the workers and any thread holding a handle.
///
/// The socket is owned here and closed when the last holder drops the record, so its
/// descriptor number cannot be reused while anyone may still write to it.
///
/// `repr(C)` keeps the fields every packet touches (read, dispatch, handle, send) together in
/// the first two cache lines, and the rest after them: with a thousand busy connections, the
/// misses on a record spread over five lines showed in the reactor's profile.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Conn {
    // Hot: every packet.
    pub(crate) id: ConnId,
    /// The reactor that owns the socket.
    pub(crate) reactor: usize,
    /// See [`inflight`].
    pub(crate) inflight: AtomicU64,
    /// The worker the last event went to.
    pub(crate) worker: AtomicUsize,
    /// When bytes last arrived, in milliseconds since the server's epoch (heartbeat).
    pub(crate) last_recv: AtomicU64,
    /// When a send to it was last made (milliseconds since the epoch; 0: never).
    pub(crate) last_send: AtomicU64,
    /// When a worker last took one of its events (milliseconds since the epoch; 0: never).
    pub(crate) last_dispatch: AtomicU64,
    pub(crate) fd: RawFd,
    /// A sender pushed the output buffer to the high watermark and the reactor has not yet
    /// reported the drain. Read by the reactor before every read of this socket.
    pub(crate) high_crossed: AtomicBool,
    /// The server asked to close: input not yet handled is dropped, sends fail.
    pub(crate) closing: AtomicBool,
    pub(crate) uid_bound: AtomicBool,
    /// Exempt from the heartbeat (`protect`).
    pub(crate) protected: AtomicBool,
    /// Index of the listener that accepted it.
    pub(crate) listener: usize,
    pub(crate) out: Mutex<Output>,
    // Cold: set up once, or read by requests about the connection.
    /// The key of the connection in its reactor's slab (written by that reactor only).
    pub(crate) key: AtomicUsize,
    /// `Uid::dispatch_hash` of the bound uid, valid when `uid_bound` is set.
    pub(crate) uid_hash: AtomicU64,
    pub(crate) peer: PeerAddr,
    pub(crate) connect_time: SystemTime,
    /// The application's latest `pause` (true) or `resume` (false), for a reactor that
    /// registers the connection after the command was sent.
    pub(crate) user_paused: AtomicBool,
    /// `confirm` (or `resume`) was called: `enable_delay_receive` no longer holds it back.
    pub(crate) confirmed: AtomicBool,
    uid: Mutex<UidSlot>,
    pub(crate) close_reason: OnceLock<CloseReason>,
    /// Owned so that the descriptor closes when the last holder drops the record.
    _stream: Stream,
}

impl Conn {
    pub(crate) fn new(
        id: ConnId,
        stream: Stream,
        reactor: usize,
        listener: usize,
        peer: PeerAddr,
        now_ms: u64,
    ) -> Conn {
        Conn {
            id,
            fd: stream.as_raw_fd(),
            _stream: stream,
            reactor,
            key: AtomicUsize::new(usize::MAX),
            listener,
            peer,
            connect_time: SystemTime::now(),
            inflight: AtomicU64::new(0),
            high_crossed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            worker: AtomicUsize::new(0),
            last_recv: AtomicU64::new(now_ms),
            last_send: AtomicU64::new(0),
            last_dispatch: AtomicU64::new(0),
            protected: AtomicBool::new(false),
            user_paused: AtomicBool::new(false),
            confirmed: AtomicBool::new(false),
            uid: Mutex::new(UidSlot::default()),
            uid_hash: AtomicU64::new(0),
            uid_bound: AtomicBool::new(false),
            close_reason: OnceLock::new(),
            out: Mutex::new(Output::default()),
        }
    }

    /// Write `data` now if nothing is queued, else (or for what the kernel did not take) queue
    /// it behind what is. Never reorders, never partially accepts a message it refuses.
    pub(crate) fn send(
        self: &Arc<Self>,
        data: &[u8],
        shared: &Shared,
    ) -> Result<SendStatus, SendError> {
        let limit = shared.config.socket_buffer_size;
        if data.is_empty() {
            return Err(SendError::Empty);
        }
        if data.len() > limit {
            return Err(SendError::TooLarge {
                len: data.len(),
                limit,
            });
        }
        let mut out = self.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        // Stamped before the bytes can reach the peer, so whoever sees the reply sees the time.
        self.last_send.store(shared.now_ms(), Ordering::Relaxed);
        let mut rest = data;
        if out.pending() == 0 && !out.corked {
            match sys::send(self.fd, data) {
                Ok(n) if n == data.len() => return Ok(SendStatus::Sent),
                Ok(n) => rest = &data[n..],
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    // The peer is gone; the reactor sees the same error on its side and
                    // closes the connection with the reason.
                    out.state = OutState::Broken;
                    return Err(SendError::Closed);
                }
            }
        } else if out.pending() + data.len() > limit {
            return Err(SendError::BufferFull {
                pending: out.pending(),
                limit,
            });
        }
        out.push(rest);
        let pending = out.pending();
        // A corked buffer is flushed by `uncork`; otherwise the reactor must know.
        let mut wake = !out.corked && !out.flush_requested;
        out.flush_requested |= !out.corked;
        if pending >= shared.config.buffer_high_watermark
            && !self.high_crossed.swap(true, Ordering::AcqRel)
        {
            wake = true;
        }
        drop(out);
        if wake {
            shared
                .reactor(self.reactor)
                .command(Command::Output(self.clone()));
        }
        Ok(SendStatus::Queued { pending })
    }

    /// Hold sends to this connection in its output buffer (no system call) until `uncork`:
    /// the worker handling a batch of its packets answers them with one write.
    pub(crate) fn cork(&self) {
        self.out.lock().corked = true;
    }

    /// Write what `cork` held, in one system call; leave what the kernel does not take to the
    /// reactor.
    pub(crate) fn uncork(self: &Arc<Self>, shared: &Shared) {
        let mut out = self.out.lock();
        out.corked = false;
        if out.pending() == 0 || out.flush_requested || out.state == OutState::Closed {
            return;
        }
        match out.flush(self.fd) {
            Ok(0) => {}
            Ok(_) => {
                out.flush_requested = true;
                drop(out);
                shared
                    .reactor(self.reactor)
                    .command(Command::Output(self.clone()));
            }
            // The reactor sees the same error on its side and closes with the reason.
            Err(_) => out.state = OutState::Broken,
        }
    }

    /// Frame `body` with the codec of the listener that accepted this connection, then send
    /// it (Workerman's `send($data)`; `send` is its `send($data, true)`).
    pub(crate) fn send_framed(
        self: &Arc<Self>,
        body: &[u8],
        shared: &Shared,
    ) -> Result<SendStatus, SendError> {
        thread_local! {
            static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let codec = &shared.config.listeners[self.listener].codec;
        FRAME.with_borrow_mut(|frame| {
            frame.clear();
            codec
                .encode(body, frame)
                .map_err(|_| SendError::Unframable)?;
            let result = self.send(frame, shared);
            if frame.capacity() > 64 * 1024 {
                *frame = Vec::new();
            }
            result
        })
    }

    /// Ask the owning reactor to close: after flushing (`reset == false`) or at once.
    /// `ServerClosed` flushes first; `ServerReset` and `HeartbeatTimeout` close at once.
    ///
    /// A graceful close can be escalated: `close_reset` (or the heartbeat) still closes a
    /// connection whose flush never finishes because its peer stopped reading.
    pub(crate) fn close(
        self: &Arc<Self>,
        reason: CloseReason,
        shared: &Shared,
    ) -> Result<(), SendError> {
        {
            let mut out = self.out.lock();
            let graceful = reason == CloseReason::ServerClosed;
            match out.state {
                OutState::Closed => return Err(SendError::Closed),
                OutState::Closing if graceful => return Err(SendError::Closed),
                _ => {}
            }
            out.state = OutState::Closing;
            out.requested_close = Some(Box::new(reason.clone()));
        }
        self.closing.store(true, Ordering::Release);
        shared
            .reactor(self.reactor)
            .command(Command::Close(self.clone(), reason));
        Ok(())
    }

    /// Bind to `uid` (or unbind with `None`), keeping the uid index in step. The
    /// connection's uid lock is held across the index update, so concurrent binds of one
    /// connection cannot leave the index pointing at a uid it no longer has; once the
    /// connection is released (closed), binding fails, so a late bind cannot leak an entry.
    pub(crate) fn bind(&self, uid: Option<Uid>, index: &UidIndex) -> Result<(), SendError> {
        let mut slot = self.uid.lock();
        if slot.released {
            return Err(SendError::Closed);
        }
        if let Some(old) = slot.uid.take() {
            index.remove(&old, self.id);
        }
        match &uid {
            Some(uid) => {
                index.insert(uid.clone(), self.id);
                self.uid_hash.store(uid.dispatch_hash(), Ordering::Relaxed);
                self.uid_bound.store(true, Ordering::Release);
            }
            None => self.uid_bound.store(false, Ordering::Release),
        }
        slot.uid = uid;
        Ok(())
    }

    /// The connection is gone: leave the uid index for good.
    pub(crate) fn release_uid(&self, index: &UidIndex) {
        let mut slot = self.uid.lock();
        slot.released = true;
        if let Some(old) = slot.uid.take() {
            index.remove(&old, self.id);
        }
        self.uid_bound.store(false, Ordering::Release);
    }

    pub(crate) fn uid(&self) -> Option<Uid> {
        self.uid.lock().uid.clone()
    }

    /// Whether the reactor has closed the socket.
    pub(crate) fn is_closed(&self) -> bool {
        self.out.lock().state == OutState::Closed
    }

    /// Whether the socket is still open for sends.
    pub(crate) fn is_open(&self) -> bool {
        self.out.lock().state == OutState::Open
    }
}

/// The uid a connection is bound to, and whether it may still bind one.
#[derive(Debug, Default)]
struct UidSlot {
    uid: Option<Uid>,
    /// Closed: the uid index no longer takes this connection.
    released: bool,
}

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
    corked: bool,
    /// The close asked for, kept so a reactor that registers the connection later applies it.
    pub(crate) requested_close: Option<Box<CloseReason>>,
}

/// A drained buffer larger than this is freed, so idle connections cost nothing.
const KEEP_CAPACITY: usize = 64 * 1024;

impl Output {
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.head
    }

    fn push(&mut self, data: &[u8]) {
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Write as much as the kernel takes. Returns the bytes still pending.
    pub(crate) fn flush(&mut self, fd: RawFd) -> std::io::Result<usize> {
        while self.pending() > 0 {
            match sys::send(fd, &self.buf[self.head..]) {
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

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::{Conn, Output};

    #[test]
    fn the_fields_every_packet_touches_share_two_cache_lines() {
        let out_end = offset_of!(Conn, out) + size_of::<parking_lot::Mutex<Output>>();
        assert!(out_end <= 128, "the output buffer ends at byte {out_end}");
        assert!(offset_of!(Conn, fd) < 128 && offset_of!(Conn, closing) < 128);
    }
}
