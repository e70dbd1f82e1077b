//! The connection table under load: broadcasting 64 bytes to 10,000 connections, and
//! `client_info` / `exists` / `send` lookups from several threads at once.
//!
//! ```text
//! cargo bench --bench table            # full: 10,000 connections (fewer if the open-file
//!                                      # hard limit is under ~20,200), 20 broadcasts
//! cargo bench --bench table -- --quick # 2,000 connections, 5 broadcasts
//! ```
//!
//! Servers and clients run in this process, on loopback. A drainer thread reads every client
//! socket (one poller), so what is timed includes delivery, not only the call.

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use eddy::{Bytes, ConnId, Context, EventHandler, ListenAddr, Server, ServerHandle};

struct Quiet;

impl EventHandler for Quiet {
    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

/// Raise the open-file limit to the hard limit; returns it.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads and sets this process's own limit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

/// Reads every client socket and counts the bytes, until told to stop.
struct Drainer {
    received: Arc<AtomicU64>,
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
        let (count, poll) = (received.clone(), poller.clone());
        let thread = std::thread::spawn(move || {
            let mut clients = clients;
            let mut events = polling::Events::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                events.clear();
                poll.wait(&mut events, None).unwrap();
                if events.is_empty() {
                    break; // notified: stop
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: just prove it runs.
        broadcast(50, 2);
        lookups(50, 1_000);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // Both ends of every connection live in this process: stay under the hard limit.
    let room = (raise_fd_limit() as usize).saturating_sub(200) / 2;
    let conns = (if quick { 2_000 } else { 10_000 }).min(room);
    broadcast(conns, if quick { 5 } else { 20 });
    lookups(1_000, if quick { 100_000 } else { 1_000_000 });
}
