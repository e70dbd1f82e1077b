//! sendfile(2) throughput against a plain read()/write() copy loop.
//!
//! ```text
//! cargo bench --bench sendfile            # 1 MiB × 2,000 and 64 MiB × 40
//! cargo bench --bench sendfile -- --quick # 1 MiB × 500 and 64 MiB × 8
//! ```
//!
//! A temp file (pattern bytes, in the page cache after the first read) is
//! served N times over one loopback TCP connection to a reader thread in
//! this process, which sends `get\n`, reads exactly the file's length,
//! discards it and asks again:
//!
//! * **eddy sendfile**: an in-process eddy server (line codec, default
//!   threads and dispatch mode) whose handler calls
//!   `ctx.sendfile(conn, path, 0, None)` for each request line;
//! * **copy loop**: a plain blocking `std::net` server thread that opens
//!   the file for each request and copies it with `read()` / `write_all()`
//!   through a 64 KiB buffer.
//!
//! MB/s is 10^6 bytes of file content per second of wall time. Server CPU is
//! this process's CPU time (`getrusage(RUSAGE_SELF)`, user + system) over
//! the run minus the reader thread's own (`getrusage(RUSAGE_THREAD)`): all
//! the server's threads (eddy's reactors and workers, or the copy thread)
//! plus the main thread, which only waits. Goal: sendfile at least 1.5× the
//! copy loop's throughput at 1 MiB.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eddy::codec::EofCodec;
use eddy::{Bytes, ConnId, Context, EventHandler, Server};

/// The copy loop's buffer.
const COPY_BUF: usize = 64 * 1024;
/// Requests before the measured ones (page cache, TCP windows).
const WARMUP_REQUESTS: usize = 3;

/// Sends the file for every request line.
#[derive(Debug)]
struct SendFile {
    path: Arc<PathBuf>,
}

impl EventHandler for SendFile {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, _line: Bytes) {
        if let Err(e) = ctx.sendfile(conn, self.path.as_path(), 0, None) {
            eprintln!("sendfile failed: {e}");
            let _ = ctx.close(conn);
        }
    }
}

/// CPU time (user + system) of `who` (`RUSAGE_SELF` or `RUSAGE_THREAD`).
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut usage), 0, "getrusage");
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// What one case measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    mb_per_sec: f64,
    server_cpu: Duration,
}

/// Requests the file `requests` times from `addr` (after a warm-up) and
/// returns the wall time and the reader thread's CPU time of the measured
/// requests.
fn read_files(addr: SocketAddr, len: u64, requests: usize) -> (Duration, Duration) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 256 * 1024];
    let mut fetch = |stream: &mut TcpStream| {
        stream.write_all(b"get\n").expect("request");
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = stream.read(&mut buf[..want]).expect("read");
            assert!(n > 0, "server closed with {left} bytes to go");
            left -= n as u64;
        }
    };
    for _ in 0..WARMUP_REQUESTS {
        fetch(&mut stream);
    }
    let (t0, c0) = (Instant::now(), cpu(libc::RUSAGE_THREAD));
    for _ in 0..requests {
        fetch(&mut stream);
    }
    (t0.elapsed(), cpu(libc::RUSAGE_THREAD) - c0)
}

/// Runs the reader against `addr` and turns its times into figures.
fn measure(addr: SocketAddr, len: u64, requests: usize) -> Measured {
    let before = cpu(libc::RUSAGE_SELF);
    let reader = thread::spawn(move || read_files(addr, len, requests));
    let (wall, reader_cpu) = reader.join().expect("reader");
    let total = cpu(libc::RUSAGE_SELF) - before;
    // The warm-up requests are in `total` but not in `reader_cpu`: a few
    // requests' worth of server CPU too many, at most WARMUP_REQUESTS / N.
    Measured {
        mb_per_sec: (len * requests as u64) as f64 / wall.as_secs_f64() / 1e6,
        server_cpu: total.saturating_sub(reader_cpu),
    }
}

fn eddy_case(path: &Path, len: u64, requests: usize) -> Measured {
    let path = Arc::new(path.to_path_buf());
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .codec(EofCodec::line())
        .build(move || SendFile { path: path.clone() })
        .expect("build eddy");
    let addr: SocketAddr = server.local_addr().to_string().parse().expect("tcp addr");
    let running = server.start().expect("start eddy");
    let measured = measure(addr, len, requests);
    running.shutdown().expect("shutdown");
    measured
}

fn copy_case(path: &Path, len: u64, requests: usize) -> Measured {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let path = path.to_path_buf();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut out = stream.try_clone().expect("clone");
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            line.clear();
            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut file = File::open(&path).expect("open");
            loop {
                let n = file.read(&mut buf).expect("read file");
                if n == 0 {
                    break;
                }
                if out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    });
    let measured = measure(addr, len, requests);
    server.join().expect("copy server");
    measured
}

/// A temp file of `len` pattern bytes, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(len: usize) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "eddy-sendfile-bench-{}-{len}.bin",
            std::process::id()
        ));
        let chunk: Vec<u8> = (0..COPY_BUF).map(|i| (i % 251) as u8).collect();
        let mut file = File::create(&path).expect("create temp file");
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n]).expect("write temp file");
            left -= n;
        }
        file.sync_all().expect("sync temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn case(len: usize, requests: usize) {
    let file = TempFile::new(len);
    let len = len as u64;
    let eddy = eddy_case(&file.0, len, requests);
    let copy = copy_case(&file.0, len, requests);
    let mib = (len * requests as u64) as f64 / f64::from(1 << 20);
    let per_mib = |m: &Measured| m.server_cpu.as_secs_f64() * 1e6 / mib;
    println!(
        "sendfile {:>2} MiB × {requests:<5}  eddy sendfile {:>8.0} MB/s {:>7.1} µs CPU/MiB  \
         copy loop {:>8.0} MB/s {:>7.1} µs CPU/MiB  throughput {:.2}× CPU {:.2}×",
        len >> 20,
        eddy.mb_per_sec,
        per_mib(&eddy),
        copy.mb_per_sec,
        per_mib(&copy),
        eddy.mb_per_sec / copy.mb_per_sec,
        per_mib(&eddy) / per_mib(&copy).max(f64::MIN_POSITIVE),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: just prove it runs.
        case(1 << 20, 5);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    println!(
        "server CPU: process CPU (getrusage RUSAGE_SELF) minus the reader thread's \
         (RUSAGE_THREAD); ratios are eddy / copy loop"
    );
    case(1 << 20, if quick { 500 } else { 2_000 });
    case(64 << 20, if quick { 8 } else { 40 });
}
