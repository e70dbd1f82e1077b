//! Start-up and shutdown: hooks, flushing queued output, the deadline.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use crossbeam_channel::Sender;
use eddy::{
    Bytes, CloseReason, ConnId, Context, Destination, EventHandler, Message, MessageError,
    MessageSource, SendStatus, ServerHandle,
};

use crate::util::*;

#[derive(Clone)]
struct Lifecycle {
    reply: usize,
    queued: Sender<ConnId>,
    closes: Sender<CloseReason>,
    worker_stops: Arc<AtomicUsize>,
    shutdowns: Arc<AtomicUsize>,
    starts: Arc<AtomicUsize>,
}

impl EventHandler for Lifecycle {
    fn on_start(&mut self, server: &ServerHandle) {
        assert!(!server.is_shutting_down());
        self.starts.fetch_add(1, Ordering::SeqCst);
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, _packet: Bytes) {
        let body: Vec<u8> = (0..self.reply).map(|i| (i % 253) as u8).collect();
        if let Ok(SendStatus::Queued { .. }) = ctx.send(conn, &body) {
            let _ = self.queued.send(conn);
        }
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, reason: CloseReason) {
        let _ = self.closes.send(reason);
    }

    fn on_worker_stop(&mut self, _ctx: &mut Context<'_>) {
        self.worker_stops.fetch_add(1, Ordering::SeqCst);
    }

    fn on_shutdown(&mut self, _server: &ServerHandle) {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
    }
}

fn lifecycle(
    reply: usize,
) -> (
    Lifecycle,
    crossbeam_channel::Receiver<ConnId>,
    crossbeam_channel::Receiver<CloseReason>,
) {
    let (queued, queued_rx) = crossbeam_channel::unbounded();
    let (closes, closes_rx) = crossbeam_channel::unbounded();
    let handler = Lifecycle {
        reply,
        queued,
        closes,
        worker_stops: Arc::default(),
        shutdowns: Arc::default(),
        starts: Arc::default(),
    };
    (handler, queued_rx, closes_rx)
}

#[test]
fn shutdown_flushes_queued_output_then_closes() {
    let size = 8 << 20;
    let (handler, queued, closes) = lifecycle(size);
    let probe = handler.clone();
    let builder = builder().worker_num(2).socket_buffer_size(16 << 20);
    let (server, addr) = start(builder, move || handler.clone());
    assert_eq!(probe.starts.load(Ordering::SeqCst), 1);
    let mut client = connect(addr);
    write_all(&mut client, b"go");
    queued
        .recv_timeout(WAIT)
        .expect("the reply is queued, not yet sent");
    let stopper = std::thread::spawn(move || server.shutdown());
    let (data, reset) = read_to_close(&mut client);
    assert!(!reset);
    assert_eq!(
        data.len(),
        size,
        "everything queued before shutdown arrives"
    );
    assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    let report = stopper.join().unwrap().unwrap();
    assert!(report.graceful, "{report:?}");
    assert_eq!(report.connections_closed, 1);
    assert_eq!(closes.recv_timeout(WAIT).unwrap(), CloseReason::Shutdown);
    assert_eq!(
        probe.worker_stops.load(Ordering::SeqCst),
        2,
        "on_worker_stop per worker"
    );
    assert_eq!(
        probe.shutdowns.load(Ordering::SeqCst),
        1,
        "on_shutdown once"
    );
}

#[test]
fn shutdown_gives_up_at_max_wait_time_and_says_so() {
    let size = 8 << 20;
    let (handler, queued, _closes) = lifecycle(size);
    let builder = builder()
        .socket_buffer_size(16 << 20)
        .max_wait_time(Duration::from_millis(300));
    let (server, addr) = start(builder, move || handler.clone());
    let mut client = connect(addr);
    write_all(&mut client, b"go");
    queued.recv_timeout(WAIT).unwrap();
    // The client never reads: the flush cannot finish.
    let report = server.shutdown().unwrap();
    assert!(!report.graceful);
    assert!(report.abandoned_bytes > 0, "{report:?}");
    assert!(report.elapsed >= Duration::from_millis(300));
    assert!(
        report.elapsed < WAIT,
        "bounded by max_wait_time: {report:?}"
    );
    drop(client);
}

#[test]
fn packets_read_before_shutdown_are_all_handled() {
    let (recorder, events) = Recorder::new(true);
    let (server, addr) = start(
        builder().codec(eddy::codec::LengthCodec::new()),
        move || recorder.clone(),
    );
    let mut client = connect(addr);
    let stream: Vec<u8> = (0..2000u32).flat_map(|i| frame(&i.to_be_bytes())).collect();
    write_all(&mut client, &stream);
    next_where(&events, |s| matches!(s.kind, Kind::Receive(_)));
    let report = server.shutdown().unwrap();
    assert!(report.graceful, "{report:?}");
    let (echoed, reset) = read_to_close(&mut client);
    assert!(!reset);
    let handled = events
        .try_iter()
        .filter(|s| matches!(s.kind, Kind::Receive(_)))
        .count()
        + 1;
    assert_eq!(
        echoed.len(),
        handled * 8,
        "every handled packet was answered before the close"
    );
    assert_eq!(echoed, stream[..echoed.len()], "a whole, in-order prefix");
}

#[test]
fn an_idle_server_starts_and_stops_cleanly() {
    let (recorder, _events) = Recorder::new(true);
    let (server, _addr) = start(builder(), move || recorder.clone());
    let report = server.shutdown().unwrap();
    assert!(report.graceful);
    assert_eq!(report.connections_closed, 0);
}

/// Echoes; `on_before_shutdown` reports, then waits for the test's go-ahead.
#[derive(Clone)]
struct Phases {
    phases: Sender<&'static str>,
    gate: crossbeam_channel::Receiver<()>,
}

impl EventHandler for Phases {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        let _ = ctx.send(conn, &packet);
    }

    fn on_worker_stop(&mut self, _ctx: &mut Context<'_>) {
        let _ = self.phases.send("worker stop");
    }

    fn on_pipe_message(&mut self, _: &mut Context<'_>, _: MessageSource, _: Message) {
        let _ = self.phases.send("message");
    }

    fn on_before_shutdown(&mut self, _server: &ServerHandle) {
        let _ = self.phases.send("before shutdown");
        let _ = self.gate.recv();
    }

    fn on_shutdown(&mut self, _server: &ServerHandle) {
        let _ = self.phases.send("shutdown");
    }
}

#[test]
fn shutdown_phases_run_in_order_and_serve_until_the_first_returns() {
    let (phases_tx, phases) = crossbeam_channel::unbounded();
    let (gate_tx, gate) = crossbeam_channel::bounded::<()>(0);
    let handler = Phases {
        phases: phases_tx,
        gate,
    };
    let builder = builder().reactor_num(2).worker_num(2);
    let (server, addr) = start(builder, move || handler.clone());
    let handle = server.handle().clone();
    let mut client = connect(addr);
    let stopper = std::thread::spawn(move || server.shutdown().unwrap());
    assert_eq!(phases.recv_timeout(WAIT), Ok("before shutdown"));
    // Workers still take messages.
    handle.send_message(Destination::Worker(1), ()).unwrap();
    assert_eq!(phases.recv_timeout(WAIT), Ok("message"));
    // Still serving while on_before_shutdown runs, and still accepting: one new connection
    // after another (each accept burst ends in EAGAIN, which must not stop the watching),
    // spread over both reactors (one accepting a connection the other is to serve hands it
    // over, and must not drop it because a shutdown was asked for).
    write_all(&mut client, b"still here");
    assert_eq!(read_n(&mut client, 10), b"still here");
    // Kept open, so the reactor that accepts them gets ahead of the other and hands some over.
    let mut lates = Vec::new();
    for _ in 0..20 {
        let mut late = connect(addr);
        write_all(&mut late, b"newcomer");
        assert_eq!(read_n(&mut late, 8), b"newcomer");
        lates.push(late);
    }
    drop(gate_tx);
    let report = stopper.join().unwrap();
    assert!(report.graceful, "{report:?}");
    assert_eq!(phases.recv_timeout(WAIT), Ok("worker stop"));
    assert_eq!(phases.recv_timeout(WAIT), Ok("worker stop"));
    assert_eq!(phases.recv_timeout(WAIT), Ok("shutdown"));
    assert_eq!(
        handle.send_message(Destination::Worker(0), ()),
        Err(MessageError::ShuttingDown)
    );
}

#[test]
fn connections_accepted_as_the_shutdown_begins_are_all_closed_and_none_is_lost() {
    // Two reactors accept and hand connections to each other; a storm of connects runs
    // through the shutdown, so some are accepted by one reactor after the other stopped.
    let (recorder, events) = Recorder::new(false);
    let (server, addr) = start(builder().reactor_num(2).worker_num(2), move || {
        recorder.clone()
    });
    let handle = server.handle().clone();
    let storm: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                while kept.len() < 600 {
                    match std::net::TcpStream::connect(addr) {
                        Ok(stream) => kept.push(stream),
                        Err(_) => break, // the listener is closed
                    }
                }
                kept
            })
        })
        .collect();
    wait_until("the storm reaches the server", || {
        handle.connection_count() >= 50
    });
    let report = server.shutdown().unwrap();
    assert!(report.graceful, "{report:?}");
    for thread in storm {
        for mut stream in thread.join().unwrap() {
            stream.set_read_timeout(Some(WAIT)).unwrap();
            // A connection the kernel dropped from a full accept queue looks open to its
            // client until it sends: one byte gets it a reset, as it does from a socket eddy
            // closed. One eddy accepted and left open would answer nothing.
            let _ = stream.write_all(b"?");
            // Closed (or reset, if it was never accepted): never left open.
            read_to_close(&mut stream);
        }
    }
    assert_eq!(handle.connection_count(), 0, "the table is empty");
    let seen: Vec<Seen> = events.try_iter().collect();
    let connects = seen.iter().filter(|s| s.kind == Kind::Connect).count();
    let closes = seen
        .iter()
        .filter(|s| matches!(s.kind, Kind::Close(_)))
        .count();
    assert!(connects >= 50);
    assert_eq!(connects, closes, "every on_connect has its on_close");
}

/// Set in the child process of the test below: it runs the server instead.
const BLOCKING_CHILD: &str = "EDDY_TEST_BLOCKING_BEFORE_SHUTDOWN";

/// A server with the signal handlers on whose `on_before_shutdown` never returns.
struct NeverDone;

impl EventHandler for NeverDone {
    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}

    fn on_before_shutdown(&mut self, _server: &ServerHandle) {
        println!("child: before shutdown");
        loop {
            std::thread::park();
        }
    }
}

#[test]
fn a_second_sigint_exits_at_once_while_on_before_shutdown_runs() {
    if std::env::var_os(BLOCKING_CHILD).is_some() {
        let server = eddy::Server::builder()
            .listen("127.0.0.1:0")
            .handle_signals(true)
            .build(|| NeverDone)
            .expect("build")
            .start()
            .expect("start");
        println!("child: ready");
        let _ = server.wait();
        return;
    }
    // The child is this test binary, running only this test, in the child's role.
    let name = "lifecycle::a_second_sigint_exits_at_once_while_on_before_shutdown_runs";
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(BLOCKING_CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the test binary runs");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut wait_for = |marker: &str| loop {
        let line = lines.next().expect("the child's output").unwrap();
        if line.contains(marker) {
            return;
        }
    };
    let pid = child.id() as i32;
    wait_for("child: ready");
    // SAFETY: signals our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    wait_for("child: before shutdown");
    // The shutdown has begun (its first hook runs, and never returns): a second SIGINT
    // ends the process at once (before, it was ignored until the hook returned).
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut status = None;
    let exited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the child to exit", || {
            status = child.try_wait().unwrap();
            status.is_some()
        })
    }));
    if exited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("a second SIGINT did not end the process");
    }
    assert_eq!(status.unwrap().code(), Some(130));
}
