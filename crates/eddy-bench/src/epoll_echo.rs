//! Baseline: a single-thread, level-triggered epoll echo server — the
//! per-core ceiling for this workload.
//!
//! Each connection has its own input buffer. Complete packets are written
//! straight from it; whatever the socket does not take is queued in the
//! connection's output buffer and `EPOLLOUT` is watched until it drains.
//! Past [`HIGH_WATER`] queued bytes the connection stops reading until the
//! client catches up.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use slab::Slab;

use crate::epoll_sys::{Epoll, EMPTY, ERR_HUP, IN, OUT};
use crate::frames::{complete_prefix, Framing, MAX_BODY};
use crate::tokio_echo::{out_of_fds, transient_accept_error};

/// Initial per-connection input buffer.
const READ_BUF: usize = 16 * 1024;
/// Queued output above which a connection stops reading.
pub const HIGH_WATER: usize = 1 << 20;
/// Registration key of the listener.
const LISTENER: u64 = u64::MAX;
/// Longest wait, so the stop flag is noticed.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    filled: usize,
    output: Vec<u8>,
    out_pos: usize,
    interest: u32,
}

/// What to do with a connection after handling its event.
enum Next {
    Keep,
    Close,
}

/// Serves echo on `listener` on the calling thread, forever. Returns only
/// on an epoll or listener error. Sleeps in `epoll_wait` with no timeout,
/// so an idle server uses no CPU.
pub fn run(listener: TcpListener, framing: Framing) -> io::Result<()> {
    serve(listener, framing, None)
}

/// Like [`run`], but returns `Ok(())` within about 100 ms once `stop` is
/// set; open connections are closed.
pub fn run_until(listener: TcpListener, framing: Framing, stop: &AtomicBool) -> io::Result<()> {
    serve(listener, framing, Some(stop))
}

fn serve(listener: TcpListener, framing: Framing, stop: Option<&AtomicBool>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.add(&listener, IN, LISTENER)?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = vec![EMPTY; 256];
    let timeout = stop.map(|_| TICK);
    while !stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
        for ev in epoll.wait(&mut events, timeout)? {
            let (flags, key) = (ev.events, ev.u64);
            if key == LISTENER {
                accept_all(&listener, &epoll, &mut conns)?;
                continue;
            }
            let Some(conn) = conns.get_mut(key as usize) else {
                continue;
            };
            if let Next::Close = handle(conn, flags, framing, &epoll, key) {
                let conn = conns.remove(key as usize);
                let _ = epoll.delete(&conn.stream);
            }
        }
    }
    Ok(())
}

fn accept_all(listener: &TcpListener, epoll: &Epoll, conns: &mut Slab<Conn>) -> io::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // Leave the rest in the backlog; level-triggered epoll retries.
            Err(e) if out_of_fds(&e) => return Ok(()),
            Err(e) if transient_accept_error(&e) => continue,
            Err(e) => return Err(e),
        };
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            continue;
        }
        let entry = conns.vacant_entry();
        let key = entry.key() as u64;
        if epoll.add(&stream, IN, key).is_err() {
            continue;
        }
        entry.insert(Conn {
            stream,
            input: vec![0; READ_BUF],
            filled: 0,
            output: Vec::new(),
            out_pos: 0,
            interest: IN,
        });
    }
}

fn handle(conn: &mut Conn, flags: u32, framing: Framing, epoll: &Epoll, key: u64) -> Next {
    match conn.on_event(flags, framing, epoll, key) {
        Ok(true) => Next::Keep,
        Ok(false) | Err(_) => Next::Close,
    }
}

impl Conn {
    /// Handles one readiness event. `Ok(false)` when the connection is done.
    fn on_event(
        &mut self,
        flags: u32,
        framing: Framing,
        epoll: &Epoll,
        key: u64,
    ) -> io::Result<bool> {
        if flags & OUT != 0 {
            self.drain_output()?;
        }
        let reading = self.interest & IN != 0;
        if flags & ERR_HUP != 0 && !reading {
            return Ok(false);
        }
        if flags & (IN | ERR_HUP) != 0 && reading && !self.read_and_echo(framing)? {
            return Ok(false);
        }
        self.update_interest(epoll, key)?;
        Ok(true)
    }

    /// One read, then echo every complete packet. `Ok(false)` on EOF.
    fn read_and_echo(&mut self, framing: Framing) -> io::Result<bool> {
        if self.filled == self.input.len() {
            let grown = (self.input.len() * 2).min(MAX_BODY + 8);
            if grown <= self.input.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "packet too large",
                ));
            }
            self.input.resize(grown, 0);
        }
        let n = match self.stream.read(&mut self.input[self.filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(true)
            }
            Err(e) => return Err(e),
        };
        let scanned = self.filled;
        self.filled += n;
        let done = complete_prefix(framing, &self.input[..self.filled], scanned)?;
        if done == 0 {
            return Ok(true);
        }
        let mut written = 0;
        if self.output.is_empty() {
            written = write_some(&mut self.stream, &self.input[..done])?;
        }
        self.output.extend_from_slice(&self.input[written..done]);
        self.input.copy_within(done..self.filled, 0);
        self.filled -= done;
        Ok(true)
    }

    /// Writes queued output.
    fn drain_output(&mut self) -> io::Result<()> {
        let n = write_some(&mut self.stream, &self.output[self.out_pos..])?;
        self.out_pos += n;
        if self.out_pos == self.output.len() {
            self.output.clear();
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Watch `EPOLLOUT` while output is queued; stop reading above the
    /// high-water mark.
    fn update_interest(&mut self, epoll: &Epoll, key: u64) -> io::Result<()> {
        let queued = self.output.len() - self.out_pos;
        let mut want = if queued > 0 { OUT } else { 0 };
        if queued < HIGH_WATER {
            want |= IN;
        }
        if want != self.interest {
            epoll.modify(&self.stream, want, key)?;
            self.interest = want;
        }
        Ok(())
    }
}

/// Writes as much of `buf` as the socket takes without blocking.
fn write_some(stream: &mut TcpStream, mut buf: &[u8]) -> io::Result<usize> {
    let mut total = 0;
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                total += n;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}
