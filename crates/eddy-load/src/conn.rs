//! State of one client connection: queued output, in-flight timestamps and
//! the echo checker.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::error::LoadError;
use crate::frame::{append_packet_with, fill_body, EchoChecker, Fed, Framing, Payload};
use crate::ws::{self, DeflateParams, Deflater, FrameChecker, Rng};

/// Phase boundaries shared by all threads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Packets sent at or after this instant are measured.
    pub(crate) measure_start: Instant,
    /// No packet is sent at or after this instant.
    pub(crate) measure_end: Option<Instant>,
}

/// Traffic shape shared by all connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) framing: Framing,
    pub(crate) payload: Payload,
    pub(crate) size: usize,
    pub(crate) depth: usize,
}

/// Measurements gathered by one thread.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Latency of measured packets, in nanoseconds.
    pub(crate) hist: Histogram<u64>,
    /// Measured packets echoed.
    pub(crate) packets: u64,
    /// Measured bytes echoed (framing included).
    pub(crate) bytes: u64,
    /// When the last measured packet was echoed.
    pub(crate) last_recv: Option<Instant>,
    /// All packets echoed, warm-up included (for progress).
    pub(crate) all_packets: u64,
    /// UDP only: measured datagrams given up on (never echoed in time).
    pub(crate) lost: u64,
}

/// Outcome of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// Bytes arrived and were verified; this many packets completed.
    Data(u64),
    /// Nothing to read right now.
    WouldBlock,
    /// Orderly close with nothing outstanding.
    Eof,
}

/// How a connection writes its packets.
#[derive(Debug)]
enum Sender {
    /// The packet as [`append_packet_with`] writes it.
    Plain,
    /// A client WebSocket frame: masked with a fresh key, compressed first
    /// when permessage-deflate was agreed.
    WebSocket {
        rng: Rng,
        deflate: Option<Box<Compressing>>,
    },
}

/// The compressor of one connection and its reused buffers.
#[derive(Debug)]
struct Compressing {
    deflater: Deflater,
    body: Vec<u8>,
    packed: Vec<u8>,
}

/// How a connection checks its echoes.
#[derive(Debug)]
enum Verifier {
    /// Byte for byte, framing included.
    Exact(EchoChecker),
    /// Frame by frame, inflating compressed WebSocket echoes.
    Frames(Box<FrameChecker>),
}

impl Verifier {
    fn next_seq(&self) -> u64 {
        match self {
            Verifier::Exact(c) => c.next_seq(),
            Verifier::Frames(c) => c.next_seq(),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<Fed, LoadError> {
        match self {
            Verifier::Exact(c) => Ok(c.feed(data)?),
            Verifier::Frames(c) => c.feed(data),
        }
    }
}

/// One connection to the server.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    id: u32,
    sender: Sender,
    checker: Verifier,
    next_seq: u64,
    pkt_len: u64,
    sent_at: Box<[Instant]>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Measured sends left, in count mode.
    budget: Option<u64>,
    /// Whether the poller is watching for writability.
    pub(crate) write_armed: bool,
}

impl Conn {
    /// A connection whose handshake is done: `deflate` holds the
    /// permessage-deflate parameters of a WebSocket connection that agreed
    /// on them.
    pub(crate) fn new(
        stream: TcpStream,
        id: u32,
        shape: Shape,
        budget: Option<u64>,
        now: Instant,
        deflate: Option<DeflateParams>,
    ) -> Self {
        let pkt = shape.framing.packet_len(shape.size);
        let exact = || {
            Verifier::Exact(EchoChecker::with_payload(
                shape.framing,
                shape.payload,
                id,
                shape.size,
            ))
        };
        let (sender, checker, sent_len) = match (shape.framing, deflate) {
            (Framing::WebSocket, Some(params)) => (
                Sender::WebSocket {
                    rng: Rng::from_entropy(u64::from(id)),
                    deflate: Some(Box::new(Compressing {
                        deflater: Deflater::new(&params, ws::CLIENT_LEVEL),
                        body: vec![0; shape.size],
                        packed: Vec::with_capacity(shape.size / 2 + 64),
                    })),
                },
                Verifier::Frames(Box::new(FrameChecker::new(
                    shape.payload,
                    id,
                    shape.size,
                    &params,
                ))),
                pkt + 4,
            ),
            (Framing::WebSocket, None) => (
                Sender::WebSocket {
                    rng: Rng::from_entropy(u64::from(id)),
                    deflate: None,
                },
                exact(),
                pkt + 4,
            ),
            _ => (Sender::Plain, exact(), pkt),
        };
        Conn {
            stream,
            id,
            sender,
            checker,
            next_seq: 0,
            pkt_len: pkt as u64,
            sent_at: vec![now; shape.depth].into_boxed_slice(),
            wbuf: Vec::with_capacity(sent_len * shape.depth),
            wpos: 0,
            budget,
            write_armed: false,
        }
    }

    /// Connection id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Packets sent (or queued) but not yet fully echoed.
    pub(crate) fn outstanding(&self) -> u64 {
        self.next_seq - self.checker.next_seq()
    }

    fn may_send(&self, now: Instant, sched: &Schedule) -> bool {
        if sched.measure_end.is_some_and(|end| now >= end) {
            return false;
        }
        !(now >= sched.measure_start && self.budget == Some(0))
    }

    /// Queues packets until `depth` are in flight or sending must stop.
    /// Returns the number queued.
    pub(crate) fn fill(
        &mut self,
        now: Instant,
        sched: &Schedule,
        shape: Shape,
    ) -> Result<u64, LoadError> {
        let mut queued = 0;
        while self.outstanding() < shape.depth as u64 && self.may_send(now, sched) {
            if self.wpos > 0 {
                self.wbuf.drain(..self.wpos);
                self.wpos = 0;
            }
            self.append(shape)?;
            let slot = (self.next_seq % shape.depth as u64) as usize;
            self.sent_at[slot] = now;
            if now >= sched.measure_start {
                if let Some(b) = self.budget.as_mut() {
                    *b -= 1;
                }
            }
            self.next_seq += 1;
            queued += 1;
        }
        Ok(queued)
    }

    /// Appends packet `next_seq` to the output.
    fn append(&mut self, shape: Shape) -> Result<(), LoadError> {
        let (id, seq) = (self.id, self.next_seq);
        match &mut self.sender {
            Sender::Plain => {
                append_packet_with(
                    shape.framing,
                    shape.payload,
                    id,
                    seq,
                    shape.size,
                    &mut self.wbuf,
                );
            }
            Sender::WebSocket { rng, deflate: None } => {
                let first = ws::FIN | ws::OPCODE_BINARY;
                ws::append_client_frame_with(first, rng.mask(), shape.size, &mut self.wbuf, |p| {
                    fill_body(shape.payload, id, seq, p)
                });
            }
            Sender::WebSocket {
                rng,
                deflate: Some(c),
            } => {
                fill_body(shape.payload, id, seq, &mut c.body);
                c.packed.clear();
                c.deflater
                    .compress(&c.body, &mut c.packed)
                    .map_err(|reason| LoadError::Protocol { conn: id, reason })?;
                let first = ws::FIN | ws::RSV1 | ws::OPCODE_BINARY;
                ws::append_client_frame(first, rng.mask(), &c.packed, &mut self.wbuf);
            }
        }
        Ok(())
    }

    /// Writes queued output until done or the socket would block.
    /// Returns `true` when output is still pending.
    pub(crate) fn flush(&mut self) -> Result<bool, LoadError> {
        while self.wpos < self.wbuf.len() {
            match (&self.stream).write(&self.wbuf[self.wpos..]) {
                Ok(0) => {
                    return Err(self.io_err(io::Error::from(io::ErrorKind::WriteZero)));
                }
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(false)
    }

    /// Reads once into `rbuf`, verifies the bytes and records every
    /// completed packet in `tally`.
    pub(crate) fn read(
        &mut self,
        rbuf: &mut [u8],
        now: Instant,
        sched: &Schedule,
        tally: &mut Tally,
    ) -> Result<ReadOutcome, LoadError> {
        let n = loop {
            match (&self.stream).read(rbuf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadOutcome::WouldBlock)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        };
        if n == 0 {
            return match self.outstanding() {
                0 => Ok(ReadOutcome::Eof),
                outstanding => Err(LoadError::Closed {
                    conn: self.id,
                    outstanding,
                }),
            };
        }
        let mut data = &rbuf[..n];
        let mut completed = 0;
        let depth = self.sent_at.len() as u64;
        while !data.is_empty() {
            if self.outstanding() == 0 {
                return Err(LoadError::Unsolicited { conn: self.id });
            }
            let fed = self.checker.feed(data)?;
            data = &data[fed.consumed..];
            if let Some(seq) = fed.completed {
                completed += 1;
                tally.all_packets += 1;
                let sent = self.sent_at[(seq % depth) as usize];
                if sent >= sched.measure_start {
                    let nanos = now.saturating_duration_since(sent).as_nanos();
                    tally
                        .hist
                        .saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX));
                    tally.packets += 1;
                    tally.bytes += match &self.checker {
                        Verifier::Exact(_) => self.pkt_len,
                        Verifier::Frames(c) => c.last_frame_len() as u64,
                    };
                    tally.last_recv = Some(now);
                }
            }
        }
        Ok(ReadOutcome::Data(completed))
    }

    fn io_err(&self, source: io::Error) -> LoadError {
        LoadError::Io {
            conn: Some(self.id),
            source,
        }
    }
}
