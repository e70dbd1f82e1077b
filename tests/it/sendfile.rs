//! `sendfile` and `sendwait`: files zero-copy, in order with other output, to slow readers
//! with bounded memory; bad ranges, files that change under it; waits that time out exactly
//! and never block a reactor.

use std::{
    io::{Read, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use eddy::{
    Bytes, CloseReason, ConnId, Context, DispatchMode, EventHandler, SendError, SendFileError,
    SendStatus,
};

use crate::util::*;

/// A file of `len` bytes where byte `i` is `i % 251`.
fn pattern_file(name: &str, len: usize) -> PathBuf {
    let path = std::env::temp_dir().join(format!("eddy-{}-{name}", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    let block: Vec<u8> = (0..251 * 4096).map(|i| (i % 251) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
    path
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn server() -> (
    eddy::RunningServer,
    std::net::SocketAddr,
    crossbeam_channel::Receiver<Seen>,
) {
    let (recorder, events) = Recorder::new(false);
    let (server, addr) = start(builder(), move || recorder.clone());
    (server, addr, events)
}

#[test]
fn a_100_mib_file_reaches_a_slow_reader_byte_exact_with_bounded_memory() {
    const LEN: usize = 100 << 20;
    let path = pattern_file("big", LEN);
    let (server, addr, events) = server();
    let mut client = connect(addr);
    let conn = conn_of(&server, &events, &client);
    let before = rss_kib();
    let status = server.handle().sendfile(conn, &path, 0, None).unwrap();
    assert!(matches!(status, SendStatus::Queued { .. }), "{status:?}");
    let queued = server.handle().client_info(conn).unwrap().send_queued_bytes;
    assert!(
        queued > LEN / 2,
        "most of it waits for the reader: {queued}"
    );
    // Queued file bytes stay in the file: the server's memory does not grow with them.
    assert!(
        rss_kib() < before + 16 * 1024,
        "{} KiB -> {} KiB",
        before,
        rss_kib()
    );
    let mut got = vec![0u8; LEN];
    client.read_exact(&mut got).unwrap();
    assert!(
        got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "byte-exact"
    );
    server.shutdown().unwrap();
    let _ = std::fs::remove_file(path);
}

#[test]
fn files_and_sends_keep_their_order_and_ranges_are_checked() {
    let path = pattern_file("mixed", 10_000);
    let (server, addr, events) = server();
    let mut client = connect(addr);
    let conn = conn_of(&server, &events, &client);
    let handle = server.handle();
    handle.send(conn, b"<a>").unwrap();
    handle.sendfile(conn, &path, 100, Some(50)).unwrap();
    handle.send(conn, b"<b>").unwrap();
    handle.sendfile(conn, &path, 9_990, None).unwrap();
    handle.send(conn, b"<c>").unwrap();
    let mut want = b"<a>".to_vec();
    want.extend((100..150).map(|i| (i % 251) as u8));
    want.extend_from_slice(b"<b>");
    want.extend((9_990..10_000).map(|i| (i % 251) as u8));
    want.extend_from_slice(b"<c>");
    assert_eq!(read_n(&mut client, want.len()), want);
    // Edges: past the end, empty, a directory, a missing file.
    assert_eq!(
        handle.sendfile(conn, &path, 9_999, Some(2)),
        Err(SendFileError::OutOfRange {
            offset: 9_999,
            len: 2,
            file_len: 10_000
        })
    );
    assert_eq!(
        handle.sendfile(conn, &path, 10_000, None),
        Err(SendFileError::Send(SendError::Empty))
    );
    assert_eq!(
        handle.sendfile(conn, std::env::temp_dir(), 0, None),
        Err(SendFileError::NotAFile)
    );
    assert_eq!(
        handle.sendfile(conn, "/nonexistent/eddy", 0, None),
        Err(SendFileError::Io(std::io::ErrorKind::NotFound))
    );
    server.shutdown().unwrap();
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_file_deleted_mid_send_still_arrives_and_one_cut_short_closes_the_connection() {
    const LEN: usize = 32 << 20;
    let (server, addr, events) = server();
    // Deleted: the open file lives on until it is sent.
    let deleted = pattern_file("deleted", LEN);
    let mut client = connect(addr);
    let conn = conn_of(&server, &events, &client);
    server.handle().sendfile(conn, &deleted, 0, None).unwrap();
    std::fs::remove_file(&deleted).unwrap();
    let mut got = vec![0u8; LEN];
    client.read_exact(&mut got).unwrap();
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    // Cut short while queued: the connection closes with the error, it never hangs.
    let short = pattern_file("short", LEN);
    let mut reader = connect(addr);
    let id = conn_of(&server, &events, &reader);
    server.handle().sendfile(id, &short, 0, None).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let (bytes, _) = read_to_close(&mut reader);
    assert!(bytes.len() < LEN, "{} bytes", bytes.len());
    let closed = next_where(&events, |s| {
        s.conn == id && matches!(s.kind, Kind::Close(_))
    });
    assert_eq!(
        closed.kind,
        Kind::Close(CloseReason::Error(std::io::ErrorKind::UnexpectedEof))
    );
    server.shutdown().unwrap();
    let _ = std::fs::remove_file(short);
}

#[test]
fn sendwait_returns_once_the_kernel_has_the_bytes_and_times_out_exactly() {
    let (server, addr, events) = server();
    let mut client = connect(addr);
    let conn = conn_of(&server, &events, &client);
    let handle = server.handle();
    assert_eq!(handle.sendwait(conn, b"quick", WAIT), Ok(SendStatus::Sent));
    assert_eq!(read_n(&mut client, 5), b"quick");
    // Fill the kernel's buffers while the client does not read, then wait for more.
    while let Ok(SendStatus::Sent) = handle.send(conn, vec![7u8; 64 * 1024]) {}
    let timeout = Duration::from_millis(300);
    let begun = Instant::now();
    let sent_before = handle.stats().total_send_bytes;
    assert_eq!(
        handle.sendwait(conn, vec![8u8; 64 * 1024], timeout),
        Err(SendError::TimedOut)
    );
    // Timed out, but queued: it counts (it did not before).
    assert_eq!(handle.stats().total_send_bytes, sent_before + 64 * 1024);
    let waited = begun.elapsed();
    assert!(waited >= timeout, "{waited:?}");
    assert!(waited < timeout + Duration::from_secs(2), "{waited:?}");
    // A reader makes room: the wait returns as soon as its bytes are in the kernel. (With
    // no deadline at all: `Duration::MAX` panicked on the Instant's overflow before.)
    let waiter = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.sendwait(conn, b"last", Duration::MAX))
    };
    let mut sink = vec![0u8; 1 << 20];
    let mut seen = Vec::new();
    while !seen.ends_with(b"last") {
        let n = client.read(&mut sink).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&sink[..n]);
        if seen.len() > 8 {
            seen.drain(..seen.len() - 8);
        }
    }
    assert_eq!(waiter.join().unwrap(), Ok(SendStatus::Sent));
    server.shutdown().unwrap();
}

#[test]
fn sendwait_is_refused_on_a_reactor_thread() {
    struct Waits(crossbeam_channel::Sender<Result<SendStatus, SendError>>);
    impl EventHandler for Waits {
        fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: Bytes) {
            let _ = self
                .0
                .send(ctx.sendwait(conn, b"x", Duration::from_secs(1)));
        }
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = builder()
        .dispatch_mode(DispatchMode::Reactor)
        .worker_num(1)
        .reactor_num(1);
    let (server, addr) = start(builder, move || Waits(tx.clone()));
    let mut client = connect(addr);
    write_all(&mut client, b"go");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Err(SendError::OnReactor));
    server.shutdown().unwrap();
}

#[test]
fn the_files_example_serves_files_under_its_root_only() {
    let root = std::env::temp_dir().join(format!("eddy-files-{}", std::process::id()));
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/hello.txt"), b"hello files\n").unwrap();
    let example = Example::start("files", &["--root", root.to_str().unwrap()]);
    let mut client = connect(example.addr);
    write_all(&mut client, b"get sub/hello.txt\n");
    assert_eq!(read_n(&mut client, 6), b"ok 12\n");
    assert_eq!(read_n(&mut client, 12), b"hello files\n");
    for bad in ["../etc/passwd", "/etc/passwd", "missing.txt", "sub"] {
        write_all(&mut client, format!("get {bad}\n").as_bytes());
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\n") {
            client.read_exact(&mut byte).unwrap();
            line.push(byte[0]);
        }
        assert!(
            line.starts_with(b"error "),
            "{bad}: {}",
            String::from_utf8_lossy(&line)
        );
    }
    assert_eq!(example.signal(libc::SIGTERM), 0);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn sendwait_inside_a_batch_of_pipelined_packets_does_not_wait_for_itself() {
    struct Waits(crossbeam_channel::Sender<Result<SendStatus, SendError>>);
    impl EventHandler for Waits {
        fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, line: Bytes) {
            let _ = self
                .0
                .send(ctx.sendwait(conn, &line, Duration::from_secs(5)));
        }
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = builder().codec(eddy::codec::EofCodec::line()).worker_num(1);
    let (server, addr) = start(builder, move || Waits(tx.clone()));
    let mut client = connect(addr);
    // Ten lines in one write: one read, one batch, corked by the worker.
    let lines: Vec<u8> = (0..10)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    write_all(&mut client, &lines);
    let begun = Instant::now();
    for _ in 0..10 {
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), Ok(SendStatus::Sent));
    }
    assert!(
        begun.elapsed() < Duration::from_secs(4),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(read_n(&mut client, lines.len()), lines);
    server.shutdown().unwrap();
}
