//! Handshake deadlines (WebSocket, TLS): one queue per timeout. Each listener has its own
//! timeout, so a later connection can be due before an earlier one; with one timeout,
//! deadlines only grow, so every queue takes new ones at its end and gives the due ones from
//! its front, and a reactor with a short and a long timeout never scans the long one's queue.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::conn::ConnId;

/// A connection's handshake deadline: the connection's key and its id.
type Entry = (Instant, usize, ConnId);

/// The deadlines of one reactor's connections, for one kind of handshake.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// By timeout; as many as the listeners' distinct timeouts.
    queues: Vec<(Duration, VecDeque<Entry>)>,
}

impl Deadlines {
    /// Connection `key` (`id`) must be done `timeout` after `from`.
    pub(super) fn push(&mut self, timeout: Duration, from: Instant, key: usize, id: ConnId) {
        let entry = (from + timeout, key, id);
        let queue = match self.queues.iter().position(|(t, _)| *t == timeout) {
            Some(i) => &mut self.queues[i].1,
            None => {
                self.queues.push((timeout, VecDeque::new()));
                &mut self.queues.last_mut().expect("just pushed").1
            }
        };
        // At the end, unless `from` went back (a caller's earlier reading of the clock).
        let at = queue
            .iter()
            .rposition(|queued| queued.0 <= entry.0)
            .map_or(0, |i| i + 1);
        queue.insert(at, entry);
    }

    /// Whether no deadline is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.queues.iter().all(|(_, queue)| queue.is_empty())
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|(_, queue)| queue.front().map(|entry| entry.0))
            .min()
    }

    /// The earliest connection whose deadline is at or before `now`, taken off the queue.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(usize, ConnId)> {
        let (_, queue) = self
            .queues
            .iter_mut()
            .filter(|(_, queue)| queue.front().is_some_and(|entry| entry.0 <= now))
            .min_by_key(|(_, queue)| queue.front().map(|entry| entry.0))?;
        queue.pop_front().map(|(_, key, id)| (key, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ConnId {
        ConnId::from_u64(n)
    }

    #[test]
    fn due_connections_come_in_deadline_order_across_timeouts() {
        let start = Instant::now();
        let (short, long) = (Duration::from_secs(1), Duration::from_secs(10));
        let mut deadlines = Deadlines::default();
        assert!(deadlines.is_empty() && deadlines.next().is_none());
        deadlines.push(long, start, 1, id(1));
        deadlines.push(short, start + Duration::from_secs(2), 2, id(2));
        deadlines.push(short, start, 3, id(3));
        deadlines.push(long, start + Duration::from_secs(1), 4, id(4));
        assert_eq!(deadlines.next(), Some(start + short));
        assert_eq!(deadlines.pop_due(start), None);
        let order: Vec<usize> = std::iter::from_fn(|| deadlines.pop_due(start + long * 2))
            .map(|(key, _)| key)
            .collect();
        assert_eq!(order, [3, 2, 1, 4]);
        assert!(deadlines.is_empty());
    }
}
