//! The send path: writing through a connection record from any thread.
//!
//! A sender writes straight to the socket when nothing is queued, else queues behind what is
//! (never reordering, never accepting part of a message it refuses), and tells the owning
//! reactor through its mailbox when the reactor has something to do: flush, report a
//! watermark crossing, or close.

use std::sync::{atomic::Ordering, Arc};

use super::reactor_mail::{Command, ReactorHandle};
use crate::{
    config::Protocol,
    conn::{CloseReason, Conn, OutState},
    error::{SendError, SendStatus},
    sys::Clock,
};

/// What a sender needs besides the connection: the reactors' mailboxes, the clock the
/// records are stamped with, the send limits, and each listener's framing.
#[derive(Debug)]
pub(crate) struct Outlet {
    reactors: Box<[ReactorHandle]>,
    pub(crate) clock: Clock,
    /// `socket_buffer_size`: the most one connection may have queued.
    buffer_limit: usize,
    /// `buffer_high_watermark`.
    high_watermark: usize,
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
    fn post(&self, conn: &Arc<Conn>, cmd: Command) {
        self.reactors[conn.reactor].command(cmd);
    }

    /// Write `data` now if nothing is queued, else (or for what the kernel did not take) queue
    /// it behind what is. Never reorders, never partially accepts a message it refuses.
    pub(crate) fn send(&self, conn: &Arc<Conn>, data: &[u8]) -> Result<SendStatus, SendError> {
        let limit = self.buffer_limit;
        if data.is_empty() {
            return Err(SendError::Empty);
        }
        if data.len() > limit {
            return Err(SendError::TooLarge {
                len: data.len(),
                limit,
            });
        }
        let mut out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        // Stamped before the bytes can reach the peer, so whoever sees the reply sees the time.
        conn.last_send.store(self.clock.now_ms(), Ordering::Relaxed);
        let mut rest = data;
        if out.pending() == 0 && !out.corked {
            match conn.transport.write(conn.fd(), data) {
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
        if pending >= self.high_watermark && !conn.high_crossed.swap(true, Ordering::AcqRel) {
            wake = true;
        }
        drop(out);
        if wake {
            self.post(conn, Command::Output(conn.clone()));
        }
        Ok(SendStatus::Queued { pending })
    }

    /// Frame `body` with the protocol of the listener that accepted `conn`, then send it
    /// (Workerman's `send($data)`; `send` is its `send($data, true)`).
    pub(crate) fn send_framed(
        &self,
        conn: &Arc<Conn>,
        body: &[u8],
    ) -> Result<SendStatus, SendError> {
        thread_local! {
            static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let protocol = &self.framing[conn.listener];
        FRAME.with_borrow_mut(|frame| {
            frame.clear();
            protocol
                .frame(body, frame)
                .map_err(|_| SendError::Unframable)?;
            let result = self.send(conn, frame);
            if frame.capacity() > 64 * 1024 {
                *frame = Vec::new();
            }
            result
        })
    }

    /// Hold sends to `conn` in its output buffer (no system call) until `uncork`: the worker
    /// handling a batch of its packets answers them with one write.
    pub(crate) fn cork(&self, conn: &Conn) {
        conn.out.lock().corked = true;
    }

    /// Write what `cork` held, in one system call; leave what the kernel does not take to the
    /// reactor.
    pub(crate) fn uncork(&self, conn: &Arc<Conn>) {
        let mut out = conn.out.lock();
        out.corked = false;
        if out.pending() == 0 || out.flush_requested || out.state == OutState::Closed {
            return;
        }
        match out.flush(&conn.transport, conn.fd()) {
            Ok(0) => {}
            Ok(_) => {
                out.flush_requested = true;
                drop(out);
                self.post(conn, Command::Output(conn.clone()));
            }
            // The reactor sees the same error on its side and closes with the reason.
            Err(_) => out.state = OutState::Broken,
        }
    }

    /// Ask the owning reactor to close: after flushing (`ServerClosed`) or at once (the other
    /// reasons: `ServerReset`, `HeartbeatTimeout`, `HandlerPanic`).
    ///
    /// A graceful close can be escalated: `close_reset` (or the heartbeat) still closes a
    /// connection whose flush never finishes because its peer stopped reading.
    pub(crate) fn close(&self, conn: &Arc<Conn>, reason: CloseReason) -> Result<(), SendError> {
        {
            let mut out = conn.out.lock();
            let graceful = reason == CloseReason::ServerClosed;
            match out.state {
                OutState::Closed => return Err(SendError::Closed),
                OutState::Closing if graceful => return Err(SendError::Closed),
                _ => {}
            }
            out.state = OutState::Closing;
            out.requested_close = Some(Box::new(reason.clone()));
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
