//! One load thread: a level-triggered poller over a subset of connections.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use polling::{Event, Events, PollMode, Poller};

use crate::conn::{Conn, ReadOutcome, Schedule, Shape, Tally};
use crate::error::LoadError;

/// Size of the per-thread read buffer.
const READ_BUF: usize = 64 * 1024;
/// Longest poller sleep, so stop requests and stalls are noticed.
const TICK: Duration = Duration::from_millis(100);
/// Latency histogram range: 1 ns to 60 s, 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

/// State shared between worker threads and the coordinating thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set when any thread failed; the others return early.
    pub(crate) stop: AtomicBool,
    /// Packets echoed so far on all threads, warm-up included.
    pub(crate) packets: AtomicU64,
}

/// Parameters of one worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) conns: Vec<Conn>,
    pub(crate) shape: Shape,
    pub(crate) sched: Schedule,
    pub(crate) io_timeout: Duration,
}

/// A fresh latency histogram (nanoseconds).
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("static histogram bounds are valid")
}

fn poll_err(source: std::io::Error) -> LoadError {
    LoadError::Io { conn: None, source }
}

impl Worker {
    /// Runs until every connection has stopped sending and has nothing in
    /// flight, or until an error or a stop request.
    pub(crate) fn run(mut self, shared: &Shared) -> Result<Tally, LoadError> {
        let poller = Poller::new().map_err(poll_err)?;
        let result = self
            .register(&poller)
            .and_then(|()| self.event_loop(&poller, shared));
        for c in &self.conns {
            let _ = poller.delete(&c.stream);
        }
        result
    }

    fn register(&self, poller: &Poller) -> Result<(), LoadError> {
        for (key, c) in self.conns.iter().enumerate() {
            // SAFETY: every stream is deleted from the poller in `run`
            // before `self.conns` (and thus the stream) is dropped.
            unsafe { poller.add_with_mode(&c.stream, Event::readable(key), PollMode::Level) }
                .map_err(poll_err)?;
        }
        Ok(())
    }

    fn event_loop(&mut self, poller: &Poller, shared: &Shared) -> Result<Tally, LoadError> {
        let mut tally = Tally::new(new_histogram(), None);
        let capacity =
            NonZeroUsize::new(self.conns.len().clamp(1, 1024)).unwrap_or(NonZeroUsize::MIN);
        let mut events = Events::with_capacity(capacity);
        let mut rbuf = vec![0u8; READ_BUF];
        let (shape, sched) = (self.shape, self.sched);

        let now = Instant::now();
        let mut outstanding = 0u64;
        for key in 0..self.conns.len() {
            outstanding += self.conns[key].fill(now, &sched, shape)?;
            self.flush(poller, key)?;
        }
        let mut last_progress = now;
        let mut published = 0u64;

        while outstanding > 0 {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            events.clear();
            poller.wait(&mut events, Some(TICK)).map_err(poll_err)?;
            let now = Instant::now();
            for ev in events.iter() {
                let Some(c) = self.conns.get_mut(ev.key) else {
                    continue;
                };
                if ev.readable {
                    match c.read(&mut rbuf, now, &sched, &mut tally)? {
                        ReadOutcome::Data(done) => {
                            outstanding -= done;
                            last_progress = now;
                            outstanding += c.fill(now, &sched, shape)?;
                        }
                        ReadOutcome::WouldBlock => {}
                        ReadOutcome::Eof => {
                            poller.delete(&c.stream).map_err(poll_err)?;
                            continue;
                        }
                    }
                }
                self.flush(poller, ev.key)?;
            }
            if tally.all_packets > published {
                shared
                    .packets
                    .fetch_add(tally.all_packets - published, Ordering::Relaxed);
                published = tally.all_packets;
            }
            if outstanding > 0 && now.saturating_duration_since(last_progress) > self.io_timeout {
                return Err(LoadError::Stalled {
                    timeout: self.io_timeout,
                    outstanding,
                });
            }
        }
        Ok(tally)
    }

    /// Writes pending output of connection `key` and watches for
    /// writability exactly while output remains.
    fn flush(&mut self, poller: &Poller, key: usize) -> Result<(), LoadError> {
        let c = &mut self.conns[key];
        let pending = c.flush()?;
        if pending != c.write_armed {
            let interest = if pending {
                Event::all(key)
            } else {
                Event::readable(key)
            };
            poller
                .modify_with_mode(&c.stream, interest, PollMode::Level)
                .map_err(|source| LoadError::Io {
                    conn: Some(c.id()),
                    source,
                })?;
            c.write_armed = pending;
        }
        Ok(())
    }
}
