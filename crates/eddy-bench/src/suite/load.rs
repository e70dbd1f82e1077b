//! The load scenarios: eddy-load against a child server, with the child's
//! CPU time measured around the measured run.

use std::time::Duration;

use eddy_load::{Framing, LoadConfig, LoadReport};
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
    /// Body bytes per packet (plus a 4-byte length header on the wire).
    pub size: usize,
}

/// Every load scenario, in table order.
pub const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "ping-pong 50 conn × 64 B",
        connections: 50,
        depth: 1,
        size: 64,
    },
    Scenario {
        name: "pipelined 50 conn × 16 × 64 B",
        connections: 50,
        depth: 16,
        size: 64,
    },
    Scenario {
        name: "ping-pong 1,000 conn × 64 B",
        connections: 1000,
        depth: 1,
        size: 64,
    },
    Scenario {
        name: "ping-pong 50 conn × 4 KiB",
        connections: 50,
        depth: 1,
        size: 4096,
    },
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

    /// The table row of this run.
    pub fn row(&self, scenario: &str, server: &str) -> Row {
        let r = &self.report;
        Row {
            throughput: Some(Figure::new(r.packets_per_sec, "packets/s")),
            mb_per_sec: Some(r.mb_per_sec),
            p50_us: Some(r.p50_us),
            p99_us: Some(r.p99_us),
            cost: Some(Figure::new(self.cpu_us_per_packet(), "µs CPU/packet")),
            details: json!({
                "load": r,
                "server_cpu_secs": self.server_cpu.as_secs_f64(),
                "cpu_us_per_packet": self.cpu_us_per_packet(),
            }),
            ..Row::new(scenario, server)
        }
    }
}

/// Loads `child` with `scenario`: an unmeasured warm-up run, then the
/// measured run on fresh connections, with the child's CPU time read from
/// `/proc` right before and right after the measured run.
pub fn measure(
    child: &ServerChild,
    scenario: &Scenario,
    settings: &Settings,
    load_threads: usize,
) -> Result<LoadFigures, Failure> {
    let config = LoadConfig {
        addr: child.addr().to_string(),
        connections: scenario.connections,
        depth: scenario.depth,
        size: scenario.size,
        framing: Framing::Length,
        duration: Some(settings.duration),
        count: None,
        warmup: Duration::ZERO,
        threads: load_threads,
        progress: false,
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(10),
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
