//! Rebuilding handlers while serving: reload (all, task workers only), stop_worker,
//! max_request, and panic isolation, all under traffic, counting every packet.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use eddy::{
    codec::LengthCodec, Bytes, CloseReason, ConnId, Context, EventHandler, ReloadError,
    ServerHandle, WorkerError,
};

use crate::util::*;

/// Echoes (framed) unless the body is `panic`; counts handler builds and reload hooks, and
/// says when a `block` packet starts waiting at the gate.
#[derive(Clone)]
struct Gen {
    built: Arc<AtomicUsize>,
    hooks: Sender<&'static str>,
    errors: Sender<WorkerError>,
    closes: Sender<CloseReason>,
    /// When set, `block` packets wait for this gate.
    gate: Option<Receiver<()>>,
}

impl EventHandler for Gen {
    fn on_worker_start(&mut self, _ctx: &mut Context<'_>) {
        self.built.fetch_add(1, Ordering::SeqCst);
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        let body = &packet[4..];
        match body {
            b"panic" => panic!("asked to panic"),
            b"block" => {
                // Say so first: the worker is busy with its connect event too, where a rebuild
                // could still slip in before this packet.
                let _ = self.hooks.send("blocked");
                let _ = self.gate.as_ref().map(Receiver::recv);
            }
            _ => {}
        }
        let _ = ctx.send(conn, &packet);
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, reason: CloseReason) {
        let _ = self.closes.send(reason);
    }

    fn on_worker_error(&mut self, _ctx: &mut Context<'_>, error: &WorkerError) {
        let _ = self.errors.send(error.clone());
    }

    fn on_before_reload(&mut self, _server: &ServerHandle) {
        let _ = self.hooks.send("before");
    }

    fn on_after_reload(&mut self, _server: &ServerHandle) {
        let _ = self.hooks.send("after");
    }
}

struct Rig {
    server: eddy::RunningServer,
    addr: SocketAddr,
    built: Arc<AtomicUsize>,
    hooks: Receiver<&'static str>,
    errors: Receiver<WorkerError>,
    closes: Receiver<CloseReason>,
}

fn rig(
    workers: usize,
    gate: Option<Receiver<()>>,
    configure: impl FnOnce(eddy::ServerBuilder) -> eddy::ServerBuilder,
) -> Rig {
    let (hooks_tx, hooks) = unbounded();
    let (errors_tx, errors) = unbounded();
    let (closes_tx, closes) = unbounded();
    let built = shared(AtomicUsize::new(0));
    let handler = Gen {
        built: built.clone(),
        hooks: hooks_tx,
        errors: errors_tx,
        closes: closes_tx,
        gate,
    };
    let builder = configure(
        builder()
            .codec(LengthCodec::new())
            .worker_num(workers)
            .reactor_num(workers),
    );
    let (server, addr) = start(builder, move || handler.clone());
    Rig {
        server,
        addr,
        built,
        hooks,
        errors,
        closes,
    }
}

/// A client sending `count` numbered packets (one in `panic_every` is `panic`), reading the
/// echoes on another thread. Returns the numbers echoed, in order.
fn traffic(addr: SocketAddr, client: usize, count: usize, panic_every: usize) -> Vec<usize> {
    let mut writer = connect(addr);
    let mut reader = writer.try_clone().unwrap();
    let expected = (0..count).filter(|i| panic_every == 0 || i % panic_every != panic_every - 1);
    let expected = expected.count();
    let read = std::thread::spawn(move || {
        let mut seen = Vec::with_capacity(expected);
        for _ in 0..expected {
            let header = read_n(&mut reader, 4);
            let len = u32::from_be_bytes(header.try_into().unwrap()) as usize;
            let body = String::from_utf8(read_n(&mut reader, len)).unwrap();
            let (c, i) = body.split_once('-').unwrap();
            assert_eq!(c.parse::<usize>().unwrap(), client);
            seen.push(i.parse::<usize>().unwrap());
        }
        seen
    });
    for i in 0..count {
        let body = if panic_every != 0 && i % panic_every == panic_every - 1 {
            "panic".to_string()
        } else {
            format!("{client}-{i}")
        };
        writer.write_all(&frame(body.as_bytes())).unwrap();
    }
    read.join().unwrap()
}

/// Like [`traffic`], sending until `stop` (then one last `end` packet): returns how many
/// numbered packets were sent, and the numbers echoed.
fn traffic_until(addr: SocketAddr, client: usize, stop: &AtomicBool) -> (usize, Vec<usize>) {
    let mut writer = connect(addr);
    let mut reader = writer.try_clone().unwrap();
    let read = std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let header = read_n(&mut reader, 4);
            let len = u32::from_be_bytes(header.try_into().unwrap()) as usize;
            let body = String::from_utf8(read_n(&mut reader, len)).unwrap();
            let (c, i) = body.split_once('-').unwrap();
            assert_eq!(c.parse::<usize>().unwrap(), client);
            if i == "end" {
                return seen;
            }
            seen.push(i.parse::<usize>().unwrap());
        }
    });
    let mut sent = 0;
    while !stop.load(Ordering::SeqCst) {
        // A few packets at a time, so replies and requests stay in flight together.
        let burst: Vec<u8> = (sent..sent + 8)
            .flat_map(|i| frame(format!("{client}-{i}").as_bytes()))
            .collect();
        writer.write_all(&burst).unwrap();
        sent += 8;
    }
    writer
        .write_all(&frame(format!("{client}-end").as_bytes()))
        .unwrap();
    (sent, read.join().unwrap())
}

fn assert_all(seen: &[usize], count: usize, panic_every: usize) {
    let expected: Vec<usize> = (0..count)
        .filter(|i| panic_every == 0 || i % panic_every != panic_every - 1)
        .collect();
    assert_eq!(seen, expected, "every packet exactly once, in order");
}

#[test]
fn reload_under_load_loses_and_repeats_nothing() {
    let rig = rig(2, None, |b| b);
    let handle = rig.server.handle().clone();
    let stop = shared(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (addr, stop) = (rig.addr, stop.clone());
            std::thread::spawn(move || traffic_until(addr, c, &stop))
        })
        .collect();
    // Every client has traffic in flight before the first reload, and until the last ends.
    wait_until("traffic", || handle.stats().request_count >= 400);
    for n in 1..=5 {
        handle.reload().unwrap();
        wait_until("the reload to finish", || handle.stats().reload_count == n);
        assert_eq!(rig.hooks.try_recv(), Ok("before"));
        assert_eq!(rig.hooks.try_recv(), Ok("after"));
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        let (sent, seen) = client.join().unwrap();
        assert!(sent > 0);
        assert_all(&seen, sent, 0);
    }
    let stats = handle.stats();
    assert_eq!(stats.worker_restarts, 10);
    assert_eq!(rig.built.load(Ordering::SeqCst), 2 + 10);
    // The only closes are the clients' own, at the end.
    for _ in 0..4 {
        assert_eq!(rig.closes.recv_timeout(WAIT), Ok(CloseReason::PeerClosed));
    }
    rig.server.shutdown().unwrap();
}

#[test]
fn a_reload_during_a_reload_is_refused() {
    let (gate_tx, gate) = bounded::<()>(0);
    let rig = rig(1, Some(gate), |b| b.max_wait_time(Duration::from_secs(30)));
    let handle = rig.server.handle().clone();
    // Hold the only worker in a callback: it cannot rebuild yet.
    let mut client = connect(rig.addr);
    client.write_all(&frame(b"block")).unwrap();
    assert_eq!(rig.hooks.recv_timeout(WAIT), Ok("blocked"));
    assert_eq!(handle.worker_status(0), Some(eddy::WorkerStatus::Busy));
    handle.reload().unwrap();
    assert_eq!(rig.hooks.recv_timeout(WAIT), Ok("before"));
    assert_eq!(handle.reload(), Err(ReloadError::InProgress));
    assert_eq!(handle.reload_task_workers(), Err(ReloadError::InProgress));
    drop(gate_tx);
    assert_eq!(read_n(&mut client, 9), frame(b"block"));
    wait_until("the reload to finish", || handle.stats().reload_count == 1);
    assert_eq!(rig.hooks.try_recv(), Ok("after"));
    // Now it is taken again.
    handle.reload().unwrap();
    wait_until("the second reload", || handle.stats().reload_count == 2);
    rig.server.shutdown().unwrap();
}

#[test]
fn stop_worker_restarts_one_worker() {
    let rig = rig(2, None, |b| b);
    let handle = rig.server.handle().clone();
    assert_eq!(
        handle.stop_worker(7),
        Err(ReloadError::NoSuchWorker {
            id: 7,
            worker_num: 2
        })
    );
    handle.stop_worker(1).unwrap();
    wait_until("the restart", || handle.stats().worker_restarts == 1);
    assert_eq!(rig.built.load(Ordering::SeqCst), 3);
    assert_all(&traffic(rig.addr, 0, 100, 0), 100, 0);
    rig.server.shutdown().unwrap();
}

#[test]
fn max_request_recycles_handlers_under_load() {
    let rig = rig(2, None, |b| b.max_request(40));
    let handle = rig.server.handle().clone();
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let addr = rig.addr;
            std::thread::spawn(move || traffic(addr, c, 1000, 0))
        })
        .collect();
    for client in clients {
        assert_all(&client.join().unwrap(), 1000, 0);
    }
    let stats = handle.stats();
    // 3,000 packets, a rebuild every 40 to 60 per worker (batches may run a little past).
    assert!(stats.worker_restarts >= 3000 / 61, "{stats:?}");
    assert!(stats.worker_restarts <= 3000 / 40, "{stats:?}");
    for _ in 0..3 {
        assert_eq!(rig.closes.recv_timeout(WAIT), Ok(CloseReason::PeerClosed));
    }
    rig.server.shutdown().unwrap();
}

#[test]
fn a_handler_panicking_every_100th_packet_keeps_serving() {
    let rig = rig(2, None, |b| b.close_on_panic(false));
    let handle = rig.server.handle().clone();
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let addr = rig.addr;
            std::thread::spawn(move || traffic(addr, c, 2000, 100))
        })
        .collect();
    for client in clients {
        assert_all(&client.join().unwrap(), 2000, 100);
    }
    let errors: Vec<WorkerError> = (0..40)
        .map(|_| rig.errors.recv_timeout(WAIT).unwrap())
        .collect();
    assert!(errors.iter().all(|e| e.callback == "on_receive"
        && e.message == "asked to panic"
        && e.conn.is_some()
        && !e.closed));
    assert_eq!(handle.stats().worker_restarts, 40);
    for _ in 0..2 {
        assert_eq!(
            rig.closes.recv_timeout(WAIT),
            Ok(CloseReason::PeerClosed),
            "kept"
        );
    }
    rig.server.shutdown().unwrap();
}

#[test]
fn a_panic_closes_its_connection_by_default() {
    let rig = rig(2, None, |b| b);
    let mut bad = connect(rig.addr);
    let mut good = connect(rig.addr);
    good.write_all(&frame(b"before")).unwrap();
    assert_eq!(read_n(&mut good, 10), frame(b"before"));
    bad.write_all(&frame(b"panic")).unwrap();
    let (_, reset) = read_to_close(&mut bad);
    assert!(reset || bad.read(&mut [0u8; 1]).map_or(true, |n| n == 0));
    assert_eq!(rig.closes.recv_timeout(WAIT), Ok(CloseReason::HandlerPanic));
    let error = rig.errors.recv_timeout(WAIT).unwrap();
    assert!(
        error.closed && error.message == "asked to panic",
        "{error:?}"
    );
    good.write_all(&frame(b"after")).unwrap();
    assert_eq!(read_n(&mut good, 9), frame(b"after"));
    rig.server.shutdown().unwrap();
}

#[test]
fn reload_rebuilds_handlers_running_on_reactors() {
    let rig = rig(2, None, |b| b.dispatch_mode(eddy::DispatchMode::Reactor));
    let handle = rig.server.handle().clone();
    let client = {
        let addr = rig.addr;
        std::thread::spawn(move || traffic(addr, 0, 3000, 0))
    };
    handle.reload().unwrap();
    wait_until("the reload", || handle.stats().reload_count == 1);
    assert_all(&client.join().unwrap(), 3000, 0);
    assert_eq!(rig.built.load(Ordering::SeqCst), 4);
    rig.server.shutdown().unwrap();
}

/// Panics in `on_worker_start` until it has been tried `fail` times.
struct Shaky {
    tries: Arc<AtomicUsize>,
    fail: usize,
    /// Each try sets a `tick` that reports its id here, before it may panic.
    ticks: Option<crossbeam_channel::Sender<eddy::TimerId>>,
}

impl EventHandler for Shaky {
    fn on_worker_start(&mut self, ctx: &mut Context<'_>) {
        if let Some(ticks) = self.ticks.clone() {
            ctx.tick(eddy::MIN_TICK, move |_, id| {
                let _ = ticks.send(id);
            })
            .unwrap();
        }
        if self.tries.fetch_add(1, Ordering::SeqCst) < self.fail {
            panic!("not ready yet");
        }
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        let _ = ctx.send(conn, &packet);
    }
}

#[test]
fn a_handler_that_cannot_start_is_retried_with_back_off() {
    let tries = shared(AtomicUsize::new(0));
    let counter = tries.clone();
    let builder = builder().codec(LengthCodec::new()).worker_num(1);
    let (ticks_tx, ticks) = crossbeam_channel::unbounded();
    let (server, addr) = start(builder, move || Shaky {
        tries: counter.clone(),
        fail: 3,
        ticks: Some(ticks_tx.clone()),
    });
    // The server is up although its worker's handler is not: the packet waits in the queue
    // until the retries (10, 20, 40 ms apart) get a handler started, the fourth try.
    let mut client = connect(addr);
    client.write_all(&frame(b"up")).unwrap();
    assert_eq!(read_n(&mut client, 6), frame(b"up"));
    assert_eq!(tries.load(Ordering::SeqCst), 4);
    // Only the handler that started keeps its timer: the failed tries' ticks went with them.
    let ids: std::collections::HashSet<_> = (0..8)
        .map(|_| ticks.recv_timeout(WAIT).expect("a tick"))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    server.shutdown().unwrap();
}

/// Replies `one`, then panics, on the packet `panic`; echoes the others. Every handler after
/// the first waits in `on_worker_start` until the gate's sender is dropped.
struct SlowToReturn {
    built: Arc<AtomicUsize>,
    gate: crossbeam_channel::Receiver<()>,
}

impl EventHandler for SlowToReturn {
    fn on_worker_start(&mut self, _ctx: &mut Context<'_>) {
        if self.built.fetch_add(1, Ordering::SeqCst) > 0 {
            let _ = self.gate.recv();
        }
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        // The packet is the whole frame, its 4-byte header included.
        if &packet[4..] == b"panic" {
            let _ = ctx.send(conn, frame(b"one"));
            panic!("after its reply");
        }
        let _ = ctx.send(conn, &packet);
    }
}

#[test]
fn a_rebuild_inside_a_batch_lets_the_replies_before_it_go_first() {
    let built = shared(AtomicUsize::new(0));
    let (gate_tx, gate) = crossbeam_channel::bounded::<()>(0);
    let builder = builder()
        .codec(LengthCodec::new())
        .worker_num(1)
        .close_on_panic(false);
    let counter = built.clone();
    let (server, addr) = start(builder, move || SlowToReturn {
        built: counter.clone(),
        gate: gate.clone(),
    });
    let mut client = connect(addr);
    client.set_read_timeout(Some(WAIT)).unwrap();
    // Two packets in one write, one batch: the first's reply, then the panic, then the new
    // handler's start, which waits. The reply is out meanwhile (it waited for the start).
    let mut both = frame(b"panic");
    both.extend(frame(b"two"));
    client.write_all(&both).unwrap();
    assert_eq!(read_n(&mut client, 7), frame(b"one"));
    wait_until("the new handler's start", || {
        built.load(Ordering::SeqCst) == 2
    });
    drop(gate_tx);
    assert_eq!(read_n(&mut client, 7), frame(b"two"));
    server.shutdown().unwrap();
}
