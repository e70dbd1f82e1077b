//! Rows about a server at rest: memory per idle connection, CPU when idle.

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::json;

use super::probe::{connect, ping, ping_and_close};
use super::rows::{Figure, Row};
use super::Failure;
use crate::child::ServerChild;

/// Connections pinged at the end of the idle-connection row; more than any
/// server here has reactor threads.
const LAST_PINGS: usize = 16;

/// Opens `conns` idle connections and returns the row with the child's RSS
/// growth per connection.
///
/// One connection is opened and pinged first so that start-up and
/// first-connection costs are not counted. Then all `conns` are opened;
/// the accept queue is FIFO and each reactor registers its connections in
/// order, so once each of the last 16 connections has echoed a
/// ping, every earlier one has been accepted and registered. The child's
/// open file count confirms it.
pub fn idle_rss_row(
    child: &ServerChild,
    conns: usize,
    scenario: &str,
    server: &str,
) -> Result<Row, Failure> {
    let addr = child.addr();
    let warm = connect(addr)?;
    ping(&warm)?;
    let fds_before = child.open_fds()?;
    let before = child.rss_bytes()?;
    let mut streams = Vec::with_capacity(conns);
    for i in 0..conns {
        let stream = TcpStream::connect(addr)
            .map_err(|e| format!("opening idle connection {i} of {conns}: {e}"))?;
        streams.push(stream);
    }
    for stream in streams.iter().rev().take(LAST_PINGS) {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        ping(stream)?;
    }
    let after = child.rss_bytes()?;
    let fds_after = child.open_fds()?;
    if fds_after < fds_before + conns {
        return Err(format!(
            "the server holds {} new sockets, expected {conns}",
            fds_after.saturating_sub(fds_before)
        )
        .into());
    }
    let per_conn = (after as f64 - before as f64) / conns as f64;
    Ok(Row {
        cost: Some(Figure::new(per_conn, "B RSS/conn")),
        details: json!({
            "connections": conns,
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "rss_bytes_per_conn": per_conn,
        }),
        ..Row::new(scenario, server)
    })
}

/// Measures the child's CPU time over `window` with no connection open.
/// One connection is served and closed first ([`ping_and_close`]), so the
/// server is fully up and done with it when the window opens.
pub fn idle_cpu_row(
    child: &ServerChild,
    window: Duration,
    scenario: &str,
    server: &str,
) -> Result<Row, Failure> {
    ping_and_close(child.addr())?;
    let before = child.cpu_time()?;
    // Not a synchronisation: this is the measured window itself.
    thread::sleep(window);
    let cpu = child.cpu_time()?.saturating_sub(before);
    let ms_per_sec = cpu.as_secs_f64() * 1e3 / window.as_secs_f64();
    Ok(Row {
        cost: Some(Figure::new(ms_per_sec, "ms CPU/s")),
        compare: false,
        details: json!({
            "window_secs": window.as_secs_f64(),
            "server_cpu_secs": cpu.as_secs_f64(),
            "cpu_ms_per_sec": ms_per_sec,
        }),
        ..Row::new(scenario, server)
    })
}
