//! A minimal safe wrapper over Linux `epoll` (level-triggered).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Readable (`EPOLLIN`).
pub(crate) const IN: u32 = libc::EPOLLIN as u32;
/// Writable (`EPOLLOUT`).
pub(crate) const OUT: u32 = libc::EPOLLOUT as u32;
/// Error or hang-up (always reported by the kernel).
pub(crate) const ERR_HUP: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

/// An epoll instance.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

/// One ready event: the registration key and the ready flags.
pub(crate) type Ready = libc::epoll_event;

/// An empty event slot for [`Epoll::wait`].
pub(crate) const EMPTY: Ready = libc::epoll_event { events: 0, u64: 0 };

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; a non-negative result is a fresh fd we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is valid and owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, flags: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: flags,
            u64: key,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Registers `fd` for `flags`, reporting `key`.
    pub(crate) fn add(&self, fd: &impl AsRawFd, flags: u32, key: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), flags, key)
    }

    /// Changes the interest of a registered `fd`.
    pub(crate) fn modify(&self, fd: &impl AsRawFd, flags: u32, key: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), flags, key)
    }

    /// Unregisters `fd`.
    pub(crate) fn delete(&self, fd: &impl AsRawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
    }

    /// Waits up to `timeout` (`None`: until an event) and returns the ready
    /// prefix of `events`.
    pub(crate) fn wait<'a>(
        &self,
        events: &'a mut [Ready],
        timeout: Option<Duration>,
    ) -> io::Result<&'a [Ready]> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        let ms = timeout.map_or(-1, |t| {
            libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
        });
        // SAFETY: `events` is valid for `max` writes.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(&events[..0]);
            }
            return Err(err);
        }
        Ok(&events[..n as usize])
    }
}
