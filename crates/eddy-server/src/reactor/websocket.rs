//! The read side of a WebSocket connection: its upgrade request, then its frames.
//!
//! The request is parsed here (its head capped, a broken upgrade answered 400 or 426, plain
//! HTTP handed to `on_request`), deflate negotiated, and the request handed to the worker's
//! `on_handshake`; reading waits for the worker's answer (`Command::Upgraded`). Frames are then
//! decoded into whole messages for dispatch; pings are answered here, a close frame is echoed,
//! and a protocol error fails only its connection with the RFC's close code.

use std::{sync::Arc, time::Instant};

use eddy_ws::ProtocolError;

use bytes::{Bytes, BytesMut};

use super::{
    local::{pause, LocalConn},
    protocol::ProtocolState,
    ws_read::{Phase, Step},
    Reactor,
};
use crate::{
    config::READ_CHUNK,
    conn::{CloseReason, Conn, ConnId},
    shared::Event,
    sys,
    ws::Opcode,
};

impl Reactor {
    /// Act on what a WebSocket connection's bytes hold (in the reactor's scratch block when
    /// `from_scratch`, else in its own buffer), until nothing whole is left; then keep what
    /// is left (a partial frame, or frames not to be read yet) in a buffer of its own, sized
    /// to fit, so an idle connection pins no block.
    pub(super) fn ws_process(&mut self, key: usize, from_scratch: bool) {
        self.ws_steps(key, from_scratch);
        let Some(lc) = self.conns.get_mut(key) else {
            if from_scratch {
                self.scratch.clear();
            }
            return;
        };
        let rest = if from_scratch {
            &mut self.scratch
        } else {
            &mut lc.rbuf
        };
        if rest.is_empty() {
            lc.rbuf = BytesMut::new();
        } else if from_scratch || rest.capacity() > 2 * rest.len() + READ_CHUNK {
            let mut own = BytesMut::with_capacity(rest.len());
            own.extend_from_slice(rest);
            lc.rbuf = own;
        }
        if from_scratch {
            self.scratch.clear();
        }
    }

    /// Decode and act until the bytes hold nothing more to act on now. The messages of one
    /// read travel together (one event in the stateful modes), ahead of whatever comes after
    /// them.
    fn ws_steps(&mut self, key: usize, from_scratch: bool) {
        let mut messages = Vec::new();
        self.ws_decode(key, from_scratch, &mut messages);
        self.deliver_messages(key, messages);
    }

    /// Hand over the messages of one read: each alone, or all as one event when the mode
    /// keeps a connection on one worker.
    fn deliver_messages(&mut self, key: usize, mut messages: Vec<(Opcode, Bytes)>) {
        let Some(conn) = self.conns.get(key).map(|lc| lc.conn.clone()) else {
            return;
        };
        if messages.len() > 1 && self.dispatcher.is_stateful() {
            return self.deliver(key, Event::Messages(conn, messages.into_boxed_slice()));
        }
        for (opcode, data) in messages.drain(..) {
            self.deliver(key, Event::Message(conn.clone(), opcode, data));
        }
    }

    /// Decode until a step that acts on the connection (or none is left); the pongs owed for
    /// the pings on the way go out first, as one write.
    fn ws_decode(&mut self, key: usize, from_scratch: bool, messages: &mut Vec<(Opcode, Bytes)>) {
        let mut pongs = Vec::new();
        let end = self.ws_frames(key, from_scratch, messages, &mut pongs);
        if let Some(lc) = self.conns.get(key).filter(|_| !pongs.is_empty()) {
            let _ = self.shared.outlet.send_control(&lc.conn, &pongs);
        }
        let Some((conn, step)) = end else {
            return;
        };
        match step {
            Step::Upgrade(pending) => {
                self.hold_for_handler(key);
                self.deliver(key, Event::Handshake(conn, pending));
            }
            Step::Http(request) => {
                self.hold_for_handler(key);
                self.deliver(key, Event::Request(conn, request));
            }
            Step::Refuse(status, response) => {
                self.set_done(key);
                let _ = self.shared.outlet.send_raw(&conn, &response);
                self.close_after_drain(key, CloseReason::Http { status });
            }
            Step::Close(code, reason) => {
                self.deliver_messages(key, std::mem::take(messages));
                self.ws_peer_closed(key, code, reason);
            }
            Step::Fail(err) => {
                self.deliver_messages(key, std::mem::take(messages));
                self.ws_fail(key, &err);
            }
            Step::Wait | Step::Message(..) | Step::Ping(_) | Step::Pong => {}
        }
    }

    /// Take frames off the connection's bytes: messages into `messages`, the pong each ping
    /// is owed appended to `pongs`, until the bytes hold no more (`None`) or a step acts on
    /// the connection (returned, with the connection).
    fn ws_frames(
        &mut self,
        key: usize,
        from_scratch: bool,
        messages: &mut Vec<(Opcode, Bytes)>,
        pongs: &mut Vec<u8>,
    ) -> Option<(Arc<Conn>, Step)> {
        loop {
            let lc = self.conns.get_mut(key)?;
            let LocalConn {
                protocol,
                rbuf,
                conn,
                expect,
                ..
            } = lc;
            let ProtocolState::WebSocket(ws) = protocol else {
                return None;
            };
            let buf = if from_scratch {
                &mut self.scratch
            } else {
                rbuf
            };
            match ws.step(buf) {
                Step::Wait => {
                    // A frame larger than a read: its buffer grows toward the frame's size
                    // (doubling, see `partial_room`), not a read at a time past the limit.
                    *expect = ws.frame_wanted();
                    return None;
                }
                Step::Message(opcode, data) => messages.push((opcode, data)),
                Step::Ping(payload) => {
                    eddy_ws::encode_control(eddy_ws::OpCode::Pong, &payload, pongs);
                }
                Step::Pong => {}
                step => return Some((conn.clone(), step)),
            }
        }
    }

    /// The peer's close frame: close after the messages read before it are answered and
    /// flushed, then echo its code and reason (RFC 6455 §5.5.1 lets the echo wait for the
    /// messages being sent; see `say_goodbye`).
    fn ws_peer_closed(&mut self, key: usize, code: u16, reason: String) {
        self.set_done(key);
        let by_peer = true;
        self.close_after_drain(
            key,
            CloseReason::WebSocket {
                code,
                reason,
                by_peer,
            },
        );
    }

    /// Fail the connection for a protocol error: once the messages read before the bad frame
    /// are answered and flushed, a close frame with the RFC's code and the error as its
    /// reason, then the close.
    fn ws_fail(&mut self, key: usize, err: &ProtocolError) {
        self.set_done(key);
        let Some(lc) = self.conns.get(key) else {
            return;
        };
        let conn = &lc.conn;
        let (code, reason) = (err.close_code(), err.to_string());
        tracing::warn!(conn = conn.id.as_u64(), peer = %conn.peer, code, "websocket: {reason}");
        let by_peer = false;
        self.close_after_drain(
            key,
            CloseReason::WebSocket {
                code,
                reason,
                by_peer,
            },
        );
    }

    /// Stop reading until the handler has answered the request.
    fn hold_for_handler(&mut self, key: usize) {
        if let Some(lc) = self.conns.get_mut(key) {
            lc.paused |= pause::HANDSHAKE;
            self.sync_interest(key);
        }
    }

    fn set_done(&mut self, key: usize) {
        if let Some(ProtocolState::WebSocket(ws)) =
            self.conns.get_mut(key).map(|lc| &mut lc.protocol)
        {
            ws.phase = Phase::Done;
        }
    }

    /// `on_handshake` accepted and `on_open` returned: read frames, starting with those that
    /// came with the request.
    pub(super) fn upgraded(&mut self, key: usize) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let ProtocolState::WebSocket(ws) = &mut lc.protocol else {
            return;
        };
        if ws.open() {
            lc.paused &= !pause::HANDSHAKE;
            self.sync_interest(key);
            // Frames that came with the request (or when the last other pause ends).
            self.resume_kept(key);
        }
    }

    /// Remember when a new WebSocket connection must have finished its handshake.
    pub(super) fn watch_handshake(&mut self, key: usize, id: ConnId) {
        if let Some(ProtocolState::WebSocket(ws)) = self.conns.get(key).map(|lc| &lc.protocol) {
            let timeout = ws.config.handshake_timeout;
            self.handshakes
                .push(timeout, Instant::now(), key, id, ws_pending(&self.conns));
        }
    }

    /// Close the connections whose handshake deadline passed before they upgraded. One the
    /// server holds unread when its time is up (`on_connect` still running, a worker backlog,
    /// `enable_delay_receive`, `pause`, its TLS handshake), or whose socket holds bytes not
    /// read yet, is given the timeout again: the server's own time does not count against
    /// the client.
    pub(super) fn expire_handshakes(&mut self, now: Instant) {
        /// Pauses that are the server's, not the client's.
        const HELD: u8 = pause::INBOX | pause::GATE | pause::QUEUED | pause::USER | pause::DELAY;
        while let Some((key, id)) = self.handshakes.pop_due(now) {
            let Some(lc) = self.conns.get(key).filter(|lc| lc.conn.id == id) else {
                continue;
            };
            let ProtocolState::WebSocket(ws) = &lc.protocol else {
                continue;
            };
            if !ws.is_handshaking() {
                continue;
            }
            // Held, or just let go with its bytes not read yet (the hold ended in this very
            // loop, before the poller could report them): the server's time, not the client's.
            // A closing connection is not given more: the timeout is its backstop.
            let held = lc.closing.is_none()
                && (lc.paused & HELD != 0
                    || lc.tls_handshaking
                    || sys::has_unread_input(lc.conn.fd()));
            if held {
                let timeout = ws.config.handshake_timeout;
                self.handshakes
                    .push(timeout, now, key, id, ws_pending(&self.conns));
                continue;
            }
            self.finalize(key, CloseReason::HandshakeTimeout);
        }
    }
}

/// Whether connection `key` (`id`) is still a WebSocket in its upgrade.
fn ws_pending(conns: &slab::Slab<LocalConn>) -> impl Fn(usize, ConnId) -> bool + '_ {
    move |key, id| {
        conns.get(key).is_some_and(|lc| {
            lc.conn.id == id
                && matches!(&lc.protocol, ProtocolState::WebSocket(ws) if ws.is_handshaking())
        })
    }
}
