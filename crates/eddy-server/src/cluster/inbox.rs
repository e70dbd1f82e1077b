//! The queue between the subscriber (which reads Redis) and the delivery thread (which
//! sends to this node's connections): bounded in messages and in bytes, so a node too slow
//! to deliver drops messages, counted and logged, instead of growing memory or making Redis
//! cut its subscriber off.

use std::{
    sync::{
        atomic::{
            AtomicUsize,
            Ordering::{Acquire, Relaxed, Release},
        },
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use super::wire::Inbound;

/// The sending end, kept by the subscriber.
#[derive(Debug)]
pub(crate) struct Inbox {
    tx: Sender<Inbound>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    /// Messages queued or being delivered.
    pending: Arc<AtomicUsize>,
}

/// The receiving end, kept by the delivery thread.
#[derive(Debug)]
pub(crate) struct Outbox {
    rx: Receiver<Inbound>,
    bytes: Arc<AtomicUsize>,
    pending: Arc<AtomicUsize>,
}

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// `inbound_queue` messages wait already.
    Messages,
    /// `inbound_queue_bytes` wait already.
    Bytes,
    /// The delivery thread is gone (stopping).
    Closed,
}

/// A queue of `messages` messages and `bytes` payload bytes at most.
pub(crate) fn inbox(messages: usize, bytes: usize) -> (Inbox, Outbox) {
    let (tx, rx) = crossbeam_channel::bounded(messages);
    let count = Arc::new(AtomicUsize::new(0));
    let pending = Arc::new(AtomicUsize::new(0));
    let inbox = Inbox {
        tx,
        bytes: count.clone(),
        max_bytes: bytes,
        pending: pending.clone(),
    };
    let outbox = Outbox {
        rx,
        bytes: count,
        pending,
    };
    (inbox, outbox)
}

impl Inbox {
    /// Whether nothing is queued or being delivered: a message delivered now, by the
    /// subscriber itself, overtakes none (the subscriber is the only one to queue).
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.load(Acquire) == 0
    }

    /// Queue a message, or say why not (it is dropped).
    pub(crate) fn push(&self, message: Inbound) -> Result<(), Full> {
        let len = message.payload.len();
        let before = self.bytes.fetch_add(len, Relaxed);
        if before + len > self.max_bytes && before > 0 {
            self.bytes.fetch_sub(len, Relaxed);
            return Err(Full::Bytes);
        }
        self.pending.fetch_add(1, Relaxed);
        match self.tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.pending.fetch_sub(1, Relaxed);
                self.bytes.fetch_sub(len, Relaxed);
                Err(match err {
                    TrySendError::Full(_) => Full::Messages,
                    TrySendError::Disconnected(_) => Full::Closed,
                })
            }
        }
    }
}

impl Outbox {
    /// The next message, until the subscriber is gone and the queue empty. Call
    /// [`done`](Self::done) once it is delivered.
    pub(crate) fn next(&self) -> Option<Inbound> {
        let message = self.rx.recv().ok()?;
        self.bytes.fetch_sub(message.payload.len(), Relaxed);
        Some(message)
    }

    /// The message from [`next`](Self::next) is delivered.
    pub(crate) fn done(&self) {
        self.pending.fetch_sub(1, Release);
    }
}

/// Logs a recurring problem at most once a second, with how often it happened meanwhile.
#[derive(Debug)]
pub(crate) struct Throttle {
    last: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    pub(crate) const fn new() -> Throttle {
        Throttle {
            last: Mutex::new(None),
        }
    }

    /// Whether to log now; with the number of times since the last log.
    pub(crate) fn ready(&self) -> Option<u64> {
        let mut last = self.last.lock();
        let now = Instant::now();
        match &mut *last {
            Some((at, count)) if now.duration_since(*at) < Duration::from_secs(1) => {
                *count += 1;
                None
            }
            _ => {
                let since = last.map_or(1, |(_, count)| count + 1);
                *last = Some((now, 0));
                Some(since)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::Target;

    fn message(len: usize) -> Inbound {
        Inbound {
            from: "n".into(),
            target: Target::All,
            payload: vec![0; len],
        }
    }

    #[test]
    fn the_queue_is_bounded_in_messages_and_bytes() {
        let (inbox, outbox) = inbox(2, 100);
        assert!(inbox.is_idle());
        inbox.push(message(10)).unwrap();
        inbox.push(message(10)).unwrap();
        assert_eq!(inbox.push(message(10)), Err(Full::Messages));
        assert_eq!(outbox.next().unwrap().payload.len(), 10);
        outbox.done();
        assert!(!inbox.is_idle(), "one still queued");
        assert_eq!(inbox.push(message(200)), Err(Full::Bytes));
        assert_eq!(outbox.next().unwrap().payload.len(), 10);
        // One message alone may be as large as any message the bus takes.
        inbox.push(message(200)).unwrap();
        assert_eq!(outbox.next().unwrap().payload.len(), 200);
        assert!(!inbox.is_idle(), "being delivered");
        outbox.done();
        outbox.done();
        assert!(inbox.is_idle());
        drop(inbox);
        assert!(outbox.next().is_none());
    }

    #[test]
    fn the_throttle_logs_once_a_second() {
        let throttle = Throttle::new();
        assert_eq!(throttle.ready(), Some(1));
        assert_eq!(throttle.ready(), None);
        assert_eq!(throttle.ready(), None);
    }
}
