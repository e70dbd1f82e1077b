//! Timers: tick, after, defer and clear_timer on workers, task workers and reactors; dropped
//! at stop and at a reload.

use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use eddy::{
    codec::EofCodec, Bytes, ConnId, Context, EventHandler, Task, TaskContext, TaskHandler,
    TimerError,
};

use crate::util::*;

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}

/// Ticks every 5 ms from `on_worker_start`, reporting (worker, thread); clears its tick after
/// 3 and reports `done` 30 ms later.
#[derive(Clone)]
struct Ticker {
    events: Sender<String>,
}

impl EventHandler for Ticker {
    fn on_worker_start(&mut self, ctx: &mut Context<'_>) {
        let events = self.events.clone();
        let worker = ctx.worker_id();
        let mut count = 0;
        ctx.tick(Duration::from_millis(5), move |ctx, id| {
            count += 1;
            let _ = events.send(format!(
                "tick {worker} {} {}",
                ctx.worker_id(),
                thread_name()
            ));
            if count == 3 {
                assert!(ctx.clear_timer(id));
                let events = events.clone();
                ctx.after(Duration::from_millis(30), move |_| {
                    let _ = events.send(format!("done {worker}"));
                });
            }
        })
        .unwrap();
        assert_eq!(
            ctx.tick(Duration::ZERO, |_, _| {}),
            Err(TimerError::IntervalTooShort)
        );
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, _packet: Bytes) {
        let events = self.events.clone();
        ctx.after(Duration::from_millis(5), move |_| {
            let _ = events.send("after".into());
        });
        let events = self.events.clone();
        ctx.defer(move |ctx| {
            let _ = events.send("deferred".into());
            let _ = ctx.send(conn, "ok\n");
        });
        let _ = self.events.send("receive returned".into());
        // Long timers: they must not hold the shutdown up.
        ctx.after(Duration::from_secs(3600), |_| {
            unreachable!("dropped at stop")
        });
        ctx.tick(Duration::from_secs(3600), |_, _| {
            unreachable!("dropped at stop")
        })
        .unwrap();
    }
}

fn next(rx: &Receiver<String>) -> String {
    rx.recv_timeout(WAIT).expect("an event in time")
}

fn ticks_then_done(events: &Receiver<String>, workers: usize, thread_prefix: &str) {
    let mut ticks = vec![0; workers];
    let mut done = vec![false; workers];
    while done.iter().any(|d| !d) {
        let event = next(events);
        let words: Vec<&str> = event.split(' ').collect();
        match words[..] {
            ["tick", worker, id, thread] => {
                let worker: usize = worker.parse().unwrap();
                assert_eq!(id, worker.to_string(), "fired on its own worker");
                assert_eq!(thread, format!("{thread_prefix}{worker}"));
                assert!(!done[worker], "no tick after it was cleared");
                ticks[worker] += 1;
            }
            ["done", worker] => {
                let worker: usize = worker.parse().unwrap();
                assert_eq!(ticks[worker], 3, "exactly three ticks before the clear");
                done[worker] = true;
            }
            _ => panic!("unexpected {event}"),
        }
    }
}

#[test]
fn worker_timers_fire_on_their_worker_and_stop_when_cleared_or_stopped() {
    let (events_tx, events) = unbounded();
    let handler = Ticker { events: events_tx };
    let builder = builder()
        .codec(EofCodec::line())
        .worker_num(2)
        .max_wait_time(Duration::from_secs(5));
    let (server, addr) = start(builder, move || handler.clone());
    ticks_then_done(&events, 2, "eddy-worker-");
    let mut client = connect(addr);
    write_all(&mut client, b"go\n");
    assert_eq!(read_n(&mut client, 3), b"ok\n");
    assert_eq!(next(&events), "receive returned");
    assert_eq!(
        next(&events),
        "deferred",
        "after the callback, before the timer"
    );
    assert_eq!(next(&events), "after");
    let begun = Instant::now();
    let report = server.shutdown().unwrap();
    assert!(report.graceful, "{report:?}");
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "hour-long timers dropped"
    );
}

#[test]
fn timers_run_on_reactors_in_reactor_mode() {
    let (events_tx, events) = unbounded();
    let handler = Ticker { events: events_tx };
    let builder = builder()
        .codec(EofCodec::line())
        .dispatch_mode(eddy::DispatchMode::Reactor)
        .worker_num(2);
    let (server, _addr) = start(builder, move || handler.clone());
    ticks_then_done(&events, 2, "eddy-reactor-");
    server.shutdown().unwrap();
}

#[test]
fn a_reload_drops_the_old_handlers_timers() {
    let (events_tx, events) = unbounded();
    let handler = Ticker { events: events_tx };
    let builder = builder().codec(EofCodec::line()).worker_num(1);
    let (server, _addr) = start(builder, move || handler.clone());
    ticks_then_done(&events, 1, "eddy-worker-");
    let handle = server.handle().clone();
    handle.reload().unwrap();
    // The new handler's on_worker_start sets its own ticks: three again, then done.
    ticks_then_done(&events, 1, "eddy-worker-");
    server.shutdown().unwrap();
}

struct Beat {
    events: Sender<String>,
}

impl TaskHandler for Beat {
    type Task = ();
    type Output = ();

    fn on_task(&mut self, ctx: &mut TaskContext<'_, Self>, _: Task<()>) -> Option<()> {
        let events = self.events.clone();
        ctx.defer(move |ctx| {
            let _ = events.send(format!("deferred on task worker {}", ctx.task_worker_id()));
        });
        Some(())
    }

    fn on_task_worker_start(&mut self, ctx: &mut TaskContext<'_, Self>) {
        let events = self.events.clone();
        let mut count = 0;
        ctx.tick(Duration::from_millis(5), move |ctx, id| {
            count += 1;
            let id_num = ctx.task_worker_id();
            let _ = events.send(format!("tick {id_num} {id_num} {}", thread_name()));
            if count == 3 {
                ctx.clear_timer(id);
                let events = events.clone();
                ctx.after(Duration::from_millis(30), move |_| {
                    let _ = events.send(format!("done {id_num}"));
                });
            }
        })
        .unwrap();
        assert!(ctx.is_task_worker());
    }
}

#[derive(Clone)]
struct Nothing;

impl EventHandler<Beat> for Nothing {
    fn on_receive(&mut self, _: &mut Context<'_, Beat>, _: ConnId, _: Bytes) {}
}

#[test]
fn task_worker_timers_fire_between_tasks() {
    let (events_tx, events) = unbounded();
    let builder = builder()
        .worker_num(1)
        .task_handler(move || Beat {
            events: events_tx.clone(),
        })
        .task_worker_num(2);
    let (server, _addr) = start(builder, || Nothing);
    ticks_then_done(&events, 2, "eddy-task-");
    let tasks = server.handle().tasks::<Beat>().unwrap();
    tasks.task_to(1, ()).unwrap();
    assert_eq!(next(&events), "deferred on task worker 1");
    server.shutdown().unwrap();
}

/// Makes a long timer on each worker's start and reports its id; a message `(theirs, own)`
/// clears another worker's id, then its own, and reports both answers.
#[derive(Clone)]
struct Clearer {
    made: Sender<(usize, eddy::TimerId)>,
    cleared: Sender<(bool, bool)>,
}

impl EventHandler for Clearer {
    fn on_worker_start(&mut self, ctx: &mut Context<'_>) {
        let id = ctx.after(Duration::from_secs(3600), |_| {});
        let _ = self.made.send((ctx.worker_id(), id));
    }

    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}

    fn on_pipe_message(
        &mut self,
        ctx: &mut Context<'_>,
        _: eddy::MessageSource,
        message: eddy::Message,
    ) {
        if let Ok((theirs, own)) = message.downcast::<(eddy::TimerId, eddy::TimerId)>() {
            let _ = self
                .cleared
                .send((ctx.clear_timer(theirs), ctx.clear_timer(own)));
        }
    }
}

#[test]
fn clear_timer_with_another_workers_id_clears_nothing_here() {
    let (made, made_rx) = unbounded();
    let (cleared, cleared_rx) = unbounded();
    let handler = Clearer { made, cleared };
    let (server, _addr) = start(builder().worker_num(2), move || handler.clone());
    let mut ids = [None; 2];
    for _ in 0..2 {
        let (worker, id) = made_rx.recv_timeout(WAIT).expect("both workers started");
        ids[worker] = Some(id);
    }
    let (id0, id1) = (ids[0].unwrap(), ids[1].unwrap());
    assert_ne!(id0, id1, "ids are unique across workers");
    server
        .handle()
        .send_message(eddy::Destination::Worker(1), (id0, id1))
        .unwrap();
    assert_eq!(
        cleared_rx.recv_timeout(WAIT).unwrap(),
        (false, true),
        "worker 0's id clears nothing on worker 1, whose own timer is still there"
    );
    server.shutdown().unwrap();
}

/// On connect, a timer that (once the test says so) defers setting a flag; each packet is
/// answered with whether the flag was set by then.
#[derive(Clone)]
struct DeferInTimer {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    armed: Sender<()>,
    gate: Receiver<()>,
}

impl EventHandler for DeferInTimer {
    fn on_connect(&mut self, ctx: &mut Context<'_>, _: ConnId) {
        let (flag, armed, gate) = (self.flag.clone(), self.armed.clone(), self.gate.clone());
        ctx.after(Duration::from_millis(1), move |ctx| {
            let _ = armed.send(());
            let _ = gate.recv_timeout(WAIT);
            ctx.defer(move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst));
        });
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: Bytes) {
        let set = self.flag.load(std::sync::atomic::Ordering::SeqCst);
        let _ = ctx.send(conn, if set { "yes\n" } else { "no\n" });
    }
}

#[test]
fn a_defer_made_in_a_timer_runs_before_the_next_event() {
    let (armed, armed_rx) = unbounded();
    let (gate_tx, gate) = unbounded();
    let handler = DeferInTimer {
        flag: Default::default(),
        armed,
        gate,
    };
    let builder = builder().worker_num(1).codec(EofCodec::line());
    let (server, addr) = start(builder, move || handler.clone());
    let handle = server.handle().clone();
    let mut client = connect(addr);
    armed_rx.recv_timeout(WAIT).expect("the timer runs");
    // A packet waits in the worker's queue while the timer callback runs.
    write_all(&mut client, b"now?\n");
    wait_until("the packet queued", || handle.stats().worker_queue == [1]);
    gate_tx.send(()).unwrap();
    assert_eq!(read_n(&mut client, 4), b"yes\n", "the defer ran first");
    server.shutdown().unwrap();
}
