//! The goals line under the table: for every scenario where an eddy row has a baseline to
//! compare with, whether eddy beat it by the margins the hot-path issue asks for.

use super::rows::Row;
use super::servers::{TOKIO, TOKIO_RUSTLS, TOKIO_WS};

/// Throughput at least this many times the baseline's.
const THROUGHPUT: f64 = 1.1;
/// CPU per packet at most this many times the baseline's.
const COST: f64 = 1.0;
/// p99 latency at most this many times the baseline's.
const P99: f64 = 1.5;

/// One line per eddy server: how many scenarios met all three goals, and what missed where.
pub fn summary(rows: &[Row]) -> String {
    let mut servers: Vec<&str> = Vec::new();
    for row in rows.iter().filter(|r| r.server.starts_with("eddy")) {
        if !servers.contains(&row.server.as_str()) {
            servers.push(&row.server);
        }
    }
    let mut out = format!(
        "\ngoals (against the scenario's tokio baseline: throughput ≥ {THROUGHPUT}×, CPU per \
         packet ≤ {COST}×, p99 ≤ {P99}×):\n"
    );
    for server in servers {
        let (mut met, mut total, mut missed) = (0, 0, Vec::new());
        for row in rows
            .iter()
            .filter(|r| r.server == server && r.compare && !r.failed)
        {
            let Some(ratios) = row.ratios else { continue };
            let base = rows.iter().find(|b| {
                b.scenario == row.scenario
                    && [TOKIO, TOKIO_WS, TOKIO_RUSTLS].contains(&b.server.as_str())
            });
            let p99 = match (row.p99_us, base.and_then(|b| b.p99_us)) {
                (Some(mine), Some(theirs)) if theirs > 0.0 => Some(mine / theirs),
                _ => None,
            };
            let checks = [
                ("throughput", ratios.throughput_vs_tokio, THROUGHPUT, true),
                ("CPU", ratios.cost_vs_tokio, COST, false),
                ("p99", p99, P99, false),
            ];
            let mut misses = Vec::new();
            let mut any = false;
            for (what, ratio, goal, higher) in checks {
                let Some(ratio) = ratio else { continue };
                any = true;
                if (higher && ratio < goal) || (!higher && ratio > goal) {
                    misses.push(format!("{what} {ratio:.2}×"));
                }
            }
            if !any {
                continue;
            }
            total += 1;
            if misses.is_empty() {
                met += 1;
            } else {
                missed.push(format!("{} ({})", row.scenario, misses.join(", ")));
            }
        }
        out.push_str(&format!("  {server}: met in {met} of {total}"));
        if !missed.is_empty() {
            out.push_str(&format!("; missed: {}", missed.join("; ")));
        }
        out.push('\n');
    }
    out
}
