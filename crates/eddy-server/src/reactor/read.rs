//! Reading: a readable socket's bytes, through its transport, cut into packets by its
//! listener's protocol, then handed to `deliver`.

use std::{io, sync::atomic::Ordering};

use bytes::BytesMut;

use super::{
    local::{pause, LocalConn},
    Reactor,
};
use crate::{
    config::READ_CHUNK,
    conn::{inflight, CloseReason, Transport},
    tls::{self, TlsEvents, READ_OVERSHOOT, RECORD_PLAINTEXT},
};

/// Scratch blocks are this big; reads land in them and packets are cut from them without a copy.
const SCRATCH_BLOCK: usize = 256 * 1024;

/// The most reads one readiness event makes of a plain connection whose reads fill their chunk
/// (a stream of large packets): see `on_readable`.
const MAX_READS: usize = 4;

impl Reactor {
    /// Read a readable connection, cut its packets and hand them over.
    ///
    /// A plain read that fills its chunk likely left more in the socket, and the packet cut at
    /// its end in two: then the partial packet, if the next read can complete it, stays in
    /// the scratch block and the connection is read again at once, behind it (up to
    /// [`MAX_READS`] reads, and not once the handler paused or closed the connection). Each
    /// read's packets are then whole and handed over as one batch, where reading just the
    /// partial packet's rest took a second read, a second batch of one packet, and a copy.
    pub(super) fn on_readable(&mut self, key: usize, hangup: bool) {
        let mut reads = 1;
        while self.read_once(key, hangup, reads < MAX_READS) {
            reads += 1;
        }
        if !self.scratch.is_empty() {
            // A partial packet left in the scratch block for a read that did not come (or
            // found nothing): it moves to a buffer of its own.
            self.own_partial(key);
        }
    }

    /// One read of `on_readable`; whether to read again (only if `again` allows it).
    fn read_once(&mut self, key: usize, hangup: bool, again: bool) -> bool {
        let Some(lc) = self.conns.get_mut(key) else {
            return false;
        };
        if !lc.reads() {
            if hangup {
                // The peer is gone (reset, or both directions shut) while we were not
                // reading: nothing more can be answered. Close now, or the level-triggered
                // hang-up would wake this loop again and again.
                self.finalize(key, CloseReason::PeerReset);
            }
            return false;
        }
        if self.shared.config.output_backpressure
            && !lc.tls_handshaking
            && lc.conn.high_crossed.load(Ordering::Acquire)
        {
            self.check_output(key);
            return false;
        }
        if self.queued_too_much(key) {
            self.sync_interest(key);
            return false;
        }
        let lc = &self.conns[key];
        let from_scratch = lc.rbuf.is_empty();
        let framed = lc.protocol.is_framed();
        // Only a plain read from the scratch block can fill its chunk and be followed.
        let again = again && framed && from_scratch && lc.conn.transport == Transport::Plain;
        let mut more = false;
        let mut tls = TlsEvents::default();
        let result = self.read_some(key, from_scratch, &mut tls);
        if let Some(failure) = result.as_ref().err().and_then(tls::failure_of) {
            self.tls_failed(key, failure.clone(), from_scratch);
            return false;
        }
        // A TLS session's handshake output, its end, its `on_connect`: rare, off the plain path.
        let cut = tls == TlsEvents::default() || self.tls_progress(key, tls, from_scratch);
        match result {
            // The peer has sent everything: answer what it sent, flush, then close (a client
            // that half-closes after its request still gets the whole reply).
            Ok(0) => self.close_after_drain(key, CloseReason::PeerClosed),
            Ok(n) => {
                if let Some(lc) = self.conns.get(key) {
                    lc.conn
                        .last_recv
                        .store(self.shared.now_ms(), Ordering::Relaxed);
                }
                self.shared.stats.reactors[self.id]
                    .received_bytes
                    .add(n as u64);
                if !cut {
                    // Gone, or held behind `on_connect` (see `tls_progress`).
                } else if framed {
                    more = again && n == READ_CHUNK;
                    more &= self.cut_packets(key, from_scratch, more);
                    // The handler, inline in reactor mode, may have paused or closed it.
                    more &= lc_open(&self.conns, key);
                } else {
                    self.ws_process(key, from_scratch);
                }
                self.account_buffer(key);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => {
                // Nothing a failed read took may stay for the next connection read there.
                if from_scratch {
                    self.scratch.clear();
                }
                self.finalize(key, CloseReason::of_io(&err))
            }
        }
        if let Some(clean) = tls.ended {
            self.tls_ended(key, clean);
        }
        more
    }

    /// Move what the scratch block holds (a partial packet `cut_packets` left there) to
    /// connection `key`'s own buffer (see `partial_room`); or drop it if the
    /// connection is gone.
    fn own_partial(&mut self, key: usize) {
        let max = self.shared.config.package_max_length;
        if let Some(lc) = self.conns.get_mut(key) {
            let len = self.scratch.len();
            let size = partial_room(lc.expect, overshoot(lc), len, len, max);
            lc.rbuf = own_copy(&self.scratch, size);
        }
        self.scratch.clear();
        self.account_buffer(key);
    }

    /// Read connection `key`'s socket: into the scratch block when no partial packet is
    /// held, else behind the partial packet.
    fn read_some(
        &mut self,
        key: usize,
        from_scratch: bool,
        tls: &mut TlsEvents,
    ) -> io::Result<usize> {
        let lc = &mut self.conns[key];
        let conn = &lc.conn;
        if from_scratch {
            // Room for a chunk, and for the record a TLS read may overshoot it by.
            if self.scratch.capacity() - self.scratch.len() < READ_CHUNK + READ_OVERSHOOT {
                self.scratch.reserve(SCRATCH_BLOCK);
            }
            return conn.read(&mut self.scratch, READ_CHUNK, tls);
        }
        // A read takes just the rest of the packet, so the next starts in the scratch block
        // (a TLS read hands over whole records, so the packets that come in the last one with
        // the rest are cut here too).
        let (len, cap) = (lc.rbuf.len(), lc.rbuf.capacity());
        let want = next_want(lc.expect, len);
        if cap - len < want + overshoot(lc) {
            // Grown here, not by the read (`BytesMut::reserve` doubles past any limit).
            let max = self.shared.config.package_max_length;
            let size = partial_room(lc.expect, overshoot(lc), len, cap, max);
            lc.rbuf = own_copy(&lc.rbuf, size);
        }
        lc.conn.read(&mut lc.rbuf, want, tls)
    }

    /// Whether a connection's packets waiting for workers weigh `max_queued_bytes` or more:
    /// then it is paused until the worker that takes the weight to zero says so.
    fn queued_too_much(&mut self, key: usize) -> bool {
        let max_queued = self.shared.config.max_queued_bytes as u64;
        let lc = &mut self.conns[key];
        if lc.conn.inflight.load(Ordering::Acquire) & inflight::WEIGHT < max_queued {
            return false;
        }
        let before = lc
            .conn
            .inflight
            .fetch_or(inflight::NOTIFY_IDLE, Ordering::AcqRel);
        if before & inflight::WEIGHT != 0 {
            lc.paused |= pause::QUEUED;
            return true;
        }
        // The workers caught up in between: nobody needs telling.
        lc.conn
            .inflight
            .fetch_and(!inflight::NOTIFY_IDLE, Ordering::AcqRel);
        false
    }

    /// Keep `Stats::recv_buffer_bytes` equal to what this connection's partial packet holds.
    fn account_buffer(&mut self, key: usize) {
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let now = lc.rbuf.capacity();
        if now != lc.held {
            let counter = &self.shared.stats.reactors[self.id].buffered;
            counter.add(now as u64);
            counter.sub(lc.held as u64);
            lc.held = now;
        }
    }

    /// Cut every whole packet from the bytes just read and dispatch them; keep the rest. With
    /// `leave`, a partial packet read into the scratch block stays there for the read that
    /// follows at once if the next read can complete it. Returns whether it stayed.
    pub(super) fn cut_packets(&mut self, key: usize, from_scratch: bool, leave: bool) -> bool {
        let max = self.shared.config.package_max_length;
        let lc = &mut self.conns[key];
        let protocol = &self.protocols[lc.conn.listener];
        let over = overshoot(lc);
        let buf = if from_scratch {
            &mut self.scratch
        } else {
            &mut lc.rbuf
        };
        let mut lens = std::mem::take(&mut self.lens);
        let cut = lc.protocol.cut(protocol, buf, max, &mut lens);
        lc.expect = cut.expect;
        let (whole, failure) = (cut.whole, cut.failure);
        // Every whole packet, back to back, shared with no copy.
        let packets = buf.split_to(whole).freeze();
        let size = partial_room(lc.expect, over, buf.len(), buf.len(), max);
        // A packet of known size still partial in a buffer larger than it can ever use (one
        // grown while its length was not known yet) moves to one of `partial_room`'s size,
        // so a slow peer does not pin the rest. Not a buffer `read_some` grew for it: that is
        // never past the packet's room, and shrinking it back would copy it at every read.
        // (Of a packet whose size is unknown, a line, the room stays too.)
        let oversized = lc.expect.is_some()
            && buf.capacity() > most_room(lc.expect, over, max) + RECORD_PLAINTEXT;
        // Only a packet the next read can complete stays: a larger one is read straight into a
        // buffer of its own, and the cut of a packet of unknown size (a line) is not known.
        let completes = lc
            .expect
            .is_some_and(|total| total.saturating_sub(buf.len()) <= READ_CHUNK);
        let leave = leave && from_scratch && failure.is_none() && completes;
        if leave {
            // The partial packet stays where it is, and the next read lands behind it.
        } else if failure.is_none() && !buf.is_empty() && (from_scratch || whole > 0 || oversized) {
            // Keep the partial packet in a buffer of its own (see `partial_room`), so it does
            // not pin a shared scratch block or a large old buffer.
            let own = own_copy(buf, size);
            buf.clear();
            lc.rbuf = own;
        } else if buf.is_empty() && !from_scratch {
            lc.rbuf = BytesMut::new();
        }
        if from_scratch && !leave {
            self.scratch.clear();
        }
        self.deliver_packets(key, packets, &lens);
        lens.clear();
        self.lens = lens;
        let Some(err) = failure else {
            return leave;
        };
        if let Some(lc) = self.conns.get(key) {
            let conn = &lc.conn;
            tracing::warn!(
                conn = conn.id.as_u64(),
                peer = %conn.peer,
                "closing connection: {err}"
            );
        }
        // The packets before the bad one are answered and flushed; nothing after it is read,
        // nor kept while they are.
        if let Some(lc) = self.conns.get_mut(key).filter(|_| !from_scratch) {
            lc.rbuf = BytesMut::new();
        }
        self.account_buffer(key);
        self.close_after_drain(key, err);
        false
    }
}

/// How much the next read of a partial packet of `len` bytes asks for: the rest of the
/// packet (so the next one starts in the scratch block), at most a chunk.
fn next_want(expect: Option<usize>, len: usize) -> usize {
    expect
        .map_or(READ_CHUNK, |total| total.saturating_sub(len))
        .clamp(1, READ_CHUNK)
}

/// What a read may bring past what it asked for: a TLS read hands over whole records.
fn overshoot(lc: &LocalConn) -> usize {
    match lc.conn.transport {
        Transport::Tls => READ_OVERSHOOT,
        Transport::Plain => 0,
    }
}

/// The most room a partial packet (of `expect` bytes if known, read with `overshoot`) can
/// use: the packet, or `package_max_length` and a read when its length is not known, plus
/// a read's overshoot.
fn most_room(expect: Option<usize>, overshoot: usize, max: usize) -> usize {
    expect.map_or(max + READ_CHUNK, |total| total) + overshoot
}

/// The capacity for the own buffer of a partial packet (of `expect` bytes if known, read
/// with `overshoot`) holding `len` bytes in `cap`: twice that, or what the next read needs
/// if that is more, and never more than the packet can use ([`most_room`]).
///
/// It grows with the bytes that came, not with what a header announced: a 4-byte header
/// announcing a packet of 1 GiB reserves a chunk, not the GiB (it used to reserve all of
/// it, for every connection that sent one). Doubling keeps a large packet's copies few
/// (each byte is copied about twice in all: `cut_packets` never shrinks a buffer grown here); the cap keeps a line near the limit from
/// doubling past it, and a TLS read from doubling the buffer of a packet near its end.
fn partial_room(
    expect: Option<usize>,
    overshoot: usize,
    len: usize,
    cap: usize,
    max: usize,
) -> usize {
    let need = len + next_want(expect, len) + overshoot;
    let most = most_room(expect, overshoot, max);
    cap.max(len).saturating_mul(2).min(most).max(need)
}

/// A partial packet's bytes in a buffer of their own, with room for `size`.
fn own_copy(partial: &[u8], size: usize) -> BytesMut {
    let mut own = BytesMut::with_capacity(size);
    own.extend_from_slice(partial);
    own
}

/// Whether connection `key` is still there and neither paused nor closing by the application's
/// request (which the reactor hears of only after the event that asked).
fn lc_open(conns: &slab::Slab<super::local::LocalConn>, key: usize) -> bool {
    conns.get(key).is_some_and(|lc| {
        !lc.conn.user_paused.load(Ordering::Acquire) && !lc.conn.closing.load(Ordering::Acquire)
    })
}
