//! The send path's WebSocket side: messages encoded (and compressed) under the output lock,
//! the 101, control and close frames, the heartbeat's pings, and messages shared by many
//! connections (a broadcast), encoded once and, for large broadcasts, queued for the
//! reactors to write.

use std::sync::{atomic::Ordering, Arc};

use bytes::Bytes;
use eddy_ws::deflate::DeflateParams;
use parking_lot::MutexGuard;

use super::{
    reactor_mail::Command,
    send::{shrink, Outlet, FRAME},
};
use crate::{
    conn::{Conn, OutState, Output},
    error::{SendError, SendStatus},
    ws::{Opcode, WsStatus},
};

/// The most bytes a WebSocket message of `len` bytes can take on the wire: its header (a
/// server's frames are not masked: 2, 4 or 10 bytes), and with `deflate` what compression can
/// add to incompressible data (5 bytes per 16 KiB block, and a few more).
fn frame_bound(len: usize, deflate: bool) -> usize {
    if deflate {
        return len + len / 16_384 * 5 + 32;
    }
    len + match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
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
    deferred: Option<Deferred<'a>>,
}

/// The connections a deferred message was queued on, by reactor, and where to tell them.
/// Told when dropped, so a broadcast cut short (its filter panicked) strands nothing.
#[derive(Debug)]
struct Deferred<'a> {
    outlet: &'a Outlet,
    lists: Vec<Vec<Arc<Conn>>>,
}

impl Drop for Deferred<'_> {
    fn drop(&mut self) {
        for (reactor, conns) in self.lists.drain(..).enumerate() {
            if !conns.is_empty() {
                self.outlet.reactors[reactor].command(Command::Flush(conns));
            }
        }
    }
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

    /// A message queued on each connection, for the reactors of `outlet` to write once it
    /// is dropped.
    pub(crate) fn deferred(data: &'a [u8], outlet: &'a Outlet) -> Self {
        let lists = vec![Vec::new(); outlet.reactors.len()];
        SharedMessage {
            deferred: Some(Deferred { outlet, lists }),
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

impl Outlet {
    /// Encode one WebSocket message with the connection's encoder and write it, all under
    /// the output lock (a deflate context must see messages in the order they go out).
    pub(super) fn write_ws_locked(
        &self,
        conn: &Arc<Conn>,
        mut out: MutexGuard<'_, Output>,
        opcode: Opcode,
        data: &[u8],
    ) -> Result<SendStatus, SendError> {
        // Refuse before encoding: a deflate context must never take in a message that does
        // not then go out (the peer's context would no longer match).
        let deflate = out.ws.as_deref().is_some_and(|ws| ws.deflate);
        let bound = frame_bound(data.len(), deflate);
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
        let out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        // Before the size and buffer checks: a broadcast passes over a WebSocket still in its
        // upgrade, whatever the message.
        if out
            .ws
            .as_deref()
            .is_some_and(|ws| ws.status == WsStatus::Handshaking)
        {
            return Err(SendError::NotEstablished);
        }
        self.check_limit(data.len())?;
        let Some(ws) = out.ws.as_deref() else {
            self.check_size(data.len())?;
            return match &mut message.deferred {
                Some(deferred) => self.queue_locked(conn, out, data, &mut deferred.lists),
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
            Some(deferred) => self.queue_locked(conn, out, &frame, &mut deferred.lists),
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
        self.stamp(conn);
        if let Err(err) = out.push(data) {
            return Err(self.broken_locked(conn, &mut out, &err));
        }
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

    /// The heartbeat's keep-alive for a connection quiet for half its `idle` time or more.
    /// Returns whether the heartbeat may close it: a WebSocket of a listener that pings only
    /// once its ping went unanswered for half the idle time (it is pinged now if it was not
    /// since it last sent anything, `last_recv`), so a peer that answers is never closed,
    /// however late a heartbeat pass comes; any other connection at once.
    pub(crate) fn keepalive(&self, conn: &Arc<Conn>, now: u64, last_recv: u64, idle: u64) -> bool {
        let mut out = conn.out.lock();
        if out.state != OutState::Open {
            return true;
        }
        let Some(ws) = out.ws.as_deref_mut() else {
            return true;
        };
        if ws.status != WsStatus::Open || !ws.ping_idle {
            return true;
        }
        if ws.pinged_at > last_recv {
            return now.saturating_sub(ws.pinged_at) >= idle / 2;
        }
        ws.pinged_at = now;
        let _ = self.write_locked(conn, out, &[0x89, 0x00]);
        false
    }
}
