//! The accept-rate row: many short connections from a few threads.

use std::thread;
use std::time::Instant;

use serde_json::json;

use super::probe::{connect, ping};
use super::rows::{Figure, Row};
use super::Failure;
use crate::child::ServerChild;

/// Opens `total` connections from `threads` threads, each one connected,
/// pinged (so the server has really accepted and served it) and closed,
/// and returns the row with connections per second and the child's CPU
/// time per connection.
pub fn accept_row(
    child: &ServerChild,
    total: usize,
    threads: usize,
    scenario: &str,
    server: &str,
) -> Result<Row, Failure> {
    let addr = child.addr();
    ping(&connect(addr)?)?;
    let threads = threads.clamp(1, total.max(1));
    let before = child.cpu_time()?;
    let start = Instant::now();
    let results: Vec<Result<(), String>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let share = total / threads + usize::from(t < total % threads);
                scope.spawn(move || {
                    for i in 0..share {
                        let stream = connect(addr)
                            .map_err(|e| format!("thread {t}, connection {i}: connect: {e}"))?;
                        ping(&stream)
                            .map_err(|e| format!("thread {t}, connection {i}: ping: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("client thread panicked".into()))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let cpu = child.cpu_time()?.saturating_sub(before);
    results.into_iter().collect::<Result<(), String>>()?;
    let per_sec = total as f64 / elapsed.as_secs_f64();
    let cpu_us = cpu.as_secs_f64() * 1e6 / total as f64;
    Ok(Row {
        throughput: Some(Figure::new(per_sec, "conn/s")),
        cost: Some(Figure::new(cpu_us, "µs CPU/conn")),
        details: json!({
            "connections": total,
            "client_threads": threads,
            "elapsed_secs": elapsed.as_secs_f64(),
            "conns_per_sec": per_sec,
            "server_cpu_secs": cpu.as_secs_f64(),
            "cpu_us_per_conn": cpu_us,
        }),
        ..Row::new(scenario, server)
    })
}
