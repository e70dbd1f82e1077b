//! The cluster bus: three eddy nodes in this process and one `redis-server` (started here,
//! on a free loopback port): cross-node `send_to_uid` latency and throughput, and a
//! broadcast to 10,000 users spread over the three nodes.
//!
//! ```text
//! cargo bench --bench cluster            # 20,000 timed sends; 20 broadcasts to 10,000
//! cargo bench --bench cluster -- --quick # 2,000 timed sends; 5 broadcasts to 10,000
//! ```
//!
//! - **Latency**: node 1 calls `send_to_uid("bob")`, bob is a TCP client of node 3; the time
//!   runs from the call to bob's socket having the 16-byte line (one send at a time). The
//!   same through node 3 itself (a local uid), and a bare `PING` round trip to redis-server,
//!   are the baselines.
//! - **Throughput**: 1, 2 and 4 threads on node 1 send to bob as fast as `send_to_uid`
//!   returns; the time runs until bob has every line.
//! - **Broadcast**: 10,000 clients (in a child process: this binary re-executed with
//!   `--clients A1,A2,A3 N ROUNDS`, so each process needs only one end of every connection
//!   from the open-file limit) spread evenly over the three nodes; node 1 calls `broadcast`
//!   with 64 bytes, and the child reports the `CLOCK_MONOTONIC` instant its last client had
//!   them.
//!
//! Needs `redis-server` (`apt-get install redis-server`).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use eddy::{
    codec::EofCodec, Bytes, ClusterConfig, ClusterState, ConnId, Context, EventHandler, ListenAddr,
    RunningServer, Server, ServerHandle, Uid,
};
use eddy_bench::{
    host::{mono_ns, raise_fd_limit},
    redis_server::RedisServer,
};

/// The first line a client sends is its uid.
struct Login;

impl EventHandler for Login {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        let uid = String::from_utf8_lossy(&packet).trim_end().to_string();
        let _ = ctx.bind(conn, uid);
    }
}

/// The 16-byte line of the latency and throughput runs.
const LINE: &[u8; 16] = b"0123456789abcde\n";
/// The 64-byte line of the broadcast.
const WIDE: &[u8; 64] =
    b"{\"type\":\"tick\",\"seq\":1234567,\"price\":101.2,\"market\":\"EDDY-USD\"}\n";
/// The goals.
const LATENCY_GOAL: Duration = Duration::from_micros(200);
const BROADCAST_GOAL: Duration = Duration::from_millis(20);
/// File descriptors a process needs beyond its end of the connections.
const FD_MARGIN: usize = 200;
const WAIT: Duration = Duration::from_secs(60);

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

fn node(redis: &RedisServer, name: &str) -> (RunningServer, SocketAddr) {
    let config = ClusterConfig {
        command_timeout: Duration::from_secs(1),
        ..ClusterConfig::new(redis.url(), name)
    };
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .codec(EofCodec::line())
        .handle_signals(false)
        .backlog(4096)
        .max_conn(50_000)
        .cluster(config)
        .build(|| Login)
        .expect("build a node");
    let addr = match server.local_addr() {
        ListenAddr::Tcp(addr) => *addr,
        other => panic!("{other}"),
    };
    let server = server.start().expect("start a node");
    until("the node up and subscribed", || {
        let cluster = server.handle().stats().cluster.unwrap();
        cluster.state == ClusterState::Up && cluster.subscribed
    });
    (server, addr)
}

/// A client of `addr` logged in as `uid`, once `seen_from` finds it online.
fn login(addr: SocketAddr, uid: &str, seen_from: &ServerHandle) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(format!("{uid}\n").as_bytes()).unwrap();
    until("the uid in presence", || {
        seen_from.is_uid_online(&Uid::from(uid)) == Ok(true)
    });
    stream
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[at]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `n` sends from `from` to bob, one at a time: the call, and until bob has the line.
fn latency(label: &str, from: &ServerHandle, bob: &mut TcpStream, n: usize, remote: bool) {
    let uid = Uid::from("bob");
    let mut buf = [0u8; LINE.len()];
    let (mut calls, mut totals) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + n / 10 {
        let start = Instant::now();
        let d = from.send_to_uid(&uid, LINE);
        let called = start.elapsed();
        assert_eq!(d.nodes + d.delivered(), 1, "{d:?}");
        assert_eq!(d.nodes == 1, remote);
        bob.read_exact(&mut buf).unwrap();
        if i >= n / 10 {
            calls.push(called);
            totals.push(start.elapsed());
        }
    }
    calls.sort();
    totals.sort();
    let goal = match remote {
        true if percentile(&totals, 0.5) < LATENCY_GOAL => "p50 goal 200 µs: met",
        true => "p50 goal 200 µs: not met",
        false => "(baseline)",
    };
    println!(
        "send_to_uid {label:22} | received p50 {:6.1} µs p99 {:6.1} µs max {:7.1} µs | call p50 {:6.1} µs p99 {:6.1} µs | {goal}",
        us(percentile(&totals, 0.5)),
        us(percentile(&totals, 0.99)),
        us(totals[totals.len() - 1]),
        us(percentile(&calls, 0.5)),
        us(percentile(&calls, 0.99)),
    );
}

/// `n` `PING`s to redis-server on a plain socket, one at a time: the floor under every
/// cross-node figure (a remote send is one round trip to Redis, then Redis to the node).
fn redis_ping(redis: &RedisServer, n: usize) {
    let mut conn = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut buf = [0u8; 7];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        conn.write_all(b"PING\r\n").unwrap();
        conn.read_exact(&mut buf).unwrap();
        times.push(start.elapsed());
        assert_eq!(&buf, b"+PONG\r\n");
    }
    times.sort();
    println!(
        "redis-server PING round trip (baseline)  | p50 {:6.1} µs p99 {:6.1} µs",
        us(percentile(&times, 0.5)),
        us(percentile(&times, 0.99)),
    );
}

/// `threads` threads of node 1 sending `per_thread` lines each to bob as fast as they can.
fn throughput(from: &ServerHandle, bob: &mut TcpStream, threads: usize, per_thread: usize) {
    let expected = (threads * per_thread * LINE.len()) as u64;
    let received = Arc::new(AtomicU64::new(0));
    let mut reader = bob.try_clone().unwrap();
    let count = received.clone();
    let start = Instant::now();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while count.load(Ordering::Relaxed) < expected {
            let n = reader.read(&mut buf).expect("bob reads");
            assert!(n > 0, "node 3 closed bob");
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let senders: Vec<_> = (0..threads)
        .map(|_| {
            let from = from.clone();
            std::thread::spawn(move || {
                let uid = Uid::from("bob");
                for _ in 0..per_thread {
                    let d = from.send_to_uid(&uid, LINE);
                    assert_eq!(d.nodes, 1, "{d:?}");
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let called = start.elapsed();
    drain.join().unwrap();
    let total = start.elapsed();
    let n = (threads * per_thread) as f64;
    println!(
        "send_to_uid across nodes x {threads} threads | {:7.0} msg/s received ({:6.0} msg/s of calls) | {:5.1} µs per call per thread",
        n / total.as_secs_f64(),
        n / called.as_secs_f64(),
        us(called) * threads as f64 / n,
    );
    assert_eq!(received.load(Ordering::Relaxed), expected, "nothing twice");
}

/// Node 1 broadcasts 64 bytes `rounds` times to `conns` clients over the three nodes.
fn broadcast(nodes: &[(RunningServer, SocketAddr)], conns: usize, rounds: usize) {
    let limit = raise_fd_limit() as usize;
    assert!(
        limit >= conns + FD_MARGIN,
        "the broadcast to {conns} needs an open-file limit of {} (the hard limit is {limit})",
        conns + FD_MARGIN
    );
    let addrs: Vec<String> = nodes.iter().map(|(_, a)| a.to_string()).collect();
    let exe = std::env::current_exe().expect("the bench's own executable");
    let mut child = Command::new(exe)
        .args(["--clients", &addrs.join(",")])
        .args([conns.to_string(), rounds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the client process");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(WAIT)
            .expect("a line from the client process")
    };
    assert_eq!(next(), "ready");
    let handles: Vec<&ServerHandle> = nodes.iter().map(|(s, _)| s.handle()).collect();
    until("every client accepted", || {
        // Bob is one more, on node 3.
        handles.iter().map(|h| h.connection_count()).sum::<usize>() > conns
    });
    let delivered = |h: &&ServerHandle| h.stats().cluster.unwrap().delivered;
    let remote: u64 = handles[1..]
        .iter()
        .map(|h| h.connection_count() as u64)
        .sum();
    let (mut calls, mut queued, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let before: u64 = handles[1..].iter().map(delivered).sum();
        let start = mono_ns();
        let d = handles[0].broadcast(WIDE);
        let called = mono_ns();
        assert_eq!((d.nodes, d.failed, d.cluster), (2, 0, None), "{d:?}");
        // Until the other nodes have handed it to every connection (sent or queued), looked
        // at every 100 µs (a spinning look would take a core from the nodes).
        while handles[1..].iter().map(delivered).sum::<u64>() < before + remote {
            std::thread::sleep(Duration::from_micros(100));
        }
        queued.push(Duration::from_nanos(mono_ns() - start));
        let line = next();
        let last: u64 = line
            .strip_prefix("got ")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line from the clients: {line:?}"));
        calls.push(Duration::from_nanos(called - start));
        totals.push(Duration::from_nanos(last.saturating_sub(start)));
    }
    assert!(child.wait().expect("the client process").success());
    calls.sort();
    totals.sort();
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let total = mean(&totals);
    println!(
        "broadcast 64 B to {conns} users over 3 nodes ({rounds} rounds) | call {:6.0} µs mean | on every node's connections (sent or queued) {:6.0} µs mean | all received {:7.0} µs mean, {:7.0} µs best, {:7.0} µs worst | goal 20 ms: {}",
        us(mean(&calls)),
        us(mean(&queued)),
        us(total),
        us(totals[0]),
        us(totals[totals.len() - 1]),
        if total < BROADCAST_GOAL { "met" } else { "not met" },
    );
}

/// The child of [`broadcast`]: `conns` connections spread over `addrs`; prints `ready`,
/// then `got LAST` after each round (when every client had the 64 bytes).
fn clients(addrs: &str, conns: usize, rounds: usize) {
    raise_fd_limit();
    let addrs: Vec<SocketAddr> = addrs.split(',').map(|a| a.parse().unwrap()).collect();
    let clients: Vec<TcpStream> = (0..conns)
        .map(|i| {
            let stream = TcpStream::connect(addrs[i % addrs.len()])
                .unwrap_or_else(|e| panic!("connection {i} of {conns}: {e}"));
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let poller = polling::Poller::new().unwrap();
    for (key, client) in clients.iter().enumerate() {
        // SAFETY: every socket is deleted from the poller before `clients` is dropped.
        unsafe {
            let readable = polling::Event::readable(key);
            poller
                .add_with_mode(client, readable, polling::PollMode::Level)
                .unwrap();
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let mut got = vec![0usize; conns];
    let mut whole = 0;
    let mut events = polling::Events::new();
    let mut buf = [0u8; 4096];
    for round in 1..=rounds {
        while whole < round * conns {
            events.clear();
            poller.wait(&mut events, Some(WAIT)).unwrap();
            assert!(!events.is_empty(), "nothing for a minute: delivery stalled");
            for ev in events.iter() {
                let n = match (&clients[ev.key]).read(&mut buf) {
                    Ok(0) => panic!("a node closed connection {}", ev.key),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("connection {}: {e}", ev.key),
                };
                let before = got[ev.key] / WIDE.len();
                got[ev.key] += n;
                whole += got[ev.key] / WIDE.len() - before;
            }
        }
        writeln!(out, "got {}", mono_ns()).unwrap();
        out.flush().unwrap();
    }
    assert!(got.iter().all(|&g| g == rounds * WIDE.len()), "each once");
    for client in &clients {
        let _ = poller.delete(client);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--clients") {
        let number = |i: usize| -> usize {
            args.get(i)
                .and_then(|a| a.parse().ok())
                .expect("usage: --clients A1,A2,A3 CONNECTIONS ROUNDS")
        };
        clients(&args[2], number(3), number(4));
        return;
    }
    // `cargo test --benches` runs it without `--bench`: a small run, to prove it works.
    let (sends, broadcasts, users) = match (
        args.iter().any(|a| a == "--bench"),
        args.iter().any(|a| a == "--quick"),
    ) {
        (false, _) => (50, 2, 30),
        (true, true) => (2_000, 5, 10_000),
        (true, false) => (20_000, 20, 10_000),
    };
    let redis = RedisServer::start();
    let nodes: Vec<_> = ["n1", "n2", "n3"]
        .iter()
        .map(|name| node(&redis, name))
        .collect();
    let (h1, h3) = (nodes[0].0.handle(), nodes[2].0.handle());
    let mut bob = login(nodes[2].1, "bob", h1);
    redis_ping(&redis, sends);
    latency("local (node 3 to bob)", h3, &mut bob, sends, false);
    latency("node 1 to bob on node 3", h1, &mut bob, sends, true);
    for threads in [1, 2, 4] {
        throughput(h1, &mut bob, threads, sends * 5 / threads);
    }
    broadcast(&nodes, users, broadcasts);
    let published = h1.stats().cluster.unwrap().published;
    println!(
        "node 1 published {published} messages; redis-server on port {}",
        redis.port
    );
    for (server, _) in nodes {
        server.shutdown().unwrap();
    }
}
