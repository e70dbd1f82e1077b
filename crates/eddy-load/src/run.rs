//! Running a load: connect, spread connections over threads, collect.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{resolve_loopback, LoadConfig, Mode};
use crate::conn::{Conn, Schedule, Shape, Tally};
use crate::connect::{connect_all, set_nonblocking};
use crate::cycle::{CycleWorker, Slot};
use crate::error::LoadError;
use crate::frame::Framing;
use crate::report::{HandshakeReport, LoadReport};
use crate::tls::{self, Connector};
use crate::udp::{self, UdpConn, UdpWorker};
use crate::worker::{new_histogram, Shared, Worker};
use crate::ws;

const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Runs the load described by `config` and reports the measured phase.
///
/// Connects all connections first (retrying until
/// [`LoadConfig::connect_timeout`], which also bounds the WebSocket
/// handshakes), then sends for the warm-up and the measured phase, then
/// waits for every outstanding echo. With [`Framing::Udp`] there is
/// nothing to connect: each socket is bound and `connect`ed, and datagrams
/// not echoed within [`LoadConfig::udp_timeout`] are counted as lost
/// ([`LoadReport::lost`]) and replaced. With [`LoadConfig::tls`] every
/// connection's TLS handshake is done (all at once, bounded by the same
/// deadline) before the clock starts, and reported in
/// [`LoadReport::handshakes`]. In [`Mode::Handshakes`] nothing is connected
/// up front: each thread's slots connect, handshake, echo once and close,
/// over and over. Blocks the calling thread; the work happens on
/// [`LoadConfig::threads`] threads.
pub fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    config.validate()?;
    let addr = resolve_loopback(&config.addr)?;
    let connector = config.tls.as_ref().map(Connector::new).transpose()?;
    let deadline = Instant::now() + config.connect_timeout;
    let mut handshakes = None;
    let endpoints = if config.mode == Mode::Handshakes {
        Endpoints::Cycles
    } else if config.framing == Framing::Udp {
        Endpoints::Udp(udp::open_all(addr, config.connections)?)
    } else {
        let streams = connect_all(addr, config.connections, deadline)?;
        let agreed = if config.framing == Framing::WebSocket {
            let mut rng = ws::Rng::from_entropy(u64::from(addr.port()));
            let host = addr.to_string();
            let agreed = ws::handshake_all(&streams, &host, config.deflate, deadline, &mut rng)?;
            if let Some(i) = agreed.iter().position(|a| config.deflate && a.is_none()) {
                return Err(LoadError::Handshake {
                    conn: i as u32,
                    reason: "the server declined permessage-deflate, which was asked for".into(),
                });
            }
            agreed
        } else {
            vec![None; streams.len()]
        };
        set_nonblocking(&streams)?;
        let sessions = match &connector {
            Some(connector) => {
                let done = tls::handshake_all(&streams, connector, deadline)?;
                handshakes = Some(done.hist);
                done.sessions
                    .into_iter()
                    .map(|s| Some(Box::new(s)))
                    .collect()
            }
            None => (0..streams.len()).map(|_| None).collect(),
        };
        Endpoints::Tcp(streams, agreed, sessions)
    };

    let threads = config.effective_threads();
    let shape = Shape {
        framing: config.framing,
        payload: config.payload,
        size: config.size,
        depth: config.depth,
    };
    let start = Instant::now();
    let measure_start = start + config.warmup;
    let sched = Schedule {
        measure_start,
        measure_end: config.duration.map(|d| measure_start + d),
    };
    let conns = config.connections as u64;
    let budget = |i: u64| config.count.map(|n| n / conns + u64::from(i < n % conns));

    let jobs: Vec<Job> = match endpoints {
        Endpoints::Tcp(streams, agreed, sessions) => {
            let mut groups: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
            let each = streams.into_iter().zip(agreed).zip(sessions);
            for (i, ((stream, deflate), session)) in each.enumerate() {
                let id = i as u32; // validate() bounds connections by u32::MAX
                let conn = Conn::new(stream, id, shape, budget(i as u64), start, deflate, session);
                groups[i % threads].push(conn);
            }
            groups
                .into_iter()
                .map(|conns| {
                    Job::Tcp(Worker {
                        conns,
                        shape,
                        sched,
                        io_timeout: config.io_timeout,
                    })
                })
                .collect()
        }
        Endpoints::Udp(sockets) => {
            let mut groups: Vec<Vec<UdpConn>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, socket) in sockets.into_iter().enumerate() {
                let conn = UdpConn::new(socket, i as u32, shape, budget(i as u64));
                groups[i % threads].push(conn);
            }
            groups
                .into_iter()
                .map(|conns| Job::Udp(UdpWorker::new(conns, shape, sched, config)))
                .collect()
        }
        Endpoints::Cycles => {
            let mut groups: Vec<Vec<Slot>> = (0..threads).map(|_| Vec::new()).collect();
            for i in 0..config.connections {
                let slot = Slot::new(i as u32, shape, budget(i as u64));
                groups[i % threads].push(slot);
            }
            groups
                .into_iter()
                .map(|slots| {
                    Job::Cycle(CycleWorker {
                        addr,
                        slots,
                        shape,
                        sched,
                        io_timeout: config.io_timeout,
                        connector: connector.clone(),
                    })
                })
                .collect()
        }
    };

    let shared = Shared::default();
    let tallies = thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let mut spawn_error = None;
        for (t, worker) in jobs.into_iter().enumerate() {
            let (tx, shared) = (tx.clone(), &shared);
            let spawned = thread::Builder::new()
                .name(format!("eddy-load-{t}"))
                .spawn_scoped(scope, move || {
                    let result = panic::catch_unwind(AssertUnwindSafe(|| worker.run(shared)))
                        .unwrap_or_else(|_| Err(LoadError::Thread("worker panicked".into())));
                    let _ = tx.send(result);
                });
            if let Err(e) = spawned {
                shared.stop.store(true, Ordering::Relaxed);
                spawn_error = Some(LoadError::Thread(e.to_string()));
                break;
            }
        }
        drop(tx);
        let collected = collect(&rx, &shared, config, sched, start);
        match spawn_error {
            Some(e) => Err(e),
            None => collected,
        }
    })?;

    let mut hist = new_histogram();
    let mut bytes = 0;
    let mut all_packets = 0;
    let mut last = None::<Instant>;
    let mut lost = 0;
    let merge_err = |e| LoadError::Thread(format!("merging histograms: {e:?}"));
    for t in &tallies {
        lost += t.lost;
        hist.add(&t.hist).map_err(merge_err)?;
        if let Some(h) = &t.handshakes {
            handshakes
                .get_or_insert_with(new_histogram)
                .add(h)
                .map_err(merge_err)?;
        }
        bytes += t.bytes;
        all_packets += t.all_packets;
        last = last.max(t.last_recv);
    }
    let elapsed = last.map_or(Duration::ZERO, |l| {
        l.saturating_duration_since(measure_start)
    });
    let mut report = LoadReport::new(
        config,
        addr.to_string(),
        &hist,
        bytes,
        all_packets,
        elapsed,
        (config.framing == Framing::Udp).then_some(lost),
    );
    if config.tls.is_some() {
        report.handshakes = handshakes.as_ref().map(HandshakeReport::of);
    }
    Ok(report)
}

/// The connected sockets of a run, before they are spread over threads.
enum Endpoints {
    /// TCP streams, with the permessage-deflate agreement of each (WebSocket)
    /// and the TLS session of each (TLS).
    Tcp(
        Vec<TcpStream>,
        Vec<Option<ws::DeflateParams>>,
        Vec<Option<Box<tls::Session>>>,
    ),
    /// Connected UDP sockets.
    Udp(Vec<UdpSocket>),
    /// Nothing yet: handshakes mode connects as it goes.
    Cycles,
}

/// One load thread's work.
enum Job {
    Tcp(Worker),
    Udp(UdpWorker),
    Cycle(CycleWorker),
}

impl Job {
    fn run(self, shared: &Shared) -> Result<Tally, LoadError> {
        match self {
            Job::Tcp(w) => w.run(shared),
            Job::Udp(w) => w.run(shared),
            Job::Cycle(w) => w.run(shared),
        }
    }
}

/// Waits for all workers, printing progress; the first error wins and
/// stops the other workers.
fn collect(
    rx: &mpsc::Receiver<Result<Tally, LoadError>>,
    shared: &Shared,
    config: &LoadConfig,
    sched: Schedule,
    start: Instant,
) -> Result<Vec<Tally>, LoadError> {
    let mut tallies = Vec::new();
    let mut first_error = None;
    let mut next_tick = start + PROGRESS_EVERY;
    let mut last_count = 0u64;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Ok(tally)) => tallies.push(tally),
            Ok(Err(e)) => {
                shared.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let count = shared.packets.load(Ordering::Relaxed);
                if config.progress && first_error.is_none() {
                    print_progress(config, sched, start, now, count - last_count);
                }
                last_count = count;
                next_tick += PROGRESS_EVERY;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(tallies),
    }
}

fn print_progress(config: &LoadConfig, sched: Schedule, start: Instant, now: Instant, delta: u64) {
    // Name the phase the past interval was mostly in.
    let mid = now.checked_sub(PROGRESS_EVERY / 2).unwrap_or(now);
    let phase = if mid < sched.measure_start {
        "warmup"
    } else if sched.measure_end.is_some_and(|end| mid >= end) {
        "drain"
    } else {
        "run"
    };
    let pkt = config.framing.packet_len(config.size) as f64;
    let secs = PROGRESS_EVERY.as_secs_f64();
    let rate = delta as f64 / secs;
    let line = format!(
        "eddy-load {:>5.0}s {:<6} {:>10.0} packets/s {:>9.2} MB/s\n",
        now.saturating_duration_since(start).as_secs_f64(),
        phase,
        rate,
        rate * pkt / 1e6
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
