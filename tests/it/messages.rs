//! Worker messages: send_message to workers and task workers from any thread, in order per
//! sender, large values intact, and on_pipe_message on the right thread.

use crossbeam_channel::{unbounded, Sender};
use eddy::{
    codec::EofCodec, Bytes, ConnId, Context, Destination, EventHandler, Message, MessageError,
    MessageSource, Task, TaskContext, TaskHandler,
};

use crate::util::*;

/// What the tests send: a sequence number and where to report it.
struct Numbered(u32, Sender<(String, u32)>);

/// A reply to send to a connection, from another worker.
struct Relay(ConnId, String);

fn report(me: String, message: Message) {
    match message.downcast::<Numbered>() {
        Ok(Numbered(n, to)) => {
            let _ = to.send((me, n));
        }
        Err(message) => {
            if let Some(big) = message.downcast_ref::<Vec<u8>>() {
                let ok = big.len() == 800_000 && big.iter().enumerate().all(|(i, b)| *b == i as u8);
                assert!(ok, "a large message arrives intact");
            }
        }
    }
}

#[derive(Clone)]
struct Front;

impl EventHandler<Back> for Front {
    fn on_receive(&mut self, ctx: &mut Context<'_, Back>, conn: ConnId, packet: Bytes) {
        // Ask the other worker to answer.
        let other = 1 - ctx.worker_id();
        let text = format!("from {other}: {}", String::from_utf8_lossy(&packet));
        ctx.send_message(Destination::Worker(other), Relay(conn, text))
            .unwrap();
    }

    fn on_pipe_message(
        &mut self,
        ctx: &mut Context<'_, Back>,
        src: MessageSource,
        message: Message,
    ) {
        match message.downcast::<Relay>() {
            Ok(Relay(conn, text)) => {
                assert_eq!(src, MessageSource::Worker(1 - ctx.worker_id()));
                let _ = ctx.send(conn, text);
            }
            Err(message) => report(format!("worker {}", ctx.worker_id()), message),
        }
    }
}

struct Back;

impl TaskHandler for Back {
    type Task = ();
    type Output = ();

    fn on_task(&mut self, _: &mut TaskContext<'_, Self>, _: Task<()>) -> Option<()> {
        None
    }

    fn on_pipe_message(
        &mut self,
        ctx: &mut TaskContext<'_, Self>,
        src: MessageSource,
        message: Message,
    ) {
        assert_eq!(src, MessageSource::External);
        report(format!("task {}", ctx.task_worker_id()), message);
    }
}

#[test]
fn messages_reach_every_worker_and_task_worker_in_order() {
    let builder = builder()
        .codec(EofCodec::line())
        .worker_num(2)
        .task_handler(|| Back)
        .task_worker_num(2);
    let (server, addr) = start(builder, || Front);
    let handle = server.handle().clone();
    let (tx, rx) = unbounded();
    let destinations: Vec<Destination> = (0..4)
        .map(|id| Destination::from_swoole_id(id, 2))
        .collect();
    assert_eq!(destinations[2], Destination::TaskWorker(0));
    for n in 0..200 {
        for dst in &destinations {
            handle.send_message(*dst, Numbered(n, tx.clone())).unwrap();
        }
        if n == 100 {
            let big: Vec<u8> = (0..800_000).map(|i| i as u8).collect();
            handle
                .send_message(Destination::Worker(1), big.clone())
                .unwrap();
            handle
                .send_message(Destination::TaskWorker(1), big)
                .unwrap();
        }
    }
    let mut next = std::collections::HashMap::new();
    for _ in 0..800 {
        let (who, n) = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("a report in time: {next:?}"));
        let expected = next.entry(who.clone()).or_insert(0);
        assert_eq!(n, *expected, "{who}: in order");
        *expected += 1;
    }
    let mut names: Vec<_> = next.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["task 0", "task 1", "worker 0", "worker 1"]);
    // Worker to worker: each answers what the other received.
    let mut client = connect(addr);
    write_all(&mut client, b"hi\n");
    let answer = String::from_utf8(read_n(&mut client, 11)).unwrap();
    assert!(
        answer == "from 0: hi\n" || answer == "from 1: hi\n",
        "{answer:?}"
    );
    assert_eq!(
        handle.send_message(Destination::TaskWorker(9), ()),
        Err(MessageError::NoSuchDestination(Destination::TaskWorker(9)))
    );
    server.shutdown().unwrap();
    assert_eq!(
        handle.send_message(Destination::Worker(0), ()),
        Err(MessageError::ShuttingDown)
    );
}
