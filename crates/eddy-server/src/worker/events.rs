//! One event of a connection, from the inbox to its callbacks; and `on_close` once the last
//! one is done.

use std::sync::{atomic::Ordering, Arc};

use bytes::Bytes;

use super::{callback::Callback, Worker};
use eddy_ws::handshake;

use crate::{
    conn::{inflight, CloseReason, Conn},
    shared::{Command, Datagram, Event, PendingHandshake},
    task::TaskHandler,
    ws::{Handshake, HttpRequest, HttpResponse, Opcode, WsMessage},
};

impl<T: TaskHandler> Worker<T> {
    /// Run the callbacks of one event.
    pub(super) fn handle_event(&mut self, event: Event) {
        let Some(conn) = event.conn().cloned() else {
            if let Event::Packet(datagram) = event {
                self.packet(*datagram);
            }
            return self.maintain();
        };
        let id = conn.id;
        let weight = event.weight();
        conn.last_dispatch
            .store(self.server.shared.now_ms(), Ordering::Relaxed);
        match event {
            Event::Connect { gated, .. } => {
                self.guard(Callback::Connect, Some(&conn), |h, ctx| {
                    h.on_connect(ctx, id)
                });
                if gated {
                    let reactor = self.server.shared.reactor(conn.reactor);
                    reactor.command(Command::OpenGate(conn.clone()));
                }
            }
            Event::Receive(_, packet) => {
                // Input the server has decided to close on is dropped (as Swoole does).
                if !conn.closing.load(Ordering::Acquire) {
                    self.receive(&conn, packet);
                }
            }
            Event::Batch(_, data, lens) => self.receive_batch(&conn, &data, &lens),
            Event::BufferFull(_) => {
                self.guard(Callback::BufferFull, Some(&conn), |h, ctx| {
                    h.on_buffer_full(ctx, id)
                });
            }
            Event::BufferDrain(_) => {
                self.guard(Callback::BufferDrain, Some(&conn), |h, ctx| {
                    h.on_buffer_drain(ctx, id)
                });
            }
            Event::Close(_) => {
                self.close(&conn);
                return self.maintain();
            }
            Event::Handshake(_, pending) => self.handshake(&conn, *pending),
            Event::Request(_, request) => self.request(&conn, &request),
            Event::Message(_, opcode, data) => {
                if !conn.closing.load(Ordering::Acquire) {
                    self.message(&conn, WsMessage { opcode, data });
                }
            }
            Event::Messages(_, messages) => self.message_batch(&conn, messages),
            Event::Packet(_) => {}
        }
        self.finish(&conn, weight);
        self.maintain();
    }

    /// The packets of one read, answered with one write: held in the output buffer until the
    /// last is handled.
    fn receive_batch(&mut self, conn: &Arc<Conn>, data: &Bytes, lens: &[u32]) {
        let outlet = &self.server.shared.outlet;
        outlet.cork(conn, Some(data));
        let mut start = 0;
        for &len in lens {
            if conn.closing.load(Ordering::Acquire) {
                break;
            }
            let end = start + len as usize;
            self.receive(conn, data.slice(start..end));
            // Between two packets: a panic, `max_request` or a reload rebuilds the handler
            // before the next one.
            self.maintain_in_batch(conn, Some(data));
            start = end;
        }
        self.server.shared.outlet.uncork(conn);
    }

    /// `maintain` between two events of a corked batch: a rebuild runs uncorked, so the
    /// replies made so far go out rather than wait for the new handler's start (retried
    /// with back-off while it panics); the rest of the batch is corked again.
    fn maintain_in_batch(&mut self, conn: &Arc<Conn>, packets: Option<&Bytes>) {
        if self.needs_rebuild() {
            self.server.shared.outlet.uncork(conn);
            self.rebuild_now();
            self.server.shared.outlet.cork(conn, packets);
        }
    }

    fn packet(&mut self, datagram: Datagram) {
        self.server.shared.stats.workers[self.id].requests.add(1);
        self.handled += 1;
        let Datagram { data, info } = datagram;
        self.guard(Callback::Packet, None, |h, ctx| {
            h.on_packet(ctx, data, info)
        });
    }

    /// The messages of one read, answered with one write.
    fn message_batch(&mut self, conn: &Arc<Conn>, messages: Box<[(Opcode, Bytes)]>) {
        let outlet = &self.server.shared.outlet;
        outlet.cork(conn, None);
        for (opcode, data) in messages.into_vec() {
            if conn.closing.load(Ordering::Acquire) {
                break;
            }
            self.message(conn, WsMessage { opcode, data });
            self.maintain_in_batch(conn, None);
        }
        self.server.shared.outlet.uncork(conn);
    }

    fn message(&mut self, conn: &Arc<Conn>, message: WsMessage) {
        self.server.shared.stats.workers[self.id].requests.add(1);
        self.handled += 1;
        let id = conn.id;
        self.guard(Callback::Message, Some(conn), |h, ctx| {
            h.on_message(ctx, id, message)
        });
    }

    /// `on_handshake`, then (accepted) the 101, `on_open`, and reading frames; or
    /// (rejected) the HTTP answer and a close.
    fn handshake(&mut self, conn: &Arc<Conn>, pending: PendingHandshake) {
        let id = conn.id;
        let mut decision = None;
        let request = &pending.request;
        self.guard(Callback::Handshake, Some(conn), |h, ctx| {
            decision = Some(h.on_handshake(ctx, id, request))
        });
        let outlet = &self.server.shared.outlet;
        match decision {
            Some(Handshake::Accept { subprotocol }) => {
                let key = request.key().unwrap_or_default();
                let extension = pending.extension.as_deref();
                let response = handshake::response_101(key, subprotocol.as_deref(), extension);
                if let Err(err) = outlet.open_ws(conn, &response, pending.deflate) {
                    tracing::warn!(conn = id.as_u64(), "WebSocket upgrade not sent: {err}");
                    let _ = outlet.close(conn, CloseReason::Http { status: 101 });
                    return;
                }
                self.guard(Callback::Open, Some(conn), |h, ctx| h.on_open(ctx, id));
                let reactor = self.server.shared.reactor(conn.reactor);
                reactor.command(Command::Upgraded(conn.clone()));
            }
            Some(Handshake::Reject { status, body }) => {
                // The variant can be built without `reject`: clamped here as there.
                let status = crate::ws::refusal_status(status);
                let response = HttpResponse::text(status, body);
                self.answer_http(conn, &response);
            }
            // `on_handshake` panicked (and closed the connection, unless `close_on_panic`
            // is off).
            None => self.answer_http(conn, &HttpResponse::text(500, "handshake failed\n")),
        }
    }

    /// `on_request`, its answer, and a close.
    fn request(&mut self, conn: &Arc<Conn>, request: &HttpRequest) {
        let id = conn.id;
        let mut response = None;
        self.guard(Callback::Request, Some(conn), |h, ctx| {
            response = Some(h.on_request(ctx, id, request))
        });
        let response = response.unwrap_or_else(|| HttpResponse::text(500, "request failed\n"));
        self.answer_http(conn, &response);
    }

    /// Send an HTTP response as it is, then close after flushing it. A response that cannot
    /// be queued (over `socket_buffer_size`) becomes a 500; the close happens either way.
    fn answer_http(&self, conn: &Arc<Conn>, response: &HttpResponse) {
        let outlet = &self.server.shared.outlet;
        let mut status = response.status;
        if let Err(err) = outlet.send_raw(conn, &response.to_bytes()) {
            tracing::warn!(
                conn = conn.id.as_u64(),
                status,
                "HTTP answer not sent: {err}"
            );
            status = 500;
            let fallback = HttpResponse::text(status, "the response could not be sent\n");
            let _ = outlet.send_raw(conn, &fallback.to_bytes());
        }
        let _ = outlet.close(conn, CloseReason::Http { status });
    }

    fn receive(&mut self, conn: &Arc<Conn>, packet: Bytes) {
        self.server.shared.stats.workers[self.id].requests.add(1);
        self.handled += 1;
        let id = conn.id;
        self.guard(Callback::Receive, Some(conn), |h, ctx| {
            h.on_receive(ctx, id, packet)
        });
    }

    /// One counted event of `conn` is done: whoever finishes the last one after the reactor
    /// closed the connection runs `on_close`.
    fn finish(&mut self, conn: &Arc<Conn>, weight: u64) {
        let before = conn.inflight.fetch_sub(weight, Ordering::AcqRel);
        if before & inflight::WEIGHT == weight {
            if before & inflight::CLOSED != 0 {
                self.close(conn);
            } else if before & inflight::NOTIFY_IDLE != 0 {
                let reactor = self.server.shared.reactor(conn.reactor);
                reactor.command(Command::Idle(conn.clone()));
            }
        }
    }

    fn close(&mut self, conn: &Arc<Conn>) {
        let id = conn.id;
        let reason = conn
            .close_reason
            .get()
            .map_or(CloseReason::PeerClosed, |reason| (**reason).clone());
        self.server.shared.uids.release(conn);
        self.server.shared.groups.release(conn);
        // A TLS connection whose handshake failed was never announced: no `on_close` either.
        if conn.announced.load(Ordering::Acquire) {
            self.guard(Callback::Close, Some(conn), |h, ctx| {
                h.on_close(ctx, id, reason)
            });
        }
        self.server.shared.table.remove(id);
    }
}
