//! The TLS handshakes of an echo run, before its clock starts: every connection's
//! handshake driven at once on one poller.

use std::net::TcpStream;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use polling::{Event, Events, PollMode, Poller};

use super::{Connector, Session};
use crate::error::LoadError;
use crate::worker::new_histogram;

/// Longest poller sleep while handshaking.
const TICK: Duration = Duration::from_millis(100);

/// What the handshake phase produced.
#[derive(Debug)]
pub(crate) struct Handshaken {
    /// One established session per stream, in order.
    pub(crate) sessions: Vec<Session>,
    /// Each handshake's time, from its ClientHello to the server's Finished, in
    /// nanoseconds (all start together, so later ones include waiting for the others).
    pub(crate) hist: Histogram<u64>,
}

fn poll_err(source: std::io::Error) -> LoadError {
    LoadError::Io { conn: None, source }
}

/// Runs a TLS handshake on every one of `streams` (connected, non-blocking) at once, and
/// fails if any is refused or not finished by `deadline`.
pub(crate) fn handshake_all(
    streams: &[TcpStream],
    connector: &Connector,
    deadline: Instant,
) -> Result<Handshaken, LoadError> {
    let poller = Poller::new().map_err(poll_err)?;
    let mut registered = 0;
    let result = drive(&poller, streams, connector, deadline, &mut registered);
    for stream in &streams[..registered] {
        let _ = poller.delete(stream);
    }
    result
}

fn drive(
    poller: &Poller,
    streams: &[TcpStream],
    connector: &Connector,
    deadline: Instant,
    registered: &mut usize,
) -> Result<Handshaken, LoadError> {
    let start = Instant::now();
    let mut hist = new_histogram();
    let mut sessions = Vec::with_capacity(streams.len());
    for (key, stream) in streams.iter().enumerate() {
        let id = key as u32; // connections are bounded by u32::MAX
        let mut session = connector.session(id)?;
        let pending = session.send(stream).map_err(|source| LoadError::Io {
            conn: Some(id),
            source,
        })?;
        // SAFETY: every registered stream is deleted from the poller by `handshake_all`
        // before it returns, and the streams outlive that call.
        unsafe { poller.add_with_mode(stream, interest(key, pending), PollMode::Level) }
            .map_err(poll_err)?;
        *registered = key + 1;
        sessions.push(session);
    }
    let mut done = vec![false; streams.len()];
    let mut left = streams.len();
    let capacity = NonZeroUsize::new(streams.len().clamp(1, 1024)).unwrap_or(NonZeroUsize::MIN);
    let mut events = Events::with_capacity(capacity);
    // Handshake messages carry no application data: the buffer only has to exist.
    let mut scratch = [0u8; 1024];
    while left > 0 {
        let now = Instant::now();
        if now >= deadline {
            let conn = done.iter().position(|d| !d).unwrap_or(0) as u32;
            return Err(LoadError::Tls {
                conn: Some(conn),
                reason: format!("{left} TLS handshake(s) not finished before the deadline"),
            });
        }
        events.clear();
        let wait = deadline.saturating_duration_since(now).min(TICK);
        poller.wait(&mut events, Some(wait)).map_err(poll_err)?;
        for ev in events.iter() {
            let key = ev.key;
            let (Some(session), Some(stream)) = (sessions.get_mut(key), streams.get(key)) else {
                continue;
            };
            if done[key] {
                continue;
            }
            let id = key as u32;
            let got = session.receive(stream, &mut scratch, id, |_| {
                Err(LoadError::Unsolicited { conn: id })
            })?;
            if got.eof {
                return Err(LoadError::Tls {
                    conn: Some(id),
                    reason: "the server closed the connection during the handshake".into(),
                });
            }
            let pending = session.send(stream).map_err(|source| LoadError::Io {
                conn: Some(id),
                source,
            })?;
            if !session.is_handshaking() {
                let nanos = start.elapsed().as_nanos();
                hist.saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX));
                done[key] = true;
                left -= 1;
                // What is still pending goes with the first flush of the run.
                poller.delete(stream).map_err(poll_err)?;
            } else {
                poller
                    .modify_with_mode(stream, interest(key, pending), PollMode::Level)
                    .map_err(poll_err)?;
            }
        }
    }
    Ok(Handshaken { sessions, hist })
}

fn interest(key: usize, pending: bool) -> Event {
    if pending {
        Event::all(key)
    } else {
        Event::readable(key)
    }
}
