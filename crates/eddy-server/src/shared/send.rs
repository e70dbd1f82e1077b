//! The send path: writing through a connection record from any thread.
//!
//! A sender writes straight to the socket when nothing is queued, else queues behind what is
//! (never reordering, never accepting part of a message it refuses), and tells the owning
//! reactor through its mailbox when the reactor has something to do: flush, report a
//! watermark crossing, or close.

use std::{
    cell::RefCell,
    sync::{atomic::Ordering, Arc},
};

use bytes::Bytes;
use eddy_ws::deflate::DeflateParams;
use parking_lot::MutexGuard;

use super::reactor_mail::{Command, ReactorHandle};
use crate::{
    config::Protocol,
    conn::{CloseReason, Conn, OutState, Output},
    error::{SendError, SendStatus},
    sys::Clock,
    ws::{Opcode, WsStatus},
};

thread_local! {
    /// Where a sender frames a message (kept, so framing allocates nothing per message).
    static FRAME: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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

/// The most bytes a WebSocket message of `len` bytes can take on the wire: its header, and
/// what deflate can add to incompressible data (5 bytes per 16 KiB block, and a few more).
fn frame_bound(len: usize) -> usize {
    len + len / 16_384 * 5 + 32
}

/// Give a large frame buffer back, so one big message does not pin its memory.
fn shrink(frame: &mut Vec<u8>) {
    if frame.capacity() > 64 * 1024 {
        *frame = Vec::new();
    }
}

/// Encode one WebSocket message for the connection whose output is `out`, with its deflate
/// context, into `frame`.
fn encode_ws(
    out: &mut Output,
    opcode: Opcode,
    data: &[u8],
    frame: &mut Vec<u8>,
) -> Result<(), SendError> {
    let ws = out.ws.as_deref_mut().ok_or(SendError::NotWebSocket)?;
    match ws.status {
        WsStatus::Open => {}
        WsStatus::Handshaking => return Err(SendError::NotEstablished),
        WsStatus::Closing => return Err(SendError::Closed),
    }
    if opcode == Opcode::Text && std::str::from_utf8(data).is_err() {
        return Err(SendError::Unframable);
    }
    ws.encoder
        .encode(opcode.kind(), data, frame)
        .map_err(|_| SendError::Unframable)
}

/// One message on its way to many connections (`broadcast`, `send_to_uid`): its
/// uncompressed WebSocket frames, made once, the first time a connection needs one.
#[derive(Debug)]
pub(crate) struct SharedMessage<'a> {
    data: &'a [u8],
    /// By opcode: text, binary.
    frames: [Option<Bytes>; 2],
    utf8: Option<bool>,
    /// Queue rather than write, and collect, by reactor, the connections it must flush: a
    /// large broadcast costs its caller no system call per connection, and the reactors
    /// write in parallel.
    deferred: Option<Vec<Vec<Arc<Conn>>>>,
}

impl<'a> SharedMessage<'a> {
    /// A message written to each connection as it goes.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        SharedMessage {
            data,
            frames: [None, None],
            utf8: None,
            deferred: None,
        }
    }

    /// A message queued on each connection, for `reactors` reactors to write
    /// ([`Outlet::flush_deferred`]).
    pub(crate) fn deferred(data: &'a [u8], reactors: usize) -> Self {
        SharedMessage {
            deferred: Some(vec![Vec::new(); reactors]),
            ..SharedMessage::new(data)
        }
    }

    /// The message as one uncompressed frame of `opcode`.
    fn frame(&mut self, opcode: Opcode) -> Result<Bytes, SendError> {
        if opcode == Opcode::Text
            && !*self
                .utf8
                .get_or_insert_with(|| std::str::from_utf8(self.data).is_ok())
        {
            return Err(SendError::Unframable);
        }
        let slot = &mut self.frames[opcode as usize];
        Ok(slot
            .get_or_insert_with(|| eddy_ws::encode_message(opcode.kind(), self.data))
            .clone())
    }
}

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
        self.check_size(data.len())?;
        let out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        let opcode = match (framing, out.ws.as_deref()) {
            (Framing::Raw, _) | (Framing::Protocol, None) => {
                return self.write_locked(conn, out, data);
            }
            (Framing::Protocol, Some(ws)) => ws.default_opcode,
            (Framing::WebSocket(opcode), Some(_)) => opcode,
            (Framing::WebSocket(_), None) => return Err(SendError::NotWebSocket),
        };
        self.write_ws_locked(conn, out, opcode, data)
    }

    /// Encode one WebSocket message with the connection's encoder and write it, all under
    /// the output lock (a deflate context must see messages in the order they go out).
    fn write_ws_locked(
        &self,
        conn: &Arc<Conn>,
        mut out: MutexGuard<'_, Output>,
        opcode: Opcode,
        data: &[u8],
    ) -> Result<SendStatus, SendError> {
        // Refuse before encoding: a deflate context must never take in a message that does
        // not then go out (the peer's context would no longer match).
        let bound = frame_bound(data.len());
        self.check_size(bound)?;
        if (out.pending() > 0 || out.corked) && out.memory() + bound > self.buffer_limit {
            return Err(SendError::BufferFull {
                pending: out.memory(),
                limit: self.buffer_limit,
            });
        }
        FRAME.with_borrow_mut(|frame| {
            frame.clear();
            encode_ws(&mut out, opcode, data, frame)?;
            let result = self.write_locked(conn, out, frame);
            shrink(frame);
            result
        })
    }

    /// Send one message to one of many connections: a WebSocket frame is encoded once per
    /// broadcast for every connection that does not compress.
    pub(crate) fn send_shared(
        &self,
        conn: &Arc<Conn>,
        message: &mut SharedMessage<'_>,
    ) -> Result<SendStatus, SendError> {
        let data = message.data;
        self.check_size(data.len())?;
        let out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        let Some(ws) = out.ws.as_deref() else {
            return match &mut message.deferred {
                Some(lists) => self.queue_locked(conn, out, data, lists),
                None => self.write_locked(conn, out, data),
            };
        };
        let opcode = ws.default_opcode;
        if ws.deflate || ws.status != WsStatus::Open {
            // Compressed per connection (its own deflate context), or refused.
            return self.write_ws_locked(conn, out, opcode, data);
        }
        let frame = message.frame(opcode)?;
        self.check_size(frame.len())?;
        match &mut message.deferred {
            Some(lists) => self.queue_locked(conn, out, &frame, lists),
            None => self.write_locked(conn, out, &frame),
        }
    }

    /// Queue `data` without a system call; note the connection for its reactor to flush
    /// unless a flush is already asked for (or a worker's batch will write it: corked).
    fn queue_locked(
        &self,
        conn: &Arc<Conn>,
        mut out: MutexGuard<'_, Output>,
        data: &[u8],
        lists: &mut [Vec<Arc<Conn>>],
    ) -> Result<SendStatus, SendError> {
        if out.memory() + data.len() > self.buffer_limit {
            return Err(SendError::BufferFull {
                pending: out.memory(),
                limit: self.buffer_limit,
            });
        }
        conn.last_send.store(self.clock.now_ms(), Ordering::Relaxed);
        out.push(data);
        let pending = out.pending();
        let mut tell = !out.corked && !out.flush_requested;
        out.flush_requested |= !out.corked;
        if pending >= self.high_watermark && !conn.high_crossed.swap(true, Ordering::AcqRel) {
            tell = true;
        }
        drop(out);
        if tell {
            lists[conn.reactor].push(conn.clone());
        }
        Ok(SendStatus::Queued { pending })
    }

    /// Hand each reactor the connections a deferred message queued on (one command each).
    pub(crate) fn flush_deferred(&self, message: SharedMessage<'_>) {
        for (reactor, conns) in message.deferred.into_iter().flatten().enumerate() {
            if !conns.is_empty() {
                self.reactors[reactor].command(Command::Flush(conns));
            }
        }
    }

    /// The WebSocket handshake was accepted: write the 101 `response` and open the connection
    /// for messages, both under the output lock so that no message can go before the 101.
    pub(crate) fn open_ws(
        &self,
        conn: &Arc<Conn>,
        response: &[u8],
        deflate: Option<DeflateParams>,
    ) -> Result<SendStatus, SendError> {
        let mut out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        let (status, wake) = self.push_locked(conn, &mut out, response)?;
        match out.ws.as_deref_mut() {
            Some(ws) => ws.open(deflate),
            None => return Err(SendError::NotWebSocket),
        }
        drop(out);
        if wake {
            self.post(conn, Command::Output(conn.clone()));
        }
        Ok(status)
    }

    /// Write a WebSocket control frame (a pong), unless the connection is closing.
    pub(crate) fn send_control(
        &self,
        conn: &Arc<Conn>,
        frame: &[u8],
    ) -> Result<SendStatus, SendError> {
        let out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        match out.ws.as_deref() {
            Some(ws) if ws.status == WsStatus::Open => self.write_locked(conn, out, frame),
            Some(_) => Err(SendError::Closed),
            None => Err(SendError::NotWebSocket),
        }
    }

    /// Write a WebSocket close frame with `code` and `reason`, unless one was sent already;
    /// from then on no message goes out. A close frame (at most 129 bytes) is taken even by a
    /// full output buffer, so a slow reader can always be closed. Returns whether it was
    /// written or queued.
    pub(crate) fn send_close_frame(&self, conn: &Arc<Conn>, code: u16, reason: &str) -> bool {
        let mut out = conn.out.lock();
        if out.state != OutState::Open {
            return false;
        }
        let Some(frame) = out
            .ws
            .as_deref_mut()
            .and_then(|ws| ws.close_frame(code, reason))
        else {
            return false;
        };
        let (_, wake) = match self.push_unbounded(conn, &mut out, &frame) {
            Ok(pushed) => pushed,
            Err(_) => return false,
        };
        drop(out);
        if wake {
            self.post(conn, Command::Output(conn.clone()));
        }
        true
    }

    /// Ping a quiet WebSocket (the heartbeat's keep-alive), unless it was pinged since it
    /// last sent anything (`last_recv`) or its listener does not ping.
    pub(crate) fn keepalive(&self, conn: &Arc<Conn>, now: u64, last_recv: u64) {
        let mut out = conn.out.lock();
        if out.state != OutState::Open {
            return;
        }
        let Some(ws) = out.ws.as_deref_mut() else {
            return;
        };
        if ws.status != WsStatus::Open || !ws.ping_idle || ws.pinged_at > last_recv {
            return;
        }
        ws.pinged_at = now;
        let _ = self.write_locked(conn, out, &[0x89, 0x00]);
    }

    /// Queue `len` bytes of `file` from `offset` behind `conn`'s output, sent zero-copy with
    /// `sendfile(2)`: now as far as the kernel takes them when nothing was queued, the rest by
    /// the reactor. File bytes count in the watermarks (so a slow reader is paused) but not
    /// in `socket_buffer_size`, which caps memory: they stay in the file.
    pub(crate) fn send_file(
        &self,
        conn: &Arc<Conn>,
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    ) -> Result<SendStatus, SendError> {
        if len == 0 {
            return Err(SendError::Empty);
        }
        let mut out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        if out.ws.is_some() {
            return Err(SendError::NotStream);
        }
        conn.last_send.store(self.clock.now_ms(), Ordering::Relaxed);
        let was_empty = out.pending() == 0 && !out.corked;
        out.push_file(file, offset, len);
        if was_empty {
            if out.flush(&conn.transport, conn.fd()).is_err() {
                out.state = OutState::Broken;
                return Err(SendError::Closed);
            }
            if out.pending() == 0 {
                return Ok(SendStatus::Sent);
            }
        }
        let pending = out.pending();
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

    /// Send `data` as `send` does, then block this thread until it is in the kernel's socket
    /// buffer or `timeout` passes (Swoole's `sendwait`). Refused on a reactor thread, which
    /// is the one that would flush it.
    pub(crate) fn send_wait(
        &self,
        conn: &Arc<Conn>,
        data: &[u8],
        timeout: std::time::Duration,
    ) -> Result<SendStatus, SendError> {
        if crate::sys::on_reactor_thread() {
            return Err(SendError::OnReactor);
        }
        let deadline = std::time::Instant::now() + timeout;
        let target = {
            let status = self.send(conn, data)?;
            if status == SendStatus::Sent {
                return Ok(status);
            }
            let mut out = conn.out.lock();
            let pending = out.pending() as u64;
            let ext = out.ext();
            // Everything pending now was queued no later than our bytes, which are its end
            // (or already flushed, if the reactor was quick: then the target is met).
            let target = ext.flushed + pending;
            ext.wait_for(target);
            target
        };
        loop {
            let now = std::time::Instant::now();
            {
                let mut out = conn.out.lock();
                let closed = matches!(out.state, OutState::Closed | OutState::Broken);
                let ext = out.ext();
                if ext.flushed >= target {
                    ext.stop_waiting();
                    return Ok(SendStatus::Sent);
                }
                if closed || now >= deadline {
                    ext.stop_waiting();
                    return Err(if closed {
                        SendError::Closed
                    } else {
                        SendError::TimedOut
                    });
                }
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Refuse a message the output buffer could never hold.
    fn check_size(&self, len: usize) -> Result<(), SendError> {
        if len == 0 {
            return Err(SendError::Empty);
        }
        if len > self.buffer_limit {
            return Err(SendError::TooLarge {
                len,
                limit: self.buffer_limit,
            });
        }
        Ok(())
    }

    /// Write or queue `data` under the output lock, then tell the reactor if it must know.
    fn write_locked(
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
    fn push_locked(
        &self,
        conn: &Conn,
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
    fn push_unbounded(
        &self,
        conn: &Conn,
        out: &mut Output,
        data: &[u8],
    ) -> Result<(SendStatus, bool), SendError> {
        // Stamped before the bytes can reach the peer, so whoever sees the reply sees the time.
        conn.last_send.store(self.clock.now_ms(), Ordering::Relaxed);
        let mut rest = data;
        if out.pending() == 0 && !out.corked {
            match conn.transport.write(conn.fd(), data) {
                Ok(n) if n == data.len() => return Ok((SendStatus::Sent, false)),
                Ok(n) => rest = &data[n..],
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    // The peer is gone; the reactor sees the same error on its side and
                    // closes the connection with the reason.
                    out.state = OutState::Broken;
                    return Err(SendError::Closed);
                }
            }
        }
        out.push(rest);
        let pending = out.pending();
        // A corked buffer is flushed by `uncork`; otherwise the reactor must know.
        let mut wake = !out.corked && !out.flush_requested;
        out.flush_requested |= !out.corked;
        if pending >= self.high_watermark && !conn.high_crossed.swap(true, Ordering::AcqRel) {
            wake = true;
        }
        Ok((SendStatus::Queued { pending }, wake))
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
