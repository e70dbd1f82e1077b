//! Counters kept by each thread on its own cache line (the snapshot users read, `Stats`, is
//! put together a layer up, in `handle::stats`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter one thread writes and any thread reads.
///
/// The writer adds with a plain load and store rather than a locked read-modify-write: the
/// send path bumps two counters per packet, and their `lock add` cost about 5% of the server's
/// CPU on the pipelined benchmark. Threads that share a counter use [`Counter::add_shared`].
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Add `n`. Only the counter's one writer thread may call this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Subtract `n`. Only the counter's one writer thread may call this.
    #[inline]
    pub(crate) fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    /// Add `n` from any thread.
    pub(crate) fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Counters written by one reactor thread.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct ReactorCounters {
    /// Events dispatched to each worker.
    pub(crate) per_worker: Box<[Counter]>,
    pub(crate) dispatched: Counter,
    pub(crate) received_bytes: Counter,
    /// Connections closed: by this reactor, and by the one that accepted a connection it
    /// could not hand over here (`Shared::unadmit`), so written with `add_shared` only.
    pub(crate) closed: Counter,
    /// Capacity of the partial-packet buffers of this reactor's connections.
    pub(crate) buffered: Counter,
}

/// Counters written by one worker thread (or, for `Counters::other`, by any thread).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerCounters {
    pub(crate) requests: Counter,
    pub(crate) responses: Counter,
    pub(crate) sent_bytes: Counter,
}

impl WorkerCounters {
    /// Count a send made by this worker's own thread.
    pub(crate) fn count_response(&self, bytes: usize) {
        self.responses.add(1);
        self.sent_bytes.add(bytes as u64);
    }

    /// Count sends made by any thread.
    pub(crate) fn count_shared_responses(&self, sends: usize, bytes: usize) {
        self.responses.add_shared(sends as u64);
        self.sent_bytes.add_shared(bytes as u64);
    }
}

/// All of a server's counters.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) reactors: Box<[ReactorCounters]>,
    pub(crate) workers: Box<[WorkerCounters]>,
    /// Sends from outside the workers (handles held by other threads).
    pub(crate) other: WorkerCounters,
    pub(crate) accepted: AtomicU64,
    pub(crate) aborted: AtomicU64,
    /// When a `max_conn` refusal was last logged (milliseconds on the server's clock + 1).
    pub(crate) refusal_logged: AtomicU64,
}

impl Counters {
    pub(crate) fn new(reactors: usize, workers: usize) -> Self {
        Counters {
            reactors: (0..reactors)
                .map(|_| ReactorCounters {
                    per_worker: (0..workers).map(|_| Counter::default()).collect(),
                    ..ReactorCounters::default()
                })
                .collect(),
            workers: (0..workers).map(|_| WorkerCounters::default()).collect(),
            other: WorkerCounters::default(),
            accepted: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            refusal_logged: AtomicU64::new(0),
        }
    }

    pub(crate) fn count_response(&self, bytes: usize) {
        self.other.count_shared_responses(1, bytes);
    }
}
