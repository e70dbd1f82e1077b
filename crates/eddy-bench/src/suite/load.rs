//! The load scenarios: eddy-load against a child server, with the child's
//! CPU time measured around the measured run.

use std::time::Duration;

use eddy_load::{Framing, LoadConfig, LoadReport, Mode, Payload, TlsClient};
use serde_json::json;

use super::options::Settings;
use super::rows::{Figure, Row};
use super::Failure;
use crate::child::ServerChild;

/// One traffic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Name in the table.
    pub name: &'static str,
    /// Connections.
    pub connections: usize,
    /// Packets in flight per connection (1 = ping-pong).
    pub depth: usize,
    /// Body bytes per packet (plus the framing: a 4-byte length header, or
    /// a WebSocket frame header).
    pub size: usize,
    /// Wire framing; the servers are started with the same.
    pub framing: Framing,
    /// WebSocket permessage-deflate, offered by the client and accepted by
    /// the server.
    pub deflate: bool,
    /// What fills the bodies.
    pub payload: Payload,
    /// Over TLS: the servers are started with the suite's certificate and eddy-load trusts
    /// it.
    pub tls: bool,
    /// Echo on open connections, or handshakes (connect, handshake, one round trip, close).
    pub mode: Mode,
}

impl Scenario {
    /// A length-framed scenario.
    const fn tcp(name: &'static str, connections: usize, depth: usize, size: usize) -> Self {
        Scenario {
            name,
            connections,
            depth,
            size,
            framing: Framing::Length,
            deflate: false,
            payload: Payload::Pattern,
            tls: false,
            mode: Mode::Echo,
        }
    }

    /// A length-framed scenario over TLS.
    const fn tls(name: &'static str, connections: usize, depth: usize, size: usize) -> Self {
        Scenario {
            tls: true,
            ..Scenario::tcp(name, connections, depth, size)
        }
    }

    /// TLS handshakes, `connections` at a time, each followed by one round trip of a
    /// 64-byte packet and a close.
    const fn handshakes(name: &'static str, connections: usize) -> Self {
        Scenario {
            mode: Mode::Handshakes,
            ..Scenario::tls(name, connections, 1, 64)
        }
    }

    /// Whether a round is a handshakes cycle rather than a packet.
    pub fn counts_handshakes(&self) -> bool {
        self.mode == Mode::Handshakes
    }

    /// A WebSocket scenario.
    const fn ws(name: &'static str, connections: usize, depth: usize, size: usize) -> Self {
        Scenario {
            framing: Framing::WebSocket,
            ..Scenario::tcp(name, connections, depth, size)
        }
    }

    /// A UDP scenario: `connections` connected sockets, datagrams of `size` bytes.
    const fn udp(name: &'static str, connections: usize, depth: usize, size: usize) -> Self {
        Scenario {
            framing: Framing::Udp,
            ..Scenario::tcp(name, connections, depth, size)
        }
    }

    /// The `--serve` arguments that make a server speak this scenario's
    /// framing (the server itself comes from its [`ServerSpec`](super::servers::ServerSpec)).
    pub fn serve_args(&self) -> Vec<&'static str> {
        let mut args = vec!["--framing", self.framing.as_str()];
        if self.deflate {
            args.push("--deflate");
        }
        args
    }
}

/// Every length-framed load scenario, in table order; each runs on
/// [`SERVERS`](super::servers::SERVERS).
pub const SCENARIOS: [Scenario; 4] = [
    Scenario::tcp("ping-pong 50 conn × 64 B", 50, 1, 64),
    Scenario::tcp("pipelined 50 conn × 16 × 64 B", 50, 16, 64),
    Scenario::tcp("ping-pong 1,000 conn × 64 B", 1000, 1, 64),
    Scenario::tcp("ping-pong 50 conn × 4 KiB", 50, 1, 4096),
];

/// Every WebSocket load scenario, in table order: binary messages, each
/// in a frame masked with a fresh key. Those without deflate run on
/// [`WS_SERVERS`](super::servers::WS_SERVERS); the deflate one on eddy only
/// (tokio-tungstenite has no permessage-deflate), with JSON-like text that
/// deflate shrinks to about a third.
pub const WS_SCENARIOS: [Scenario; 4] = [
    Scenario::ws("ws ping-pong 50 conn × 64 B", 50, 1, 64),
    Scenario::ws("ws pipelined 50 conn × 16 × 64 B", 50, 16, 64),
    Scenario::ws("ws ping-pong 50 conn × 4 KiB", 50, 1, 4096),
    Scenario {
        deflate: true,
        payload: Payload::Json,
        ..Scenario::ws("ws+deflate ping-pong 50 conn × 4 KiB JSON", 50, 1, 4096)
    },
];

/// Every UDP load scenario, in table order: each "connection" a connected
/// UDP socket, each packet one 64-byte datagram (an 8-byte sequence number
/// first); they run on [`UDP_SERVERS`](super::servers::UDP_SERVERS). A
/// datagram not echoed within 200 ms counts as lost and is replaced.
pub const UDP_SCENARIOS: [Scenario; 2] = [
    Scenario::udp("udp ping-pong 50 × 64 B", 50, 1, 64),
    Scenario::udp("udp pipelined 50 × 16 × 64 B", 50, 16, 64),
];

/// Every TLS scenario, in table order; each runs on
/// [`TLS_SERVERS`](super::servers::TLS_SERVERS) with a throwaway certificate (TLS 1.3, ring,
/// ECDSA P-256, no session resumption). The echo scenarios' handshakes are done before
/// their clock starts; the last scenario measures handshakes alone.
pub const TLS_SCENARIOS: [Scenario; 5] = [
    Scenario::tls("tls ping-pong 50 conn × 64 B", 50, 1, 64),
    Scenario::tls("tls pipelined 50 conn × 16 × 64 B", 50, 16, 64),
    Scenario::tls("tls ping-pong 50 conn × 16 KiB", 50, 1, 16 * 1024),
    Scenario::tls("tls pipelined 50 conn × 16 × 16 KiB", 50, 16, 16 * 1024),
    Scenario::handshakes("tls handshakes, 16 at a time", 16),
];

/// What a measured run found.
#[derive(Debug, Clone)]
pub struct LoadFigures {
    /// eddy-load's report of the measured run.
    pub report: LoadReport,
    /// The server's CPU time (user + system) during the measured run.
    pub server_cpu: Duration,
}

impl LoadFigures {
    /// Server CPU per echoed packet in microseconds: CPU time over every
    /// packet of the measured run (its final drain included).
    pub fn cpu_us_per_packet(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.report.all_packets.max(1) as f64
    }

    /// Echoed bytes on the wire over what they would be uncompressed: 1 without
    /// permessage-deflate.
    pub fn wire_fraction(&self) -> f64 {
        let r = &self.report;
        let uncompressed = r.packets as f64 * r.packet_len as f64;
        if uncompressed > 0.0 {
            r.bytes as f64 / uncompressed
        } else {
            1.0
        }
    }

    /// The table row of one or more rounds: each figure is its median over the rounds (the
    /// upper median for an even count), and the details hold every round (and, with
    /// permessage-deflate, the median [`wire_fraction`](Self::wire_fraction)).
    pub fn row(rounds: &[LoadFigures], scenario: &str, server: &str) -> Row {
        let median = |f: fn(&LoadFigures) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied()
        };
        let rounds_json: Vec<_> = rounds
            .iter()
            .map(|r| {
                json!({
                    "load": r.report,
                    "server_cpu_secs": r.server_cpu.as_secs_f64(),
                    "cpu_us_per_packet": r.cpu_us_per_packet(),
                })
            })
            .collect();
        let mut details = json!({ "rounds": rounds_json });
        if rounds.iter().any(|r| r.report.deflate) {
            details["wire_fraction"] = json!(median(LoadFigures::wire_fraction));
        }
        let handshakes = |f: fn(&eddy_load::HandshakeReport) -> f64| {
            let mut values: Vec<f64> = rounds
                .iter()
                .filter_map(|r| r.report.handshakes.as_ref().map(f))
                .collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied()
        };
        if let Some(p50) = handshakes(|h| h.p50_us) {
            details["handshake_p50_us"] = json!(p50);
            details["handshake_p99_us"] = json!(handshakes(|h| h.p99_us));
        }
        if rounds.iter().any(|r| r.report.lost.is_some()) {
            let lost: u64 = rounds.iter().filter_map(|r| r.report.lost).sum();
            let echoed: u64 = rounds.iter().map(|r| r.report.packets).sum();
            details["lost"] = json!(lost);
            details["lost_fraction"] = json!(lost as f64 / (lost + echoed).max(1) as f64);
        }
        let cycles = rounds.iter().any(|r| r.report.mode == Mode::Handshakes);
        let (per_sec, per_unit) = if cycles {
            ("handshakes/s", "µs CPU/handshake")
        } else {
            ("packets/s", "µs CPU/packet")
        };
        Row {
            throughput: median(|r| r.report.packets_per_sec).map(|v| Figure::new(v, per_sec)),
            mb_per_sec: median(|r| r.report.mb_per_sec).filter(|_| !cycles),
            p50_us: median(|r| r.report.p50_us),
            p99_us: median(|r| r.report.p99_us),
            cost: median(LoadFigures::cpu_us_per_packet).map(|v| Figure::new(v, per_unit)),
            details,
            ..Row::new(scenario, server)
        }
    }
}

/// Loads `child` with `scenario`: an unmeasured warm-up run, then the
/// measured run on fresh connections, with the child's CPU time read from
/// `/proc` right before and right after the measured run (over TLS, after
/// the measured run's handshakes: `eddy_load::run` does them before its
/// clock starts, so they fall in the CPU window; with 50 connections they are
/// about 1–2% of a 1 s round's server CPU, on every server alike). `trust` is the PEM certificate a TLS scenario's client
/// trusts.
pub fn measure(
    child: &ServerChild,
    scenario: &Scenario,
    settings: &Settings,
    load_threads: usize,
    trust: Option<&str>,
) -> Result<LoadFigures, Failure> {
    let tls = match (scenario.tls, trust) {
        (false, _) => None,
        (true, Some(pem)) => Some(TlsClient::from_pem(pem)),
        (true, None) => return Err("a TLS scenario without a certificate to trust".into()),
    };
    let config = LoadConfig {
        addr: child.addr().to_string(),
        connections: scenario.connections,
        depth: scenario.depth,
        size: scenario.size,
        framing: scenario.framing,
        deflate: scenario.deflate,
        payload: scenario.payload,
        duration: Some(settings.duration),
        count: None,
        warmup: Duration::ZERO,
        threads: load_threads,
        progress: false,
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(10),
        udp_timeout: Duration::from_millis(200),
        tls,
        mode: scenario.mode,
    };
    if !settings.warmup.is_zero() {
        eddy_load::run(&LoadConfig {
            duration: Some(settings.warmup),
            ..config.clone()
        })?;
    }
    let before = child.cpu_time()?;
    let report = eddy_load::run(&config)?;
    let after = child.cpu_time()?;
    Ok(LoadFigures {
        report,
        server_cpu: after.saturating_sub(before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(per_sec: f64, p99_us: f64, cpu_ms: u64, packets: u64) -> LoadFigures {
        LoadFigures {
            report: LoadReport {
                addr: "127.0.0.1:1".into(),
                framing: Framing::Length,
                deflate: false,
                payload: Payload::Pattern,
                mode: Mode::Echo,
                tls: false,
                connections: 1,
                depth: 1,
                size: 64,
                packet_len: 68,
                threads: 1,
                packets,
                bytes: packets * 68,
                all_packets: packets,
                elapsed: Duration::from_secs(1),
                packets_per_sec: per_sec,
                mb_per_sec: per_sec * 68e-6,
                mean_us: p99_us / 2.0,
                p50_us: p99_us / 2.0,
                p99_us,
                p999_us: p99_us,
                max_us: p99_us,
                lost: None,
                handshakes: None,
            },
            server_cpu: Duration::from_millis(cpu_ms),
        }
    }

    #[test]
    fn a_row_shows_each_figures_median_over_the_rounds() {
        // Three rounds: a slow spell hit the second one.
        let rounds = [
            round(100.0, 40.0, 10, 1000),
            round(20.0, 900.0, 30, 1000),
            round(90.0, 50.0, 12, 1000),
        ];
        let row = LoadFigures::row(&rounds, "s", "eddy");
        assert_eq!(row.throughput.map(|f| f.value), Some(90.0));
        assert_eq!(row.p99_us, Some(50.0));
        assert_eq!(
            row.cost.map(|f| f.value),
            Some(12.0),
            "12 ms over 1,000 packets"
        );
        assert_eq!(row.details["rounds"].as_array().map(Vec::len), Some(3));
        let one = LoadFigures::row(&rounds[1..2], "s", "eddy");
        assert_eq!(one.throughput.map(|f| f.value), Some(20.0));
        assert!(row.details.get("wire_fraction").is_none());
    }

    #[test]
    fn deflate_rows_carry_the_wire_fraction() {
        let mut r = round(100.0, 40.0, 10, 1000);
        r.report.deflate = true;
        r.report.bytes = 1000 * 68 / 4;
        assert_eq!(r.wire_fraction(), 0.25);
        let row = LoadFigures::row(&[r], "s", "eddy fd");
        assert_eq!(row.details["wire_fraction"], 0.25);
    }

    #[test]
    fn scenarios_name_their_framing() {
        assert!(SCENARIOS.iter().all(|s| s.framing == Framing::Length));
        assert_eq!(SCENARIOS[0].serve_args(), ["--framing", "length"]);
        assert!(WS_SCENARIOS.iter().all(|s| s.framing == Framing::WebSocket));
        let deflate: Vec<_> = WS_SCENARIOS.iter().filter(|s| s.deflate).collect();
        assert_eq!(deflate.len(), 1);
        assert_eq!(deflate[0].serve_args(), ["--framing", "ws", "--deflate"]);
        assert_eq!(deflate[0].payload, Payload::Json);
        assert!(UDP_SCENARIOS.iter().all(|s| s.framing == Framing::Udp));
        assert_eq!(UDP_SCENARIOS[1].serve_args(), ["--framing", "udp"]);
    }

    #[test]
    fn tls_scenarios_and_handshake_rows() {
        assert!(TLS_SCENARIOS
            .iter()
            .all(|s| s.tls && s.framing == Framing::Length));
        assert_eq!(
            TLS_SCENARIOS
                .iter()
                .filter(|s| s.counts_handshakes())
                .count(),
            1
        );
        let mut r = round(2000.0, 900.0, 100, 2000);
        r.report.mode = Mode::Handshakes;
        r.report.tls = true;
        let row = LoadFigures::row(&[r], "tls handshakes", "eddy fd");
        assert_eq!(row.throughput.map(|f| f.unit), Some("handshakes/s"));
        assert_eq!(
            row.cost.map(|f| (f.value, f.unit)),
            Some((50.0, "µs CPU/handshake"))
        );
        assert_eq!(row.mb_per_sec, None);
    }

    #[test]
    fn udp_rows_carry_their_losses() {
        let mut a = round(100.0, 40.0, 10, 990);
        a.report.lost = Some(10);
        let mut b = round(100.0, 40.0, 10, 1000);
        b.report.lost = Some(0);
        let row = LoadFigures::row(&[a, b], "udp", "tokio");
        assert_eq!(row.details["lost"], 10);
        assert_eq!(row.details["lost_fraction"], 10.0 / 2000.0);
        let tcp = LoadFigures::row(&[round(1.0, 1.0, 1, 1)], "s", "eddy");
        assert!(tcp.details.get("lost").is_none());
    }
}
