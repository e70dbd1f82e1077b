//! One connection's TLS session, driven sans-IO: ciphertext is read from the socket by the
//! reactor and decrypted here; plaintext from any sender is encrypted here and written to the
//! socket, or appended to the connection's output buffer when the kernel does not take it.
//!
//! The session lives in the connection's output, behind its lock, so the reactor (reading)
//! and the senders (writing) drive it in turn and ciphertext never reorders.

use std::{
    io::{self, BufRead, Read, Write},
    os::fd::BorrowedFd,
    sync::Arc,
};

use bytes::BytesMut;
use rustls::{ServerConfig, ServerConnection};

use super::{
    records::{RecordBudget, RECORD_PLAINTEXT},
    TlsFailure, TlsInfo,
};
use crate::sys;

/// rustls reads the socket into at least this much room, so a read that returns less
/// emptied it. (Not quite always: with a partial record near the largest size in its buffer,
/// rustls offers less room, and a short read may leave bytes in the socket. They are read on
/// the next round: epoll is level-triggered.)
const FULL_READ: usize = 4096;

/// The most plaintext a read may bring past what it asked for: what one `read_tls` can buffer
/// (rustls takes at most a full record's ciphertext, 18,437 bytes, at a time), all of which
/// may decrypt at once (a full record and a small one).
pub(crate) const READ_OVERSHOOT: usize = 18 * 1024 + 64;

/// A corked write this large (a full record's plaintext) is encrypted at once, not staged.
const SEAL_AT_ONCE: usize = RECORD_PLAINTEXT;

/// What is left past the last whole record of a write sealed at once is staged, to start the
/// next record, when it is at most this long (a short copy instead of a short record).
const STAGE_TAIL: usize = 2 * 1024;

/// What a read of the session found besides plaintext, for the reactor to act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsEvents {
    /// The handshake finished during this read.
    pub(crate) established: bool,
    /// Ciphertext (handshake, alert) was queued in the output buffer: flush it.
    pub(crate) queued: bool,
    /// The peer ended the session: cleanly (close_notify) or not (`Some(false)`).
    pub(crate) ended: Option<bool>,
}

/// A connection's TLS session.
#[derive(Debug)]
pub(crate) struct TlsSession {
    conn: ServerConnection,
    /// Plaintext written before the handshake finished, held by rustls until it does.
    early_plaintext: usize,
    /// Plaintext a corked batch wrote, encrypted at the flush as one run of records.
    staged: Vec<u8>,
    /// Plaintext already encrypted into records that rustls holds until the flush (a corked
    /// write of a record's worth or more, which staging would only copy once more).
    sealed: usize,
    /// The end of the peer's stream was seen (reported once).
    ended: bool,
    /// The records made, against the key's limit.
    records: RecordBudget,
}

/// `recv(2)` on a borrowed socket, for rustls's `read_tls`.
struct FdReader<'a>(BorrowedFd<'a>);

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.0, buf)
    }
}

/// The most one system call of a TLS flush writes; the flush loops for the rest.
///
/// rustls's default buffer limit keeps each write of tokio-rustls near 64 KiB. eddy lifts
/// that limit (`socket_buffer_size` bounds what is queued), and a corked batch's records went
/// out in one `sendmsg` of up to a read's worth and more. On the 16 KiB pipelined TLS echo
/// (loopback, 2 cores) those larger writes cost the server nearly twice the system time per
/// packet, and throughput: by hand, 10 rounds, 20.7 → 15.1 µs CPU per packet and 48k → 66k
/// packets/s with this cap (32 KiB did about as well, 16 KiB less).
const WRITE_MAX: usize = 64 * 1024;

/// `send(2)` on a borrowed socket, for rustls's `write_tls`, at most [`WRITE_MAX`] a call;
/// counts what the kernel took.
struct FdWriter<'a> {
    fd: BorrowedFd<'a>,
    written: usize,
}

impl<'a> FdWriter<'a> {
    fn new(fd: BorrowedFd<'a>) -> Self {
        FdWriter { fd, written: 0 }
    }
}

impl Write for FdWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = sys::send(self.fd, &buf[..buf.len().min(WRITE_MAX)])?;
        self.written += n;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Whole slices, up to the first that reaches the cap (it may pass the cap by up to a
        // record), and at least one.
        let mut total = 0;
        let count = bufs
            .iter()
            .take_while(|buf| {
                let more = total < WRITE_MAX;
                total += buf.len();
                more
            })
            .count()
            .max(1);
        let n = sys::send_vectored(self.fd, &bufs[..count.min(bufs.len())])?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSession {
    /// A session for a connection just accepted on a listener with this configuration.
    pub(crate) fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        // Records go to the connection's output buffer as soon as they are made, which
        // `socket_buffer_size` bounds; plaintext written during the handshake counts there too.
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn,
            early_plaintext: 0,
            staged: Vec::new(),
            sealed: 0,
            ended: false,
            records: RecordBudget::default(),
        })
    }

    /// Plaintext accepted before the handshake finished and not yet encrypted: it counts as
    /// queued.
    pub(crate) fn early_plaintext(&self) -> usize {
        self.early_plaintext
    }

    /// Whether the handshake is still going on (nothing can be encrypted yet).
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Plaintext held until the next flush writes it: staged, or sealed in records.
    pub(crate) fn held(&self) -> usize {
        self.staged.len() + self.sealed
    }

    /// Hold `data` until the next flush (a corked batch), so a batch of replies becomes as few
    /// records as its size needs, not one record per reply. A record's worth or more is
    /// encrypted at once, in whole records that begin with what is staged, and its records
    /// held: no copy to stage it. A short rest (at most [`STAGE_TAIL`]) is staged to begin the
    /// next record, so replies a little over a record long do not each end in a record of
    /// a few bytes (the peer decrypts every record).
    pub(crate) fn stage(&mut self, data: &[u8]) -> io::Result<()> {
        // What is staged is sealed in one write, at the latest at the flush: refused now if
        // that could pass the key's limit, not dropped then.
        if !self
            .records
            .fits(&self.conn, self.staged.len() + data.len())
        {
            return Err(exhausted());
        }
        if data.len() < SEAL_AT_ONCE || self.conn.is_handshaking() {
            self.staged.extend_from_slice(data);
            return Ok(());
        }
        let tail = (self.staged.len() + data.len()) % RECORD_PLAINTEXT;
        let (now, rest) = data.split_at(if tail <= STAGE_TAIL {
            data.len() - tail
        } else {
            data.len()
        });
        let want = self.staged.len() + now.len();
        let bufs = [io::IoSlice::new(&self.staged), io::IoSlice::new(now)];
        let from = usize::from(self.staged.is_empty());
        // Not handshaking, and the session's buffer has no limit: it takes all of it.
        let sealed = self.conn.writer().write_vectored(&bufs[from..])?;
        self.records.spend(sealed);
        debug_assert_eq!(sealed, want, "a session with no buffer limit takes it all");
        self.sealed += sealed;
        self.clear_staged();
        if sealed < want {
            // Not reachable (see the assertion); refused as a whole rather than half held.
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.staged.extend_from_slice(rest);
        Ok(())
    }

    /// Encrypt what is staged into records the session holds.
    fn seal_staged(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        let result = self.seal(&staged);
        self.staged = staged;
        self.clear_staged();
        result
    }

    /// Empty the staging buffer, keeping its room unless a large batch grew it.
    fn clear_staged(&mut self) {
        self.staged.clear();
        if self.staged.capacity() > 64 * 1024 {
            self.staged = Vec::new();
        }
    }

    /// Encrypt `data` into records the session holds until the flush.
    fn seal(&mut self, data: &[u8]) -> io::Result<()> {
        let early = self.early_plaintext;
        let result = self.take(data, |_| Ok(()));
        // What a handshake still going on holds counts as early plaintext; the rest is sealed.
        self.sealed += data.len() - (self.early_plaintext - early);
        result
    }

    /// Encrypt what is staged and write every record held: to the socket when `fd` is given
    /// (nothing is queued before them) until the kernel takes no more or `budget` bytes
    /// went, appending the rest to `out`; else all to `out`. Returns how many bytes went to
    /// the socket.
    pub(crate) fn flush_held(
        &mut self,
        fd: Option<BorrowedFd<'_>>,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> io::Result<usize> {
        self.seal_staged()?;
        let mut written = 0;
        if let Some(fd) = fd {
            let mut socket = FdWriter::new(fd);
            self.write_socket(&mut socket, budget)?;
            written = socket.written;
        }
        self.drain_tls(out);
        Ok(written)
    }

    /// Write the records the session holds to the socket until the kernel takes no more, or
    /// `budget` bytes went (what is left stays in the session).
    fn write_socket(&mut self, socket: &mut FdWriter<'_>, budget: usize) -> io::Result<()> {
        while self.conn.wants_write() && socket.written < budget {
            match self.conn.write_tls(socket) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Drop what is held (staged or sealed); how many bytes of plaintext it was.
    pub(crate) fn discard_held(&mut self) -> usize {
        let n = self.held();
        self.staged = Vec::new();
        if self.sealed > 0 {
            self.drain_tls(&mut Vec::new());
        }
        n
    }

    /// Read what the socket holds, decrypt it, and append the plaintext to `buf` (stopping
    /// once `max` bytes came); ciphertext the session must answer with (handshake messages,
    /// alerts) is appended to `out`. `WouldBlock` when no plaintext came; a session error is
    /// an `InvalidData` error carrying the [`TlsFailure`]. A failed read leaves `buf` as it
    /// was.
    pub(crate) fn read(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut BytesMut,
        max: usize,
        out: &mut Vec<u8>,
        events: &mut TlsEvents,
    ) -> io::Result<usize> {
        // Room for what this read may take (`max`, and the record it may overshoot by) made
        // once, rather than by doubling as plaintext comes, copying what `buf` holds each time.
        let room = max.saturating_add(READ_OVERSHOOT);
        if buf.capacity() - buf.len() < room {
            buf.reserve(room);
        }
        let start = buf.len();
        let handshaking = self.conn.is_handshaking();
        let got = match self.read_records(fd, buf, max, out, events, handshaking) {
            Ok(got) => got,
            Err(err) => {
                // The connection closes at once, and the plaintext decrypted before the
                // failure goes with it (as a reset plain connection loses what it had not
                // read). None of it may stay in `buf`: it may be the reactor's scratch
                // block, which the next connection it reads appends to.
                buf.truncate(start);
                return Err(err);
            }
        };
        if handshaking && !self.conn.is_handshaking() {
            events.established = true;
            // What was written during the handshake is encrypted now.
            self.early_plaintext = 0;
            events.queued |= self.drain_tls(out);
        }
        if got == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    }

    /// The loop of `read`: records read and decrypted until `max` bytes of plaintext came,
    /// the socket is drained, or another record might overshoot the room `read` made.
    fn read_records(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut BytesMut,
        max: usize,
        out: &mut Vec<u8>,
        events: &mut TlsEvents,
        handshaking: bool,
    ) -> io::Result<usize> {
        let mut got = 0;
        while got < max && !self.ended {
            let n = match self.conn.read_tls(&mut FdReader(fd)) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                // rustls refuses to buffer more (a handshake message over 64 KiB): the
                // peer's fault, a TLS failure like any other bad message.
                Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                    let why = format!("{err}");
                    return Err(failure(if handshaking {
                        TlsFailure::Handshake(why)
                    } else {
                        TlsFailure::Session(why)
                    }));
                }
                Err(err) => return Err(err),
            };
            let processed = self.conn.process_new_packets();
            events.queued |= self.drain_tls(out);
            if let Err(err) = processed {
                return Err(failure(TlsFailure::from_rustls(&err, handshaking)));
            }
            got += self.take_plaintext(buf, events)?;
            if n < FULL_READ {
                // The socket had less than a buffer's worth (or ended): drained for now, and
                // level-triggered epoll says when more comes. No second read to hear EAGAIN.
                break;
            }
            if got > 0 && got + RECORD_PLAINTEXT > max {
                // Another read would likely overshoot `max`, and so the room `read` made:
                // `buf` would be reallocated, copying all it holds (2% of the server's CPU on
                // the 16 KiB pipelined benchmark). The rest waits in the socket for the next
                // read (epoll is level-triggered).
                break;
            }
        }
        Ok(got)
    }

    /// Move the decrypted plaintext into `buf` (no copy through a zeroed buffer); note the
    /// end of the stream.
    fn take_plaintext(&mut self, buf: &mut BytesMut, events: &mut TlsEvents) -> io::Result<usize> {
        let start = buf.len();
        loop {
            let mut reader = self.conn.reader();
            let taken = match reader.fill_buf() {
                // Nothing is left and the peer said close_notify.
                Ok([]) => {
                    self.end(events, true);
                    break;
                }
                Ok(chunk) => {
                    buf.extend_from_slice(chunk);
                    chunk.len()
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    self.end(events, false);
                    break;
                }
                Err(err) => return Err(err),
            };
            reader.consume(taken);
        }
        Ok(buf.len() - start)
    }

    fn end(&mut self, events: &mut TlsEvents, clean: bool) {
        if !self.ended {
            self.ended = true;
            events.ended = Some(clean);
        }
    }

    /// Append what the session has to send to `out`; whether there was anything.
    fn drain_tls(&mut self, out: &mut Vec<u8>) -> bool {
        let mut any = false;
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => any = true,
            }
        }
        // The sealed records went out with the rest, in the order they were made.
        self.sealed = 0;
        any
    }

    /// Encrypt `data` and append the records to `out`.
    pub(crate) fn encrypt(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.take(data, |session| {
            session.drain_tls(out);
            Ok(())
        })
    }

    /// Encrypt `data` and write the records to the socket; what the kernel does not take, or
    /// what is past `budget` bytes written, is appended to `out`. A `WouldBlock` is not an
    /// error: the rest is queued.
    pub(crate) fn write_direct(
        &mut self,
        fd: BorrowedFd<'_>,
        data: &[u8],
        out: &mut Vec<u8>,
        budget: usize,
    ) -> io::Result<()> {
        // Past `budget` bytes written, the records go to `out` for the reactor's flush, as
        // when the kernel takes no more: a large message to a fast reader does not hold the
        // sender until all of it is out.
        let mut socket = FdWriter::new(fd);
        self.take(data, |session| {
            session.write_socket(&mut socket, budget)?;
            session.drain_tls(out);
            Ok(())
        })
    }

    /// Feed `data` to the session, handing its records to `emit` as they are made (rustls
    /// holds a bounded amount of them). During the handshake the plaintext waits inside the
    /// session; once its bound is reached the rest is refused.
    fn take(
        &mut self,
        mut data: &[u8],
        mut emit: impl FnMut(&mut Self) -> io::Result<()>,
    ) -> io::Result<()> {
        if !self.records.fits(&self.conn, data.len()) {
            return Err(exhausted());
        }
        while !data.is_empty() {
            let n = self.conn.writer().write(data)?;
            self.records.spend(n);
            if self.conn.is_handshaking() {
                self.early_plaintext += n;
            }
            emit(self)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "the TLS session holds as much as it may before its handshake finishes",
                ));
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Say close_notify: appended to `out`.
    pub(crate) fn close_notify(&mut self, out: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.drain_tls(out);
    }

    /// What the handshake negotiated (call once it finished).
    pub(crate) fn info(&self) -> TlsInfo {
        TlsInfo::of(&self.conn)
    }
}

/// An `io::Error` carrying a TLS failure, for the reactor's close path.
fn failure(failure: TlsFailure) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, failure)
}

/// The failure of a session whose key has made as many records as it may (see `records`).
fn exhausted() -> io::Error {
    failure(TlsFailure::RecordLimit)
}

/// The TLS failure an error carries, if it carries one.
pub(crate) fn failure_of(err: &io::Error) -> Option<&TlsFailure> {
    err.get_ref()?.downcast_ref::<TlsFailure>()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{self, Write},
        os::{fd::AsFd, unix::net::UnixStream},
        sync::Arc,
    };

    use bytes::BytesMut;
    use rustls::{pki_types::CertificateDer, ClientConfig, ClientConnection};

    use super::{TlsEvents, TlsSession};
    use crate::tls::{TlsAcceptor, TlsConfig};

    /// One `TlsSession::read` of up to 64 KiB from the server's end of the pair.
    fn read(
        server: &mut TlsSession,
        ours: &UnixStream,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
    ) -> io::Result<usize> {
        server.read(ours.as_fd(), buf, 1 << 16, out, &mut TlsEvents::default())
    }

    /// A server session and a rustls client, handshaken over a socket pair (the server's end
    /// nonblocking, as the reactor's sockets are).
    fn handshaken() -> (TlsSession, UnixStream, ClientConnection, UnixStream) {
        handshaken_on(rustls::DEFAULT_VERSIONS)
    }

    /// [`handshaken`], the client speaking these versions only.
    fn handshaken_on(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (TlsSession, UnixStream, ClientConnection, UnixStream) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = TlsConfig::from_pem(made.cert.pem(), made.signing_key.serialize_pem());
        let mut server = TlsAcceptor::new(config).unwrap().session().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(made.cert.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().unwrap();
        let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        let mut plaintext = BytesMut::new();
        for _ in 0..16 {
            while client.wants_write() {
                client.write_tls(&mut theirs).unwrap();
            }
            let mut out = Vec::new();
            let read = read(&mut server, &ours, &mut plaintext, &mut out);
            assert!(
                read.as_ref()
                    .is_err_and(|err| err.kind() == io::ErrorKind::WouldBlock),
                "no plaintext during the handshake: {read:?}"
            );
            (&ours).write_all(&out).unwrap();
            loop {
                match client.read_tls(&mut theirs) {
                    Ok(0) => break,
                    Ok(_) => {
                        client.process_new_packets().unwrap();
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) => panic!("client read: {err}"),
                }
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                assert!(plaintext.is_empty());
                return (server, ours, client, theirs);
            }
        }
        panic!("no handshake after 16 rounds");
    }

    #[test]
    fn a_read_that_fails_leaves_no_plaintext_behind() {
        let (mut server, ours, mut client, mut theirs) = handshaken();
        // One record of exactly one socket read's worth (4,074 bytes of plaintext, 22 of
        // header and tag: a full read, so the session reads again), then one that does not
        // decrypt, all in the socket before the server reads.
        client
            .writer()
            .write_all(&[7u8; super::FULL_READ - 22])
            .unwrap();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        wire.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
        wire.extend_from_slice(&[0u8; 0x20]);
        theirs.write_all(&wire).unwrap();
        // What another connection left in the buffer (the reactor's scratch block) stays as
        // it was, and nothing of this connection's is added to it.
        let mut buf = BytesMut::from(&b"another's"[..]);
        let read = read(&mut server, &ours, &mut buf, &mut Vec::new());
        assert!(
            read.is_err(),
            "a record that does not decrypt fails the read: {read:?}"
        );
        assert!(
            buf[..] == b"another's"[..],
            "{} bytes were left behind",
            buf.len() as isize - 9
        );
    }

    #[test]
    fn a_handshake_message_over_what_rustls_buffers_is_a_handshake_failure() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = TlsConfig::from_pem(made.cert.pem(), made.signing_key.serialize_pem());
        let mut server = TlsAcceptor::new(config).unwrap().session().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        // A ClientHello just under rustls's 64 KiB limit for a handshake message, in
        // full-size handshake records: with their headers it overflows the buffer.
        let mut payload = vec![0x01, 0x00, 0xff, 0xfb];
        payload.resize(16 * 1024, 0);
        let mut result = Ok(0);
        for _ in 0..8 {
            let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
            record.extend_from_slice(&payload);
            theirs.write_all(&record).unwrap();
            payload.fill(0);
            result = read(&mut server, &ours, &mut BytesMut::new(), &mut Vec::new());
            if result
                .as_ref()
                .is_err_and(|err| err.kind() != io::ErrorKind::WouldBlock)
            {
                break;
            }
        }
        let err = result.expect_err("the session refuses the message");
        assert!(
            matches!(
                crate::tls::failure_of(&err),
                Some(crate::tls::TlsFailure::Handshake(_))
            ),
            "{err:?}"
        );
    }

    /// The TLS records in `wire`: their payload lengths.
    fn record_lengths(wire: &[u8]) -> Vec<usize> {
        let mut lengths = Vec::new();
        let mut at = 0;
        while at + 5 <= wire.len() {
            let len = u16::from_be_bytes([wire[at + 3], wire[at + 4]]) as usize;
            lengths.push(len);
            at += 5 + len;
        }
        assert_eq!(at, wire.len(), "whole records");
        lengths
    }

    #[test]
    fn a_batch_of_replies_a_little_over_a_record_makes_whole_records() {
        let (mut server, _ours, mut client, _theirs) = handshaken();
        // Three replies of a record and 4 bytes, a small one, and one more large one.
        let replies: Vec<Vec<u8>> = [16_388, 16_388, 16_388, 100, 40_000]
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|b| (b * 7 + i) as u8).collect())
            .collect();
        for reply in &replies {
            server.stage(reply).unwrap();
        }
        assert_eq!(server.held(), replies.iter().map(Vec::len).sum::<usize>());
        let mut wire = Vec::new();
        server.flush_held(None, &mut wire, usize::MAX).unwrap();
        assert_eq!(server.held(), 0);
        // 89,264 bytes of plaintext: five whole records and the rest, where sealing each
        // reply on its own made ten (each large reply ending in a short record).
        let lengths = record_lengths(&wire);
        let whole = 16_384 + 17; // and the content type and AEAD tag
        assert_eq!(
            lengths,
            [whole, whole, whole, whole, whole, 89_264 % 16_384 + 17]
        );
        let (mut rest, mut got) = (&wire[..], Vec::new());
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
            // No close_notify: the reader ends with WouldBlock once it has handed all over.
            let _ = std::io::Read::read_to_end(&mut client.reader(), &mut got);
        }
        assert_eq!(got, replies.concat());
    }

    #[test]
    fn one_socket_write_of_a_flush_takes_at_most_the_cap_and_whole_slices() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        // What a write put in the socket is read out before the next, so the socket's buffer
        // never decides how much a write takes.
        let mut drain = |n: usize| std::io::Read::read_exact(&mut theirs, &mut vec![0; n]).unwrap();
        let record = vec![1u8; 16 * 1024];
        let slices: Vec<io::IoSlice<'_>> = (0..6).map(|_| io::IoSlice::new(&record)).collect();
        let mut writer = super::FdWriter::new(ours.as_fd());
        let n = writer.write_vectored(&slices).unwrap();
        assert_eq!(n, super::WRITE_MAX, "four whole slices of six");
        drain(n);
        // A slice larger than the cap is cut to it; one smaller goes whole.
        let n = writer.write(&vec![2u8; 3 * super::WRITE_MAX]).unwrap();
        assert_eq!(n, super::WRITE_MAX);
        drain(n);
        assert_eq!(
            writer.write_vectored(&[io::IoSlice::new(b"tail")]).unwrap(),
            4
        );
        assert_eq!(writer.written, 2 * super::WRITE_MAX + 4);
    }

    #[test]
    fn a_tls12_aes_gcm_key_near_its_record_limit_refuses_the_send_that_would_pass_it() {
        let (mut server, ..) = handshaken_on(&[&rustls::version::TLS12]);
        let mut out = Vec::new();
        server.encrypt(b"before", &mut out).unwrap();
        // As if it had made 2^24 records less the margin, less the four left (one kept
        // for a write's rounding).
        server
            .records
            .spend_records((1 << 24) - (1 << 12) - 4 - server.records.spent());
        server.stage(b"staged").unwrap();
        server.flush_held(None, &mut out, usize::MAX).unwrap();
        server.encrypt(b"fits", &mut out).unwrap();
        for refused in [
            server.encrypt(b"one more", &mut out),
            server.stage(b"one more"),
        ] {
            let failure = refused.as_ref().err().and_then(super::failure_of);
            assert_eq!(
                failure,
                Some(&super::TlsFailure::RecordLimit),
                "{refused:?}"
            );
        }
        // TLS 1.3 changes its keys: no limit.
        let (mut server, ..) = handshaken();
        server.records.spend_records(u64::MAX / 2);
        server.encrypt(b"fine", &mut out).unwrap();
        server.stage(b"fine").unwrap();
    }
}
