//! One client connection's rustls session, driven sans-IO over a non-blocking socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::error::LoadError;

/// Ciphertext reads per [`Session::receive`] (rustls reads up to about 4 KiB each): more
/// waits for the next readiness event, so one busy connection cannot hold the thread.
const READS_PER_CALL: usize = 32;

/// What one [`Session::receive`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// Ciphertext arrived.
    pub(crate) any: bool,
    /// The peer ended the stream (TCP end of file, or its close_notify).
    pub(crate) eof: bool,
}

/// A rustls client session.
#[derive(Debug)]
pub(crate) struct Session {
    conn: ClientConnection,
}

impl Session {
    /// A session asking for `name`, its ClientHello queued.
    pub(crate) fn new(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Self, rustls::Error> {
        Ok(Session {
            conn: ClientConnection::new(config, name)?,
        })
    }

    /// Whether the handshake is still going on.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Encrypts as much of `data` as the session takes (it holds a bounded amount of
    /// ciphertext; [`send`](Self::send) makes room). Returns the bytes taken.
    pub(crate) fn write_plain(&mut self, data: &[u8]) -> io::Result<usize> {
        self.conn.writer().write(data)
    }

    /// Writes queued ciphertext to `stream` until none is left (`Ok(false)`) or the socket
    /// would block (`Ok(true)`: some is still pending).
    pub(crate) fn send(&mut self, stream: &TcpStream) -> io::Result<bool> {
        let mut sock = stream;
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Reads what `stream` holds (a bounded amount), decrypts it and hands the plaintext,
    /// chunk by chunk through `buf`, to `sink`. All plaintext rustls decrypted is handed
    /// over before returning, so nothing waits inside the session for a readiness event
    /// that will not come. Handshake messages are processed along the way; answers they
    /// need are queued for [`send`](Self::send).
    pub(crate) fn receive(
        &mut self,
        stream: &TcpStream,
        buf: &mut [u8],
        conn: u32,
        mut sink: impl FnMut(&[u8]) -> Result<(), LoadError>,
    ) -> Result<Received, LoadError> {
        let io_err = |source| LoadError::Io {
            conn: Some(conn),
            source,
        };
        let mut got = Received::default();
        let mut sock = stream;
        for _ in 0..READS_PER_CALL {
            match self.conn.read_tls(&mut sock) {
                Ok(0) => got.eof = true,
                Ok(_) => got.any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            }
            self.conn
                .process_new_packets()
                .map_err(|e| LoadError::Tls {
                    conn: Some(conn),
                    reason: e.to_string(),
                })?;
            loop {
                match self.conn.reader().read(buf) {
                    // The peer's close_notify.
                    Ok(0) => {
                        got.eof = true;
                        break;
                    }
                    Ok(n) => sink(&buf[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The stream ended without close_notify: `eof` is set already.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(io_err(e)),
                }
            }
            if got.eof {
                break;
            }
        }
        Ok(got)
    }

    /// Queues close_notify and writes what the socket takes of it (best effort: the
    /// connection is about to be closed).
    pub(crate) fn close(&mut self, stream: &TcpStream) {
        self.conn.send_close_notify();
        let _ = self.send(stream);
    }
}
