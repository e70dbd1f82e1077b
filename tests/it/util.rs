//! Test helpers: servers on 127.0.0.1:0, a recording handler, clients with deadlines.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender};
use eddy::{
    Bytes, CloseReason, ConnId, Context, EventHandler, ListenAddr, RunningServer, ServerBuilder,
    TaskHandler,
};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A global clock of callback starts and ends, to check happens-before between callbacks.
pub static SEQ: AtomicU64 = AtomicU64::new(0);

pub fn tick() -> u64 {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// An event a handler saw, with the worker and the clock at its start and end.
#[derive(Clone, Debug)]
pub struct Seen {
    pub conn: ConnId,
    pub worker: usize,
    pub kind: Kind,
    pub start: u64,
    pub end: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Connect,
    Receive(Bytes),
    Close(CloseReason),
    Full(usize),
    Drain(usize),
}

/// Echoes every packet and reports every event.
#[derive(Clone)]
pub struct Recorder {
    pub tx: Sender<Seen>,
    pub echo: bool,
}

impl Recorder {
    pub fn new(echo: bool) -> (Recorder, Receiver<Seen>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Recorder { tx, echo }, rx)
    }

    fn report(&self, ctx: &Context<'_>, conn: ConnId, kind: Kind, start: u64) {
        let _ = self.tx.send(Seen {
            conn,
            worker: ctx.worker_id(),
            kind,
            start,
            end: tick(),
        });
    }
}

impl EventHandler for Recorder {
    fn on_connect(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let start = tick();
        self.report(ctx, conn, Kind::Connect, start);
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        let start = tick();
        if self.echo {
            ctx.send(conn, &packet).expect("echo");
        }
        self.report(ctx, conn, Kind::Receive(packet), start);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let start = tick();
        assert!(
            ctx.client_info(conn).is_some(),
            "client_info answers in on_close"
        );
        self.report(ctx, conn, Kind::Close(reason), start);
    }

    fn on_buffer_full(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let start = tick();
        let queued = ctx
            .client_info(conn)
            .map_or(0, |info| info.send_queued_bytes);
        self.report(ctx, conn, Kind::Full(queued), start);
    }

    fn on_buffer_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let start = tick();
        let queued = ctx
            .client_info(conn)
            .map_or(0, |info| info.send_queued_bytes);
        self.report(ctx, conn, Kind::Drain(queued), start);
    }
}

/// A builder listening on 127.0.0.1:0 that leaves signals alone.
pub fn builder() -> ServerBuilder {
    eddy::Server::builder()
        .listen("127.0.0.1:0")
        .handle_signals(false)
}

/// Build and start; returns the running server and its TCP address.
pub fn start<T: TaskHandler, H: EventHandler<T>>(
    builder: ServerBuilder<T>,
    factory: impl Fn() -> H + Send + Sync + 'static,
) -> (RunningServer, SocketAddr) {
    let server = builder.build(factory).expect("build");
    let addr = match server.local_addr() {
        ListenAddr::Tcp(addr) => *addr,
        other => panic!("not a TCP listener: {other}"),
    };
    (server.start().expect("start"), addr)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A length-framed packet: u32 big-endian body length, then the body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

pub fn read_n(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read echo");
    buf
}

/// Read until the peer closes; returns what came and whether it ended with a reset.
pub fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, false),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(err) => panic!("read failed before close: {err}"),
        }
    }
}

/// The server's id for `client`, learned from the connect events (matching the peer address).
#[track_caller]
pub fn conn_of(server: &RunningServer, events: &Receiver<Seen>, client: &TcpStream) -> ConnId {
    let local = client.local_addr().unwrap();
    let handle = server.handle();
    // Connect events may arrive in any order across workers: look at each until ours.
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = events.recv_deadline(deadline).expect("connect event");
        if seen.kind == Kind::Connect
            && handle.client_info(seen.conn).and_then(|i| i.peer()) == Some(local)
        {
            return seen.conn;
        }
    }
}

/// Wait for the next event, or fail the test.
#[track_caller]
pub fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(WAIT).expect("an event within the deadline")
}

/// Wait for the next event matching `pred`, skipping others.
#[track_caller]
pub fn next_where(rx: &Receiver<Seen>, pred: impl Fn(&Seen) -> bool) -> Seen {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = rx
            .recv_deadline(deadline)
            .expect("a matching event within the deadline");
        if pred(&seen) {
            return seen;
        }
    }
}

/// Poll a condition until it holds or the deadline passes (a bounded wait, not a sleep).
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

pub fn write_all(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).expect("write");
}

/// Wait until the server has acknowledged everything written to `stream` (its send queue,
/// `SIOCOUTQ`, is empty): the bytes are in the server's socket, which its poller reports
/// ready, before anything written after this call.
pub fn wait_acked(stream: &TcpStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    wait_until("the server to acknowledge what was written", || {
        let mut unacked: libc::c_int = 0;
        // SAFETY: `fd` is the open socket `stream` borrows; TIOCOUTQ writes one int.
        let ok = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unacked) } == 0;
        ok && unacked == 0
    });
}

/// Keep the handler alive in tests that only need a handle.
pub fn shared<T>(value: T) -> Arc<T> {
    Arc::new(value)
}

/// The example binary cargo built next to this test (`cargo test` builds examples).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --examples`",
        path.display()
    );
    path
}

/// An example running as a child process, killed when dropped.
pub struct Example {
    child: Child,
    pub addr: SocketAddr,
    /// The whole ready line.
    pub line: String,
}

impl Example {
    /// Start `examples/NAME --listen 127.0.0.1:0 ARGS` and read its `listening on` line.
    pub fn start(name: &str, args: &[&str]) -> Example {
        Example::start_with(name, args, None)
    }

    /// Start the example, optionally with an open-file limit.
    pub fn start_with(name: &str, args: &[&str], max_files: Option<u64>) -> Example {
        let mut command = Command::new(example_binary(name));
        if let Some(limit) = max_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only an async-signal-safe setrlimit between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rlim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // `listening on ADDR`, maybe followed by what it serves (a TLS certificate's path).
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"));
        Example { child, addr, line }
    }

    /// Send a signal, without waiting.
    pub fn notify(&self, signal: i32) {
        // SAFETY: sends a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Send a signal and wait for the exit code.
    pub fn signal(mut self, signal: i32) -> i32 {
        // SAFETY: sends a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status.code().unwrap_or(-1)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
