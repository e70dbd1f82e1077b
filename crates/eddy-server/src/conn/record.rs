//! The connection record every thread may hold: identity, peer, counters other threads read,
//! and the output buffer behind a short per-connection lock.
//!
//! The reactor that owns the connection keeps the reading side (buffer, protocol state,
//! poller interest) to itself; see `reactor::local`. The send path that writes through the
//! record lives a layer up, in `shared::send`, as it needs the reactors' mailboxes.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize},
        OnceLock,
    },
    time::SystemTime,
};

use bytes::BytesMut;
use parking_lot::Mutex;

use super::{
    close::CloseReason,
    id::{ConnId, Uid},
    output::{OutState, Output},
    transport::Transport,
};
use crate::{
    net::{PeerAddr, Stream},
    sys,
    tls::{TlsEvents, TlsInfo},
};

/// Bits of [`Conn::inflight`].
///
/// # Atomic ordering
/// The word holds the weight of the events dispatched to workers and not yet finished (the
/// packet bytes, and at least 1 per event, so zero means nothing is in flight: Swoole's
/// `recv_queued_bytes`) plus three flags. Every change is a read-modify-write with `AcqRel`, so
/// whoever sees the weight reach zero also sees everything the finished handlers did.
pub(crate) mod inflight {
    /// Mask of the weight.
    pub(crate) const WEIGHT: u64 = (1 << 56) - 1;
    /// The reactor closed the connection; whoever takes the weight to zero runs `on_close`.
    pub(crate) const CLOSED: u64 = 1 << 62;
    /// The reactor waits for the weight to reach zero (reading paused at `max_queued_bytes`,
    /// or a graceful shutdown): tell it.
    pub(crate) const NOTIFY_IDLE: u64 = 1 << 61;
    /// The reactor is closing the connection (it reads no more: the peer's FIN, a bad
    /// packet, a protocol close, the application's `close`, the shutdown) and waits for its
    /// replies to flush. Set once, never cleared; the heartbeat reads it.
    pub(crate) const DRAINING: u64 = 1 << 60;
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
    /// The socket, owned so that the descriptor closes when the last holder drops the
    /// record (its number cannot be reused while anyone may still write to it).
    stream: Stream,
    /// How bytes reach the socket: plain, or through the TLS session in `out`.
    pub(crate) transport: Transport,
    /// A sender pushed the output buffer to the high watermark and the reactor has not yet
    /// reported the drain. Read by the reactor before every read of this socket.
    pub(crate) high_crossed: AtomicBool,
    /// The server asked to close: input not yet handled is dropped, sends fail.
    pub(crate) closing: AtomicBool,
    pub(crate) uid_bound: AtomicBool,
    /// Index of the listener that accepted it.
    pub(crate) listener: usize,
    pub(crate) out: Mutex<Output>,
    // Cold: set up once, or read by requests about the connection.
    /// When a worker last took one of its events (milliseconds since the epoch; 0: never).
    /// Written by the worker, read only by `client_info`.
    pub(crate) last_dispatch: AtomicU64,
    /// Exempt from the heartbeat (`protect`).
    pub(crate) protected: AtomicBool,
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
    pub(crate) close_reason: OnceLock<Box<CloseReason>>,
    /// `on_connect` was dispatched (at accept; on a TLS listener, once the handshake is
    /// done): `on_close` runs only for a connection the handler heard of.
    pub(crate) announced: AtomicBool,
    /// What its TLS handshake negotiated, once it finished.
    pub(crate) tls_info: OnceLock<Box<TlsInfo>>,
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
            stream,
            transport: Transport::Plain,
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
            announced: AtomicBool::new(false),
            tls_info: OnceLock::new(),
            out: Mutex::new(Output::default()),
        }
    }

    /// The uid slot, locked: `UidIndex::bind` and `GroupIndex::join` hold it across their
    /// index update.
    pub(crate) fn uid_slot(&self) -> parking_lot::MutexGuard<'_, UidSlot> {
        self.uid.lock()
    }

    /// Read at most `max` bytes of the peer's plaintext into `buf`: 0 at the end of a plain
    /// stream; a TLS session reports its handshake, its end and what it queued in `events`.
    #[inline]
    pub(crate) fn read(
        &self,
        buf: &mut BytesMut,
        max: usize,
        events: &mut TlsEvents,
    ) -> io::Result<usize> {
        match self.transport {
            Transport::Plain => sys::read_into(self.fd(), buf, max),
            Transport::Tls => self.out.lock().tls_read(self.fd(), buf, max, events),
        }
    }

    /// The socket, borrowed for a system call.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// The descriptor's number, for `client_info`.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub(crate) fn uid(&self) -> Option<Uid> {
        self.uid.lock().uid.clone()
    }

    /// Whether the socket is still open for sends.
    pub(crate) fn is_open(&self) -> bool {
        self.out.lock().state == OutState::Open
    }
}

/// The uid a connection is bound to, the groups it joined, and whether it may still bind
/// or join.
#[derive(Debug, Default)]
pub(crate) struct UidSlot {
    pub(crate) uid: Option<Uid>,
    /// The groups it is in (`join_group`), each once (`None`: none; boxed, so an idle
    /// connection in no group pays one pointer, not a vector's three words).
    #[allow(clippy::box_collection)]
    pub(crate) groups: Option<Box<Vec<std::sync::Arc<str>>>>,
    /// Closed: the uid and group indexes no longer take this connection.
    pub(crate) released: bool,
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::{Conn, Output};

    #[test]
    fn the_fields_every_packet_touches_share_two_cache_lines() {
        let out_end = offset_of!(Conn, out) + size_of::<parking_lot::Mutex<Output>>();
        assert!(out_end <= 128, "the output buffer ends at byte {out_end}");
        assert!(offset_of!(Conn, stream) < 128 && offset_of!(Conn, closing) < 128);
    }

    #[test]
    fn a_record_stays_small() {
        // Idle connections cost their record: the cold parts are pointers, not inline.
        assert!(
            size_of::<Conn>() <= 304,
            "a record is {} bytes",
            size_of::<Conn>()
        );
    }
}
