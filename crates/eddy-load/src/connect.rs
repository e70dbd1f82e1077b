//! Establishing all connections before the run starts.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LoadError;

/// Opens `count` blocking, `TCP_NODELAY` connections to `addr` (the caller
/// makes them non-blocking once any handshake is done).
///
/// Refused or timed-out attempts are retried with a short backoff until
/// `deadline`; then the last error is returned.
pub(crate) fn connect_all(
    addr: SocketAddr,
    count: usize,
    deadline: Instant,
) -> Result<Vec<TcpStream>, LoadError> {
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let conn = u32::try_from(i).unwrap_or(u32::MAX);
        let stream = connect_one(addr, conn, deadline)?;
        stream.set_nodelay(true).map_err(|source| LoadError::Io {
            conn: Some(conn),
            source,
        })?;
        streams.push(stream);
    }
    Ok(streams)
}

/// Makes every stream non-blocking.
pub(crate) fn set_nonblocking(streams: &[TcpStream]) -> Result<(), LoadError> {
    for (i, stream) in streams.iter().enumerate() {
        stream
            .set_nonblocking(true)
            .map_err(|source| LoadError::Io {
                conn: Some(i as u32),
                source,
            })?;
    }
    Ok(())
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
