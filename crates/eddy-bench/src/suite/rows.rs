//! One row of the result table, and the eddy-versus-baseline ratios.

use serde::Serialize;
use serde_json::Value;

use super::servers::{EPOLL, TOKIO, TOKIO_RUSTLS, TOKIO_WS};

/// A figure with its unit, as shown in the table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figure {
    /// The value.
    pub value: f64,
    /// Its unit, e.g. `packets/s` or `µs CPU/packet`.
    pub unit: &'static str,
}

impl Figure {
    /// `value` in `unit`.
    pub const fn new(value: f64, unit: &'static str) -> Self {
        Figure { value, unit }
    }
}

/// eddy's figure divided by a baseline's, for one row of eddy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Ratios {
    /// Throughput, eddy / tokio (above 1: eddy is faster).
    pub throughput_vs_tokio: Option<f64>,
    /// Throughput, eddy / epoll.
    pub throughput_vs_epoll: Option<f64>,
    /// Cost (CPU or memory), eddy / tokio (below 1: eddy is cheaper).
    pub cost_vs_tokio: Option<f64>,
    /// Cost, eddy / epoll.
    pub cost_vs_epoll: Option<f64>,
}

/// One line of the table: a scenario on one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Scenario, e.g. `ping-pong 50 conn × 64 B`.
    pub scenario: String,
    /// Server name.
    pub server: String,
    /// Packets/s or connections/s; higher is better.
    pub throughput: Option<Figure>,
    /// Echoed MB/s (10^6 bytes, one direction).
    pub mb_per_sec: Option<f64>,
    /// Median latency in microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile latency in microseconds.
    pub p99_us: Option<f64>,
    /// Server CPU per packet or connection, or memory per connection;
    /// lower is better.
    pub cost: Option<Figure>,
    /// Whether eddy/baseline ratios mean something here (not for figures
    /// that should be zero, like idle CPU).
    pub compare: bool,
    /// Ratios to the baselines; eddy rows only, filled by [`fill_ratios`].
    pub ratios: Option<Ratios>,
    /// Shown instead of figures: `n/a …`, or why the measurement failed.
    pub note: Option<String>,
    /// Whether the measurement failed.
    pub failed: bool,
    /// Every raw figure behind the row.
    pub details: Value,
}

impl Row {
    /// An empty row of `server` in `scenario`.
    pub fn new(scenario: &str, server: &str) -> Self {
        Row {
            scenario: scenario.to_owned(),
            server: server.to_owned(),
            throughput: None,
            mb_per_sec: None,
            p50_us: None,
            p99_us: None,
            cost: None,
            compare: true,
            ratios: None,
            note: None,
            failed: false,
            details: Value::Null,
        }
    }

    /// A row that only says `note`.
    pub fn noted(scenario: &str, server: &str, note: &str) -> Self {
        Row {
            note: Some(note.to_owned()),
            ..Row::new(scenario, server)
        }
    }

    /// A failed measurement.
    pub fn failed(scenario: &str, server: &str, error: &str) -> Self {
        Row {
            failed: true,
            ..Row::noted(scenario, server, &format!("FAILED: {error}"))
        }
    }
}

/// Sets [`Row::ratios`] on every comparable eddy row that has a tokio (in
/// WebSocket scenarios: tokio-tungstenite; in TLS scenarios: tokio-rustls)
/// or epoll row with figures in the same scenario.
pub fn fill_ratios(rows: &mut [Row]) {
    // (throughput, cost) of `server` in `scenario`.
    let figures = |rows: &[Row], scenario: &str, server: &str| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.server == server)
            .map_or((None, None), |r| (r.throughput, r.cost))
    };
    for i in 0..rows.len() {
        let row = &rows[i];
        if !row.server.starts_with("eddy") || row.note.is_some() || !row.compare {
            continue;
        }
        let scenario = &rows[i].scenario;
        let (tokio_thr, tokio_cost) = [TOKIO, TOKIO_WS, TOKIO_RUSTLS]
            .into_iter()
            .map(|baseline| figures(rows, scenario, baseline))
            .find(|found| *found != (None, None))
            .unwrap_or((None, None));
        let (epoll_thr, epoll_cost) = figures(rows, &rows[i].scenario, EPOLL);
        let row = &mut rows[i];
        row.ratios = Some(Ratios {
            throughput_vs_tokio: ratio(row.throughput, tokio_thr),
            throughput_vs_epoll: ratio(row.throughput, epoll_thr),
            cost_vs_tokio: ratio(row.cost, tokio_cost),
            cost_vs_epoll: ratio(row.cost, epoll_cost),
        });
    }
}

/// `a / b` when both exist and `b` is not zero.
fn ratio(a: Option<Figure>, b: Option<Figure>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.value != 0.0 => Some(a.value / b.value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &str, thr: f64, cost: f64) -> Row {
        Row {
            throughput: Some(Figure::new(thr, "packets/s")),
            cost: Some(Figure::new(cost, "µs CPU/packet")),
            ..Row::new("s", server)
        }
    }

    #[test]
    fn ratios_divide_by_the_same_scenario() {
        let mut rows = vec![
            row("eddy fd", 200.0, 2.0),
            row(TOKIO, 100.0, 4.0),
            row(EPOLL, 400.0, 0.0),
            Row {
                scenario: "other".into(),
                ..row(TOKIO, 1.0, 1.0)
            },
        ];
        fill_ratios(&mut rows);
        let r = rows[0].ratios.expect("eddy row has ratios");
        assert_eq!(r.throughput_vs_tokio, Some(2.0));
        assert_eq!(r.throughput_vs_epoll, Some(0.5));
        assert_eq!(r.cost_vs_tokio, Some(0.5));
        assert_eq!(r.cost_vs_epoll, None, "zero cost baseline has no ratio");
        assert!(rows[1].ratios.is_none());
    }

    #[test]
    fn websocket_rows_divide_by_tokio_tungstenite() {
        let ws = |server: &str, thr: f64, cost: f64| Row {
            scenario: "ws".into(),
            ..row(server, thr, cost)
        };
        let mut rows = vec![
            ws("eddy reactor", 300.0, 1.0),
            ws(TOKIO_WS, 100.0, 2.0),
            Row {
                scenario: "ws+deflate".into(),
                ..row("eddy fd", 50.0, 8.0)
            },
            Row::noted("ws+deflate", TOKIO_WS, "n/a"),
        ];
        fill_ratios(&mut rows);
        let r = rows[0].ratios.expect("eddy row has ratios");
        assert_eq!(
            (r.throughput_vs_tokio, r.cost_vs_tokio),
            (Some(3.0), Some(0.5))
        );
        assert_eq!(r.throughput_vs_epoll, None);
        let r = rows[2].ratios.expect("ratios, all empty");
        assert_eq!((r.throughput_vs_tokio, r.cost_vs_tokio), (None, None));
    }

    #[test]
    fn tls_rows_divide_by_tokio_rustls() {
        let tls = |server: &str, thr: f64, cost: f64| Row {
            scenario: "tls".into(),
            ..row(server, thr, cost)
        };
        let mut rows = vec![tls("eddy fd", 90.0, 3.0), tls(TOKIO_RUSTLS, 100.0, 2.0)];
        fill_ratios(&mut rows);
        let r = rows[0].ratios.expect("eddy row has ratios");
        assert_eq!(
            (r.throughput_vs_tokio, r.cost_vs_tokio),
            (Some(0.9), Some(1.5))
        );
    }

    #[test]
    fn rows_that_should_be_zero_are_not_compared() {
        let mut rows = vec![
            Row {
                compare: false,
                ..row("eddy fd", 1.0, 1.0)
            },
            row(TOKIO, 1.0, 1.0),
        ];
        fill_ratios(&mut rows);
        assert!(rows[0].ratios.is_none());
    }

    #[test]
    fn noted_rows_get_no_ratios() {
        let mut rows = vec![Row::failed("s", "eddy fd", "boom"), row(TOKIO, 1.0, 1.0)];
        fill_ratios(&mut rows);
        assert!(rows[0].ratios.is_none());
        assert!(rows[0].failed);
    }
}
