//! User threads (add_process): started with the server, restarted when they return or panic,
//! told to stop at shutdown, and left behind (reported) if they do not.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use crossbeam_channel::unbounded;
use eddy::Destination;

use crate::util::*;

#[test]
fn user_threads_restart_and_stop_with_the_server() {
    let (events_tx, events) = unbounded::<String>();
    let runs = shared(AtomicUsize::new(0));
    let counter = runs.clone();
    let builder = builder().add_process("feeder", move |ctx| {
        let run = counter.fetch_add(1, Ordering::SeqCst);
        assert_eq!(std::thread::current().name(), Some("feeder"));
        if run >= 2 {
            // Reach the workers while it runs (before saying so: the test then shuts down).
            ctx.server()
                .send_message(Destination::Worker(0), format!("hello from run {run}"))
                .unwrap();
        }
        let _ = events_tx.send(format!("run {run} of {}", ctx.name()));
        match run {
            0 => panic!("first run fails"),
            1 => {} // returns: restarted too
            _ => {
                while !ctx.wait_stop(Duration::from_millis(5)) {}
                let _ = events_tx.send("stopping".into());
            }
        }
    });
    let (recorder, seen) = Recorder::new(false);
    let (server, _) = start(builder, move || recorder.clone());
    for run in 0..3 {
        assert_eq!(
            events.recv_timeout(WAIT),
            Ok(format!("run {run} of feeder"))
        );
    }
    drop(seen);
    let report = server.shutdown().unwrap();
    assert_eq!(events.recv_timeout(WAIT), Ok("stopping".into()));
    assert!(report.graceful, "{report:?}");
    assert_eq!(report.unfinished_processes, 0);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "not restarted once told to stop"
    );
}

#[test]
fn a_user_thread_that_ignores_the_stop_is_left_behind_at_the_deadline() {
    let builder = builder()
        .max_wait_time(Duration::from_millis(200))
        .add_process("stubborn", |_ctx| {
            std::thread::sleep(Duration::from_secs(5))
        });
    let (recorder, _seen) = Recorder::new(false);
    let (server, _) = start(builder, move || recorder.clone());
    let begun = Instant::now();
    let report = server.shutdown().unwrap();
    assert!(
        begun.elapsed() < Duration::from_secs(3),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(report.unfinished_processes, 1);
    assert!(!report.graceful);
}

struct Slow;

impl eddy::TaskHandler for Slow {
    type Task = Duration;
    type Output = ();

    fn on_task(
        &mut self,
        _: &mut eddy::TaskContext<'_, Self>,
        task: eddy::Task<Duration>,
    ) -> Option<()> {
        std::thread::sleep(task.payload);
        Some(())
    }
}

#[derive(Clone)]
struct Timed;

impl eddy::EventHandler<Slow> for Timed {
    fn on_worker_start(&mut self, ctx: &mut eddy::Context<'_, Slow>) {
        ctx.tick(Duration::from_millis(2), |_, _| {}).unwrap();
        ctx.after(Duration::from_secs(3600), |_| {});
    }

    fn on_receive(&mut self, _: &mut eddy::Context<'_, Slow>, _: eddy::ConnId, _: eddy::Bytes) {}
}

#[test]
fn shutdown_with_timers_tasks_and_user_threads_alive_keeps_its_deadline() {
    let builder = builder()
        .worker_num(2)
        .max_wait_time(Duration::from_millis(300))
        .task_handler(|| Slow)
        .task_worker_num(1)
        .add_process(
            "pacer",
            |ctx| while !ctx.wait_stop(Duration::from_millis(3)) {},
        );
    let (server, _) = start(builder, || Timed);
    let tasks = server.handle().tasks::<Slow>().unwrap();
    // One task runs for 3 s; two more wait behind it.
    for _ in 0..3 {
        tasks.task(Duration::from_secs(3)).unwrap();
    }
    wait_until("the first task to run", || {
        server.handle().stats().tasking_num == 1
    });
    let begun = Instant::now();
    let report = server.shutdown().unwrap();
    let took = begun.elapsed();
    assert!(
        took < Duration::from_millis(300 + 200 + 500),
        "took {took:?}"
    );
    assert_eq!(
        report.unfinished_processes, 0,
        "the user thread stopped when told"
    );
    assert_eq!(report.tasks_abandoned, 2, "{report:?}");
    assert_eq!(report.unfinished_task_workers, 1);
}
