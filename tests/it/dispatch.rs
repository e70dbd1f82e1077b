//! Dispatch modes and the ordering each one guarantees.

use std::collections::HashMap;

use eddy::{codec::LengthCodec, ConnId, DispatchMode};

use crate::util::*;

const WORKERS: usize = 4;
const CONNS: usize = 16;
const PACKETS: usize = 40;

/// Run CONNS connections of PACKETS pipelined packets each, close them, and return every event
/// the handlers saw, by connection.
fn traffic(mode: DispatchMode) -> HashMap<ConnId, Vec<Seen>> {
    let (recorder, events) = Recorder::new(true);
    let reactors = if matches!(mode, DispatchMode::Reactor) {
        WORKERS
    } else {
        2
    };
    let builder = builder()
        .codec(LengthCodec::new())
        .worker_num(WORKERS)
        .reactor_num(reactors)
        .dispatch_mode(mode);
    let (server, addr) = start(builder, move || recorder.clone());
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut stream = connect(addr);
                let packets: Vec<u8> = (0..PACKETS)
                    .flat_map(|p| frame(format!("{c}:{p}").as_bytes()))
                    .collect();
                write_all(&mut stream, &packets);
                // Pipelined and possibly handled on several workers: compare as multisets.
                let mut echoed = read_n(&mut stream, packets.len());
                let mut sent = packets.clone();
                echoed.sort_unstable();
                sent.sort_unstable();
                assert_eq!(echoed, sent);
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let mut by_conn: HashMap<ConnId, Vec<Seen>> = HashMap::new();
    let mut closes = 0;
    while closes < CONNS {
        let seen = next(&events);
        closes += matches!(seen.kind, Kind::Close(_)) as usize;
        by_conn.entry(seen.conn).or_default().push(seen);
    }
    server.shutdown().unwrap();
    assert_eq!(by_conn.len(), CONNS);
    by_conn
}

/// Guarantees of every mode: one connect before any receive, every packet once, one close after
/// every receive returned.
fn check_common(by_conn: &HashMap<ConnId, Vec<Seen>>) {
    for (conn, seen) in by_conn {
        let connects: Vec<_> = seen.iter().filter(|s| s.kind == Kind::Connect).collect();
        let closes: Vec<_> = seen
            .iter()
            .filter(|s| matches!(s.kind, Kind::Close(_)))
            .collect();
        let receives: Vec<_> = seen
            .iter()
            .filter(|s| matches!(s.kind, Kind::Receive(_)))
            .collect();
        assert_eq!(connects.len(), 1, "{conn}: one connect");
        assert_eq!(closes.len(), 1, "{conn}: one close");
        assert_eq!(receives.len(), PACKETS, "{conn}: every packet once");
        for r in &receives {
            assert!(
                connects[0].end < r.start,
                "{conn}: on_connect returned before on_receive"
            );
            assert!(
                r.end < closes[0].start,
                "{conn}: on_close after every on_receive"
            );
        }
    }
}

/// Stateful modes: everything on one worker, packets in byte order.
fn check_stateful(by_conn: &HashMap<ConnId, Vec<Seen>>) {
    for (conn, seen) in by_conn {
        let worker = seen[0].worker;
        assert!(
            seen.iter().all(|s| s.worker == worker),
            "{conn}: one worker"
        );
        let bodies: Vec<String> = seen
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::Receive(p) => Some(String::from_utf8_lossy(&p[4..]).into_owned()),
                _ => None,
            })
            .collect();
        let client = bodies[0].split(':').next().unwrap().to_string();
        let expected: Vec<String> = (0..PACKETS).map(|p| format!("{client}:{p}")).collect();
        assert_eq!(bodies, expected, "{conn}: packets in order");
        let mut order: Vec<_> = seen.iter().collect();
        order.sort_by_key(|s| s.start);
        assert_eq!(order[0].kind, Kind::Connect);
        assert!(matches!(order.last().unwrap().kind, Kind::Close(_)));
    }
}

fn workers_used(by_conn: &HashMap<ConnId, Vec<Seen>>) -> usize {
    let mut used: Vec<usize> = by_conn.values().flatten().map(|s| s.worker).collect();
    used.sort_unstable();
    used.dedup();
    used.len()
}

#[test]
fn fd_mode_is_stateful_and_spreads_connections() {
    let seen = traffic(DispatchMode::Fd);
    check_common(&seen);
    check_stateful(&seen);
    assert_eq!(workers_used(&seen), WORKERS, "16 slots over 4 workers");
    for (conn, events) in &seen {
        assert_eq!(events[0].worker, conn.slot() as usize % WORKERS);
    }
}

#[test]
fn reactor_mode_runs_each_connection_on_its_own_reactor() {
    let seen = traffic(DispatchMode::Reactor);
    check_common(&seen);
    check_stateful(&seen);
    assert_eq!(
        workers_used(&seen),
        WORKERS,
        "connections spread over the reactors"
    );
}

#[test]
fn ip_mode_keeps_one_address_on_one_worker() {
    let seen = traffic(DispatchMode::Ip);
    check_common(&seen);
    check_stateful(&seen);
    assert_eq!(workers_used(&seen), 1, "every client is 127.0.0.1");
}

#[test]
fn uid_mode_before_bind_is_by_slot() {
    let seen = traffic(DispatchMode::Uid);
    check_common(&seen);
    check_stateful(&seen);
}

#[test]
fn round_robin_spreads_packets_and_keeps_connect_close_order() {
    let seen = traffic(DispatchMode::RoundRobin);
    check_common(&seen);
    for events in seen.values() {
        let mut workers: Vec<_> = events.iter().map(|s| s.worker).collect();
        workers.dedup();
        assert!(
            workers.len() > 1,
            "one connection's packets go to several workers"
        );
    }
}

#[test]
fn idle_mode_delivers_everything_in_connect_close_order() {
    let seen = traffic(DispatchMode::Idle);
    check_common(&seen);
}

#[test]
fn custom_mode_routes_by_packet_content() {
    // Route by the client number at the start of the body; connect and buffer events by slot.
    let seen = traffic(DispatchMode::custom(|info| {
        let body = info.data?.get(4..)?;
        let client: usize = std::str::from_utf8(body)
            .ok()?
            .split(':')
            .next()?
            .parse()
            .ok()?;
        Some(client % 3)
    }));
    check_common(&seen);
    for events in seen.values() {
        for s in events.iter().filter(|s| matches!(s.kind, Kind::Receive(_))) {
            let Kind::Receive(p) = &s.kind else {
                unreachable!()
            };
            let client: usize = std::str::from_utf8(&p[4..])
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(s.worker, client % 3);
        }
    }
}

#[test]
fn uid_mode_moves_a_connection_to_its_uid_worker_between_packets() {
    let (recorder, events) = Recorder::new(true);
    let builder = builder()
        .codec(LengthCodec::new())
        .worker_num(WORKERS)
        .dispatch_mode(DispatchMode::Uid);
    let (server, addr) = start(builder, move || recorder.clone());
    let mut client = connect(addr);
    let id = conn_of(&server, &events, &client);
    let before = id.slot() as usize % WORKERS;
    let uid = (before as u64 + 1) % WORKERS as u64 + 8; // a different worker
    server.handle().bind(id, uid).unwrap();
    // Ping-pong: each packet is handled, and its event finished (the reply can arrive before
    // the handler returns), before the next is sent, so the switch can happen.
    for i in 0..5 {
        wait_until("the connection's events are finished", || {
            server.handle().client_info(id).unwrap().recv_queued_bytes == 0
        });
        let packet = frame(format!("p{i}").as_bytes());
        write_all(&mut client, &packet);
        assert_eq!(read_n(&mut client, packet.len()), packet);
        let seen = next_where(&events, |s| matches!(s.kind, Kind::Receive(_)));
        assert_eq!(seen.worker, (uid % WORKERS as u64) as usize);
    }
    assert_eq!(
        server.handle().client_info(id).unwrap().uid,
        Some(uid.into())
    );
    server.shutdown().unwrap();
}

/// A message that holds its worker (in the message callback, or in a timer it sets) until
/// the gate's sender is dropped.
struct Hold {
    gate: crossbeam_channel::Receiver<()>,
    in_timer: bool,
}

/// Answers each packet with the id of the worker that handled it; holds on a [`Hold`], and
/// answers a message that is a `Sender<()>`.
#[derive(Clone)]
struct WhoAnswers {
    /// Told at the end of each `on_connect`.
    connected: crossbeam_channel::Sender<ConnId>,
}

impl eddy::EventHandler for WhoAnswers {
    fn on_connect(&mut self, _ctx: &mut eddy::Context<'_>, conn: ConnId) {
        let _ = self.connected.send(conn);
    }

    fn on_receive(&mut self, ctx: &mut eddy::Context<'_>, conn: ConnId, _data: eddy::Bytes) {
        let _ = ctx.send(conn, frame(&[ctx.worker_id() as u8]));
    }

    fn on_pipe_message(
        &mut self,
        ctx: &mut eddy::Context<'_>,
        _src: eddy::MessageSource,
        message: eddy::Message,
    ) {
        let hold = match message.downcast::<Hold>() {
            Ok(hold) => hold,
            Err(message) => {
                if let Ok(done) = message.downcast::<crossbeam_channel::Sender<()>>() {
                    let _ = done.send(());
                }
                return;
            }
        };
        let Hold { gate, in_timer } = hold;
        // Until the test drops the gate's sender (at its end, or as it unwinds).
        let wait = move || {
            let _ = gate.recv();
        };
        match in_timer {
            true => drop(ctx.after(std::time::Duration::ZERO, move |_| wait())),
            false => wait(),
        }
    }
}

#[test]
fn idle_mode_passes_a_worker_busy_with_a_timer_or_a_message() {
    for in_timer in [false, true] {
        let builder = builder()
            .codec(LengthCodec::new())
            .worker_num(2)
            .reactor_num(1)
            .dispatch_mode(DispatchMode::Idle);
        let (connected_tx, connected) = crossbeam_channel::unbounded();
        let who = WhoAnswers {
            connected: connected_tx,
        };
        let (server, addr) = start(builder, move || who.clone());
        let handle = server.handle();
        let (gate_tx, gate) = crossbeam_channel::bounded::<()>(0);
        handle
            .send_message(eddy::Destination::Worker(0), Hold { gate, in_timer })
            .unwrap();
        // Worker 0 runs a callback, so it is busy (before, it counted as idle: no event).
        use eddy::WorkerStatus::{Busy, Idle};
        let status = || handle.stats().worker_status;
        wait_until("worker 0 busy", || status() == [Busy, Idle]);
        let mut client = connect(addr);
        // Its connect event went to worker 1: let it finish (the reply to it, then idle), or
        // both workers look busy.
        connected.recv_timeout(WAIT).expect("on_connect ran");
        wait_until("worker 1 idle", || status() == [Busy, Idle]);
        for _ in 0..4 {
            write_all(&mut client, &frame(b"who"));
            assert_eq!(read_n(&mut client, 5), frame(&[1]), "in_timer {in_timer}");
            wait_until("worker 1 idle again", || status() == [Busy, Idle]);
        }
        drop(gate_tx);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_reactor_mode_worker_is_idle_again_after_a_message() {
    let builder = builder()
        .codec(LengthCodec::new())
        .worker_num(1)
        .reactor_num(1)
        .dispatch_mode(DispatchMode::Reactor);
    let who = WhoAnswers {
        connected: crossbeam_channel::unbounded().0,
    };
    let (server, _addr) = start(builder, move || who.clone());
    let handle = server.handle();
    let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
    handle
        .send_message(eddy::Destination::Worker(0), done_tx)
        .unwrap();
    done.recv_timeout(WAIT).expect("the message was handled");
    // Busy while the callback ran, idle once the reactor is back between events.
    wait_until("worker 0 idle", || {
        handle.stats().worker_status == [eddy::WorkerStatus::Idle]
    });
    server.shutdown().unwrap();
}

/// Answers each packet with the id of the worker that handled it; worker 0's handler, when
/// built again (`stop_worker`), waits in `on_worker_start` until the gate's sender is dropped.
#[derive(Clone)]
struct SlowRestart {
    starts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    gate: crossbeam_channel::Receiver<()>,
}

impl eddy::EventHandler for SlowRestart {
    fn on_worker_start(&mut self, ctx: &mut eddy::Context<'_>) {
        use std::sync::atomic::Ordering::SeqCst;
        if ctx.worker_id() == 0 && self.starts.fetch_add(1, SeqCst) == 1 {
            let _ = self.gate.recv();
        }
    }

    fn on_receive(&mut self, ctx: &mut eddy::Context<'_>, conn: ConnId, _data: eddy::Bytes) {
        let _ = ctx.send(conn, frame(&[ctx.worker_id() as u8]));
    }
}

#[test]
fn idle_mode_passes_a_worker_rebuilding_its_handler() {
    let builder = builder()
        .codec(LengthCodec::new())
        .worker_num(2)
        .reactor_num(1)
        .dispatch_mode(DispatchMode::Idle);
    let (gate_tx, gate) = crossbeam_channel::bounded::<()>(0);
    let handler = SlowRestart {
        starts: Default::default(),
        gate,
    };
    let (server, addr) = start(builder, move || handler.clone());
    let handle = server.handle();
    handle.stop_worker(0).unwrap();
    // Rebuilding, not busy: it used to count as idle and be handed events it would take
    // only once its `on_worker_start` returned.
    wait_until("worker 0 rebuilding", || {
        handle.worker_status(0) == Some(eddy::WorkerStatus::Stopping)
    });
    assert_eq!(handle.stats().idle_worker_num, 1);
    let mut client = connect(addr);
    client.set_read_timeout(Some(WAIT)).unwrap();
    for _ in 0..4 {
        write_all(&mut client, &frame(b"who"));
        assert_eq!(read_n(&mut client, 5), frame(&[1]));
    }
    drop(gate_tx);
    server.shutdown().unwrap();
}

/// `n` connections, once the server has accepted them all.
fn accepted(
    server: &eddy::RunningServer,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<std::net::TcpStream> {
    let conns: Vec<_> = (0..n).map(|_| connect(addr)).collect();
    wait_until("every connection accepted", || {
        server.handle().connection_count() == n
    });
    conns
}

/// Three accepted connections: one to hold the reactor with, A and B.
fn three(server: &eddy::RunningServer, addr: std::net::SocketAddr) -> [std::net::TcpStream; 3] {
    let conns = accepted(server, addr, 3);
    conns.try_into().expect("three")
}

/// Write a batch of `packets` framed packets on `a`, then, once the server has them (so
/// its poller reports `a` first), one packet `then` on `b`. Returns the batch.
fn batch_then(
    a: &mut std::net::TcpStream,
    packets: usize,
    b: &mut std::net::TcpStream,
    then: &[u8],
) -> Vec<u8> {
    let batch: Vec<u8> = (1..=packets)
        .flat_map(|p| frame(format!("a{p}").as_bytes()))
        .collect();
    write_all(a, &batch);
    wait_acked(a);
    write_all(b, &frame(then));
    batch
}

/// Reactor mode: echoes every packet (a frame, header and all); `hold` holds the reactor until the test says go on (or
/// `WAIT` passes); `push` also sends `pushed` to the connection the test named; `bye` closes
/// the connection once its replies are out.
struct RoundEcho {
    go_on: crossbeam_channel::Receiver<()>,
    target: std::sync::Arc<std::sync::Mutex<Option<ConnId>>>,
}

impl eddy::EventHandler for RoundEcho {
    fn on_receive(&mut self, ctx: &mut eddy::Context<'_>, conn: ConnId, packet: eddy::Bytes) {
        ctx.send(conn, &packet).expect("echo");
        match &packet[4..] {
            b"hold" => {
                let _ = self.go_on.recv_timeout(WAIT);
            }
            b"push" => {
                let target = self.target.lock().unwrap().expect("a target named");
                ctx.send(target, b"pushed").expect("push");
            }
            b"bye" => ctx.close(conn).expect("close"),
            _ => {}
        }
    }
}

fn round_server() -> (
    eddy::RunningServer,
    std::net::SocketAddr,
    crossbeam_channel::Sender<()>,
    std::sync::Arc<std::sync::Mutex<Option<ConnId>>>,
) {
    let (go, go_on) = crossbeam_channel::unbounded();
    let target = std::sync::Arc::new(std::sync::Mutex::new(None));
    let builder = builder()
        .codec(LengthCodec::new())
        .dispatch_mode(DispatchMode::Reactor)
        .worker_num(1);
    let shared = target.clone();
    let (server, addr) = start(builder, move || RoundEcho {
        go_on: go_on.clone(),
        target: shared.clone(),
    });
    (server, addr, go, target)
}

#[test]
fn in_reactor_mode_the_batches_of_one_round_from_many_connections_all_come_back_in_order() {
    // More connections than a round holds back (64): all of them are read in the round that
    // follows the hold, and each one's batch is answered whole, in order.
    let (server, addr, go, _) = round_server();
    let mut conns = accepted(&server, addr, 151);
    let mut holder = conns.pop().unwrap();
    write_all(&mut holder, &frame(b"hold"));
    assert_eq!(read_n(&mut holder, 8), frame(b"hold"));
    let streams: Vec<Vec<u8>> = (0..conns.len())
        .map(|c| {
            (0..20)
                .flat_map(|p| frame(format!("c{c} p{p}").as_bytes()))
                .collect()
        })
        .collect();
    for (conn, stream) in conns.iter_mut().zip(&streams) {
        write_all(conn, stream);
    }
    go.send(()).unwrap();
    for (conn, stream) in conns.iter_mut().zip(&streams) {
        assert_eq!(read_n(conn, stream.len()), *stream, "echo in order");
    }
    server.shutdown().unwrap();
}

#[test]
fn in_reactor_mode_a_close_in_a_batch_comes_after_the_replies_the_round_held() {
    // The batch's replies wait for the end of the round, its last packet asks for a
    // graceful close: every reply arrives, then the end of the stream (not a reset).
    let (server, addr, _go, _) = round_server();
    let mut client = connect(addr);
    let batch: Vec<u8> = [frame(b"a1"), frame(b"a2"), frame(b"bye")].concat();
    write_all(&mut client, &batch);
    let (got, reset) = read_to_close(&mut client);
    assert_eq!(got, batch, "every reply, then the close");
    assert!(!reset, "a graceful close");
    server.shutdown().unwrap();
}

#[test]
fn in_reactor_mode_a_send_to_a_connection_whose_batch_waits_for_the_round_goes_after_it() {
    // A's batch and B's `push` are read in one round (the reactor was held in a third
    // connection's handler while both came). A's replies wait for the end of the round; B's handler sends to A meanwhile:
    // that comes after them, and a send from another thread after the round still goes out.
    let (server, addr, go, target) = round_server();
    let mut a = connect(addr);
    let mut b = connect(addr);
    wait_until("both connected", || server.handle().connection_count() == 2);
    let local = a.local_addr().unwrap();
    let handle = server.handle();
    let (ids, _) = handle.client_list(eddy::Cursor::START, 10);
    let a_id = ids
        .into_iter()
        .find(|id| handle.client_info(*id).and_then(|i| i.peer()) == Some(local))
        .expect("A is listed");
    *target.lock().unwrap() = Some(a_id);
    let mut holder = connect(addr);
    write_all(&mut holder, &frame(b"hold"));
    assert_eq!(read_n(&mut holder, 8), frame(b"hold"));
    let batch = batch_then(&mut a, 3, &mut b, b"push");
    go.send(()).unwrap();
    assert_eq!(read_n(&mut b, 8), frame(b"push"));
    let mut expected = batch.clone();
    expected.extend_from_slice(b"pushed");
    assert_eq!(
        read_n(&mut a, expected.len()),
        expected,
        "the batch, then the push"
    );
    assert_eq!(
        server.handle().send(a_id, b"later"),
        Ok(eddy::SendStatus::Sent)
    );
    assert_eq!(read_n(&mut a, 5), b"later");
    server.shutdown().unwrap();
}

/// A task that waits for the test to say go on (or `WAIT` to pass).
struct Gated(crossbeam_channel::Receiver<()>);

impl eddy::TaskHandler for Gated {
    type Task = ();
    type Output = ();

    fn on_task(&mut self, _: &mut eddy::TaskContext<'_, Self>, _: eddy::Task<()>) -> Option<()> {
        let _ = self.0.recv_timeout(WAIT);
        Some(())
    }
}

/// Reactor mode: echoes every packet; `wait` first waits for a gated task, through the
/// context or (`through_handle`) through the server handle's `Tasks`.
struct TaskWaiting {
    through_handle: bool,
}

impl eddy::EventHandler<Gated> for TaskWaiting {
    fn on_receive(
        &mut self,
        ctx: &mut eddy::Context<'_, Gated>,
        conn: ConnId,
        packet: eddy::Bytes,
    ) {
        if &packet[4..] == b"wait" {
            let result = if self.through_handle {
                let tasks = ctx.server().tasks::<Gated>().expect("tasks");
                tasks.task_wait((), WAIT)
            } else {
                ctx.task_wait((), WAIT)
            };
            result.expect("the task's result");
        }
        ctx.send(conn, &packet).expect("echo");
    }
}

#[test]
fn in_reactor_mode_replies_held_for_the_round_do_not_wait_for_a_task_wait() {
    for through_handle in [false, true] {
        replies_held_for_the_round_do_not_wait_for_a_task_wait(through_handle);
    }
}

fn replies_held_for_the_round_do_not_wait_for_a_task_wait(through_handle: bool) {
    // A's batch and B's `wait` come in one round (the reactor waits for the first task
    // meanwhile); B's handler waits for a task the test holds: A's replies are out before.
    let (go, go_on) = crossbeam_channel::unbounded();
    let builder = builder()
        .codec(LengthCodec::new())
        .dispatch_mode(DispatchMode::Reactor)
        .worker_num(1)
        .task_handler(move || Gated(go_on.clone()))
        .task_worker_num(1);
    let (server, addr) = start(builder, move || TaskWaiting { through_handle });
    let [mut holder, mut a, mut b] = three(&server, addr);
    write_all(&mut holder, &frame(b"wait"));
    wait_until("the first task to run", || {
        server.handle().stats().task_idle_worker_num == 0
    });
    let batch = batch_then(&mut a, 2, &mut b, b"wait");
    go.send(()).unwrap();
    assert_eq!(read_n(&mut holder, 8), frame(b"wait"));
    // B's task now holds the reactor; A's batch was read in the round before it.
    assert_eq!(
        read_n(&mut a, batch.len()),
        batch,
        "A's replies, before B's task ends (through the handle: {through_handle})"
    );
    go.send(()).unwrap();
    assert_eq!(read_n(&mut b, 8), frame(b"wait"));
    server.shutdown().unwrap();
}

/// Reactor mode: echoes every packet; `hold` holds the reactor until the test says go on,
/// `panic` panics. Once `fail_starts` is set, a new handler's `on_worker_start` panics.
struct Fragile {
    go_on: crossbeam_channel::Receiver<()>,
    fail_starts: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl eddy::EventHandler for Fragile {
    fn on_worker_start(&mut self, _: &mut eddy::Context<'_>) {
        if self.fail_starts.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("this handler cannot start");
        }
    }

    fn on_receive(&mut self, ctx: &mut eddy::Context<'_>, conn: ConnId, packet: eddy::Bytes) {
        match &packet[4..] {
            b"hold" => {
                let _ = self.go_on.recv_timeout(WAIT);
            }
            b"panic" => panic!("a handler that panics"),
            _ => {}
        }
        ctx.send(conn, &packet).expect("echo");
    }
}

#[test]
fn in_reactor_mode_replies_held_for_the_round_do_not_wait_for_a_handler_that_cannot_start() {
    // A's batch and B's `panic` come in one round. The panic rebuilds the handler, whose
    // start keeps failing (the thread backs off until the shutdown): A's replies are out.
    let (go, go_on) = crossbeam_channel::unbounded();
    let fail_starts = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let builder = builder()
        .codec(LengthCodec::new())
        .dispatch_mode(DispatchMode::Reactor)
        .worker_num(1);
    let failing = fail_starts.clone();
    let (server, addr) = start(builder, move || Fragile {
        go_on: go_on.clone(),
        fail_starts: failing.clone(),
    });
    let [mut holder, mut a, mut b] = three(&server, addr);
    write_all(&mut holder, &frame(b"hold"));
    wait_until("the reactor to hold", || {
        server.handle().stats().request_count == 1
    });
    let batch = batch_then(&mut a, 2, &mut b, b"panic");
    fail_starts.store(true, std::sync::atomic::Ordering::SeqCst);
    go.send(()).unwrap();
    assert_eq!(read_n(&mut holder, 8), frame(b"hold"));
    assert_eq!(
        read_n(&mut a, batch.len()),
        batch,
        "A's replies, though no handler starts"
    );
    server.shutdown().unwrap();
}
