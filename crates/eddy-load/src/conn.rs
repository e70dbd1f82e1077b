//! State of one client connection: queued output, in-flight timestamps and
//! the echo checker.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::error::LoadError;
use crate::frame::{append_packet_with, fill_body, EchoChecker, Fed, Framing, Payload};
use crate::tls::Session;
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
    /// Handshakes mode with TLS: each measured handshake's time, in nanoseconds.
    pub(crate) handshakes: Option<Histogram<u64>>,
}

impl Tally {
    /// An empty tally; `handshakes` is kept when TLS handshakes are timed.
    pub(crate) fn new(hist: Histogram<u64>, handshakes: Option<Histogram<u64>>) -> Self {
        Tally {
            hist,
            packets: 0,
            bytes: 0,
            last_recv: None,
            all_packets: 0,
            lost: 0,
            handshakes,
        }
    }
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
    rx: Echoes,
    next_seq: u64,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Measured sends left, in count mode.
    budget: Option<u64>,
    /// Whether the poller is watching for writability.
    pub(crate) write_armed: bool,
    /// The TLS session, when the connection runs over TLS (its handshake done).
    tls: Option<Box<Session>>,
}

impl Conn {
    /// A connection whose handshake is done: `deflate` holds the
    /// permessage-deflate parameters of a WebSocket connection that agreed
    /// on them; `tls` the established session of a TLS connection.
    pub(crate) fn new(
        stream: TcpStream,
        id: u32,
        shape: Shape,
        budget: Option<u64>,
        now: Instant,
        deflate: Option<DeflateParams>,
        tls: Option<Box<Session>>,
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
            rx: Echoes {
                id,
                checker,
                pkt_len: pkt as u64,
                sent_at: vec![now; shape.depth].into_boxed_slice(),
            },
            next_seq: 0,
            wbuf: Vec::with_capacity(sent_len * shape.depth),
            wpos: 0,
            budget,
            write_armed: false,
            tls,
        }
    }

    /// Connection id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Packets sent (or queued) but not yet fully echoed.
    pub(crate) fn outstanding(&self) -> u64 {
        self.next_seq - self.rx.checker.next_seq()
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
            self.rx.sent_at[slot] = now;
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
        let tls = self.tls.as_deref_mut();
        flush_output(&self.stream, tls, &mut self.wbuf, &mut self.wpos, self.id)
    }

    /// Reads once into `rbuf` (over TLS: what the socket holds, a bounded
    /// amount), verifies the bytes and records every completed packet in
    /// `tally`.
    pub(crate) fn read(
        &mut self,
        rbuf: &mut [u8],
        now: Instant,
        sched: &Schedule,
        tally: &mut Tally,
    ) -> Result<ReadOutcome, LoadError> {
        if let Some(mut tls) = self.tls.take() {
            let (mut completed, next_seq, rx) = (0, self.next_seq, &mut self.rx);
            let got = tls.receive(&self.stream, rbuf, self.id, |data| {
                completed += rx.consume(next_seq, data, now, sched, tally)?;
                Ok(())
            });
            self.tls = Some(tls);
            let got = got?;
            return match (got.eof, completed) {
                (true, _) => self.end_of_stream(),
                (false, 0) if !got.any => Ok(ReadOutcome::WouldBlock),
                (false, done) => Ok(ReadOutcome::Data(done)),
            };
        }
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
            return self.end_of_stream();
        }
        let completed = self
            .rx
            .consume(self.next_seq, &rbuf[..n], now, sched, tally)?;
        Ok(ReadOutcome::Data(completed))
    }

    /// The server ended the stream: fine when nothing is outstanding.
    fn end_of_stream(&self) -> Result<ReadOutcome, LoadError> {
        match self.outstanding() {
            0 => Ok(ReadOutcome::Eof),
            outstanding => Err(LoadError::Closed {
                conn: self.id,
                outstanding,
            }),
        }
    }

    fn io_err(&self, source: io::Error) -> LoadError {
        LoadError::Io {
            conn: Some(self.id),
            source,
        }
    }
}

/// Writes `wbuf[*wpos..]` to `stream` (through `tls` when given: plaintext into the
/// session, ciphertext to the socket) until done or the socket would block; returns `true`
/// when output is still pending. Clears `wbuf` once all of it is written.
pub(crate) fn flush_output(
    stream: &TcpStream,
    mut tls: Option<&mut Session>,
    wbuf: &mut Vec<u8>,
    wpos: &mut usize,
    conn: u32,
) -> Result<bool, LoadError> {
    let io_err = |source| LoadError::Io {
        conn: Some(conn),
        source,
    };
    loop {
        let Some(tls) = tls.as_deref_mut() else {
            if *wpos >= wbuf.len() {
                break;
            }
            match (&*stream).write(&wbuf[*wpos..]) {
                Ok(0) => return Err(io_err(io::Error::from(io::ErrorKind::WriteZero))),
                Ok(n) => *wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
            continue;
        };
        let taken = if *wpos < wbuf.len() {
            let n = tls.write_plain(&wbuf[*wpos..]).map_err(io_err)?;
            *wpos += n;
            n
        } else {
            0
        };
        if tls.send(stream).map_err(io_err)? {
            return Ok(true);
        }
        if *wpos >= wbuf.len() {
            break;
        }
        if taken == 0 {
            // Nothing pending, yet the session took nothing: it never does that after its
            // handshake, but do not spin if it did.
            return Err(LoadError::Tls {
                conn: Some(conn),
                reason: "the session takes no more plaintext".into(),
            });
        }
    }
    wbuf.clear();
    *wpos = 0;
    Ok(false)
}

/// What checks a connection's echoes and times them.
#[derive(Debug)]
struct Echoes {
    id: u32,
    checker: Verifier,
    pkt_len: u64,
    /// When each in-flight packet was queued, by sequence number modulo depth.
    sent_at: Box<[Instant]>,
}

impl Echoes {
    /// Verifies echoed bytes and records every packet they complete; returns
    /// how many they complete. `sent` packets were sent so far.
    fn consume(
        &mut self,
        sent: u64,
        mut data: &[u8],
        now: Instant,
        sched: &Schedule,
        tally: &mut Tally,
    ) -> Result<u64, LoadError> {
        let mut completed = 0;
        let depth = self.sent_at.len() as u64;
        while !data.is_empty() {
            if sent == self.checker.next_seq() {
                return Err(LoadError::Unsolicited { conn: self.id });
            }
            let fed = self.checker.feed(data)?;
            data = &data[fed.consumed..];
            if let Some(seq) = fed.completed {
                completed += 1;
                tally.all_packets += 1;
                let queued_at = self.sent_at[(seq % depth) as usize];
                if queued_at >= sched.measure_start {
                    let nanos = now.saturating_duration_since(queued_at).as_nanos();
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
        Ok(completed)
    }
}
