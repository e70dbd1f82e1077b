//! The connection table under load: broadcasting 64 bytes to 10,000 connections, one 64-byte
//! WebSocket message to 10,000 WebSocket connections, and `client_info` / `exists` / `send`
//! lookups from several threads at once.
//!
//! ```text
//! cargo bench --bench table            # full: 10,000 connections (fewer if the open-file
//!                                      # hard limit is under ~20,200), 20 broadcasts;
//!                                      # WebSocket: 10,000 connections, 20 broadcasts
//! cargo bench --bench table -- --quick # 2,000 connections, 5 broadcasts;
//!                                      # WebSocket: 10,000 connections, 5 broadcasts
//! ```
//!
//! Servers and clients run in this process, on loopback. A drainer thread reads every client
//! socket (one poller), so what is timed includes delivery, not only the call.
//!
//! The WebSocket broadcast's server runs in this process too, but its 10,000 clients run in a
//! child (this binary re-executed with `--ws-clients ADDR N ROUNDS`), so each process needs
//! only one end of every connection from the open-file limit. The child upgrades every
//! connection (eddy-load's handshake), says `ready`, then reads with one poller and checks
//! every frame; after each broadcast it prints the `CLOCK_MONOTONIC` instant at which its last
//! client had the whole frame, which this process compares with its own clock.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use eddy::{
    Bytes, ConnId, Context, EventHandler, ListenAddr, Server, ServerHandle, WebSocketConfig,
};
use eddy_bench::host::{mono_ns, raise_fd_limit};

struct Quiet;

impl EventHandler for Quiet {
    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

/// Reads every client socket and counts the bytes, until told to stop.
struct Drainer {
    received: Arc<AtomicU64>,
    /// Set, then the poller notified, to stop: a wait that also returns readable sockets
    /// consumes the notification, so the flag is what the thread checks.
    done: Arc<AtomicBool>,
    stop: Arc<polling::Poller>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drainer {
    fn start(clients: Vec<TcpStream>) -> Drainer {
        let received = Arc::new(AtomicU64::new(0));
        let poller = Arc::new(polling::Poller::new().unwrap());
        for (key, client) in clients.iter().enumerate() {
            client.set_nonblocking(true).unwrap();
            // SAFETY: the sockets live in the thread below until after they are deleted.
            unsafe {
                poller
                    .add_with_mode(
                        client,
                        polling::Event::readable(key),
                        polling::PollMode::Level,
                    )
                    .unwrap();
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        let (count, poll, finished) = (received.clone(), poller.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut clients = clients;
            let mut events = polling::Events::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                events.clear();
                poll.wait(&mut events, None).unwrap();
                if finished.load(Ordering::Acquire) {
                    break;
                }
                for ev in events.iter() {
                    while let Ok(n) = clients[ev.key].read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        count.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
            for client in &clients {
                let _ = poll.delete(client);
            }
        });
        Drainer {
            received,
            done,
            stop: poller,
            thread: Some(thread),
        }
    }

    fn wait_for(&self, bytes: u64) -> Duration {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        while self.received.load(Ordering::Relaxed) < bytes {
            assert!(Instant::now() < deadline, "delivery stalled");
            std::thread::yield_now();
        }
        start.elapsed()
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        let _ = self.stop.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn server() -> (eddy::RunningServer, SocketAddr) {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .handle_signals(false)
        .max_conn(50_000)
        .build(|| Quiet)
        .unwrap();
    let addr = match server.local_addr() {
        ListenAddr::Tcp(addr) => *addr,
        other => panic!("{other}"),
    };
    (server.start().unwrap(), addr)
}

fn open(addr: SocketAddr, n: usize, handle: &ServerHandle) -> Vec<TcpStream> {
    let clients: Vec<_> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.connection_count() < n {
        assert!(
            Instant::now() < deadline,
            "connections were not all accepted"
        );
        std::thread::yield_now();
    }
    clients
}

fn broadcast(conns: usize, rounds: usize) {
    let (server, addr) = server();
    let handle = server.handle().clone();
    let drainer = Drainer::start(open(addr, conns, &handle));
    let message = [7u8; 64];
    let (mut call, mut total) = (Duration::ZERO, Duration::ZERO);
    let mut delivered = 0;
    for round in 1..=rounds {
        let start = Instant::now();
        let d = handle.broadcast(message);
        call += start.elapsed();
        delivered += d.delivered();
        total += start.elapsed() + drainer.wait_for((round * conns * 64) as u64);
        assert_eq!(d.failed, 0);
    }
    assert_eq!(delivered, rounds * conns);
    let per = |d: Duration| d.as_secs_f64() / rounds as f64;
    println!(
        "broadcast 64 B to {conns} connections | call {:8.0} µs ({:5.0} ns/conn) | all received {:8.0} µs",
        per(call) * 1e6,
        per(call) * 1e9 / conns as f64,
        per(total) * 1e6,
    );
    drop(drainer);
    server.shutdown().unwrap();
}

fn lookups(conns: usize, iterations: usize) {
    let (server, addr) = server();
    let handle = server.handle().clone();
    let drainer = Drainer::start(open(addr, conns, &handle));
    let ids: Arc<Vec<ConnId>> = Arc::new(handle.connections().collect());
    for threads in [1, 2, 4] {
        for (name, op) in [("client_info", 0), ("exists", 1), ("send 16 B", 2)] {
            let start = Instant::now();
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (handle, ids) = (handle.clone(), ids.clone());
                    std::thread::spawn(move || {
                        let mut x: usize = t * 7919;
                        for _ in 0..iterations {
                            x = x
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            let id = ids[(x >> 33) % ids.len()];
                            match op {
                                0 => assert!(handle.client_info(id).is_some()),
                                1 => assert!(handle.exists(id)),
                                _ => assert!(handle.send(id, [1u8; 16]).is_ok()),
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            let elapsed = start.elapsed();
            println!(
                "{name:11} x {threads} threads on {conns} connections | {:6.0} ns/op per thread | {:5.2} M ops/s in all",
                elapsed.as_secs_f64() * 1e9 / iterations as f64,
                (threads * iterations) as f64 / elapsed.as_secs_f64() / 1e6,
            );
        }
    }
    drop(drainer);
    server.shutdown().unwrap();
}

/// The WebSocket broadcast's goal: every client has the message within this long.
const WS_GOAL: Duration = Duration::from_millis(5);
/// File descriptors a process needs beyond its end of the connections.
const FD_MARGIN: usize = 200;
/// The 64-byte message: ASCII, so it goes out as a text frame (eddy's default opcode).
const WS_MESSAGE: &[u8; 64] =
    b"{\"type\":\"tick\",\"seq\":1234567,\"price\":101.25,\"market\":\"EDDY-USD\"}";

/// Broadcast one 64-byte message to `conns` WebSocket connections `rounds` times: the call's
/// time, and the time until the last client (in a child process) had the whole frame.
fn ws_broadcast(conns: usize, rounds: usize) {
    let limit = raise_fd_limit() as usize;
    if limit < conns + FD_MARGIN {
        eprintln!(
            "table bench: the WebSocket broadcast to {conns} connections needs an open-file \
             limit of {} in this process and in its client child (one end each); the hard \
             limit is {limit}: raise it (e.g. `ulimit -Hn {}` as root)",
            conns + FD_MARGIN,
            conns + FD_MARGIN
        );
        std::process::exit(1);
    }
    let server = Server::builder()
        .listen_ws("127.0.0.1:0")
        .websocket(WebSocketConfig::default().deflate(false))
        .handle_signals(false)
        .backlog(4096)
        .max_conn(50_000)
        .build(|| Quiet)
        .unwrap();
    let addr = match server.local_addr() {
        ListenAddr::Tcp(addr) => *addr,
        other => panic!("{other}"),
    };
    let server = server.start().unwrap();
    let handle = server.handle().clone();
    let exe = std::env::current_exe().expect("the bench's own executable");
    let mut child = Command::new(exe)
        .args(["--ws-clients", &addr.to_string()])
        .args([conns.to_string(), rounds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the client process");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| match lines.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => panic!("the client process gave no {what} (see its error above)"),
    };
    let opened = Instant::now();
    assert_eq!(next("`ready`"), "ready");
    let upgraded = opened.elapsed();
    assert_eq!(handle.connection_count(), conns);
    let (mut calls, mut firsts, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = mono_ns();
        let d = handle.broadcast(WS_MESSAGE);
        let called = mono_ns();
        assert_eq!((d.delivered(), d.failed), (conns, 0));
        let line = next("arrival time");
        let stamps: Vec<u64> = line
            .strip_prefix("got ")
            .map(|t| t.split(' ').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        let [first, last] = stamps[..] else {
            panic!("unexpected line from the clients: {line:?}")
        };
        calls.push(Duration::from_nanos(called - start));
        firsts.push(Duration::from_nanos(first.saturating_sub(start)));
        totals.push(Duration::from_nanos(last.saturating_sub(start)));
    }
    let status = child.wait().expect("the client process");
    assert!(status.success(), "the client process failed: {status}");
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (call, total) = (mean(&calls), mean(&totals));
    println!(
        "broadcast 64 B to {conns} WebSocket connections ({rounds} rounds, all upgraded in {:.1} s) \
         | call {:8.0} µs mean, {:8.0} µs best ({:5.0} ns/conn) | first received {:6.0} µs mean \
         | all received {:8.0} µs mean, {:8.0} µs best | goal {} ms: {}",
        upgraded.as_secs_f64(),
        us(call),
        us(best(&calls)),
        call.as_secs_f64() * 1e9 / conns as f64,
        us(mean(&firsts)),
        us(total),
        us(best(&totals)),
        WS_GOAL.as_millis(),
        if total < WS_GOAL { "met" } else { "not met" },
    );
    server.shutdown().unwrap();
}

/// The child of [`ws_broadcast`]: opens `conns` WebSocket connections to `addr`, prints
/// `ready` once all are upgraded, then for each of `rounds` broadcasts prints
/// `got FIRST LAST`: the `CLOCK_MONOTONIC` nanoseconds at which the first connection, then
/// every connection, had the whole frame.
fn ws_clients(addr: &str, conns: usize, rounds: usize) {
    let limit = raise_fd_limit() as usize;
    assert!(
        limit >= conns + FD_MARGIN,
        "open-file limit {limit} is too low"
    );
    let addr: SocketAddr = addr.parse().expect("an address");
    let deadline = Instant::now() + Duration::from_secs(30);
    let clients: Vec<TcpStream> = (0..conns)
        .map(|i| {
            let stream = TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("connection {i} of {conns}: {e}"));
            stream.set_nodelay(true).unwrap();
            stream
        })
        .collect();
    let mut rng = eddy_load::ws::Rng::from_entropy(u64::from(std::process::id()));
    let host = addr.to_string();
    if let Err(e) = eddy_load::ws::handshake_all(&clients, &host, false, deadline, &mut rng) {
        panic!("upgrading {conns} connections: {e}");
    }
    let mut frame = vec![0x81, WS_MESSAGE.len() as u8];
    frame.extend_from_slice(WS_MESSAGE);
    let poller = polling::Poller::new().unwrap();
    for (key, client) in clients.iter().enumerate() {
        client.set_nonblocking(true).unwrap();
        // SAFETY: every socket is deleted from the poller before `clients` is dropped.
        unsafe {
            poller
                .add_with_mode(
                    client,
                    polling::Event::readable(key),
                    polling::PollMode::Level,
                )
                .unwrap();
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    // Per client: bytes of the current frame had so far.
    let mut offset = vec![0usize; conns];
    let mut frames = 0usize;
    let mut events = polling::Events::new();
    let mut buf = [0u8; 4096];
    for round in 1..=rounds {
        let mut first = None;
        while frames < round * conns {
            events.clear();
            poller
                .wait(&mut events, Some(Duration::from_secs(30)))
                .unwrap();
            assert!(!events.is_empty(), "no frame for 30 s: delivery stalled");
            for ev in events.iter() {
                let n = match (&clients[ev.key]).read(&mut buf) {
                    Ok(0) => panic!("the server closed connection {}", ev.key),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("connection {}: {e}", ev.key),
                };
                let mut data = &buf[..n];
                while !data.is_empty() {
                    let at = offset[ev.key];
                    let take = (frame.len() - at).min(data.len());
                    assert!(
                        data[..take] == frame[at..at + take],
                        "connection {}: not the broadcast frame",
                        ev.key
                    );
                    data = &data[take..];
                    offset[ev.key] = (at + take) % frame.len();
                    if at + take == frame.len() {
                        frames += 1;
                        first.get_or_insert_with(mono_ns);
                    }
                }
            }
        }
        let last = mono_ns();
        writeln!(out, "got {} {last}", first.unwrap_or(last)).unwrap();
        out.flush().unwrap();
    }
    for client in &clients {
        let _ = poller.delete(client);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--ws-clients") {
        let number = |i: usize| -> usize {
            args.get(i)
                .and_then(|a| a.parse().ok())
                .expect("usage: --ws-clients ADDR CONNECTIONS ROUNDS")
        };
        ws_clients(&args[2], number(3), number(4));
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: just prove it runs.
        broadcast(50, 2);
        ws_broadcast(50, 2);
        lookups(50, 1_000);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // Both ends of every connection live in this process: stay under the hard limit.
    let room = (raise_fd_limit() as usize).saturating_sub(200) / 2;
    let conns = (if quick { 2_000 } else { 10_000 }).min(room);
    broadcast(conns, if quick { 5 } else { 20 });
    // One end per process: the full 10,000 even in the quick run (the goal is about 10,000).
    ws_broadcast(10_000, if quick { 5 } else { 20 });
    lookups(1_000, if quick { 100_000 } else { 1_000_000 });
}
