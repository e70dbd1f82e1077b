//! Handshakes mode: each connection slot connects (non-blocking), completes a TLS handshake
//! when the run has TLS, makes one round trip of one packet, closes, and starts over.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use socket2::{Domain, Protocol, Socket, Type};

use crate::conn::{flush_output, Schedule, Shape, Tally};
use crate::error::LoadError;
use crate::frame::{append_packet_with, EchoChecker};
use crate::tls::{Connector, Session};
use crate::worker::{new_histogram, Shared};

/// Size of the per-thread read buffer.
const READ_BUF: usize = 64 * 1024;
/// Longest poller sleep, so stop requests and stalls are noticed.
const TICK: Duration = Duration::from_millis(100);

/// Where a slot's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `connect` in progress: waiting for writability.
    Connecting,
    /// TLS handshake in progress.
    Handshaking,
    /// The packet is sent (or queued); waiting for its echo.
    Echo,
}

/// One connection of a slot, from connect to close.
#[derive(Debug)]
struct Live {
    stream: TcpStream,
    phase: Phase,
    session: Option<Box<Session>>,
    /// When the connect started.
    started: Instant,
    /// When the TCP connection was established.
    connected: Instant,
    /// What the poller watches for.
    watch: Watch,
}

/// Interest registered with the poller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Writable,
    Readable,
    Both,
}

impl Watch {
    fn event(self, key: usize) -> Event {
        match self {
            Watch::Writable => Event::writable(key),
            Watch::Readable => Event::readable(key),
            Watch::Both => Event::all(key),
        }
    }
}

/// A slot: one connection at a time, one after the other.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u32,
    /// Measured cycles left, in count mode.
    budget: Option<u64>,
    checker: EchoChecker,
    wbuf: Vec<u8>,
    wpos: usize,
    live: Option<Live>,
}

impl Slot {
    /// Slot `id`; `budget` measured cycles in count mode.
    pub(crate) fn new(id: u32, shape: Shape, budget: Option<u64>) -> Self {
        Slot {
            id,
            budget,
            checker: EchoChecker::with_payload(shape.framing, shape.payload, id, shape.size),
            wbuf: Vec::with_capacity(shape.framing.packet_len(shape.size)),
            wpos: 0,
            live: None,
        }
    }

    fn may_start(&self, now: Instant, sched: &Schedule) -> bool {
        if sched.measure_end.is_some_and(|end| now >= end) {
            return false;
        }
        !(now >= sched.measure_start && self.budget == Some(0))
    }
}

/// One handshakes-mode thread.
#[derive(Debug)]
pub(crate) struct CycleWorker {
    pub(crate) addr: SocketAddr,
    pub(crate) slots: Vec<Slot>,
    pub(crate) shape: Shape,
    pub(crate) sched: Schedule,
    pub(crate) io_timeout: Duration,
    pub(crate) connector: Option<Connector>,
}

fn poll_err(source: io::Error) -> LoadError {
    LoadError::Io { conn: None, source }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Starts a non-blocking connect to `addr`.
fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

impl CycleWorker {
    /// Runs cycles until no slot may start another and none is open, or until an error or
    /// a stop request.
    pub(crate) fn run(mut self, shared: &Shared) -> Result<Tally, LoadError> {
        let poller = Poller::new().map_err(poll_err)?;
        let result = self.event_loop(&poller, shared);
        for slot in &mut self.slots {
            if let Some(live) = slot.live.take() {
                let _ = poller.delete(&live.stream);
            }
        }
        result
    }

    fn event_loop(&mut self, poller: &Poller, shared: &Shared) -> Result<Tally, LoadError> {
        let timed = self.connector.as_ref().map(|_| new_histogram());
        let mut tally = Tally::new(new_histogram(), timed);
        let capacity =
            NonZeroUsize::new(self.slots.len().clamp(1, 1024)).unwrap_or(NonZeroUsize::MIN);
        let mut events = Events::with_capacity(capacity);
        let mut rbuf = vec![0u8; READ_BUF];
        let now = Instant::now();
        let mut open = 0usize;
        for key in 0..self.slots.len() {
            open += usize::from(self.start(poller, key, now)?);
        }
        let mut last_progress = now;
        let mut published = 0u64;
        while open > 0 {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            events.clear();
            poller.wait(&mut events, Some(TICK)).map_err(poll_err)?;
            let now = Instant::now();
            for ev in events.iter() {
                if ev.key >= self.slots.len() || self.slots[ev.key].live.is_none() {
                    continue;
                }
                if self.step(poller, ev.key, now, &mut rbuf, &mut tally)? {
                    last_progress = now;
                    self.close(poller, ev.key)?;
                    open -= 1;
                    open += usize::from(self.start(poller, ev.key, now)?);
                }
            }
            if tally.all_packets > published {
                shared
                    .packets
                    .fetch_add(tally.all_packets - published, Ordering::Relaxed);
                published = tally.all_packets;
            }
            if open > 0 && now.saturating_duration_since(last_progress) > self.io_timeout {
                return Err(LoadError::Stalled {
                    timeout: self.io_timeout,
                    outstanding: open as u64,
                });
            }
        }
        Ok(tally)
    }

    /// Opens the next connection of slot `key` if it may; whether it did.
    fn start(&mut self, poller: &Poller, key: usize, now: Instant) -> Result<bool, LoadError> {
        let (addr, sched) = (self.addr, self.sched);
        let slot = &mut self.slots[key];
        if !slot.may_start(now, &sched) {
            return Ok(false);
        }
        if now >= sched.measure_start {
            if let Some(b) = slot.budget.as_mut() {
                *b -= 1;
            }
        }
        let stream = start_connect(addr).map_err(|source| LoadError::Connect {
            addr,
            conn: slot.id,
            attempts: 1,
            source,
        })?;
        // SAFETY: the stream is deleted from the poller (in `close`, or in `run` on the way
        // out) before it is dropped.
        unsafe { poller.add_with_mode(&stream, Event::writable(key), PollMode::Level) }
            .map_err(poll_err)?;
        slot.live = Some(Live {
            stream,
            phase: Phase::Connecting,
            session: None,
            started: now,
            connected: now,
            watch: Watch::Writable,
        });
        Ok(true)
    }

    /// Closes slot `key`'s connection, with close_notify over TLS.
    fn close(&mut self, poller: &Poller, key: usize) -> Result<(), LoadError> {
        let slot = &mut self.slots[key];
        if let Some(mut live) = slot.live.take() {
            if let Some(session) = live.session.as_mut() {
                session.close(&live.stream);
            }
            poller.delete(&live.stream).map_err(poll_err)?;
        }
        slot.wbuf.clear();
        slot.wpos = 0;
        Ok(())
    }

    /// Moves slot `key` on after an event; `true` once its echo is complete.
    fn step(
        &mut self,
        poller: &Poller,
        key: usize,
        now: Instant,
        rbuf: &mut [u8],
        tally: &mut Tally,
    ) -> Result<bool, LoadError> {
        let (shape, sched) = (self.shape, self.sched);
        let slot = &mut self.slots[key];
        let id = slot.id;
        let Some(live) = slot.live.as_mut() else {
            return Ok(false);
        };
        let measured = live.started >= sched.measure_start;
        if live.phase == Phase::Connecting {
            let addr = self.addr;
            let failed = |source| LoadError::Connect {
                addr,
                conn: id,
                attempts: 1,
                source,
            };
            if let Some(e) = live.stream.take_error().map_err(failed)? {
                return Err(failed(e));
            }
            match live.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) => return Err(failed(e)),
            }
            live.connected = now;
            live.phase = match &self.connector {
                Some(connector) => {
                    live.session = Some(Box::new(connector.session(id)?));
                    Phase::Handshaking
                }
                None => Phase::Echo,
            };
            if live.phase == Phase::Echo {
                queue_packet(slot, shape);
            }
        } else if live.phase == Phase::Handshaking {
            let Some(session) = live.session.as_mut() else {
                return Ok(false);
            };
            let got = session.receive(&live.stream, rbuf, id, |_| {
                Err(LoadError::Unsolicited { conn: id })
            })?;
            if got.eof {
                return Err(LoadError::Tls {
                    conn: Some(id),
                    reason: "the server closed the connection during the handshake".into(),
                });
            }
            if !session.is_handshaking() {
                if measured {
                    if let Some(h) = tally.handshakes.as_mut() {
                        h.saturating_record(nanos(now.saturating_duration_since(live.connected)));
                    }
                }
                live.phase = Phase::Echo;
                queue_packet(slot, shape);
            }
        } else if echoed(slot, rbuf)? {
            let Some(live) = slot.live.as_ref() else {
                return Ok(false);
            };
            tally.all_packets += 1;
            if measured {
                let cycle = now.saturating_duration_since(live.started);
                tally.hist.saturating_record(nanos(cycle));
                tally.packets += 1;
                tally.bytes += shape.framing.packet_len(shape.size) as u64;
                tally.last_recv = Some(now);
            }
            return Ok(true);
        }
        let Some(live) = slot.live.as_mut() else {
            return Ok(false);
        };
        let pending = flush_output(
            &live.stream,
            live.session.as_deref_mut(),
            &mut slot.wbuf,
            &mut slot.wpos,
            id,
        )?;
        let watch = match (live.phase, pending) {
            (Phase::Connecting, _) => Watch::Writable,
            (_, true) => Watch::Both,
            (_, false) => Watch::Readable,
        };
        if watch != live.watch {
            poller
                .modify_with_mode(&live.stream, watch.event(key), PollMode::Level)
                .map_err(|source| LoadError::Io {
                    conn: Some(id),
                    source,
                })?;
            live.watch = watch;
        }
        Ok(false)
    }
}

/// Queues the slot's next packet.
fn queue_packet(slot: &mut Slot, shape: Shape) {
    let seq = slot.checker.next_seq();
    append_packet_with(
        shape.framing,
        shape.payload,
        slot.id,
        seq,
        shape.size,
        &mut slot.wbuf,
    );
}

/// Reads what the slot's connection holds and checks it; `true` once the packet is
/// echoed whole.
fn echoed(slot: &mut Slot, rbuf: &mut [u8]) -> Result<bool, LoadError> {
    let id = slot.id;
    let Some(live) = slot.live.as_mut() else {
        return Ok(false);
    };
    let checker = &mut slot.checker;
    let expected = checker.next_seq();
    let mut done = false;
    let mut check = |data: &[u8]| -> Result<(), LoadError> {
        if done {
            return Err(LoadError::Unsolicited { conn: id });
        }
        let fed = checker.feed(data)?;
        if fed.completed.is_some() {
            done = true;
            if fed.consumed < data.len() {
                return Err(LoadError::Unsolicited { conn: id });
            }
        }
        Ok(())
    };
    let eof = match live.session.as_mut() {
        Some(session) => session.receive(&live.stream, rbuf, id, &mut check)?.eof,
        None => loop {
            match (&live.stream).read(rbuf) {
                Ok(0) => break true,
                Ok(n) => {
                    check(&rbuf[..n])?;
                    break false;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(LoadError::Io {
                        conn: Some(id),
                        source: e,
                    })
                }
            }
        },
    };
    if !done && eof {
        return Err(LoadError::Closed {
            conn: id,
            outstanding: 1,
        });
    }
    debug_assert!(!done || checker.next_seq() == expected + 1);
    Ok(done)
}
