//! Task workers: slow work sent from the workers to a pool of task threads, typed.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example tasks -- [--listen 127.0.0.1:9503] [--workers 2] [--task-workers 4]
//! ```
//!
//! It prints `listening on ADDR` when ready. Then `nc 127.0.0.1 9503` and type:
//!
//! ```text
//! fib 10 20 90          → fib 55 6765 2880067194370816120   (one task each, task_co, 5 s deadline)
//! sleep 100 500         → done 100       (a task sleeping 100 ms, task_wait with 500 ms)
//! sleep 500 100         → timeout
//! async 30              → queued 7, then finished 7 832040    (task_then: a per-call callback)
//! panic                 → task failed: panic requested        (the server keeps serving)
//! /stats                → the server's stats as JSON, task figures included
//! ```
//!
//! `fib` takes 1 to 64 numbers, each at most 90. SIGTERM or Ctrl-C: graceful exit, code 0.

use std::{io::Write, process::ExitCode, time::Duration};

use eddy::{
    codec::EofCodec, Bytes, ConnId, Context, EventHandler, Server, Task, TaskContext, TaskError,
    TaskHandler,
};

/// The longest line, newline excluded.
const MAX_LINE: usize = 4096;
/// The most numbers one `fib` line takes, and the largest.
const MAX_FIBS: usize = 64;
const MAX_N: u32 = 90;
/// The longest `sleep` and timeout, in milliseconds.
const MAX_MS: u64 = 60_000;

/// What the task workers are asked to do.
enum Job {
    Fib(u32),
    Sleep(u64),
    Panic,
}

/// The task handler: one per task worker.
struct Worker;

impl TaskHandler for Worker {
    type Task = Job;
    type Output = u64;

    fn on_task(&mut self, _ctx: &mut TaskContext<'_, Self>, task: Task<Job>) -> Option<u64> {
        match task.payload {
            Job::Fib(n) => Some(fib(n)),
            Job::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Some(ms)
            }
            Job::Panic => panic!("panic requested"),
        }
    }
}

/// The n-th Fibonacci number (fib(90) is the largest asked for; fib(93) is the largest that
/// fits a u64).
fn fib(n: u32) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.saturating_add(b));
    }
    a
}

/// The event handler: parses lines, sends tasks, answers.
struct Front;

fn reply(ctx: &Context<'_, Worker>, conn: ConnId, line: &str) {
    if let Err(err) = ctx.send(conn, format!("{line}\n")) {
        tracing::debug!(conn = conn.as_u64(), "reply failed: {err}");
    }
}

fn number<T: std::str::FromStr + PartialOrd>(word: Option<&str>, max: T) -> Option<T> {
    word?.parse().ok().filter(|n| *n <= max)
}

impl Front {
    fn fib(ctx: &Context<'_, Worker>, words: &[&str]) -> String {
        let numbers: Option<Vec<u32>> = words.iter().map(|w| number(Some(w), MAX_N)).collect();
        let numbers = match numbers {
            Some(numbers) if (1..=MAX_FIBS).contains(&numbers.len()) => numbers,
            _ => return format!("error: fib takes 1 to {MAX_FIBS} numbers, each at most {MAX_N}"),
        };
        let results = ctx.task_co(numbers.into_iter().map(Job::Fib), Duration::from_secs(5));
        match results.and_then(|all| all.into_iter().collect::<Result<Vec<u64>, TaskError>>()) {
            Ok(all) => {
                let all: Vec<String> = all.iter().map(u64::to_string).collect();
                format!("fib {}", all.join(" "))
            }
            Err(err) => format!("error: {err}"),
        }
    }

    fn sleep(ctx: &Context<'_, Worker>, words: &[&str]) -> String {
        let (Some(ms), Some(timeout), 2) = (
            number(words.first().copied(), MAX_MS),
            number(words.get(1).copied(), MAX_MS),
            words.len(),
        ) else {
            return format!("error: sleep <ms> <timeout_ms>, each at most {MAX_MS}");
        };
        match ctx.task_wait(Job::Sleep(ms), Duration::from_millis(timeout)) {
            Ok(ms) => format!("done {ms}"),
            Err(TaskError::Timeout) => "timeout".into(),
            Err(err) => format!("error: {err}"),
        }
    }

    fn run_async(ctx: &Context<'_, Worker>, conn: ConnId, words: &[&str]) -> String {
        let (Some(n), 1) = (number(words.first().copied(), MAX_N), words.len()) else {
            return format!("error: async <n>, n at most {MAX_N}");
        };
        // The callback runs on this worker after this event: `queued` always comes first.
        let sent = ctx.task_then(Job::Fib(n), move |ctx, id, result| match result {
            Ok(value) => reply(ctx, conn, &format!("finished {id} {value}")),
            Err(err) => reply(ctx, conn, &format!("failed {id}: {err}")),
        });
        match sent {
            Ok(id) => format!("queued {id}"),
            Err(err) => format!("error: {err}"),
        }
    }
}

impl EventHandler<Worker> for Front {
    fn on_receive(&mut self, ctx: &mut Context<'_, Worker>, conn: ConnId, packet: Bytes) {
        let Ok(line) = std::str::from_utf8(&packet) else {
            reply(ctx, conn, "error: lines are UTF-8");
            return;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.split_first() {
            Some((&"fib", args)) => Front::fib(ctx, args),
            Some((&"sleep", args)) => Front::sleep(ctx, args),
            Some((&"async", args)) => Front::run_async(ctx, conn, args),
            Some((&"panic", [])) => match ctx.task_wait(Job::Panic, Duration::from_secs(5)) {
                Err(TaskError::Panicked(message)) => format!("task failed: {message}"),
                other => format!("error: the task did not panic: {other:?}"),
            },
            Some((&"/stats", [])) => serde_json::to_string(&ctx.server().stats())
                .unwrap_or_else(|err| format!("error: {err}")),
            _ => "error: try fib <n> <n> …, sleep <ms> <timeout_ms>, async <n>, panic or /stats"
                .into(),
        };
        reply(ctx, conn, &answer);
    }
}

struct Options {
    listen: String,
    workers: usize,
    task_workers: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:9503".into(),
        workers: 2,
        task_workers: 4,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let count = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag}: `{v}` is not a positive number"))
        };
        match flag.as_str() {
            "--listen" => options.listen = value()?,
            "--workers" => options.workers = count(value()?)?,
            "--task-workers" => options.task_workers = count(value()?)?,
            "-h" | "--help" => {
                return Err("usage: tasks [--listen ADDR] [--workers N] [--task-workers N]".into())
            }
            other => return Err(format!("unknown flag `{other}` (try --help)")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("tasks: {err}");
            return ExitCode::from(2);
        }
    };
    let server = Server::builder()
        .listen(options.listen)
        .codec(EofCodec::line())
        .package_max_length(MAX_LINE + 1)
        .worker_num(options.workers)
        .task_handler(|| Worker)
        .task_worker_num(options.task_workers)
        .build(|| Front);
    let server = match server {
        Ok(server) => server,
        Err(err) => {
            eprintln!("tasks: {err}");
            return ExitCode::from(2);
        }
    };
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    match server.run() {
        Ok(report) => {
            tracing::info!(?report, "bye");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tasks: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fib;

    #[test]
    fn fibonacci() {
        assert_eq!((fib(0), fib(1), fib(10), fib(20)), (0, 1, 55, 6765));
        assert_eq!(fib(90), 2_880_067_194_370_816_120);
    }
}
