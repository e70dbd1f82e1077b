//! Where blocking waits (`task_wait`, `task_wait_multi`, `task_co`) receive their results.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use parking_lot::{Condvar, Mutex};

use crate::error::TaskError;

/// The results of one blocking wait, one slot per task, filled by task workers.
///
/// Once the waiter has given up (deadline) or taken its results, `gone` is set under the lock:
/// a result arriving after that is refused, so it can never reach a later wait.
#[derive(Debug)]
pub(crate) struct Waiter<O> {
    state: Mutex<Slots<O>>,
    ready: Condvar,
    /// Set when the waiter stops waiting; what `TaskContext::is_cancelled` reads.
    gone: AtomicBool,
}

#[derive(Debug)]
struct Slots<O> {
    results: Vec<Option<Result<O, TaskError>>>,
    missing: usize,
    gone: bool,
}

impl<O> Waiter<O> {
    pub(crate) fn new(len: usize) -> Self {
        Waiter {
            state: Mutex::new(Slots {
                results: (0..len).map(|_| None).collect(),
                missing: len,
                gone: false,
            }),
            ready: Condvar::new(),
            gone: AtomicBool::new(false),
        }
    }

    /// Store a task's result. `false` (and the result dropped) if the waiter is gone or the
    /// slot is filled already.
    pub(crate) fn put(&self, index: usize, result: Result<O, TaskError>) -> bool {
        let mut slots = self.state.lock();
        if slots.gone || slots.results[index].is_some() {
            return false;
        }
        slots.results[index] = Some(result);
        slots.missing -= 1;
        if slots.missing == 0 {
            self.ready.notify_one();
        }
        true
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Wait until every slot is filled or the deadline passes, then stop waiting: slots still
    /// empty read [`TaskError::Timeout`].
    pub(crate) fn wait(&self, deadline: Instant) -> Vec<Result<O, TaskError>> {
        let mut slots = self.state.lock();
        // A short spin first: a quick task's result usually lands within microseconds, and
        // sleeping on the condition variable would add a futex wake-up to the round trip.
        let spin_until = Instant::now() + std::time::Duration::from_micros(20);
        while slots.missing > 0 && Instant::now() < spin_until.min(deadline) {
            drop(slots);
            std::hint::spin_loop();
            std::thread::yield_now();
            slots = self.state.lock();
        }
        while slots.missing > 0 {
            if self.ready.wait_until(&mut slots, deadline).timed_out() {
                break;
            }
        }
        slots.gone = true;
        self.gone.store(true, Ordering::Relaxed);
        slots
            .results
            .iter_mut()
            .map(|slot| slot.take().unwrap_or(Err(TaskError::Timeout)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn late_results_are_refused() {
        let waiter = Waiter::new(2);
        assert!(waiter.put(1, Ok(7)));
        assert!(!waiter.put(1, Ok(8)), "a slot takes one result");
        let results = waiter.wait(Instant::now() + Duration::from_millis(1));
        assert_eq!(results, vec![Err(TaskError::Timeout), Ok(7)]);
        assert!(waiter.is_gone());
        assert!(!waiter.put(0, Ok(9)), "too late");
    }

    #[test]
    fn wakes_when_the_last_result_lands() {
        let waiter = std::sync::Arc::new(Waiter::new(1));
        let putter = waiter.clone();
        let thread = std::thread::spawn(move || assert!(putter.put(0, Ok(1))));
        let results = waiter.wait(Instant::now() + Duration::from_secs(30));
        assert_eq!(results, vec![Ok(1)]);
        thread.join().unwrap();
    }
}
