//! Baseline: a tokio-rustls echo server, one task per connection, TLS 1.3 on the ring
//! provider (the rustls configuration eddy builds for a listener: same provider, same
//! version, one certificate, no client authentication, rustls's default session tickets).
//!
//! Each task completes the handshake (`TlsAcceptor::accept`), then echoes as
//! [`tokio_echo`](crate::tokio_echo) does: read into a reusable buffer, write the complete
//! packets back with one `write_all`, then `flush` so no ciphertext waits in the session.

use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::frames::{complete_prefix, Framing};
use crate::tokio_echo::{out_of_fds, runtime, transient_accept_error};

/// Initial per-connection read buffer.
const READ_BUF: usize = 64 * 1024;

/// The rustls server configuration for the certificate chain and key in these PEM files:
/// ring, TLS 1.3 only, no client authentication.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let invalid = |what: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", what.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| invalid(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid(key, &e))?;
    Ok(Arc::new(config))
}

/// Serves TLS echo on `listener` forever with `threads` runtime workers (0 = one per core).
/// Returns only on an accept or runtime error.
pub fn run(
    listener: TcpListener,
    framing: Framing,
    threads: usize,
    config: Arc<ServerConfig>,
) -> io::Result<()> {
    let runtime = runtime(threads)?;
    listener.set_nonblocking(true)?;
    let acceptor = TlsAcceptor::from(config);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
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
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A broken or misbehaving client only ends its own task.
                let _ = echo(stream, acceptor, framing).await;
            });
        }
    })
}

async fn echo(stream: TcpStream, acceptor: TlsAcceptor, framing: Framing) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut tls = acceptor.accept(stream).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    loop {
        let scanned = buf.len();
        if buf.capacity() - buf.len() < READ_BUF / 4 {
            buf.reserve(READ_BUF);
        }
        if tls.read_buf(&mut buf).await? == 0 {
            // The client's close_notify (or its end of stream): answer with ours.
            return tls.shutdown().await;
        }
        let done = complete_prefix(framing, &buf, scanned)?;
        if done > 0 {
            tls.write_all(&buf[..done]).await?;
            tls.flush().await?;
            buf.drain(..done);
        }
    }
}
