//! Establishing all connections before the run starts.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LoadError;

/// Opens `count` non-blocking, `TCP_NODELAY` connections to `addr`.
///
/// Refused or timed-out attempts are retried with a short backoff until
/// `timeout` has elapsed since the call; then the last error is returned.
pub(crate) fn connect_all(
    addr: SocketAddr,
    count: usize,
    timeout: Duration,
) -> Result<Vec<TcpStream>, LoadError> {
    let deadline = Instant::now() + timeout;
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let conn = u32::try_from(i).unwrap_or(u32::MAX);
        let stream = connect_one(addr, conn, deadline)?;
        let setup = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_nonblocking(true));
        setup.map_err(|source| LoadError::Io {
            conn: Some(conn),
            source,
        })?;
        streams.push(stream);
    }
    Ok(streams)
}

fn connect_one(addr: SocketAddr, conn: u32, deadline: Instant) -> Result<TcpStream, LoadError> {
    let mut attempts = 0u32;
    let mut backoff = Duration::from_millis(5);
    loop {
        attempts += 1;
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let err = match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !retryable(&err) || remaining.is_zero() {
            return Err(LoadError::Connect {
                addr,
                conn,
                attempts,
                source: err,
            });
        }
        thread::sleep(backoff.min(remaining));
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::AddrNotAvailable
    )
}
