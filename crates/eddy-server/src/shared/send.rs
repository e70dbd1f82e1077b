//! The send path: writing through a connection record from any thread.
//!
//! A sender writes straight to the socket when nothing is queued, else queues behind what is
//! (never reordering, never accepting part of a message it refuses), and tells the owning
//! reactor through its mailbox when the reactor has something to do: flush, report a
//! watermark crossing, or close.

use std::{
    cell::{Cell, RefCell},
    sync::{atomic::Ordering, Arc},
};

use bytes::Bytes;
use parking_lot::MutexGuard;

use super::reactor_mail::{Command, ReactorHandle};
use crate::{
    config::Protocol,
    conn::{CloseReason, Conn, ConnId, OutState, Output},
    error::{SendError, SendStatus},
    sys::Clock,
    ws::Opcode,
};

thread_local! {
    /// Where a sender frames a message (kept, so framing allocates nothing per message).
    pub(super) static FRAME: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// When this thread's corked batch began (0: it is in none); see `Outlet::stamp`.
    static BATCH_MS: Cell<u64> = const { Cell::new(0) };
    /// The connection this thread's corked batch answers, and the batch's packets; see
    /// `Outlet::cork`.
    static BATCH_PACKETS: RefCell<Option<(ConnId, Bytes)>> = const { RefCell::new(None) };
    /// On a reactor thread that is its connections' worker: the connections whose corked
    /// batch ended in this poll round, written together at its end (see `Outlet::uncork`).
    /// `None` on every other thread.
    static ROUND: RefCell<Option<Vec<Arc<Conn>>>> = const { RefCell::new(None) };
}

/// The most connections a round holds back: past it they are written at once, so the first
/// reply of a round with many busy connections waits for a few dozen handlers, not a
/// thousand.
const ROUND_MAX: usize = 64;

/// A batch's replies are held for the round only up to this many bytes: a wake-up of the peer
/// per batch matters beside small replies, and larger ones are better on their way at once
/// (held, TLS 16 KiB pipelined lost 9% of its rate, the kernel sending less while the
/// reactor encrypted).
const ROUND_BYTES: usize = 16 * 1024;

/// Whether this thread's round holds `conn`'s replies (see `Outlet::uncork`).
fn held_by_round(conn: &Arc<Conn>) -> bool {
    ROUND.with_borrow(|round| {
        round
            .as_ref()
            .is_some_and(|round| round.iter().any(|held| Arc::ptr_eq(held, conn)))
    })
}

/// A corked batch's reply at least this long that is a slice of its packets is queued as that
/// slice, not copied. Below it a copy costs less than the segment's bookkeeping.
const SHARE_MIN: usize = 4 * 1024;

/// How a message is framed on its way out.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// As the connection's protocol frames a message.
    Protocol,
    /// As it is.
    Raw,
    /// One WebSocket message of this opcode.
    WebSocket(Opcode),
}

/// Give a large frame buffer back, so one big message does not pin its memory.
pub(super) fn shrink(frame: &mut Vec<u8>) {
    if frame.capacity() > 64 * 1024 {
        *frame = Vec::new();
    }
}

/// `data` as a slice of this thread's corked batch, if `conn` is the connection the batch
/// answers (so its uncork lets the slice go), plain, and `data` is large and lies within the
/// batch's packets (see `Outlet::cork`).
fn batch_slice(conn: ConnId, out: &Output, data: &[u8]) -> Option<Bytes> {
    if !out.corked || out.tls.is_some() || data.len() < SHARE_MIN {
        return None;
    }
    BATCH_PACKETS.with_borrow(|batch| {
        let (_, packets) = batch.as_ref().filter(|(id, _)| *id == conn)?;
        let whole = packets.as_ptr_range();
        let part = data.as_ptr_range();
        (whole.start <= part.start && part.end <= whole.end).then(|| packets.slice_ref(data))
    })
}

/// What a sender needs besides the connection: the reactors' mailboxes, the clock the
/// records are stamped with, the send limits, and each listener's framing.
#[derive(Debug)]
pub(crate) struct Outlet {
    pub(super) reactors: Box<[ReactorHandle]>,
    pub(crate) clock: Clock,
    /// `socket_buffer_size`: the most one connection may have queued.
    pub(super) buffer_limit: usize,
    /// `buffer_high_watermark`.
    pub(super) high_watermark: usize,
    /// Per listener: its protocol, for `send_framed`.
    framing: Box<[Protocol]>,
}

impl Outlet {
    pub(crate) fn new(
        reactors: Box<[ReactorHandle]>,
        clock: Clock,
        buffer_limit: usize,
        high_watermark: usize,
        framing: Box<[Protocol]>,
    ) -> Self {
        Outlet {
            reactors,
            clock,
            buffer_limit,
            high_watermark,
            framing,
        }
    }

    /// Reactor `id`'s mailbox.
    pub(crate) fn reactor(&self, id: usize) -> &ReactorHandle {
        &self.reactors[id]
    }

    /// Every reactor's mailbox.
    pub(crate) fn reactors(&self) -> &[ReactorHandle] {
        &self.reactors
    }

    /// Tell `conn`'s reactor.
    pub(super) fn post(&self, conn: &Arc<Conn>, cmd: Command) {
        self.reactors[conn.reactor].command(cmd);
    }

    /// Send `data` as one message of `conn`'s protocol: the bytes as they are on a framed
    /// listener, one message of the connection's default opcode on a WebSocket.
    pub(crate) fn send(&self, conn: &Arc<Conn>, data: &[u8]) -> Result<SendStatus, SendError> {
        self.send_as(conn, data, Framing::Protocol)
    }

    /// Send `data` as it is, whatever the protocol (Workerman's `send($data, true)`).
    pub(crate) fn send_raw(&self, conn: &Arc<Conn>, data: &[u8]) -> Result<SendStatus, SendError> {
        self.send_as(conn, data, Framing::Raw)
    }

    /// Send one WebSocket message of this opcode.
    pub(crate) fn send_ws(
        &self,
        conn: &Arc<Conn>,
        opcode: Opcode,
        data: &[u8],
    ) -> Result<SendStatus, SendError> {
        self.send_as(conn, data, Framing::WebSocket(opcode))
    }

    fn send_as(
        &self,
        conn: &Arc<Conn>,
        data: &[u8],
        framing: Framing,
    ) -> Result<SendStatus, SendError> {
        self.check_limit(data.len())?;
        let out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        let opcode = match (framing, out.ws.as_deref()) {
            (Framing::Raw, _) | (Framing::Protocol, None) => {
                self.check_size(data.len())?;
                return self.write_locked(conn, out, data);
            }
            (Framing::Protocol, Some(ws)) => ws.default_opcode,
            (Framing::WebSocket(opcode), Some(_)) => opcode,
            (Framing::WebSocket(_), None) => return Err(SendError::NotWebSocket),
        };
        self.write_ws_locked(conn, out, opcode, data)
    }

    /// Refuse bytes for the stream that are none, or more than the output buffer could ever
    /// hold. (A WebSocket message may be empty: its frame is not.)
    pub(super) fn check_size(&self, len: usize) -> Result<(), SendError> {
        if len == 0 {
            return Err(SendError::Empty);
        }
        self.check_limit(len)
    }

    /// Refuse a message the output buffer could never hold.
    pub(super) fn check_limit(&self, len: usize) -> Result<(), SendError> {
        if len > self.buffer_limit {
            return Err(SendError::TooLarge {
                len,
                limit: self.buffer_limit,
            });
        }
        Ok(())
    }

    /// Write or queue `data` under the output lock, then tell the reactor if it must know.
    pub(super) fn write_locked(
        &self,
        conn: &Arc<Conn>,
        mut out: MutexGuard<'_, Output>,
        data: &[u8],
    ) -> Result<SendStatus, SendError> {
        let (status, wake) = self.push_locked(conn, &mut out, data)?;
        drop(out);
        if wake {
            self.post(conn, Command::Output(conn.clone()));
        }
        Ok(status)
    }

    /// Write `data` now if nothing is queued, else (or for what the kernel did not take) queue
    /// it behind what is. Never reorders, never partially accepts a message it refuses.
    /// Returns the status, and whether the reactor must be told.
    pub(super) fn push_locked(
        &self,
        conn: &Arc<Conn>,
        out: &mut Output,
        data: &[u8],
    ) -> Result<(SendStatus, bool), SendError> {
        if (out.pending() > 0 || out.corked) && out.memory() + data.len() > self.buffer_limit {
            return Err(SendError::BufferFull {
                pending: out.memory(),
                limit: self.buffer_limit,
            });
        }
        self.push_unbounded(conn, out, data)
    }

    /// `push_locked` without the buffer's cap (for the one close frame of a connection).
    pub(super) fn push_unbounded(
        &self,
        conn: &Arc<Conn>,
        out: &mut Output,
        data: &[u8],
    ) -> Result<(SendStatus, bool), SendError> {
        self.stamp(conn);
        let mut rest = data;
        if out.pending() == 0 && !out.corked {
            match out.write_now(conn.fd(), data) {
                Ok(n) => rest = &data[n..],
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(self.broken_locked(conn, out, &err)),
            }
            // All of it in the kernel's buffer (on TLS: every record, none held back).
            if rest.is_empty() && out.pending() == 0 {
                return Ok((SendStatus::Sent, false));
            }
        }
        if let Some(shared) = batch_slice(conn.id, out, rest) {
            out.push_shared(shared);
        } else if !rest.is_empty() {
            if let Err(err) = out.push(rest) {
                return Err(self.broken_locked(conn, out, &err));
            }
        }
        let pending = out.pending();
        // A corked buffer is flushed by `uncork`; otherwise the reactor must know.
        let mut wake = !out.corked && !out.flush_requested;
        out.flush_requested |= !out.corked;
        if pending >= self.high_watermark && !conn.high_crossed.swap(true, Ordering::AcqRel) {
            wake = true;
        }
        Ok((SendStatus::Queued { pending }, wake))
    }

    /// Stamp the send's time on `conn`, before the bytes can reach the peer (so whoever sees
    /// the reply sees the time). During a corked batch, every send of the batch's thread is
    /// stamped with the time the batch began: one clock read per batch instead of per reply
    /// (the clock was 2% of the server's CPU on the pipelined benchmark), and never later
    /// than the bytes go out.
    pub(super) fn stamp(&self, conn: &Conn) {
        let batch = BATCH_MS.get();
        let now = if batch != 0 {
            batch
        } else {
            self.clock.now_ms()
        };
        conn.last_send.store(now, Ordering::Relaxed);
    }

    /// Frame `body` with the codec of the listener that accepted `conn`, then send it
    /// (Workerman's `send($data)` on a framed listener); on a WebSocket, one message.
    pub(crate) fn send_framed(
        &self,
        conn: &Arc<Conn>,
        body: &[u8],
    ) -> Result<SendStatus, SendError> {
        let Some(codec) = self.framing[conn.listener].codec() else {
            return self.send(conn, body);
        };
        FRAME.with_borrow_mut(|frame| {
            frame.clear();
            codec
                .encode(body, frame)
                .map_err(|_| SendError::Unframable)?;
            let result = self.send_raw(conn, frame);
            shrink(frame);
            result
        })
    }

    /// Hold sends to `conn` in its output buffer (no system call) until `uncork`: the worker
    /// handling a batch of its packets answers them with one write.
    ///
    /// `packets` is the batch's bytes, when they are one buffer: a large reply to `conn` that
    /// is a slice of them (an echo) is then queued as that slice, no copy, and the uncork
    /// writes it from there. What the kernel does not take by then is copied, so the read
    /// buffer lives no longer than the batch. (Sent to another connection, the slice is
    /// written at once or copied, as any send: only this batch's uncork lets slices go.)
    pub(crate) fn cork(&self, conn: &Conn, packets: Option<&Bytes>) {
        BATCH_MS.set(self.clock.now_ms());
        BATCH_PACKETS.set(packets.map(|packets| (conn.id, packets.clone())));
        conn.out.lock().corked = true;
    }

    /// Write what `cork` held, in one system call; leave what the kernel does not take to the
    /// reactor.
    ///
    /// On a reactor thread that is the worker (`DispatchMode::Reactor`, after
    /// [`write_by_round`](Self::write_by_round)), the write waits for the end of the poll
    /// round instead, and the replies of every connection the round read go out back to
    /// back: written as each batch ended, the peer (a client with one thread and many
    /// connections) was woken for nearly every reply, each wake-up paid for in the reactor's
    /// `send`, and the peer's `epoll_wait` found one connection each time. Meanwhile the
    /// output counts as flush-requested, so a send from another thread queues behind it. A
    /// batch whose replies are slices of its read is written at once (held, they would keep
    /// the read's block from being reused), and so is one past [`ROUND_BYTES`].
    pub(crate) fn uncork(&self, conn: &Arc<Conn>) {
        BATCH_MS.set(0);
        BATCH_PACKETS.take();
        let mut out = conn.out.lock();
        out.corked = false;
        if out.flush_requested
            && out.pending() > ROUND_BYTES
            && out.state != OutState::Closed
            && held_by_round(conn)
        {
            // Another batch of a connection the round holds, and together past the cap.
            return self.write_uncorked(out, conn);
        }
        if out.pending() == 0 || out.flush_requested || out.state == OutState::Closed {
            out.own_shared();
            return;
        }
        if !out.holds_shared() && out.pending() <= ROUND_BYTES {
            let held = ROUND.with_borrow_mut(|round| {
                let round = round.as_mut()?;
                round.push(conn.clone());
                Some(round.len())
            });
            if let Some(held) = held {
                out.flush_requested = true;
                drop(out);
                if held >= ROUND_MAX {
                    self.end_round();
                }
                return;
            }
        }
        self.write_uncorked(out, conn);
    }

    /// From now on, this thread (a reactor that is its connections' worker) writes its
    /// batches' replies at the end of each poll round: it calls [`end_round`](Self::end_round)
    /// before it polls again.
    pub(crate) fn write_by_round(&self) {
        ROUND.set(Some(Vec::new()));
    }

    /// Write the replies this thread's round held back (see [`uncork`](Self::uncork)).
    pub(crate) fn end_round(&self) {
        let Some(round) = ROUND.with_borrow_mut(|round| round.as_mut().map(std::mem::take)) else {
            return;
        };
        for conn in &round {
            let mut out = conn.out.lock();
            out.flush_requested = false;
            if out.pending() == 0 || out.state == OutState::Closed {
                continue;
            }
            self.write_uncorked(out, conn);
        }
        // The list's room, for the next round.
        let mut round = round;
        round.clear();
        ROUND.with_borrow_mut(|slot| {
            if let Some(slot) = slot.as_mut().filter(|slot| slot.is_empty()) {
                *slot = round;
            }
        });
    }

    /// A batch is over: write what it queued, and leave what the kernel does not take to the
    /// reactor.
    fn write_uncorked(&self, mut out: MutexGuard<'_, Output>, conn: &Arc<Conn>) {
        let flushed = out.flush(conn.fd());
        out.own_shared();
        match flushed {
            Ok(0) => {}
            Ok(_) => {
                out.flush_requested = true;
                drop(out);
                self.post(conn, Command::Output(conn.clone()));
            }
            Err(err) => {
                out.state = OutState::Broken;
                drop(out);
                self.broke(conn, &err);
            }
        }
    }

    /// A write from a sender's thread failed: the connection cannot be written any more. The
    /// reactor may not see it (a file error or a TLS session's failure leaves the socket
    /// healthy): tell it to close.
    pub(super) fn broke(&self, conn: &Arc<Conn>, err: &std::io::Error) {
        self.post(conn, Command::Close(conn.clone(), CloseReason::of_io(err)));
    }

    /// A send failed under the output lock: nothing more is written. A socket error the
    /// reactor sees on its side too, and closes for; anything else (the TLS session's
    /// failure) it is told of. What the sender hears.
    pub(super) fn broken_locked(
        &self,
        conn: &Arc<Conn>,
        out: &mut Output,
        err: &std::io::Error,
    ) -> SendError {
        out.state = OutState::Broken;
        if crate::tls::failure_of(err).is_some() {
            self.broke(conn, err);
        }
        SendError::Closed
    }

    /// Ask the owning reactor to close: after flushing (`ServerClosed`) or at once (the other
    /// reasons: `ServerReset`, `HeartbeatTimeout`, `HandlerPanic`).
    ///
    /// A graceful close can be escalated: `close_reset` (or the heartbeat) still closes a
    /// connection whose flush never finishes because its peer stopped reading.
    pub(crate) fn close(&self, conn: &Arc<Conn>, reason: CloseReason) -> Result<(), SendError> {
        {
            let mut out = conn.out.lock();
            let graceful = reason.flushes_first();
            match out.state {
                OutState::Closed => return Err(SendError::Closed),
                OutState::Closing if graceful => return Err(SendError::Closed),
                _ => {}
            }
            out.state = OutState::Closing;
            out.ext().requested_close = Some(reason.clone());
        }
        conn.closing.store(true, Ordering::Release);
        self.post(conn, Command::Close(conn.clone(), reason));
        Ok(())
    }

    /// Stop reading `conn` at the application's request (`pause`).
    pub(crate) fn pause(&self, conn: Arc<Conn>) {
        conn.user_paused.store(true, Ordering::Release);
        self.reactors[conn.reactor].command(Command::Pause(conn));
    }

    /// Read `conn` again (`resume`, `confirm`).
    pub(crate) fn resume(&self, conn: Arc<Conn>) {
        conn.user_paused.store(false, Ordering::Release);
        conn.confirmed.store(true, Ordering::Release);
        self.reactors[conn.reactor].command(Command::Resume(conn));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{batch_slice, BATCH_PACKETS, SHARE_MIN};
    use crate::conn::{ConnId, Output};

    #[test]
    fn only_a_large_slice_of_the_corked_batch_is_shared() {
        let packets = Bytes::from(vec![7u8; 4 * SHARE_MIN]);
        let (ours, other) = (ConnId::new(1, 1), ConnId::new(2, 1));
        let mut out = Output::default();
        let inside = &packets[SHARE_MIN..3 * SHARE_MIN];
        assert!(
            batch_slice(ours, &out, inside).is_none(),
            "no batch: copied"
        );
        BATCH_PACKETS.set(Some((ours, packets.clone())));
        let not_corked = batch_slice(ours, &out, inside);
        assert!(not_corked.is_none(), "not corked: written now");
        out.corked = true;
        let shared = batch_slice(ours, &out, inside).expect("a slice of the batch");
        assert_eq!(
            shared.as_ptr(),
            inside.as_ptr(),
            "the same bytes, not a copy"
        );
        assert_eq!(shared.len(), inside.len());
        let small = batch_slice(ours, &out, &packets[..SHARE_MIN - 1]);
        assert!(small.is_none(), "small: copied");
        let elsewhere = vec![7u8; 2 * SHARE_MIN];
        assert!(
            batch_slice(ours, &out, &elsewhere).is_none(),
            "not the batch's: copied"
        );
        // Another connection corked by another thread: this thread's uncork would not let
        // the slice go.
        assert!(
            batch_slice(other, &out, inside).is_none(),
            "another connection: copied"
        );
        BATCH_PACKETS.take();
    }
}
