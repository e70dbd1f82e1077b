//! UDP mode ([`Framing::Udp`]): every "connection" is a UDP socket bound
//! to an ephemeral loopback port and `connect`ed to the target.
//!
//! Each datagram is exactly `size` bytes: an 8-byte big-endian sequence
//! number, then the body of [`fill_body`](crate::frame::fill_body), so an
//! echo is matched to its datagram whatever the order of arrival, and
//! checked byte for byte. Up to `depth` datagrams are in flight per socket.
//! A datagram not echoed within [`LoadConfig::udp_timeout`] is counted as
//! lost (when it belongs to the measured phase) and a new one is sent in
//! its place, so a lossy run never stalls; a late echo of a datagram
//! already given up on is ignored.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};

use crate::config::LoadConfig;
use crate::conn::{Schedule, Shape, Tally};
use crate::error::LoadError;
use crate::frame::{write_packet_with, Framing, Mismatch, Payload, MAX_DATAGRAM, UDP_SEQ_LEN};
use crate::worker::{new_histogram, Shared};

/// Longest poller sleep, so stop requests, losses and stalls are noticed.
const TICK: Duration = Duration::from_millis(20);
/// Datagrams read per readiness event before other sockets get a turn.
const RECV_BATCH: usize = 64;

/// Binds `count` non-blocking UDP sockets on the loopback address of
/// `addr`'s family, each connected to `addr`.
pub(crate) fn open_all(addr: SocketAddr, count: usize) -> Result<Vec<UdpSocket>, LoadError> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    (0..count)
        .map(|i| {
            let conn = i as u32;
            let io = |source| LoadError::Io {
                conn: Some(conn),
                source,
            };
            let socket = UdpSocket::bind(local).map_err(io)?;
            socket.connect(addr).map_err(io)?;
            socket.set_nonblocking(true).map_err(io)?;
            Ok(socket)
        })
        .collect()
}

/// One connected UDP socket and its datagrams in flight.
#[derive(Debug)]
pub(crate) struct UdpConn {
    socket: UdpSocket,
    id: u32,
    payload: Payload,
    next_seq: u64,
    /// `(seq, sent_at)` of every datagram in flight (at most `depth`).
    inflight: Vec<(u64, Instant)>,
    /// Scratch: the datagram being sent, or the echo expected.
    buf: Vec<u8>,
    /// Measured sends left, in count mode.
    budget: Option<u64>,
}

impl UdpConn {
    pub(crate) fn new(socket: UdpSocket, id: u32, shape: Shape, budget: Option<u64>) -> Self {
        UdpConn {
            socket,
            id,
            payload: shape.payload,
            next_seq: 0,
            inflight: Vec::with_capacity(shape.depth),
            buf: vec![0; shape.size],
            budget,
        }
    }

    fn io_err(&self, source: io::Error) -> LoadError {
        LoadError::Io {
            conn: Some(self.id),
            source,
        }
    }

    fn may_send(&self, now: Instant, sched: &Schedule) -> bool {
        if sched.measure_end.is_some_and(|end| now >= end) {
            return false;
        }
        !(now >= sched.measure_start && self.budget == Some(0))
    }

    /// Sends datagrams until `depth` are in flight or sending must stop.
    /// A datagram the kernel refuses (a full buffer, an ICMP error from an
    /// earlier one) counts as sent: it will time out as lost.
    fn fill(&mut self, now: Instant, sched: &Schedule, shape: Shape) -> Result<(), LoadError> {
        while self.inflight.len() < shape.depth && self.may_send(now, sched) {
            let seq = self.next_seq;
            write_packet_with(Framing::Udp, shape.payload, self.id, seq, &mut self.buf);
            loop {
                match self.socket.send(&self.buf) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if droppable(&e) => break,
                    Err(e) => return Err(self.io_err(e)),
                }
            }
            self.inflight.push((seq, now));
            if now >= sched.measure_start {
                if let Some(b) = self.budget.as_mut() {
                    *b -= 1;
                }
            }
            self.next_seq += 1;
        }
        Ok(())
    }

    /// Reads up to [`RECV_BATCH`] datagrams, verifies them and records the
    /// echoed ones in `tally`. Returns whether any datagram was echoed.
    fn recv(
        &mut self,
        rbuf: &mut [u8],
        now: Instant,
        sched: &Schedule,
        tally: &mut Tally,
    ) -> Result<bool, LoadError> {
        let mut progress = false;
        for _ in 0..RECV_BATCH {
            let n = match self.socket.recv(rbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier datagram: that one is lost.
                Err(e) if droppable(&e) => continue,
                Err(e) => return Err(self.io_err(e)),
            };
            let data = &rbuf[..n];
            if n != self.buf.len() {
                return Err(LoadError::Protocol {
                    conn: self.id,
                    reason: format!(
                        "a UDP echo of {n} bytes answers {}-byte datagrams",
                        self.buf.len()
                    ),
                });
            }
            let mut seq_bytes = [0u8; UDP_SEQ_LEN];
            seq_bytes.copy_from_slice(&data[..UDP_SEQ_LEN]);
            let seq = u64::from_be_bytes(seq_bytes);
            let Some(slot) = self.inflight.iter().position(|&(s, _)| s == seq) else {
                if seq < self.next_seq {
                    continue; // late: already counted as lost, or a duplicate
                }
                return Err(LoadError::Unsolicited { conn: self.id });
            };
            write_packet_with(Framing::Udp, self.payload, self.id, seq, &mut self.buf);
            if let Some(i) = self.buf.iter().zip(data).position(|(a, b)| a != b) {
                return Err(LoadError::Mismatch(Mismatch {
                    conn: self.id,
                    seq,
                    offset: i,
                    packet_len: n,
                    expected: self.buf[i],
                    got: data[i],
                }));
            }
            let (_, sent) = self.inflight.swap_remove(slot);
            progress = true;
            tally.all_packets += 1;
            if sent >= sched.measure_start {
                let nanos = now.saturating_duration_since(sent).as_nanos();
                tally
                    .hist
                    .saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX));
                tally.packets += 1;
                tally.bytes += n as u64;
                tally.last_recv = Some(now);
            }
        }
        Ok(progress)
    }

    /// Gives up on datagrams older than `timeout`; measured ones count as
    /// lost and, in count mode, are owed again.
    fn expire(&mut self, now: Instant, timeout: Duration, sched: &Schedule, tally: &mut Tally) {
        let mut i = 0;
        while i < self.inflight.len() {
            let (_, sent) = self.inflight[i];
            if now.saturating_duration_since(sent) < timeout {
                i += 1;
                continue;
            }
            self.inflight.swap_remove(i);
            if sent >= sched.measure_start {
                tally.lost += 1;
                if let Some(b) = self.budget.as_mut() {
                    *b += 1;
                }
            }
        }
    }
}

/// A send or receive error that only means a datagram was lost: a full
/// buffer, or an ICMP error (port unreachable) for an earlier datagram.
fn droppable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
    ) || e.raw_os_error() == Some(105) // ENOBUFS on Linux
}

/// One UDP load thread: a level-triggered poller over a subset of sockets.
#[derive(Debug)]
pub(crate) struct UdpWorker {
    pub(crate) conns: Vec<UdpConn>,
    pub(crate) shape: Shape,
    pub(crate) sched: Schedule,
    pub(crate) io_timeout: Duration,
    pub(crate) udp_timeout: Duration,
}

fn poll_err(source: io::Error) -> LoadError {
    LoadError::Io { conn: None, source }
}

impl UdpWorker {
    /// A worker for `conns` with the timeouts of `config`.
    pub(crate) fn new(
        conns: Vec<UdpConn>,
        shape: Shape,
        sched: Schedule,
        config: &LoadConfig,
    ) -> Self {
        UdpWorker {
            conns,
            shape,
            sched,
            io_timeout: config.io_timeout,
            udp_timeout: config.udp_timeout,
        }
    }

    /// Runs until no socket sends any more and nothing is in flight (echoed
    /// or given up on), or until an error or a stop request.
    pub(crate) fn run(mut self, shared: &Shared) -> Result<Tally, LoadError> {
        let poller = Poller::new().map_err(poll_err)?;
        let result = self
            .register(&poller)
            .and_then(|()| self.event_loop(&poller, shared));
        for c in &self.conns {
            let _ = poller.delete(&c.socket);
        }
        result
    }

    fn register(&self, poller: &Poller) -> Result<(), LoadError> {
        for (key, c) in self.conns.iter().enumerate() {
            // SAFETY: every socket is deleted from the poller in `run`
            // before `self.conns` (and thus the socket) is dropped.
            unsafe { poller.add_with_mode(&c.socket, Event::readable(key), PollMode::Level) }
                .map_err(poll_err)?;
        }
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.conns.iter().map(|c| c.inflight.len()).sum()
    }

    fn event_loop(&mut self, poller: &Poller, shared: &Shared) -> Result<Tally, LoadError> {
        let mut tally = Tally::new(new_histogram(), None);
        let capacity =
            NonZeroUsize::new(self.conns.len().clamp(1, 1024)).unwrap_or(NonZeroUsize::MIN);
        let mut events = Events::with_capacity(capacity);
        let mut rbuf = vec![0u8; MAX_DATAGRAM + 1];
        let (shape, sched) = (self.shape, self.sched);
        let check_every = (self.udp_timeout / 4).clamp(Duration::from_millis(1), TICK);

        let now = Instant::now();
        for c in &mut self.conns {
            c.fill(now, &sched, shape)?;
        }
        let mut last_progress = now;
        let mut next_check = now + check_every;
        let mut published = 0u64;

        while self.in_flight() > 0 {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            events.clear();
            let wait = next_check.saturating_duration_since(Instant::now());
            poller.wait(&mut events, Some(wait)).map_err(poll_err)?;
            let now = Instant::now();
            for ev in events.iter() {
                let Some(c) = self.conns.get_mut(ev.key) else {
                    continue;
                };
                if c.recv(&mut rbuf, now, &sched, &mut tally)? {
                    last_progress = now;
                }
                c.fill(now, &sched, shape)?;
            }
            if now >= next_check {
                for c in &mut self.conns {
                    c.expire(now, self.udp_timeout, &sched, &mut tally);
                    c.fill(now, &sched, shape)?;
                }
                next_check = now + check_every;
            }
            if tally.all_packets > published {
                shared
                    .packets
                    .fetch_add(tally.all_packets - published, Ordering::Relaxed);
                published = tally.all_packets;
            }
            if now.saturating_duration_since(last_progress) > self.io_timeout {
                return Err(LoadError::Stalled {
                    timeout: self.io_timeout,
                    outstanding: self.in_flight() as u64,
                });
            }
        }
        Ok(tally)
    }
}
