//! Baseline: a tokio UDP echo server.
//!
//! One `tokio::net::UdpSocket`, shared by as many tasks as the runtime
//! has worker threads (tokio's default: one per core); each task loops on
//! `recv_from` and `send_to` back to the sender. That is the plain tokio
//! way to serve datagrams on several cores from one port.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::tokio_echo::runtime;

/// Largest datagram echoed (the IPv4 UDP payload limit).
const MAX_DATAGRAM: usize = 65_507;
/// How often the shutdown flag is checked.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Tasks to run for `threads` (0 = tokio's default, one per core).
fn task_count(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Serves UDP echo on `socket` forever with `threads` runtime workers and
/// as many receiving tasks (0 = one per core). Returns only on an error.
pub fn run(socket: UdpSocket, threads: usize) -> io::Result<()> {
    run_until(socket, threads, Arc::new(AtomicBool::new(false)))
}

/// Like [`run`], but returns `Ok(())` within about 50 ms once `stop` is set.
pub fn run_until(socket: UdpSocket, threads: usize, stop: Arc<AtomicBool>) -> io::Result<()> {
    let runtime = runtime(threads)?;
    socket.set_nonblocking(true)?;
    let result = runtime.block_on(async move {
        let socket = Arc::new(tokio::net::UdpSocket::from_std(socket)?);
        let tasks: Vec<_> = (0..task_count(threads))
            .map(|_| tokio::spawn(echo(Arc::clone(&socket))))
            .collect();
        while !stop.load(Ordering::Relaxed) {
            if let Some(done) = tasks.iter().position(|t| t.is_finished()) {
                let task = tasks.into_iter().nth(done).expect("task exists");
                return task.await.unwrap_or_else(|e| Err(io::Error::other(e)));
            }
            tokio::time::sleep(STOP_POLL).await;
        }
        for task in &tasks {
            task.abort();
        }
        Ok(())
    });
    runtime.shutdown_background();
    result
}

async fn echo(socket: Arc<tokio::net::UdpSocket>) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // An ICMP error for an earlier answer: nothing to do.
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e),
        };
        match socket.send_to(&buf[..n], peer).await {
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Errors that concern one datagram or peer, not the socket.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(libc::ENOBUFS)
}
