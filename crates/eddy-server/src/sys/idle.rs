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

use std::time::{Duration, Instant};

/// How many times a thread looks for work, yielding in between, before it sleeps.
const LOOKS: u32 = 4;

/// A yield that took longer than this ran another thread (a bare `sched_yield` takes well
/// under a microsecond).
const SWITCHED: Duration = Duration::from_micros(3);

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
    use super::look_again;

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
