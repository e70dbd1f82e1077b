//! Task workers: task, task_then, task_wait, task_wait_multi, task_co, finish, panics, the
//! bounded queue, stats invariants, task_max_request and shutdown.

use std::{
    io::{BufRead, BufReader, Write},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use eddy::{
    codec::EofCodec, Bytes, ConnId, Context, EventHandler, Server, Stats, Task, TaskContext,
    TaskError, TaskHandler, TaskId, TaskSource, Tasks,
};

use crate::util::*;

/// What the test task handler is asked to do.
enum Job {
    /// Answer the number.
    Echo(u64),
    /// Sleep, then answer the number.
    Sleep(Duration, u64),
    /// Say it started, wait for the gate (or its sender dropped), then answer the number.
    Gate(Sender<()>, Receiver<()>, u64),
    /// Panic with this message.
    Panic(&'static str),
    /// Answer nothing.
    Nothing,
    /// `finish` twice (a, then b), answer nothing more.
    Twice(u64, u64),
    /// Try to send a task from the task worker; answer 1 if refused with `InTaskWorker`.
    Nested(Tasks<Work>),
    /// Sleep until cancelled (or 10 s); report whether it saw the cancellation.
    UntilCancelled(Sender<bool>),
    /// Answer who sent it: the worker id, or 999 for external.
    Source,
    /// Answer the id of the task worker it runs on.
    Where,
}

/// The test task handler. Counts handlers built (task_max_request, panics).
struct Work {
    built: Arc<AtomicUsize>,
    /// Told when a task worker stops (`on_task_worker_stop`), if set.
    stopped: Option<Sender<()>>,
}

impl TaskHandler for Work {
    type Task = Job;
    type Output = u64;

    fn on_task(&mut self, ctx: &mut TaskContext<'_, Self>, task: Task<Job>) -> Option<u64> {
        match task.payload {
            Job::Echo(n) => Some(n),
            Job::Sleep(d, n) => {
                std::thread::sleep(d);
                Some(n)
            }
            Job::Gate(started, gate, n) => {
                let _ = started.send(());
                let _ = gate.recv();
                Some(n)
            }
            Job::Panic(message) => panic!("{message}"),
            Job::Nothing => None,
            Job::Twice(a, b) => {
                ctx.finish(a).expect("first finish");
                let second = ctx.finish(b);
                // To a wait, only the first counts.
                if matches!(task.src, TaskSource::External) {
                    assert_eq!(second, Err(TaskError::Expired));
                }
                None
            }
            Job::Nested(tasks) => {
                Some((tasks.task(Job::Echo(1)) == Err(TaskError::InTaskWorker)) as u64)
            }
            Job::UntilCancelled(report) => {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !ctx.is_cancelled() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = report.send(ctx.is_cancelled());
                None
            }
            Job::Where => Some(ctx.task_worker_id() as u64),
            Job::Source => Some(match task.src {
                TaskSource::Worker(id) => id as u64,
                TaskSource::External => 999,
            }),
        }
    }

    fn on_task_worker_start(&mut self, _ctx: &mut TaskContext<'_, Self>) {
        self.built.fetch_add(1, Ordering::SeqCst);
    }

    fn on_task_worker_stop(&mut self, _ctx: &mut TaskContext<'_, Self>) {
        if let Some(stopped) = &self.stopped {
            let _ = stopped.send(());
        }
    }

    fn on_pipe_message(
        &mut self,
        ctx: &mut TaskContext<'_, Self>,
        _src: eddy::MessageSource,
        message: eddy::Message,
    ) {
        let Ok(block) = message.downcast::<Block>() else {
            return;
        };
        let Block {
            started,
            gate,
            in_timer,
        } = block;
        // Until the test drops the gate's sender (at its end, or as it unwinds).
        let hold = move || {
            let _ = started.send(());
            let _ = gate.recv();
        };
        match in_timer {
            true => drop(ctx.after(Duration::ZERO, move |_| hold())),
            false => hold(),
        }
    }
}

/// A message that holds its task worker (in the message callback, or in a timer it sets):
/// says so, then waits until the gate's sender is dropped.
struct Block {
    started: Sender<()>,
    gate: Receiver<()>,
    in_timer: bool,
}

/// A server with task workers whose event handler sends tasks on command lines:
/// `task N`, `then N`, `wait N`, `multi N`, `nothing`, `panic`, `twice`; results of
/// `task` / `then` go to `results`, answers of the waits to the client.
#[derive(Clone)]
struct Front {
    results: Sender<(&'static str, TaskId, Result<u64, TaskError>)>,
    queued: Sender<TaskId>,
}

impl EventHandler<Work> for Front {
    fn on_receive(&mut self, ctx: &mut Context<'_, Work>, conn: ConnId, packet: Bytes) {
        let line = String::from_utf8_lossy(&packet).trim().to_string();
        let mut words = line.split(' ');
        let verb = words.next().unwrap_or("");
        let n: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let answer = match verb {
            "task" => format!(
                "{:?}",
                ctx.task(Job::Echo(n)).map(|id| self.queued.send(id))
            ),
            "then" => {
                let results = self.results.clone();
                let id = ctx.task_then(Job::Echo(n), move |ctx, id, result| {
                    assert!(ctx.worker_id() < 2);
                    let _ = results.send(("callback", id, result));
                });
                format!("{:?}", id.map(|id| self.queued.send(id)))
            }
            "nothing" => format!(
                "{:?}",
                ctx.task(Job::Nothing).map(|id| self.queued.send(id))
            ),
            "nothing-then" => {
                let results = self.results.clone();
                let id = ctx.task_then(Job::Nothing, move |_, id, result| {
                    let _ = results.send(("callback", id, result));
                });
                format!("{:?}", id.map(|id| self.queued.send(id)))
            }
            "panic" => format!(
                "{:?}",
                ctx.task(Job::Panic("boom")).map(|id| self.queued.send(id))
            ),
            "twice" => format!(
                "{:?}",
                ctx.task(Job::Twice(n, n + 1))
                    .map(|id| self.queued.send(id))
            ),
            "slow" => format!(
                "{:?}",
                ctx.task(Job::Sleep(Duration::from_millis(100), n))
                    .map(|id| self.queued.send(id))
            ),
            "wait" => format!("{:?}", ctx.task_wait(Job::Echo(n), WAIT)),
            "source" => format!("{:?}", ctx.task_wait(Job::Source, WAIT)),
            "multi" => format!(
                "{:?}",
                ctx.task_co((0..n).map(Job::Echo), WAIT)
                    .map(|all| all.into_iter().map(Result::unwrap).sum::<u64>())
            ),
            other => format!("unknown {other}"),
        };
        let _ = ctx.send(conn, format!("{answer}\n"));
    }

    fn on_finish(
        &mut self,
        _ctx: &mut Context<'_, Work>,
        task: TaskId,
        result: Result<u64, TaskError>,
    ) {
        let _ = self.results.send(("on_finish", task, result));
    }
}

type Results = Receiver<(&'static str, TaskId, Result<u64, TaskError>)>;

fn tasks_server(
    task_workers: usize,
    configure: impl FnOnce(eddy::ServerBuilder<Work>) -> eddy::ServerBuilder<Work>,
) -> (
    eddy::RunningServer,
    std::net::SocketAddr,
    Results,
    Receiver<TaskId>,
    Arc<AtomicUsize>,
) {
    let (results, results_rx) = unbounded();
    let (queued, queued_rx) = unbounded();
    let built = shared(AtomicUsize::new(0));
    let counter = built.clone();
    let builder = builder()
        .codec(EofCodec::line())
        .worker_num(2)
        .task_handler(move || Work {
            built: counter.clone(),
            stopped: None,
        })
        .task_worker_num(task_workers);
    let front = Front { results, queued };
    let (server, addr) = start(configure(builder), move || front.clone());
    (server, addr, results_rx, queued_rx, built)
}

struct Client(BufReader<std::net::TcpStream>);

impl Client {
    fn new(addr: std::net::SocketAddr) -> Self {
        Client(BufReader::new(connect(addr)))
    }

    fn ask(&mut self, line: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        let mut answer = String::new();
        self.0.read_line(&mut answer).unwrap();
        answer.trim_end().to_string()
    }
}

fn recv<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(WAIT).expect("nothing arrived in time")
}

/// At rest, every queued task is accounted for exactly once.
#[track_caller]
fn assert_balanced(stats: &Stats) {
    assert_eq!(stats.tasking_num + stats.task_queue_num, 0, "{stats:?}");
    assert_eq!(
        stats.task_count,
        stats.task_completed + stats.task_failed + stats.task_abandoned,
        "{stats:?}"
    );
    assert_eq!(stats.task_idle_worker_num, stats.task_worker_num);
}

fn quiet(server: &eddy::RunningServer) -> Stats {
    let handle = server.handle();
    wait_until("tasks to settle", || {
        let s = handle.stats();
        s.tasking_num == 0 && s.task_queue_num == 0
    });
    handle.stats()
}

#[test]
fn task_results_reach_on_finish_and_callbacks() {
    let (server, addr, results, queued, _) = tasks_server(2, |b| b);
    let mut client = Client::new(addr);
    assert_eq!(client.ask("task 41"), "Ok(Ok(()))");
    let id = recv(&queued);
    assert_eq!(recv(&results), ("on_finish", id, Ok(41)));
    // A per-call callback takes the result instead of on_finish.
    client.ask("then 7");
    let id = recv(&queued);
    assert_eq!(recv(&results), ("callback", id, Ok(7)));
    // Each finish is one on_finish.
    client.ask("twice 5");
    let id = recv(&queued);
    assert_eq!(recv(&results), ("on_finish", id, Ok(5)));
    assert_eq!(recv(&results), ("on_finish", id, Ok(6)));
    // No result: on_finish hears nothing; a callback hears NoResult.
    client.ask("nothing");
    recv(&queued);
    client.ask("nothing-then");
    let id = recv(&queued);
    assert_eq!(recv(&results), ("callback", id, Err(TaskError::NoResult)));
    // A panic reaches on_finish as an error with its message.
    client.ask("panic");
    let id = recv(&queued);
    assert_eq!(
        recv(&results),
        ("on_finish", id, Err(TaskError::Panicked("boom".into())))
    );
    assert!(results.try_recv().is_err(), "nothing else arrived");
    let stats = quiet(&server);
    assert_eq!(stats.task_failed, 1);
    assert_balanced(&stats);
    server.shutdown().unwrap();
}

#[test]
fn waits_from_a_worker_answer_in_order() {
    let (server, addr, ..) = tasks_server(3, |b| b);
    let mut client = Client::new(addr);
    assert_eq!(client.ask("wait 12"), "Ok(12)");
    assert_eq!(client.ask("multi 10"), "Ok(45)");
    let source = client.ask("source");
    assert!(source == "Ok(0)" || source == "Ok(1)", "{source}");
    server.shutdown().unwrap();
}

#[test]
fn a_late_result_never_reaches_a_later_wait() {
    let (server, ..) = tasks_server(1, |b| b);
    let tasks = server.handle().tasks::<Work>().unwrap();
    let (started_tx, started) = unbounded();
    let (gate_tx, gate) = bounded::<()>(0);
    let begun = Instant::now();
    let first = tasks.task_wait(Job::Gate(started_tx, gate, 1), Duration::from_millis(50));
    assert_eq!(first, Err(TaskError::Timeout));
    assert!(begun.elapsed() >= Duration::from_millis(50));
    recv(&started);
    // The late task finishes now, while the next wait runs on the same task worker.
    drop(gate_tx);
    assert_eq!(tasks.task_wait(Job::Echo(2), WAIT), Ok(2));
    let stats = quiet(&server);
    assert_eq!(
        stats.task_late, 1,
        "the first result was dropped and counted"
    );
    assert_balanced(&stats);
    server.shutdown().unwrap();
}

#[test]
fn a_timed_out_wait_cancels_its_task() {
    let (server, ..) = tasks_server(1, |b| b);
    let tasks = server.handle().tasks::<Work>().unwrap();
    let (report, saw) = unbounded();
    let result = tasks.task_wait(Job::UntilCancelled(report), Duration::from_millis(20));
    assert_eq!(result, Err(TaskError::Timeout));
    assert!(recv(&saw), "the task saw its waiter go");
    server.shutdown().unwrap();
}

#[test]
fn task_co_keeps_order_under_random_durations() {
    let (server, ..) = tasks_server(4, |b| b);
    let tasks = server.handle().tasks::<Work>().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..5 {
        let jobs: Vec<Job> = (0..40)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                Job::Sleep(Duration::from_micros(seed % 3000), round * 100 + i)
            })
            .collect();
        let results = if round % 2 == 0 {
            tasks.task_co(jobs, WAIT)
        } else {
            tasks.task_wait_multi(jobs, WAIT)
        };
        let expected: Vec<_> = (0..40).map(|i| Ok(round * 100 + i)).collect();
        assert_eq!(results.unwrap(), expected);
    }
    server.shutdown().unwrap();
}

#[test]
fn each_entry_of_a_multi_wait_has_its_own_outcome() {
    // As many task workers as tasks: none waits behind the gated one.
    let (server, ..) = tasks_server(5, |b| b);
    let tasks = server.handle().tasks::<Work>().unwrap();
    let (gate_tx, gate) = bounded::<()>(0);
    let (started_tx, _started) = unbounded();
    let jobs = vec![
        Job::Echo(1),
        Job::Gate(started_tx, gate, 2),
        Job::Panic("multi"),
        Job::Nothing,
        Job::Echo(5),
    ];
    // Long enough for a panic's backtrace to be printed on a loaded machine: only the gated
    // task may time out.
    let results = tasks.task_wait_multi(jobs, Duration::from_secs(2));
    assert_eq!(
        results.unwrap(),
        vec![
            Ok(1),
            Err(TaskError::Timeout),
            Err(TaskError::Panicked("multi".into())),
            Err(TaskError::NoResult),
            Ok(5),
        ]
    );
    drop(gate_tx);
    let too_many = tasks.task_co((0..eddy::MAX_MULTI as u64 + 1).map(Job::Echo), WAIT);
    assert_eq!(
        too_many,
        Err(TaskError::TooMany {
            len: eddy::MAX_MULTI + 1,
            max: eddy::MAX_MULTI
        })
    );
    // An endless iterator is refused, not read to the end.
    let endless = tasks.task_wait_multi((0..).map(Job::Echo), WAIT);
    assert!(matches!(endless, Err(TaskError::TooMany { len, .. }) if len > eddy::MAX_MULTI));
    let stats = quiet(&server);
    assert_eq!(
        stats.task_late, 1,
        "the gated result came after its deadline"
    );
    assert_balanced(&stats);
    server.shutdown().unwrap();
}

#[test]
fn a_panicking_task_reports_and_its_worker_carries_on() {
    let (server, _, _, _, built) = tasks_server(1, |b| b);
    let tasks = server.handle().tasks::<Work>().unwrap();
    assert_eq!(built.load(Ordering::SeqCst), 1);
    for _ in 0..3 {
        assert_eq!(
            tasks.task_wait(Job::Panic("bad input"), WAIT),
            Err(TaskError::Panicked("bad input".into()))
        );
        assert_eq!(tasks.task_wait(Job::Echo(3), WAIT), Ok(3));
    }
    let stats = quiet(&server);
    assert_eq!((stats.task_failed, stats.task_completed), (3, 3));
    assert_eq!(stats.task_worker_restarts, 3, "rebuilt after each panic");
    assert_eq!(built.load(Ordering::SeqCst), 4);
    assert_balanced(&stats);
    server.shutdown().unwrap();
}

#[test]
fn a_full_queue_refuses_at_once_and_counts_stay_exact() {
    let (server, ..) = tasks_server(1, |b| b.task_queue_capacity(2));
    let handle = server.handle();
    let tasks = handle.tasks::<Work>().unwrap();
    let (started_tx, started) = unbounded();
    let (gate_tx, gate) = bounded::<()>(0);
    tasks.task(Job::Gate(started_tx, gate, 0)).unwrap();
    recv(&started);
    let stats = handle.stats();
    assert_eq!((stats.tasking_num, stats.task_idle_worker_num), (1, 0));
    tasks.task(Job::Echo(1)).unwrap();
    tasks.task(Job::Echo(2)).unwrap();
    assert_eq!(handle.stats().task_queue_num, 2);
    assert_eq!(
        tasks.task(Job::Echo(3)),
        Err(TaskError::QueueFull { capacity: 2 })
    );
    assert_eq!(
        tasks.task_to(5, Job::Echo(3)),
        Err(TaskError::NoSuchTaskWorker {
            id: 5,
            task_worker_num: 1
        })
    );
    drop(gate_tx);
    let stats = quiet(&server);
    assert_eq!((stats.task_count, stats.task_rejected), (3, 1));
    assert_balanced(&stats);
    server.shutdown().unwrap();
}

#[test]
fn tasks_go_past_a_task_worker_busy_with_a_timer_or_a_message() {
    for in_timer in [false, true] {
        let (server, ..) = tasks_server(2, |b| b);
        let handle = server.handle();
        let tasks = handle.tasks::<Work>().unwrap();
        let (started_tx, started) = unbounded();
        let (gate_tx, gate) = bounded::<()>(0);
        let block = Block {
            started: started_tx,
            gate,
            in_timer,
        };
        handle
            .send_message(eddy::Destination::TaskWorker(0), block)
            .unwrap();
        recv(&started);
        // Task worker 0 is held: a task placed while task worker 1 is idle goes there,
        // however the picks rotate (before, one that found worker 0's queue empty waited
        // there for the gate, and ran there once it opened).
        for _ in 0..4 {
            wait_until("task worker 1 idle", || handle.stats().tasking_num == 0);
            assert_eq!(
                tasks.task_wait(Job::Where, WAIT),
                Ok(1),
                "in_timer {in_timer}"
            );
        }
        drop(gate_tx);
        server.shutdown().unwrap();
    }
}

#[test]
fn one_task_worker_runs_its_queue_in_order() {
    let (server, ..) = tasks_server(2, |b| b.task_queue_capacity(4096));
    let tasks = server.handle().tasks::<Work>().unwrap();
    let (started_tx, started) = unbounded();
    let (gate_tx, gate) = bounded::<()>(0);
    let first = tasks.task_to(1, Job::Gate(started_tx, gate, 0)).unwrap();
    recv(&started);
    let ids: Vec<TaskId> = (1..2048)
        .map(|i| tasks.task_to(1, Job::Echo(i)).unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && first < ids[0]);
    // A wait sent meanwhile to the other task worker is not held up.
    assert_eq!(tasks.task_wait(Job::Echo(9), WAIT), Ok(9));
    drop(gate_tx);
    let stats = quiet(&server);
    assert_eq!(stats.task_completed, 2049);
    assert_balanced(&stats);
    server.shutdown().unwrap();
}

#[test]
fn task_workers_cannot_send_tasks() {
    let (server, ..) = tasks_server(1, |b| b);
    let tasks = server.handle().tasks::<Work>().unwrap();
    assert_eq!(tasks.task_wait(Job::Nested(tasks.clone()), WAIT), Ok(1));
    server.shutdown().unwrap();
}

#[test]
fn task_handles_are_typed_and_checked() {
    struct Other;
    impl TaskHandler for Other {
        type Task = ();
        type Output = ();
        fn on_task(&mut self, _: &mut TaskContext<'_, Self>, _: Task<()>) -> Option<()> {
            None
        }
    }
    let (server, ..) = tasks_server(1, |b| b);
    let err = server.handle().tasks::<Other>().unwrap_err();
    assert!(matches!(err, TaskError::WrongTaskType { .. }), "{err}");
    let tasks = server.handle().tasks::<Work>().unwrap();
    assert_eq!(tasks.task_wait(Job::Source, WAIT), Ok(999));
    server.shutdown().unwrap();
    let (plain, _) = Recorder::new(false);
    let (server, _) = start(builder(), move || plain.clone());
    assert_eq!(
        server.handle().tasks::<Work>().unwrap_err(),
        TaskError::NoTaskWorkers
    );
    server.shutdown().unwrap();
}

#[test]
fn task_settings_are_checked() {
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .task_worker_num(2)
        .build(|| Recorder::new(false).0)
        .unwrap_err();
    assert!(err.to_string().contains("task_worker_num"), "{err}");
    let built = shared(AtomicUsize::new(0));
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .task_handler(move || Work {
            built: built.clone(),
            stopped: None,
        })
        .task_queue_capacity(0)
        .build(|| Front {
            results: unbounded().0,
            queued: unbounded().0,
        })
        .unwrap_err();
    assert!(err.to_string().contains("task_queue_capacity"), "{err}");
}

#[test]
fn task_max_request_rebuilds_without_losing_tasks() {
    let (server, _, _, _, built) = tasks_server(2, |b| b.task_max_request(20));
    let tasks = server.handle().tasks::<Work>().unwrap();
    let mut sum = 0;
    for chunk in 0..10u64 {
        let all = tasks
            .task_co((0..40).map(|i| Job::Echo(chunk * 40 + i)), WAIT)
            .unwrap();
        sum += all.into_iter().map(Result::unwrap).sum::<u64>();
    }
    assert_eq!(sum, (0..400).sum::<u64>());
    let stats = quiet(&server);
    assert_eq!(stats.task_completed, 400);
    // 400 tasks over 2 task workers, rebuilt every 20 to 30 tasks each.
    assert!(stats.task_worker_restarts >= 12, "{stats:?}");
    assert_eq!(
        built.load(Ordering::SeqCst) as u64,
        2 + stats.task_worker_restarts
    );
    server.shutdown().unwrap();
}

#[test]
fn shutdown_runs_queued_tasks_within_the_deadline() {
    let (server, ..) = tasks_server(1, |b| b.max_wait_time(Duration::from_secs(10)));
    let tasks = server.handle().tasks::<Work>().unwrap();
    for i in 0..20 {
        tasks.task(Job::Sleep(Duration::from_millis(2), i)).unwrap();
    }
    let report = server.shutdown().unwrap();
    assert!(report.graceful, "{report:?}");
    assert_eq!((report.tasks_finished, report.tasks_abandoned), (20, 0));
    assert_eq!(tasks.task(Job::Echo(1)), Err(TaskError::ShuttingDown));
}

#[test]
fn shutdown_abandons_what_the_deadline_leaves_and_says_so() {
    let (stopped_tx, stopped) = unbounded();
    let (server, ..) = tasks_server(1, move |b| {
        b.max_wait_time(Duration::from_millis(200))
            .task_handler(move || Work {
                built: shared(AtomicUsize::new(0)),
                stopped: Some(stopped_tx.clone()),
            })
    });
    let tasks = server.handle().tasks::<Work>().unwrap();
    let (started_tx, started) = unbounded();
    let (gate_tx, gate) = bounded::<()>(0);
    tasks.task(Job::Gate(started_tx, gate, 0)).unwrap();
    recv(&started);
    // Queued behind the stuck task: waiters on other threads hear `Abandoned`.
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let tasks = tasks.clone();
            std::thread::spawn(move || tasks.task_wait(Job::Echo(i), WAIT))
        })
        .collect();
    wait_until("three queued", || {
        server.handle().stats().task_queue_num == 3
    });
    let handle = server.handle().clone();
    let report = server.shutdown().unwrap();
    assert!(!report.graceful);
    assert_eq!(report.tasks_abandoned, 3, "{report:?}");
    assert_eq!(report.unfinished_task_workers, 1);
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), Err(TaskError::Abandoned));
    }
    assert!(stopped.try_recv().is_err(), "still in its task");
    drop(gate_tx);
    // Once its task returns, the detached task worker stops (it waited for a task forever).
    recv(&stopped);
    let stats = handle.stats();
    assert_eq!(stats.task_count, 4);
    assert_eq!(stats.task_abandoned, 3);
}

#[test]
fn a_worker_takes_the_results_of_its_tasks_before_it_stops() {
    let (server, addr, results, queued, _) = tasks_server(2, |b| b);
    let mut client = Client::new(addr);
    client.ask("slow 3");
    let id = recv(&queued);
    let report = server.shutdown().unwrap();
    assert!(report.graceful, "{report:?}");
    assert_eq!(results.try_recv(), Ok(("on_finish", id, Ok(3))));
}

#[test]
fn results_reach_handlers_running_on_reactors() {
    let (server, addr, results, queued, _) = tasks_server(2, |b| {
        b.dispatch_mode(eddy::DispatchMode::Reactor).reactor_num(2)
    });
    let mut client = Client::new(addr);
    for n in 0..20 {
        client.ask(&format!("then {n}"));
        let id = recv(&queued);
        assert_eq!(recv(&results), ("callback", id, Ok(n)));
    }
    assert_eq!(client.ask("wait 8"), "Ok(8)");
    client.ask("slow 4");
    let id = recv(&queued);
    let report = server.shutdown().unwrap();
    assert!(report.graceful, "{report:?}");
    assert_eq!(results.try_recv(), Ok(("on_finish", id, Ok(4))));
}

#[test]
fn reloads_rebuild_task_handlers_after_their_queued_tasks() {
    let (server, addr, _, _, built) = tasks_server(2, |b| b);
    let handle = server.handle().clone();
    let tasks = handle.tasks::<Work>().unwrap();
    assert_eq!(built.load(Ordering::SeqCst), 2);
    handle.reload_task_workers().unwrap();
    wait_until("the task reload", || handle.stats().reload_count == 1);
    assert_eq!(built.load(Ordering::SeqCst), 4);
    assert_eq!(handle.stats().worker_restarts, 0, "workers untouched");
    handle.reload().unwrap();
    wait_until("the full reload", || handle.stats().reload_count == 2);
    assert_eq!(built.load(Ordering::SeqCst), 6);
    assert_eq!(handle.stats().worker_restarts, 2);
    assert_eq!(tasks.task_wait(Job::Echo(5), WAIT), Ok(5));
    assert_eq!(Client::new(addr).ask("wait 6"), "Ok(6)");
    server.shutdown().unwrap();
}

#[test]
fn reloads_while_a_task_worker_is_stuck_in_a_task_rebuild_it_once_when_it_returns() {
    // Each reload ends at `max_wait_time` without it; they used to queue a rebuild each.
    let (server, _, _, _, built) = tasks_server(1, |b| b.max_wait_time(Duration::from_millis(50)));
    let handle = server.handle().clone();
    let tasks = handle.tasks::<Work>().unwrap();
    let (started_tx, started) = unbounded();
    let (gate_tx, gate) = unbounded();
    tasks.task(Job::Gate(started_tx, gate, 0)).unwrap();
    recv(&started);
    for n in 1..=3 {
        handle.reload_task_workers().unwrap();
        wait_until("the reload's deadline", || handle.stats().reload_count == n);
    }
    drop(gate_tx);
    // Behind whatever rebuilds were queued.
    assert_eq!(tasks.task_wait(Job::Echo(7), WAIT), Ok(7));
    assert_eq!(
        built.load(Ordering::SeqCst),
        2,
        "the first build and one rebuild"
    );
    server.shutdown().unwrap();
}

/// A server with one worker and `task_workers` task workers whose handler factory panics
/// whenever `fails` says so.
fn fragile_task_server(
    task_workers: usize,
    fails: impl Fn() -> bool + Send + Sync + 'static,
) -> eddy::RunningServer {
    let builder = builder()
        .worker_num(1)
        .task_handler(move || {
            if fails() {
                panic!("no handler this time");
            }
            Work {
                built: shared(AtomicUsize::new(0)),
                stopped: None,
            }
        })
        .task_worker_num(task_workers);
    let (results, _) = unbounded();
    let (queued, _) = unbounded();
    start(builder, move || Front {
        results: results.clone(),
        queued: queued.clone(),
    })
    .0
}

#[test]
fn a_task_handler_factory_that_panics_at_first_does_not_hold_the_server_up() {
    let made = shared(AtomicUsize::new(0));
    let counter = made.clone();
    let server = fragile_task_server(1, move || counter.fetch_add(1, Ordering::SeqCst) < 2);
    // Waits in the queue until the third try makes a handler.
    let tasks = server.handle().tasks::<Work>().unwrap();
    assert_eq!(tasks.task_wait(Job::Echo(7), Duration::MAX), Ok(7));
    assert_eq!(made.load(Ordering::SeqCst), 3);
    server.shutdown().unwrap();
}

#[test]
fn a_task_worker_whose_handler_cannot_be_made_is_passed_over() {
    let server = fragile_task_server(2, || std::thread::current().name() == Some("eddy-task-1"));
    // Each pick starts at the next task worker: without the pass-over, every other task
    // went to the one that never runs any.
    let tasks = server.handle().tasks::<Work>().unwrap();
    for n in 0..6 {
        assert_eq!(tasks.task_wait(Job::Echo(n), WAIT), Ok(n), "task {n}");
    }
    server.shutdown().unwrap();
}

/// Sends a task from `on_worker_stop` and tells what `task` and `task_then` said.
struct SendsAtStop(Sender<[Result<(), TaskError>; 2]>);

impl EventHandler<Work> for SendsAtStop {
    fn on_receive(&mut self, _: &mut Context<'_, Work>, _: ConnId, _: Bytes) {}

    fn on_worker_stop(&mut self, ctx: &mut Context<'_, Work>) {
        let task = ctx.task(Job::Echo(1)).map(drop);
        let then = ctx.task_then(Job::Echo(2), |_, _, _| {}).map(drop);
        let _ = self.0.send([task, then]);
    }
}

#[test]
fn a_task_sent_as_a_worker_stops_for_good_is_refused_not_lost() {
    let builder = builder()
        .worker_num(1)
        .task_handler(|| Work {
            built: shared(AtomicUsize::new(0)),
            stopped: None,
        })
        .task_worker_num(1);
    let (said_tx, said) = unbounded();
    let (server, _) = start(builder, move || SendsAtStop(said_tx.clone()));
    let report = server.shutdown().unwrap();
    // Nothing takes their results once on_worker_stop runs: refused, not dropped unseen.
    assert_eq!(
        said.recv_timeout(WAIT),
        Ok([Err(TaskError::ShuttingDown), Err(TaskError::ShuttingDown)])
    );
    assert!(report.graceful, "{report:?}");
}
