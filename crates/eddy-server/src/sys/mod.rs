//! System calls std does not offer: an epoll poller, `send` without `SIGPIPE`, reads into spare
//! capacity, and a reset close that keeps the descriptor number reserved; the coarse clock;
//! and the idle rule threads follow before they sleep.
//!
//! The bottom layer: it imports nothing of the crate. Every function takes a `BorrowedFd`, so a
//! caller can only name a descriptor it holds open.

pub(crate) mod idle;
mod poller;

pub(crate) use poller::{Event, Events, Poller};

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, RawFd},
    sync::OnceLock,
};

use bytes::BytesMut;

/// Milliseconds on the kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`).
///
/// It advances once per scheduler tick (1 to 10 ms) and costs a few nanoseconds to read, as it
/// reads no hardware counter: connections stamp their activity with it on every read and
/// send, where `Instant::now` cost about 7% of the server's CPU on the pipelined benchmark.
/// Where the clock is refused (it exists on every Linux since 2.6.32, but a sandbox may deny
/// it), the precise monotonic clock stands in, from the first call on.
pub(crate) fn coarse_ms() -> u64 {
    static FALLBACK: OnceLock<std::time::Instant> = OnceLock::new();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0
        || FALLBACK.get().is_some()
    {
        let start = FALLBACK.get_or_init(std::time::Instant::now);
        // Past any coarse reading taken before the clock was refused, so time never goes back.
        return (1 << 40) + start.elapsed().as_millis() as u64;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// A server's clock for activity stamps: milliseconds on the coarse clock since the server
/// was built, from 1 (so that 0 can mean "never").
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch_ms: u64,
}

impl Clock {
    /// A clock whose time starts now.
    pub(crate) fn start() -> Clock {
        Clock {
            epoch_ms: coarse_ms(),
        }
    }

    /// Milliseconds since the start, from 1.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        coarse_ms().saturating_sub(self.epoch_ms) + 1
    }
}

thread_local! {
    static ON_REACTOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Mark the calling thread as a reactor (it must never block on its own output).
pub(crate) fn mark_reactor_thread() {
    ON_REACTOR.set(true);
}

/// Whether the calling thread is a reactor.
pub(crate) fn on_reactor_thread() -> bool {
    ON_REACTOR.get()
}

/// The calling thread's OS thread id (`gettid`): what `top -H` and `/proc/PID/task` show.
pub(crate) fn thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// The pid, uid and gid of the process at the other end of a unix stream socket
/// (`SO_PEERCRED`), as they were when it connected.
pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> Option<(i32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid ucred of `len` bytes for the kernel to fill.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((cred.pid, cred.uid, cred.gid))
}

/// `send(2)` with `MSG_NOSIGNAL`: a peer that went away is an `EPIPE` error, never a signal.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let fd = fd.as_raw_fd();
    loop {
        // SAFETY: `buf` is a valid readable slice for its whole length.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `writev(2)`-style `sendmsg(2)` with `MSG_NOSIGNAL`: the slices in order, one system call.
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let fd = fd.as_raw_fd();
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is guaranteed ABI-compatible with `iovec`.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(1024) as _;
    loop {
        // SAFETY: `msg` points at `bufs`, valid readable slices, for the call's duration.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Read from the socket `fd` into `buf`; 0 at the end of the stream.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its whole length.
    unsafe { recv(fd, buf.as_mut_ptr(), buf.len()) }
}

/// `recv(2)` of at most `len` bytes into `ptr`, retried on `EINTR`. `recv`, not `read(2)`:
/// the same bytes, without the file layer's work (`vfs_read`, `fdget_pos`,
/// `sock_read_iter`: 1% of the server's CPU on the pipelined benchmark).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn recv(fd: BorrowedFd<'_>, ptr: *mut u8, len: usize) -> io::Result<usize> {
    let fd = fd.as_raw_fd();
    loop {
        // SAFETY: the caller guarantees `ptr` is writable for `len` bytes; the kernel writes
        // at most that many.
        let n = unsafe { libc::recv(fd, ptr.cast(), len, 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Read at most `max` bytes from the socket `fd` into the spare capacity of `buf`, growing it
/// first if needed. Returns the number of bytes read (0 at end of stream).
pub(crate) fn read_into(fd: BorrowedFd<'_>, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < max {
        buf.reserve(max);
    }
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    // SAFETY: `spare` is writable for `want` bytes.
    let n = unsafe { recv(fd, spare.as_mut_ptr().cast(), want) }?;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Close the connection behind `fd` with a TCP reset, now, while the descriptor number stays
/// valid (it is pointed at `/dev/null`) until its owner drops it. So no other thread can ever
/// write to a later socket that reused the number.
pub(crate) fn reset(fd: BorrowedFd<'_>) {
    let fd = fd.as_raw_fd();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: plain socket option and descriptor calls on a descriptor we own; failures are
    // harmless (the socket is then closed normally when its owner drops it).
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        match dev_null() {
            Some(null) => {
                libc::dup2(null, fd);
            }
            None => {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }
}

/// Read and drop up to `limit` bytes of unread input (stops at would-block or end of stream).
pub(crate) fn discard_input(fd: BorrowedFd<'_>, limit: usize) {
    let fd = fd.as_raw_fd();
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    while total < limit {
        // SAFETY: reads into a local buffer of the given length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n <= 0 {
            break;
        }
        total += n as usize;
    }
}

/// Whether the socket holds input not read yet (`FIONREAD`; false on an error).
pub(crate) fn has_unread_input(fd: BorrowedFd<'_>) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, into a local; the descriptor is borrowed, so open.
    let ok = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } == 0;
    ok && n > 0
}

/// Send FIN and stop both directions; the descriptor stays open until its owner drops it.
pub(crate) fn shutdown(fd: BorrowedFd<'_>) {
    let fd = fd.as_raw_fd();
    // SAFETY: shutdown on a descriptor we own; an error (already disconnected) is harmless.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

fn dev_null() -> Option<RawFd> {
    static NULL: OnceLock<Option<std::fs::File>> = OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok())
        .as_ref()
        .map(|file| file.as_raw_fd())
}

/// Whether an accept error means the process or system ran out of something (back off)
/// rather than that one incoming connection failed (skip it).
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Ask the CPU to bring the cache lines holding the `len` bytes at `start` (at most four
/// lines) into its caches, without waiting for them: a hint, harmless for any address.
#[inline]
pub(crate) fn prefetch(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        // From the start of the first line, so the last line is never left out.
        let offset = start as usize % 64;
        let first = start.wrapping_sub(offset);
        for line in (0..(offset + len).min(256)).step_by(64) {
            // SAFETY: `prefetcht0` is SSE, which every x86_64 CPU has, and it never faults or
            // reads into the program, whatever the address (`wrapping_*`: no pointer is
            // formed out of bounds either).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    first.wrapping_add(line).cast(),
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::coarse_ms;

    #[test]
    fn coarse_clock_keeps_pace_with_the_monotonic_clock() {
        let (start, coarse_start) = (Instant::now(), coarse_ms());
        let mut last = coarse_start;
        // Spin until 50 ms have passed on the precise clock; the coarse one never goes back.
        while start.elapsed() < Duration::from_millis(50) {
            let now = coarse_ms();
            assert!(now >= last, "coarse clock went back: {last} -> {now}");
            last = now;
        }
        // Bracketed by two precise reads, so a preemption in between cannot fail the test.
        let before = start.elapsed().as_millis() as u64;
        let coarse = coarse_ms() - coarse_start;
        let after = start.elapsed().as_millis() as u64;
        // Within a tick of resolution at each end, plus the rounding to milliseconds.
        let mut res = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `res` is a valid timespec to write.
        unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) };
        let slack = 2 * (res.tv_sec as u64 * 1000 + res.tv_nsec as u64 / 1_000_000) + 2;
        assert!(
            coarse + slack >= before && coarse <= after + slack,
            "coarse {coarse} ms, precise between {before} and {after} ms"
        );
    }
}
