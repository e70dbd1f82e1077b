//! Output: flushing what workers could not write, watermark crossings and their events,
//! closes waiting for a flush, and the poller interest that follows from all of it.

use std::sync::atomic::Ordering;

use super::{
    local::{pause, Held},
    Reactor,
};
use crate::{
    conn::{inflight, CloseReason, Conn, OutState, Output},
    shared::Event,
    ws::WsStatus,
};

impl Reactor {
    pub(super) fn on_writable(&mut self, key: usize) {
        if self.conns.get(key).is_some_and(|lc| lc.want_write) {
            self.flush_now(key);
        }
    }

    /// Write what the connection's output holds, as far as the kernel takes it (at most
    /// `FLUSH_BUDGET` a turn: the rest at the next, the socket still watched), then look at
    /// what is left.
    pub(super) fn flush_now(&mut self, key: usize) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let flushed = {
            let mut out = lc.conn.out.lock();
            let result = out.flush(lc.conn.fd());
            if matches!(result, Ok(0)) {
                out.flush_requested = false;
            }
            result
        };
        match flushed {
            Ok(_) => self.check_output(key),
            Err(err) => self.finalize(key, CloseReason::of_io(&err)),
        }
    }

    /// Look at a connection's output: watermark crossings, a close waiting for the flush,
    /// poller interest.
    pub(super) fn check_output(&mut self, key: usize) {
        let config = &self.shared.config;
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let conn = lc.conn.clone();
        let mut full = false;
        let mut drained = false;
        let idle = conn.inflight.load(Ordering::Acquire) & inflight::WEIGHT == 0;
        let mut done = false;
        let flushable = {
            let mut out = conn.out.lock();
            let pending = out.pending();
            // Decide a pending close under the same lock senders take, so no send can be
            // reported queued and then dropped.
            if let Some(reason) = &lc.closing {
                // A WebSocket close frame still owed (the peer's echoed, or a protocol
                // error's) goes out after the answers to the messages before it.
                let owed = ws_close_owed(&out, reason);
                if pending == 0 && ((reason.drops_unhandled() && !owed) || idle) {
                    say_goodbye(&conn, &mut out, reason);
                    out.state = OutState::Closed;
                    done = true;
                }
            }
            // A TLS handshake goes on whatever is queued (the queue waits for it), and
            // `on_buffer_full` comes after `on_connect`: watermarks count from its end.
            if !lc.tls_handshaking && !lc.full_reported && conn.high_crossed.load(Ordering::Acquire)
            {
                lc.full_reported = true;
                full = true;
            }
            if lc.full_reported && pending <= config.buffer_low_watermark {
                lc.full_reported = false;
                conn.high_crossed.store(false, Ordering::Release);
                drained = true;
            }
            let flushable = out.flushable();
            if flushable == 0 && out.flush_requested {
                // Nothing for this reactor to write: no flush is asked of it any more. (A
                // sender's own flush, `sendwait`'s in a corked batch, can empty the buffer
                // while a request is on its way; left set, the flag kept every later send
                // from asking, and their bytes sat queued.)
                out.flush_requested = false;
            }
            flushable
        };
        lc.want_write = flushable > 0;
        if full && config.output_backpressure {
            lc.paused |= pause::WATERMARK;
        }
        let paused = lc.paused;
        if drained {
            lc.paused &= !pause::WATERMARK;
        }
        if done {
            let reason = lc.closing.clone().unwrap_or(CloseReason::ServerClosed);
            return self.finalize(key, reason);
        }
        if lc.paused & pause::QUEUED != 0 && idle {
            lc.paused &= !pause::QUEUED;
            if lc.closing.is_none() {
                conn.inflight
                    .fetch_and(!inflight::NOTIFY_IDLE, Ordering::AcqRel);
            }
        }
        let resumed = lc.paused != paused;
        self.report_watermarks(key, full, drained);
        self.sync_interest(key);
        if resumed {
            self.resume_kept(key);
        }
    }

    /// Hand `on_buffer_full` / `on_buffer_drain` to the connection's worker, or hold them
    /// (coalesced) while that worker is backed up.
    fn report_watermarks(&mut self, key: usize, full: bool, drained: bool) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let conn = lc.conn.clone();
        let was_held = lc.held_events != Held::None;
        if full {
            lc.held_events = lc.held_events.then_full();
        }
        if drained {
            lc.held_events = lc.held_events.then_drain();
        }
        if lc.held_events != Held::None {
            match lc.worker.filter(|&w| !self.backlog[w].is_empty()) {
                // The worker is backed up: hold the events (bounded) and look again when its
                // queue drains.
                Some(worker) => {
                    if !was_held {
                        self.stalled[worker].push((key, conn.id));
                    }
                }
                None => {
                    let held = std::mem::take(&mut lc.held_events);
                    if matches!(held, Held::Full | Held::FullDrain) {
                        self.deliver(key, Event::BufferFull(conn.clone()));
                    }
                    if matches!(held, Held::Drain | Held::FullDrain) {
                        self.deliver(key, Event::BufferDrain(conn));
                    }
                }
            }
        }
    }

    /// A connection just taken off a worker's stalled list: if its watermark events are
    /// still held (the worker its events go to now is backed up), list it on that worker's,
    /// so they are handed over when it drains. (`report_watermarks` lists a connection only
    /// when its events start being held.)
    pub(super) fn relist_held(&mut self, key: usize) {
        let Some(lc) = self.conns.get(key) else {
            return;
        };
        if lc.held_events == Held::None {
            return;
        }
        if let Some(worker) = lc.worker.filter(|&w| !self.backlog[w].is_empty()) {
            self.stalled[worker].push((key, lc.conn.id));
        }
    }

    pub(super) fn sync_interest(&mut self, key: usize) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let want = lc.interest();
        if want != lc.registered {
            match self.poller.modify(lc.conn.fd(), key, want.0, want.1) {
                Ok(()) => lc.registered = want,
                Err(err) => {
                    tracing::error!(conn = lc.conn.id.as_u64(), "cannot watch socket: {err}");
                    self.finalize(key, CloseReason::Error(err.kind()));
                }
            }
        }
    }
}

/// Whether closing for `reason` still owes the peer a WebSocket close frame: the peer's
/// close or a protocol error, before the frame went out (the send side is still open).
fn ws_close_owed(out: &Output, reason: &CloseReason) -> bool {
    matches!(reason, CloseReason::WebSocket { .. })
        && out
            .ws
            .as_ref()
            .is_some_and(|ws| ws.status == WsStatus::Open)
}

/// A WebSocket that closes without having sent its close frame (a shutdown: 1001, a plain
/// `close`: 1000, the peer's close echoed, a protocol error's code) sends it now, after
/// everything queued; a TLS session then says close_notify. Its output is empty, so the
/// kernel takes these few bytes unless its own buffer is full (then the peer sees the TCP
/// close).
fn say_goodbye(conn: &Conn, out: &mut Output, reason: &CloseReason) {
    use eddy_ws::close_code::{GOING_AWAY, NORMAL, NO_STATUS};
    let (code, text) = match reason {
        CloseReason::Shutdown => (GOING_AWAY, ""),
        // The peer's close echoed (1000 when it gave no code), or a protocol error's code
        // and description. (A `disconnect` sent its own frame: none is owed.)
        CloseReason::WebSocket {
            code,
            reason,
            by_peer,
        } => {
            let code = if *by_peer && *code == NO_STATUS {
                NORMAL
            } else {
                *code
            };
            (code, reason.as_str())
        }
        _ => (NORMAL, ""),
    };
    if let Some(frame) = out
        .ws
        .as_deref_mut()
        .and_then(|ws| ws.close_frame(code, text))
    {
        let _ = out.write_now(conn.fd(), &frame);
    }
    out.close_notify(conn.fd());
}
