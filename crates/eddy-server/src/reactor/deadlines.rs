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

/// The fewest deadlines worth a look for finished handshakes (see `push`).
const COMPACT_FROM: usize = 1024;

/// The deadlines of one reactor's connections, for one kind of handshake.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// By timeout; as many as the listeners' distinct timeouts.
    queues: Vec<(Duration, VecDeque<Entry>)>,
    /// At this many deadlines, those of connections whose handshake is over are dropped.
    compact_at: usize,
}

impl Deadlines {
    /// Connection `key` (`id`) must be done `timeout` after `from`.
    ///
    /// A handshake that ends leaves its deadline queued until it is due; so that they do not
    /// pile up (a connection rate times the timeout), once the queues hold twice what they
    /// held after the last look, or [`COMPACT_FROM`], the deadlines of the connections that
    /// `pending` no longer says are handshaking are dropped (amortised O(1) a push).
    pub(super) fn push(
        &mut self,
        timeout: Duration,
        from: Instant,
        key: usize,
        id: ConnId,
        pending: impl Fn(usize, ConnId) -> bool,
    ) {
        self.insert(timeout, from, key, id);
        if self.len() >= self.compact_at.max(COMPACT_FROM) {
            for (_, queue) in &mut self.queues {
                queue.retain(|&(_, key, id)| pending(key, id));
                queue.shrink_to(2 * queue.len());
            }
            self.compact_at = 2 * self.len();
        }
    }

    /// How many deadlines are queued.
    fn len(&self) -> usize {
        self.queues.iter().map(|(_, queue)| queue.len()).sum()
    }

    fn insert(&mut self, timeout: Duration, from: Instant, key: usize, id: ConnId) {
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
        deadlines.push(long, start, 1, id(1), |_, _| true);
        deadlines.push(short, start + Duration::from_secs(2), 2, id(2), |_, _| true);
        deadlines.push(short, start, 3, id(3), |_, _| true);
        deadlines.push(long, start + Duration::from_secs(1), 4, id(4), |_, _| true);
        assert_eq!(deadlines.next(), Some(start + short));
        assert_eq!(deadlines.pop_due(start), None);
        let order: Vec<usize> = std::iter::from_fn(|| deadlines.pop_due(start + long * 2))
            .map(|(key, _)| key)
            .collect();
        assert_eq!(order, [3, 2, 1, 4]);
        assert!(deadlines.is_empty());
    }

    #[test]
    fn the_deadlines_of_finished_handshakes_do_not_pile_up() {
        let start = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut deadlines = Deadlines::default();
        // Every connection but one in a hundred is done with its handshake by the next push.
        let pending = |key: usize, _| key.is_multiple_of(100);
        for key in 0..100_000 {
            deadlines.push(timeout, start, key, id(key as u64), pending);
            assert!(
                deadlines.len() <= 2 * COMPACT_FROM + 1000,
                "{}",
                deadlines.len()
            );
        }
        // The pending ones are all still there, in order.
        let due: Vec<usize> = std::iter::from_fn(|| deadlines.pop_due(start + timeout))
            .map(|(key, _)| key)
            .filter(|key| key.is_multiple_of(100))
            .collect();
        assert_eq!(due, (0..100_000).step_by(100).collect::<Vec<_>>());
    }
}
