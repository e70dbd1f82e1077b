//! The result of a run: throughput and latency percentiles.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

use crate::config::{LoadConfig, Mode};
use crate::frame::{Framing, Payload};

/// The TLS handshakes of a run: how many and how long each took.
///
/// In [`Mode::Echo`] these are the handshakes of every connection, all started together
/// before the measured phase (so later ones include waiting for the others); in
/// [`Mode::Handshakes`] those of the measured cycles, each from the TCP connection being
/// established to the server's Finished.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandshakeReport {
    /// Handshakes timed.
    pub count: u64,
    /// Mean handshake time in microseconds.
    pub mean_us: f64,
    /// Median handshake time in microseconds.
    pub p50_us: f64,
    /// 99th percentile handshake time in microseconds.
    pub p99_us: f64,
    /// Longest handshake in microseconds.
    pub max_us: f64,
}

impl HandshakeReport {
    /// The figures of a histogram of handshake times (nanoseconds).
    pub(crate) fn of(hist: &Histogram<u64>) -> Self {
        let q = |quantile: f64| {
            if hist.is_empty() {
                0.0
            } else {
                us(hist.value_at_quantile(quantile))
            }
        };
        HandshakeReport {
            count: hist.len(),
            mean_us: if hist.is_empty() {
                0.0
            } else {
                hist.mean() / 1_000.0
            },
            p50_us: q(0.5),
            p99_us: q(0.99),
            max_us: if hist.is_empty() { 0.0 } else { us(hist.max()) },
        }
    }
}

/// Throughput and latency of the measured phase of a run.
///
/// In [`Mode::Handshakes`] a "packet" is a whole cycle (connect, TLS handshake, one round
/// trip, close): `packets_per_sec` is handshakes per second, and the latency is a cycle's,
/// from starting the connect to the echo.
///
/// Only packets sent after the warm-up are counted. `bytes` counts echoed
/// bytes in one direction, framing included (with permessage-deflate, the
/// compressed frames as they arrived); MB is 10^6 bytes. Latency is the
/// time from queueing a packet for sending to receiving its last echoed
/// byte.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Target address as resolved.
    pub addr: String,
    /// Wire framing.
    pub framing: Framing,
    /// WebSocket permessage-deflate was on (left out of JSON when off).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deflate: bool,
    /// What filled the bodies (left out of JSON when the default).
    #[serde(skip_serializing_if = "Payload::is_default")]
    pub payload: Payload,
    /// Echo, or handshakes (left out of JSON when echo).
    #[serde(skip_serializing_if = "is_echo")]
    pub mode: Mode,
    /// Every connection ran over TLS (left out of JSON when not).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// Connections used (in handshakes mode: open at once).
    pub connections: usize,
    /// Packets in flight per connection.
    pub depth: usize,
    /// Body size in bytes.
    pub size: usize,
    /// Echoed packet size on the wire in bytes (uncompressed).
    pub packet_len: usize,
    /// Worker threads used.
    pub threads: usize,
    /// Measured packets echoed.
    pub packets: u64,
    /// Measured bytes echoed.
    pub bytes: u64,
    /// Every packet echoed in the run, warm-up and final drain included
    /// (to divide a server's total CPU time by).
    pub all_packets: u64,
    /// From the start of the measured phase to the last measured echo.
    #[serde(rename = "elapsed_secs", serialize_with = "secs_f64")]
    pub elapsed: Duration,
    /// `packets / elapsed`.
    pub packets_per_sec: f64,
    /// `bytes / elapsed / 10^6`.
    pub mb_per_sec: f64,
    /// Mean latency in microseconds.
    pub mean_us: f64,
    /// Median latency in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency in microseconds.
    pub p999_us: f64,
    /// Largest latency in microseconds.
    pub max_us: f64,
    /// UDP only: measured datagrams never echoed within the loss timeout
    /// (each was replaced by a new one; not counted in `packets`). `None`,
    /// and left out of JSON, for the stream framings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// With TLS: the handshakes (left out of JSON without TLS).
    /// [`run`](crate::run) fills it in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshakes: Option<HandshakeReport>,
}

fn is_echo(mode: &Mode) -> bool {
    *mode == Mode::Echo
}

fn secs_f64<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1_000.0
}

impl LoadReport {
    /// Builds a report from the merged latency histogram (nanoseconds).
    pub(crate) fn new(
        config: &LoadConfig,
        addr: String,
        hist: &Histogram<u64>,
        bytes: u64,
        all_packets: u64,
        elapsed: Duration,
        lost: Option<u64>,
    ) -> Self {
        let secs = elapsed.as_secs_f64();
        let packets = hist.len();
        let per_sec = |x: u64| if secs > 0.0 { x as f64 / secs } else { 0.0 };
        let empty = packets == 0;
        let q = |quantile: f64| {
            if empty {
                0.0
            } else {
                us(hist.value_at_quantile(quantile))
            }
        };
        LoadReport {
            addr,
            framing: config.framing,
            deflate: config.deflate,
            payload: config.payload,
            mode: config.mode,
            tls: config.tls.is_some(),
            connections: config.connections,
            depth: config.depth,
            size: config.size,
            packet_len: config.framing.packet_len(config.size),
            threads: config.effective_threads(),
            packets,
            bytes,
            all_packets,
            elapsed,
            packets_per_sec: per_sec(packets),
            mb_per_sec: per_sec(bytes) / 1e6,
            mean_us: if empty { 0.0 } else { hist.mean() / 1_000.0 },
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if empty { 0.0 } else { us(hist.max()) },
            lost,
            handshakes: None,
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut framing = self.framing.to_string();
        if self.deflate {
            framing.push_str(" + permessage-deflate");
        }
        if self.tls {
            framing.push_str(" over TLS");
        }
        if !self.payload.is_default() {
            framing.push_str(&format!("  payload {}", self.payload));
        }
        if self.mode != Mode::Echo {
            framing.push_str(&format!("  mode {}", self.mode));
        }
        writeln!(
            f,
            "target      {}  framing {}  {} conn x depth {}  body {} B (packet {} B)  {} thread(s)",
            self.addr,
            framing,
            self.connections,
            self.depth,
            self.size,
            self.packet_len,
            self.threads
        )?;
        writeln!(
            f,
            "packets     {}  in {:.3} s  ({} with warm-up)",
            self.packets,
            self.elapsed.as_secs_f64(),
            self.all_packets
        )?;
        if let Some(lost) = self.lost {
            let sent = self.packets + lost;
            let pct = if sent > 0 {
                lost as f64 * 100.0 / sent as f64
            } else {
                0.0
            };
            writeln!(
                f,
                "lost        {lost} datagrams ({pct:.3}% of measured sends)"
            )?;
        }
        let unit = match (self.mode, self.tls) {
            (Mode::Echo, _) => "packets/s",
            (Mode::Handshakes, true) => "handshakes/s",
            (Mode::Handshakes, false) => "connections/s",
        };
        writeln!(
            f,
            "throughput  {:.0} {unit}  {:.2} MB/s",
            self.packets_per_sec, self.mb_per_sec
        )?;
        if let Some(h) = &self.handshakes {
            writeln!(
                f,
                "handshakes  {} TLS: mean {:.1} us  p50 {:.1} us  p99 {:.1} us  max {:.1} us",
                h.count, h.mean_us, h.p50_us, h.p99_us, h.max_us
            )?;
        }
        writeln!(
            f,
            "latency us  {:>9} {:>9} {:>9} {:>9} {:>9}",
            "mean", "p50", "p99", "p99.9", "max"
        )?;
        write!(
            f,
            "            {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            self.mean_us, self.p50_us, self.p99_us, self.p999_us, self.max_us
        )
    }
}
