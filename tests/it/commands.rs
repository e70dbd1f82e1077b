//! Admin commands: run on the supervisor, a worker or a task worker, answered with JSON;
//! unknown names, bad targets, panics and busy targets are typed errors.

use std::time::Duration;

use crossbeam_channel::bounded;
use eddy::{
    Bytes, CommandError, CommandTarget, ConnId, Context, EventHandler, Task, TaskContext,
    TaskHandler,
};
use serde_json::json;

use crate::util::*;

struct Sleepy;

impl TaskHandler for Sleepy {
    type Task = crossbeam_channel::Receiver<()>;
    type Output = ();

    fn on_task(&mut self, _: &mut TaskContext<'_, Self>, task: Task<Self::Task>) -> Option<()> {
        let _ = task.payload.recv();
        Some(())
    }
}

#[derive(Clone)]
struct Idle;

impl EventHandler<Sleepy> for Idle {
    fn on_receive(&mut self, _: &mut Context<'_, Sleepy>, _: ConnId, _: Bytes) {}
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}

#[test]
fn commands_run_where_asked_and_answer() {
    let builder = builder()
        .worker_num(2)
        .task_handler(|| Sleepy)
        .task_worker_num(2)
        .add_command(
            "where",
            |ctx, args| json!({ "target": ctx.target(), "thread": thread_name(), "args": args }),
        )
        .add_command("conns", |ctx, _| json!(ctx.server().connection_count()))
        .add_command("boom", |_, _| panic!("bad command"));
    let (server, _addr) = start(builder, || Idle);
    let handle = server.handle().clone();
    let ask = |target| handle.command("where", target, [1, 2], WAIT).unwrap();
    let answer = ask(CommandTarget::Worker(1));
    assert_eq!(answer["target"], json!({ "worker": 1 }));
    assert_eq!(answer["thread"], "eddy-worker-1");
    assert_eq!(answer["args"], json!([1, 2]));
    assert_eq!(ask(CommandTarget::TaskWorker(0))["thread"], "eddy-task-0");
    assert_eq!(ask(CommandTarget::Supervisor)["thread"], "eddy-supervisor");
    assert_eq!(
        handle.command("conns", CommandTarget::Supervisor, (), WAIT),
        Ok(json!(0))
    );
    assert_eq!(
        handle.command("nope", CommandTarget::Supervisor, (), WAIT),
        Err(CommandError::Unknown("nope".into()))
    );
    assert_eq!(
        handle.command("where", CommandTarget::Worker(5), (), WAIT),
        Err(CommandError::NoSuchTarget(CommandTarget::Worker(5)))
    );
    assert_eq!(
        handle.command("boom", CommandTarget::Worker(0), (), WAIT),
        Err(CommandError::Panicked("bad command".into()))
    );
    // A busy task worker answers once it is free; until then the caller times out.
    let (gate_tx, gate) = bounded::<()>(0);
    let tasks = handle.tasks::<Sleepy>().unwrap();
    tasks.task_to(1, gate).unwrap();
    assert_eq!(
        handle.command(
            "where",
            CommandTarget::TaskWorker(1),
            (),
            Duration::from_millis(50)
        ),
        Err(CommandError::Timeout)
    );
    drop(gate_tx);
    assert_eq!(ask(CommandTarget::TaskWorker(1))["thread"], "eddy-task-1");
    server.shutdown().unwrap();
    assert_eq!(
        handle.command("where", CommandTarget::Supervisor, (), WAIT),
        Err(CommandError::ShuttingDown)
    );
}

#[test]
fn a_command_name_added_twice_is_refused() {
    let err = eddy::Server::builder()
        .listen("127.0.0.1:0")
        .add_command("x", |_, _| json!(1))
        .add_command("x", |_, _| json!(2))
        .build(|| Recorder::new(false).0)
        .unwrap_err();
    assert!(err.to_string().contains("add_command"), "{err}");
}
