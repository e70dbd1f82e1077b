//! Timers of one worker or task worker thread: `tick`, `after`, `defer`, `clear_timer`.
//!
//! Each thread owns its timers: they fire on that thread, between events, and are dropped
//! when it stops (so a timer can never hold a shutdown up). A thread with no timer due sleeps
//! until the next one is: nothing polls.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    fmt,
    time::{Duration, Instant},
};

/// A timer's id, unique in the server (Swoole's timer id): the thread that made it is in
/// its high bits, so `clear_timer` with another thread's id clears nothing there and says
/// `false`. Clear it with `clear_timer` on the thread that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub(crate) u64);

impl TimerId {
    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `delay` from now; for a delay too long to represent, a time decades away (never, in
/// practice) rather than an overflow.
pub(crate) fn deadline_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// The shortest `tick` interval: a shorter one would be a busy loop.
pub const MIN_TICK: Duration = Duration::from_millis(1);

struct Entry<F: ?Sized> {
    /// `Some` for a tick.
    every: Option<Duration>,
    /// Taken out while it runs.
    callback: Option<Box<F>>,
}

/// One thread's timers, `F` being its callback type.
pub(crate) struct Timers<F: ?Sized> {
    next_id: u64,
    /// Due times; entries of cleared timers are skipped when they come up.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    entries: HashMap<u64, Entry<F>>,
}

/// A due timer, taken out to run.
pub(crate) struct Due<F: ?Sized> {
    pub(crate) id: TimerId,
    pub(crate) callback: Box<F>,
    every: Option<Duration>,
    at: Instant,
}

/// Where a timer id's thread tag starts: 42 bits of sequence (4 × 10^12 timers) are more
/// than a thread can use up, and with the 11-bit tag above them every id stays under 2^53,
/// a number JSON and JavaScript hold exactly.
const TAG_SHIFT: u32 = 42;

/// The thread a timer belongs to, for its id's tag.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimerOwner {
    Worker(usize),
    TaskWorker(usize),
}

impl TimerOwner {
    /// A tag no other thread of the server has, in 11 bits: workers 1 to 1,024, task workers
    /// from 1,025 (the limits allow 1,024 workers and 256 task workers).
    fn tag(self) -> u64 {
        let tag = match self {
            TimerOwner::Worker(id) => id as u64 + 1,
            TimerOwner::TaskWorker(id) => id as u64 + 1025,
        };
        tag & 0x7ff
    }
}

impl<F: ?Sized> Default for Timers<F> {
    fn default() -> Self {
        Timers {
            next_id: 1,
            heap: BinaryHeap::new(),
            entries: HashMap::new(),
        }
    }
}

impl<F: ?Sized> Timers<F> {
    /// No timers yet, for `owner`'s thread: its ids carry its tag.
    pub(crate) fn new(owner: TimerOwner) -> Self {
        Timers {
            next_id: (owner.tag() << TAG_SHIFT) | 1,
            ..Timers::default()
        }
    }

    /// Add a timer first due after `delay`, then every `every` if set.
    pub(crate) fn add(&mut self, delay: Duration, every: Option<Duration>, f: Box<F>) -> TimerId {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                every,
                callback: Some(f),
            },
        );
        self.heap.push(Reverse((deadline_after(delay), id)));
        TimerId(id)
    }

    /// Add a tick: every `interval` (at least [`MIN_TICK`]), the first one interval from now.
    pub(crate) fn tick(&mut self, interval: Duration, f: Box<F>) -> Result<TimerId, TimerError> {
        if interval < MIN_TICK {
            return Err(TimerError::IntervalTooShort);
        }
        Ok(self.add(interval, Some(interval), f))
    }

    /// Drop every timer (a handler rebuilt, a thread stopping). Ids keep counting, so an id
    /// of a dropped timer never names a later one.
    pub(crate) fn clear_all(&mut self) {
        self.heap.clear();
        self.entries.clear();
    }

    /// Cancel a timer; `false` if there is no such timer (fired already, or cleared).
    pub(crate) fn clear(&mut self, id: TimerId) -> bool {
        let found = self.entries.remove(&id.0).is_some();
        // Cleared timers leave their heap entries behind until they come up: keep those
        // from piling up (many long timers made and cleared).
        if self.heap.len() > 2 * self.entries.len() + 64 {
            let live = &self.entries;
            self.heap.retain(|Reverse((_, id))| live.contains_key(id));
        }
        found
    }

    /// When the next timer is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Take out a timer due at or before `now`, to run.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Due<F>> {
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get_mut(&id) else {
                continue; // cleared
            };
            let Some(callback) = entry.callback.take() else {
                continue;
            };
            return Some(Due {
                id: TimerId(id),
                callback,
                every: entry.every,
                at,
            });
        }
        None
    }

    /// A timer has run: a tick not cleared meanwhile is due again one interval after it was
    /// due (or one interval from now, if it fell that far behind); a one-off is gone.
    pub(crate) fn restore(&mut self, due: Due<F>) {
        let Due {
            id,
            callback,
            every,
            at,
        } = due;
        match (every, self.entries.get_mut(&id.0)) {
            (Some(every), Some(entry)) => {
                entry.callback = Some(callback);
                let now = Instant::now();
                let next = at.checked_add(every).filter(|next| *next > now);
                let next = next.unwrap_or_else(|| deadline_after(every));
                self.heap.push(Reverse((next, id.0)));
            }
            (None, _) => {
                self.entries.remove(&id.0);
            }
            (Some(_), None) => {} // cleared while it ran
        }
    }
}

/// Why a timer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerError {
    /// A `tick` interval under [`MIN_TICK`] (1 ms): it would be a busy loop.
    IntervalTooShort,
}

impl fmt::Display for TimerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerError::IntervalTooShort => write!(f, "tick interval under {MIN_TICK:?}"),
        }
    }
}

impl std::error::Error for TimerError {}

#[cfg(test)]
mod tests {
    use super::*;

    type F = dyn FnMut() -> u32;

    #[test]
    fn due_in_order_ticks_repeat_and_clears_stick() {
        let mut timers = Timers::<F>::default();
        let a = timers.add(Duration::ZERO, None, Box::new(|| 1));
        let b = timers.add(
            Duration::ZERO,
            Some(Duration::from_secs(3600)),
            Box::new(|| 2),
        );
        let c = timers.add(Duration::from_secs(3600), None, Box::new(|| 3));
        let now = Instant::now();
        let mut first = timers.pop_due(now).unwrap();
        assert_eq!(((first.callback)(), first.id), (1, a));
        timers.restore(first);
        let mut second = timers.pop_due(now).unwrap();
        assert_eq!(((second.callback)(), second.id), (2, b));
        timers.restore(second);
        assert!(
            timers.pop_due(now).is_none(),
            "the tick is an hour away now"
        );
        assert!(!timers.clear(a), "a one-off is gone once run");
        assert!(timers.clear(b) && timers.clear(c));
        assert!(timers.pop_due(now + Duration::from_secs(7200)).is_none());
    }

    #[test]
    fn ids_do_not_repeat_after_clear_all_and_huge_delays_do_not_overflow() {
        let mut timers = Timers::<F>::default();
        let old = timers.add(Duration::MAX, Some(Duration::MAX), Box::new(|| 0));
        timers.clear_all();
        let new = timers.add(Duration::ZERO, None, Box::new(|| 1));
        assert_ne!(old, new);
        assert!(!timers.clear(old), "an old id names nothing");
        assert!(timers.next_due().is_some());
    }

    #[test]
    fn ids_differ_between_threads_and_a_foreign_one_clears_nothing() {
        let owners = [
            TimerOwner::Worker(0),
            TimerOwner::Worker(1),
            TimerOwner::TaskWorker(0),
            TimerOwner::TaskWorker(1),
        ];
        let mut threads: Vec<Timers<F>> = owners.iter().map(|&o| Timers::new(o)).collect();
        let ids: Vec<TimerId> = threads
            .iter_mut()
            .map(|t| t.add(Duration::from_secs(3600), None, Box::new(|| 0)))
            .collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(!threads[1].clear(ids[0]), "worker 0's id on worker 1");
        assert!(!threads[2].clear(ids[0]), "a worker's id on a task worker");
        assert!(threads[0].clear(ids[0]) && threads[1].clear(ids[1]));
        // The largest tags there are still make ids JSON holds exactly.
        let last = Timers::<F>::new(TimerOwner::TaskWorker(255)).next_id;
        let worker = Timers::<F>::new(TimerOwner::Worker(1023)).next_id;
        assert_ne!(worker >> TAG_SHIFT, 0);
        assert!(last < 1 << 53 && worker < 1 << 53 && last != worker);
    }

    #[test]
    fn cleared_entries_do_not_pile_up() {
        let mut timers = Timers::<F>::default();
        for _ in 0..10_000 {
            let id = timers.add(Duration::from_secs(3600), None, Box::new(|| 0));
            timers.clear(id);
        }
        assert!(timers.heap.len() <= 65, "{}", timers.heap.len());
    }
}
