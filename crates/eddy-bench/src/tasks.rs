//! Task round trips and task throughput: eddy's task workers against tokio's blocking pool
//! (`spawn_blocking`), the nearest thing a tokio server has. Measured in this process.
//!
//! - **Round trip**: one thread sends a tiny task and blocks until its result, again and
//!   again (`task_wait` / `block_on(spawn_blocking(..))`): latency percentiles, round trips
//!   per second, and process CPU per round trip.
//! - **Throughput**: one thread queues one-way tasks as fast as they are taken, at most
//!   1,024 in flight: tasks per second, and process CPU per task.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use eddy_server::{
    ConnId, Context, EventHandler, Server, Task, TaskContext, TaskError, TaskHandler,
};
use hdrhistogram::Histogram;

use crate::proc_cpu;

/// The most tasks in flight in the throughput runs (eddy's default queue capacity).
pub const IN_FLIGHT: u64 = 1024;

/// What one run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskFigures {
    /// Round trips (or tasks) per second.
    pub per_sec: f64,
    /// Median round trip, microseconds (round-trip runs only).
    pub p50_us: Option<f64>,
    /// 99th percentile round trip, microseconds (round-trip runs only).
    pub p99_us: Option<f64>,
    /// Process CPU time per round trip (or task), microseconds.
    pub cpu_us: f64,
}

/// Which task runner to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// eddy's task workers (`task_worker_num`).
    Eddy,
    /// tokio's `spawn_blocking` pool on a multi-threaded runtime.
    Tokio,
}

impl Runner {
    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Runner::Eddy => "eddy",
            Runner::Tokio => "tokio",
        }
    }
}

/// Adds one, and counts the tasks it ran.
struct AddOne(Arc<AtomicU64>);

impl TaskHandler for AddOne {
    type Task = u64;
    type Output = u64;

    fn on_task(&mut self, _: &mut TaskContext<'_, Self>, task: Task<u64>) -> Option<u64> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Some(task.payload + 1)
    }
}

struct Idle;

impl EventHandler<AddOne> for Idle {
    fn on_receive(&mut self, _: &mut Context<'_, AddOne>, _: ConnId, _: bytes::Bytes) {}
}

/// Start `task_workers` of eddy's task workers (no connections), run `f` with a handle to
/// them and the count of tasks run, shut down.
fn with_eddy<R>(
    task_workers: usize,
    f: impl FnOnce(&eddy_server::Tasks<AddOne>, &AtomicU64) -> R,
) -> Result<R, String> {
    let ran = Arc::new(AtomicU64::new(0));
    let counter = ran.clone();
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .handle_signals(false)
        .worker_num(1)
        .reactor_num(1)
        .task_handler(move || AddOne(counter.clone()))
        .task_worker_num(task_workers)
        .build(|| Idle)
        .map_err(|e| e.to_string())?
        .start()
        .map_err(|e| e.to_string())?;
    let tasks = server
        .handle()
        .tasks::<AddOne>()
        .map_err(|e| e.to_string())?;
    let result = f(&tasks, &ran);
    server.shutdown().map_err(|e| e.to_string())?;
    Ok(result)
}

fn tokio_runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(threads)
        .build()
        .map_err(|e| e.to_string())
}

/// CPU time of this process, for before/after differences.
fn cpu_now() -> Result<Duration, String> {
    proc_cpu::cpu_time(std::process::id()).map_err(|e| e.to_string())
}

/// Round trips for `duration` (after a tenth as long of warm-up) with `threads` task
/// threads.
pub fn round_trip(
    runner: Runner,
    threads: usize,
    duration: Duration,
) -> Result<TaskFigures, String> {
    let run = |once: &mut dyn FnMut(u64) -> Result<u64, String>| {
        let warm_until = Instant::now() + duration / 10;
        let mut n = 0;
        while Instant::now() < warm_until {
            n = once(n)?;
        }
        let mut hist =
            Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
        let (cpu0, start) = (cpu_now()?, Instant::now());
        let end = start + duration;
        let mut count = 0u64;
        loop {
            let t = Instant::now();
            if t >= end {
                break;
            }
            n = once(n)?;
            hist.saturating_record(t.elapsed().as_nanos() as u64);
            count += 1;
        }
        let (elapsed, cpu) = (start.elapsed(), cpu_now()? - cpu0);
        Ok(TaskFigures {
            per_sec: count as f64 / elapsed.as_secs_f64(),
            p50_us: Some(hist.value_at_quantile(0.5) as f64 / 1e3),
            p99_us: Some(hist.value_at_quantile(0.99) as f64 / 1e3),
            cpu_us: cpu.as_secs_f64() * 1e6 / count.max(1) as f64,
        })
    };
    let check = |n: u64, got: u64| {
        if got == n + 1 {
            Ok(got)
        } else {
            Err(format!("task answered {got} to {n}"))
        }
    };
    match runner {
        Runner::Eddy => with_eddy(threads, |tasks, _| {
            run(&mut |n| {
                let got = tasks
                    .task_wait(n, Duration::from_secs(5))
                    .map_err(|e: TaskError| e.to_string())?;
                check(n, got)
            })
        })?,
        Runner::Tokio => {
            let rt = tokio_runtime(threads)?;
            run(&mut |n| {
                let got = rt
                    .block_on(rt.spawn_blocking(move || n + 1))
                    .map_err(|e| e.to_string())?;
                check(n, got)
            })
        }
    }
}

/// One-way tasks for `duration`, at most [`IN_FLIGHT`] queued or running.
pub fn throughput(
    runner: Runner,
    threads: usize,
    duration: Duration,
) -> Result<TaskFigures, String> {
    let run = |submit: &mut dyn FnMut(u64) -> bool, ran: &AtomicU64| {
        let (cpu0, start) = (cpu_now()?, Instant::now());
        let end = start + duration;
        let mut sent = 0u64;
        while Instant::now() < end {
            if sent - ran.load(Ordering::Relaxed) < IN_FLIGHT && submit(sent) {
                sent += 1;
            } else {
                std::thread::yield_now();
            }
        }
        let done = ran.load(Ordering::Relaxed);
        let (elapsed, cpu) = (start.elapsed(), cpu_now()? - cpu0);
        Ok::<_, String>(TaskFigures {
            per_sec: done as f64 / elapsed.as_secs_f64(),
            p50_us: None,
            p99_us: None,
            cpu_us: cpu.as_secs_f64() * 1e6 / done.max(1) as f64,
        })
    };
    match runner {
        Runner::Eddy => with_eddy(threads, |tasks, ran| {
            run(&mut |n| tasks.task(n).is_ok(), ran)
        })?,
        Runner::Tokio => {
            let rt = tokio_runtime(threads)?;
            let ran = Arc::new(AtomicU64::new(0));
            let counter = ran.clone();
            let figures = run(
                &mut |n| {
                    let counter = counter.clone();
                    drop(rt.spawn_blocking(move || {
                        counter.fetch_add(1, Ordering::Relaxed);
                        n + 1
                    }));
                    true
                },
                &ran,
            );
            rt.shutdown_timeout(Duration::from_secs(5));
            figures
        }
    }
}
