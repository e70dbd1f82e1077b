//! The send path's file and waiting side: `sendfile` ranges queued behind the output, and
//! `sendwait`, which blocks its caller until its bytes are in the kernel's buffer.

use std::sync::{atomic::Ordering, Arc};

use super::{reactor_mail::Command, send::Outlet};
use crate::{
    conn::{Conn, OutState},
    error::{SendError, SendStatus},
};

impl Outlet {
    /// Queue `len` bytes of `file` from `offset` behind `conn`'s output, sent zero-copy with
    /// `sendfile(2)`: now as far as the kernel takes them (at most `FLUSH_BUDGET`) when
    /// nothing was queued, the rest by the reactor. File bytes count in the watermarks (so a slow reader is paused) but not
    /// in `socket_buffer_size`, which caps memory: they stay in the file.
    pub(crate) fn send_file(
        &self,
        conn: &Arc<Conn>,
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    ) -> Result<SendStatus, SendError> {
        if len == 0 {
            return Err(SendError::Empty);
        }
        let mut out = conn.out.lock();
        if out.state != OutState::Open {
            return Err(SendError::Closed);
        }
        if out.ws.is_some() {
            return Err(SendError::NotStream);
        }
        self.stamp(conn);
        let was_empty = out.pending() == 0 && !out.corked;
        out.push_file(file, offset, len);
        if was_empty {
            if let Err(err) = out.flush(conn.fd()) {
                out.state = OutState::Broken;
                drop(out);
                self.broke(conn, &err);
                return Err(SendError::Closed);
            }
            if out.pending() == 0 {
                return Ok(SendStatus::Sent);
            }
        }
        let pending = out.pending();
        let mut wake = !out.corked && !out.flush_requested;
        out.flush_requested |= !out.corked;
        if pending >= self.high_watermark && !conn.high_crossed.swap(true, Ordering::AcqRel) {
            wake = true;
        }
        drop(out);
        if wake {
            self.post(conn, Command::Output(conn.clone()));
        }
        Ok(SendStatus::Queued { pending })
    }

    /// Send `data` as `send` does, then block this thread until it is in the kernel's socket
    /// buffer or `timeout` passes (Swoole's `sendwait`). Refused on a reactor thread, which
    /// is the one that would flush it.
    pub(crate) fn send_wait(
        &self,
        conn: &Arc<Conn>,
        data: &[u8],
        timeout: std::time::Duration,
    ) -> Result<SendStatus, SendError> {
        if crate::sys::on_reactor_thread() {
            return Err(SendError::OnReactor);
        }
        // A timeout past what an Instant holds (`Duration::MAX`: "wait as long as it takes")
        // has no deadline.
        let deadline = std::time::Instant::now().checked_add(timeout);
        let status = self.send(conn, data)?;
        if status == SendStatus::Sent {
            return Ok(status);
        }
        let mut tell_reactor = false;
        let target = {
            let mut out = conn.out.lock();
            if matches!(out.state, OutState::Closed | OutState::Broken) {
                // Closed since: what was queued was dropped.
                return Err(SendError::Closed);
            }
            if out.corked {
                // This thread's own batch holds the output until it returns, which it will
                // not while it waits: write it now, and leave the rest to the reactor.
                match out.flush(conn.fd()) {
                    Ok(0) => {}
                    Ok(_) => tell_reactor = !std::mem::replace(&mut out.flush_requested, true),
                    Err(err) => {
                        out.state = OutState::Broken;
                        drop(out);
                        self.broke(conn, &err);
                        return Err(SendError::Closed);
                    }
                }
            }
            let pending = out.pending() as u64;
            let ext = out.ext();
            // Everything pending now was queued no later than our bytes, which are its end
            // (or already flushed, if the reactor was quick: then the target is met). Bytes
            // other threads queued after ours in between count too: the wait may be longer.
            let target = ext.flushed + pending;
            ext.wait_for(target);
            target
        };
        if tell_reactor {
            self.post(conn, Command::Output(conn.clone()));
        }
        loop {
            let now = std::time::Instant::now();
            {
                let mut out = conn.out.lock();
                let closed = matches!(out.state, OutState::Closed | OutState::Broken);
                let ext = out.ext();
                if ext.flushed >= target {
                    ext.stop_waiting();
                    return Ok(SendStatus::Sent);
                }
                if closed || deadline.is_some_and(|deadline| now >= deadline) {
                    ext.stop_waiting();
                    return Err(if closed {
                        SendError::Closed
                    } else {
                        SendError::TimedOut
                    });
                }
            }
            match deadline {
                Some(deadline) => std::thread::park_timeout(deadline - now),
                None => std::thread::park(),
            }
        }
    }
}
