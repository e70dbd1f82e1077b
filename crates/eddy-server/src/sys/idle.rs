//! How a thread that just had work goes idle: it looks for more a few times, yielding the CPU
//! in between, before it sleeps.
//!
//! Sleeping and being woken cost two context switches, about 5 µs of CPU each on the
//! benchmark machine (a 2-core VM). With two reactors and a client sharing two cores, a
//! reactor slept after almost every other packet, and that was a fifth of its CPU. A yield lets
//! a thread waiting for this core (often the peer about to send the next request) run first,
//! so the next events are usually found without sleeping: 0.34 context switches per packet
//! became 0.02, for 40–60% more ping-pong throughput at a quarter less CPU per packet. Looking again
//! without yielding did not help at all.
//!
//! A yield that let another thread run is itself a context switch, so the thread looks once
//! more after such a yield and then sleeps: on a machine crowded with busy threads, going idle
//! costs at most one extra switch. An idle thread sleeps at once; the spin only follows work.
//!
//! The other way round, a thread that always has work never sleeps, and a thread sharing its
//! core (another reactor, a worker) waits for the scheduler to take the core from it: at the
//! next tick, 4 ms on a 250 Hz kernel, and every connection of the waiting reactor waits as
//! long. So a busy thread takes turns ([`Turn`]): after [`TURN`] of work without a rest it
//! yields once. With nothing else to run the yield returns at once (well under a microsecond,
//! under 1% of a turn). Measured on the echo, two reactors beside a one-thread client on two
//! cores: ping-pong p99 4.0 ms became 0.4–1.1 ms; beside a two-thread client, 248k packets/s
//! at 3.8 ms p99 became 359k at 0.31 ms, and pipelined 3.5M became 4.6M packets/s.

use std::time::{Duration, Instant};

/// How many times a thread looks for work, yielding in between, before it sleeps.
const LOOKS: u32 = 4;

/// A yield that took longer than this ran another thread (a bare `sched_yield` takes well
/// under a microsecond).
const SWITCHED: Duration = Duration::from_micros(3);

/// How long a thread works without a rest before it yields once (see [`Turn`]).
pub(crate) const TURN: Duration = Duration::from_micros(100);

/// The time a busy thread has worked since it last rested (slept or yielded).
#[derive(Debug)]
pub(crate) struct Turn {
    since: Instant,
}

impl Turn {
    /// A turn beginning now.
    pub(crate) fn new() -> Self {
        Turn {
            since: Instant::now(),
        }
    }

    /// The thread found nothing to do and rests (it will sleep or yield): its next turn
    /// begins when work comes.
    pub(crate) fn rest(&mut self) {
        self.since = Instant::now();
    }

    /// Between two rounds of work: yield once if this turn has lasted [`TURN`].
    pub(crate) fn take_turns(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.since) >= TURN {
            std::thread::yield_now();
            self.since = Instant::now();
        }
    }
}

/// Call `found` up to [`LOOKS`] times, yielding the CPU in between, until it finds work.
/// Returns whether it did (or the first error).
pub(crate) fn look_again<E>(mut found: impl FnMut() -> Result<bool, E>) -> Result<bool, E> {
    for _ in 0..LOOKS {
        if found()? {
            return Ok(true);
        }
        let start = Instant::now();
        std::thread::yield_now();
        if start.elapsed() > SWITCHED {
            return found();
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::{look_again, Turn, TURN};

    #[test]
    fn a_turn_ends_only_after_its_length_of_work() {
        let mut turn = Turn::new();
        // A turn that began "later" than now has not lasted at all, however slow this machine.
        let began = Instant::now() + 100 * TURN;
        turn.since = began;
        turn.take_turns();
        assert_eq!(turn.since, began, "a turn shorter than TURN goes on");
        turn.since = Instant::now() - 2 * TURN;
        turn.take_turns();
        assert!(turn.since.elapsed() < TURN, "a long turn ends with a yield");
    }

    #[test]
    fn stops_at_the_first_find_or_after_a_bounded_number_of_looks() {
        let mut calls = 0;
        assert_eq!(
            look_again(|| -> Result<bool, ()> {
                calls += 1;
                Ok(calls == 2)
            }),
            Ok(true)
        );
        assert_eq!(calls, 2);
        let mut calls = 0;
        assert_eq!(
            look_again(|| -> Result<bool, ()> {
                calls += 1;
                Ok(false)
            }),
            Ok(false)
        );
        assert!((1..=super::LOOKS + 1).contains(&calls), "{calls} looks");
        assert_eq!(
            look_again(|| Err::<bool, _>("poll failed")),
            Err("poll failed")
        );
    }
}
