//! Baseline: a tokio echo server, one task per connection.
//!
//! Each task reads into a reusable buffer, finds the complete packets
//! ([`complete_prefix`]) and writes them back whole with one `write_all`,
//! keeping a partial packet for the next read. That is what a
//! `tokio_util::codec::Framed` echo does, without the extra copies.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::frames::{complete_prefix, Framing};

/// Initial per-connection read buffer.
const READ_BUF: usize = 64 * 1024;
/// How often the shutdown flag is checked.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Serves echo on `listener` forever with `threads` runtime workers
/// (0 = one per core). Returns only on an accept or runtime error. Nothing
/// runs on a timer, so an idle server uses no CPU.
pub fn run(listener: TcpListener, framing: Framing, threads: usize) -> io::Result<()> {
    let runtime = runtime(threads)?;
    listener.set_nonblocking(true)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        accept_loop(listener, framing).await
    })
}

/// Like [`run`], but returns `Ok(())` within about 50 ms once `stop` is
/// set; open connections are dropped.
pub fn run_until(
    listener: TcpListener,
    framing: Framing,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    let runtime = runtime(threads)?;
    listener.set_nonblocking(true)?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let acceptor = tokio::spawn(accept_loop(listener, framing));
        while !stop.load(Ordering::Relaxed) {
            if acceptor.is_finished() {
                return acceptor.await.unwrap_or_else(|e| Err(io::Error::other(e)));
            }
            tokio::time::sleep(STOP_POLL).await;
        }
        acceptor.abort();
        Ok(())
    });
    runtime.shutdown_background();
    result
}

pub(crate) fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder
        .enable_io()
        .enable_time()
        .thread_name("tokio-echo")
        .build()
}

async fn accept_loop(listener: tokio::net::TcpListener, framing: Framing) -> io::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if out_of_fds(&e) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(e) if transient_accept_error(&e) => continue,
            Err(e) => return Err(e),
        };
        tokio::spawn(async move {
            // A broken or misbehaving client only ends its own task.
            let _ = echo(stream, framing).await;
        });
    }
}

/// Accept errors that concern one connection, not the listener.
pub(crate) fn transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// The process or system is out of file descriptors: back off, retry.
pub(crate) fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

async fn echo(mut stream: TcpStream, framing: Framing) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    loop {
        let scanned = buf.len();
        if buf.capacity() - buf.len() < READ_BUF / 4 {
            buf.reserve(READ_BUF);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let done = complete_prefix(framing, &buf, scanned)?;
        if done > 0 {
            stream.write_all(&buf[..done]).await?;
            buf.drain(..done);
        }
    }
}
