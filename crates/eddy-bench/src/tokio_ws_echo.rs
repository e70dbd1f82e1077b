//! Baseline: a tokio-tungstenite WebSocket echo server, one task per
//! connection, on the same multi-threaded runtime as [`tokio_echo`](crate::tokio_echo).
//!
//! Each task upgrades with `accept_async` (tungstenite's defaults: 64 MiB
//! messages, masked client frames required), then echoes every text and
//! binary message as it came. Like `StreamExt::forward` in tokio-tungstenite's
//! echo example, it queues (`feed`) every message already read before one
//! `flush`, so pipelined messages go back in one write; it does so without
//! `split`'s lock. Pings are answered by tungstenite itself; a close ends
//! the task.
//!
//! tungstenite has no permessage-deflate: this server never compresses.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::tokio_echo::{out_of_fds, runtime, transient_accept_error};

/// How often the shutdown flag is checked.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Serves WebSocket echo on `listener` forever with `threads` runtime
/// workers (0 = one per core). Returns only on an accept or runtime error.
pub fn run(listener: TcpListener, threads: usize) -> io::Result<()> {
    let runtime = runtime(threads)?;
    listener.set_nonblocking(true)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        accept_loop(listener).await
    })
}

/// Like [`run`], but returns `Ok(())` within about 50 ms once `stop` is
/// set; open connections are dropped.
pub fn run_until(listener: TcpListener, threads: usize, stop: Arc<AtomicBool>) -> io::Result<()> {
    let runtime = runtime(threads)?;
    listener.set_nonblocking(true)?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let acceptor = tokio::spawn(accept_loop(listener));
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

async fn accept_loop(listener: tokio::net::TcpListener) -> io::Result<()> {
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
            let _ = echo(stream).await;
        });
    }
}

fn is_data(message: &Message) -> bool {
    message.is_binary() || message.is_text()
}

async fn echo(stream: TcpStream) -> Result<(), WsError> {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    while let Some(message) = ws.next().await {
        let message = message?;
        if !is_data(&message) {
            continue;
        }
        ws.feed(message).await?;
        // Everything already read goes back with the same flush.
        while let Some(Some(next)) = ws.next().now_or_never() {
            let next = next?;
            if is_data(&next) {
                ws.feed(next).await?;
            }
        }
        ws.flush().await?;
    }
    Ok(())
}
