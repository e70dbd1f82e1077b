//! A level-triggered epoll poller with a coalescing cross-thread wake-up.
//!
//! eddy started on `polling::Poller`; its epoll backend re-arms a timerfd and its notifier with
//! three `epoll_ctl` calls and a `timerfd_settime` on every wait, which cost about 1 µs per
//! wait on the echo benchmark. This poller does one `epoll_wait` per wait, uses the wait's own
//! millisecond timeout, and keeps its eventfd registered (level-triggered) for good.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// The key the wake-up eventfd is registered under.
const NOTIFY_KEY: u64 = u64::MAX;

/// What a poller reports about one registered descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub(crate) key: usize,
    /// Data to read, end of stream, or an error.
    pub(crate) readable: bool,
    /// Room to write, or an error.
    pub(crate) writable: bool,
    /// The connection is dead (hang-up or error): reported even with no interest registered.
    pub(crate) hangup: bool,
}

/// A buffer of events for [`Poller::wait`].
#[derive(Debug)]
pub(crate) struct Events {
    list: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Events {
            list: vec![libc::epoll_event { events: 0, u64: 0 }; capacity],
            len: 0,
        }
    }

    /// Whether the last wait returned nothing: no event, no wake-up.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events of the last wait (the wake-up itself is not one).
    pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.list[..self.len]
            .iter()
            .filter(|ev| ev.u64 != NOTIFY_KEY)
            .map(|ev| {
                let flags = ev.events as i32;
                let hangup = flags & (libc::EPOLLHUP | libc::EPOLLERR) != 0;
                Event {
                    key: ev.u64 as usize,
                    readable: hangup || flags & libc::EPOLLIN != 0,
                    writable: hangup || flags & libc::EPOLLOUT != 0,
                    hangup,
                }
            })
    }
}

/// One epoll instance plus an eventfd to wake it from other threads.
///
/// # Atomic ordering
/// `notified` coalesces wake-ups: `notify` writes the eventfd only when it flips the flag from
/// false to true; `wait` drains the eventfd and then clears the flag (`SeqCst`). Work queued
/// before a `notify` is therefore seen either by the caller of the `wait` that cleared the
/// flag, or wakes the next `wait`.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
    eventfd: OwnedFd,
    notified: AtomicBool,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn interest(read: bool, write: bool) -> u32 {
    let mut flags = 0;
    if read {
        flags |= libc::EPOLLIN;
    }
    if write {
        flags |= libc::EPOLLOUT;
    }
    flags as u32
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain system calls; the descriptors are owned as soon as they exist.
        let epoll =
            unsafe { OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let eventfd = unsafe {
            OwnedFd::from_raw_fd(check(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        let poller = Poller {
            epoll,
            eventfd,
            notified: AtomicBool::new(false),
        };
        poller.ctl(
            libc::EPOLL_CTL_ADD,
            poller.eventfd.as_raw_fd(),
            NOTIFY_KEY,
            libc::EPOLLIN as u32,
        )?;
        Ok(poller)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, key: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` is a valid epoll_event; the kernel validates the descriptors.
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watch `fd` (level-triggered) under `key`. The caller deletes it before it closes `fd`:
    /// epoll would otherwise keep reporting the open file under a key that is reused.
    pub(crate) fn add(
        &self,
        fd: BorrowedFd<'_>,
        key: usize,
        read: bool,
        write: bool,
    ) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            key as u64,
            interest(read, write),
        )
    }

    /// Watch a listening socket under `key` with `EPOLLEXCLUSIVE`: when several pollers watch
    /// it, a new connection wakes one of those waiting, not all. The caller deletes it.
    pub(crate) fn add_exclusive(&self, fd: BorrowedFd<'_>, key: usize) -> io::Result<()> {
        let events = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), key as u64, events)
    }

    /// Change what `fd` is watched for.
    pub(crate) fn modify(
        &self,
        fd: BorrowedFd<'_>,
        key: usize,
        read: bool,
        write: bool,
    ) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_MOD,
            fd.as_raw_fd(),
            key as u64,
            interest(read, write),
        )
    }

    /// Stop watching `fd`.
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
    }

    /// Wait until something is ready, `notify` is called, or the timeout passes (`None`: no
    /// timeout). Interrupted waits return with no events.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let ms = match timeout {
            None => -1,
            // Round up, so a deadline is never reported early.
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: the buffer holds `list.len()` events.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.list.as_mut_ptr(),
                events.list.len() as i32,
                ms,
            )
        };
        events.len = 0;
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(err)
            };
        }
        events.len = n as usize;
        if events.list[..events.len]
            .iter()
            .any(|ev| ev.u64 == NOTIFY_KEY)
        {
            // Drain first, then clear: a `notify` in between sees the flag still set and does
            // not write, and its work (queued before it) is handled by our caller next. The
            // other order could drain a write whose flag then stays set, losing every later
            // wake-up.
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into `buf`; EAGAIN (already drained) is fine.
            unsafe { libc::read(self.eventfd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
            self.notified.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Wake the current or next `wait`. Cheap when a wake-up is already pending.
    pub(crate) fn notify(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a valid buffer to our eventfd.
            unsafe { libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write, os::fd::AsFd, os::unix::net::UnixStream, sync::Arc, time::Instant};

    use super::*;

    #[test]
    fn reports_readiness_and_wakes_up() {
        let poller = Arc::new(Poller::new().unwrap());
        let mut events = Events::with_capacity(8);
        let (mut a, b) = UnixStream::pair().unwrap();
        poller.add(b.as_fd(), 7, true, false).unwrap();
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 0);
        a.write_all(b"x").unwrap();
        poller
            .wait(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let ev: Vec<_> = events.iter().collect();
        assert_eq!(ev.len(), 1);
        assert!(ev[0].key == 7 && ev[0].readable && !ev[0].hangup);
        poller.modify(b.as_fd(), 7, false, false).unwrap();
        let waker = poller.clone();
        let t = std::thread::spawn(move || {
            waker.notify();
            waker.notify();
        });
        let start = Instant::now();
        poller
            .wait(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "woken, not timed out"
        );
        assert_eq!(events.iter().count(), 0, "a wake-up is not an event");
        t.join().unwrap();
        drop(a);
        poller
            .wait(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let ev: Vec<_> = events.iter().collect();
        assert!(
            ev.len() == 1 && ev[0].hangup,
            "hang-up is reported without interest"
        );
        poller.delete(b.as_fd()).unwrap();
    }

    /// What the accept path relies on to stop watching a listener the shutdown stopped: a
    /// shut-down listening socket (TCP or unix) reports a hang-up, and a unix one says EAGAIN
    /// to `accept`, not EINVAL.
    #[test]
    fn a_shut_down_listener_hangs_up() {
        let poller = Poller::new().unwrap();
        let mut events = Events::with_capacity(8);
        let path = std::env::temp_dir().join(format!("eddy-poller-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        unix.set_nonblocking(true).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        poller.add(unix.as_fd(), 1, true, false).unwrap();
        poller.add(tcp.as_fd(), 2, true, false).unwrap();
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 0, "listening, nothing to accept");
        crate::sys::shutdown(unix.as_fd());
        crate::sys::shutdown(tcp.as_fd());
        poller
            .wait(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let mut hung: Vec<usize> = events.iter().filter(|e| e.hangup).map(|e| e.key).collect();
        hung.sort_unstable();
        assert_eq!(hung, [1, 2]);
        let err = unix.accept().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn no_wake_up_is_lost_under_racing_notifies() {
        use std::sync::atomic::AtomicU64;
        let poller = Arc::new(Poller::new().unwrap());
        let posted = Arc::new(AtomicU64::new(0));
        let rounds = 200_000;
        let notifiers: Vec<_> = (0..2)
            .map(|_| {
                let (poller, posted) = (poller.clone(), posted.clone());
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        posted.fetch_add(1, Ordering::SeqCst);
                        poller.notify();
                    }
                })
            })
            .collect();
        // Consume "work" after each wait; a lost wake-up would leave work behind with the
        // poller asleep, and the deadline below would fire.
        let mut events = Events::with_capacity(4);
        let mut seen = 0;
        while seen < 2 * rounds {
            let start = Instant::now();
            poller
                .wait(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            // Work was outstanding and every post is followed by a notify: sleeping until
            // the timeout means a wake-up was lost.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "work was posted and notified, but the poller slept through it"
            );
            seen = posted.load(Ordering::SeqCst);
        }
        for n in notifiers {
            n.join().unwrap();
        }
    }
}
