//! What a connection's output holds beyond its byte buffer, rarely: files queued by
//! `sendfile` (sent zero-copy with `sendfile(2)`) and the bytes queued after them, in order;
//! large replies of a corked batch that are slices of its packets (sent from there, no copy);
//! threads waiting in `sendwait` for their bytes to reach the kernel; the close asked for
//! before the reactor knew the connection. Boxed, so a plain connection pays one pointer.

use std::{
    collections::VecDeque,
    fs::File,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd},
        unix::fs::FileExt,
    },
    sync::Arc,
    thread::Thread,
};

use bytes::Bytes;

use super::close::CloseReason;
use crate::sys;

/// At most this many in-memory segments go out in one `sendmsg`.
const MAX_IOV: usize = 32;

/// One piece of output queued in the tail.
#[derive(Debug)]
enum Segment {
    /// Bytes copied in, and how many of them went out already.
    Owned(Vec<u8>, usize),
    /// A slice of the packets a corked batch answers (an echo, a forward), and how many of
    /// its bytes went out already: queued without a copy, for the batch's length only.
    Shared(Bytes, usize),
    /// A range of a file: where the next byte is, and how many are left.
    File {
        file: Arc<File>,
        offset: u64,
        left: u64,
    },
}

impl Segment {
    /// The bytes of an in-memory segment not yet sent (`None` for a file).
    fn unsent(&self) -> Option<&[u8]> {
        match self {
            Segment::Owned(buf, head) => Some(&buf[*head..]),
            Segment::Shared(buf, head) => Some(&buf[*head..]),
            Segment::File { .. } => None,
        }
    }

    /// `n` more bytes of an in-memory segment went out.
    fn advance(&mut self, n: usize) {
        match self {
            Segment::Owned(_, head) | Segment::Shared(_, head) => *head += n,
            Segment::File { .. } => {}
        }
    }
}

/// The rare parts of a connection's output.
#[derive(Debug, Default)]
pub(crate) struct OutputExt {
    /// The close asked for, kept so a reactor that registers the connection later applies it.
    pub(crate) requested_close: Option<CloseReason>,
    /// The tail: output from the first queued file or batch slice on, in order.
    tail: VecDeque<Segment>,
    /// Bytes (in memory) in `tail`.
    tail_memory: usize,
    /// Batch slices queued since the last `own_shared` (which looks only when some were).
    shared: usize,
    /// File bytes in `tail`.
    tail_files: u64,
    /// Bytes the kernel took since this was made (what `sendwait` targets count in).
    pub(crate) flushed: u64,
    /// `sendwait` callers: the `flushed` their bytes end at, and their thread.
    waiters: Vec<(u64, Thread)>,
}

impl OutputExt {
    /// Whether the tail holds anything (new bytes must go behind it).
    pub(crate) fn has_tail(&self) -> bool {
        !self.tail.is_empty()
    }

    /// Bytes in memory in the tail.
    pub(crate) fn tail_memory(&self) -> usize {
        self.tail_memory
    }

    /// All bytes in the tail (memory and file ranges).
    pub(crate) fn tail_total(&self) -> usize {
        self.tail_memory + self.tail_files as usize
    }

    /// Queue bytes behind what is in the tail.
    pub(crate) fn push_bytes(&mut self, data: &[u8]) {
        self.tail_memory += data.len();
        if let Some(Segment::Owned(buf, head)) = self.tail.back_mut() {
            // The segment being written: drop what went out once it is half the buffer.
            if *head > 0 && *head >= buf.len() / 2 {
                buf.drain(..*head);
                *head = 0;
            }
            buf.extend_from_slice(data);
            return;
        }
        self.tail.push_back(Segment::Owned(data.to_vec(), 0));
    }

    /// Queue a slice of a corked batch's packets as it is, no copy. It must not outlive the
    /// batch: `own_shared` copies what the kernel did not take when the batch ends.
    pub(crate) fn push_shared(&mut self, data: Bytes) {
        self.tail_memory += data.len();
        self.shared += 1;
        self.tail.push_back(Segment::Shared(data, 0));
    }

    /// Whether slices of a batch are queued.
    pub(crate) fn holds_shared(&self) -> bool {
        self.shared > 0
    }

    /// Copy what is left of the batch's slices into segments of their own, so a reply the
    /// kernel has not taken does not keep the block the packets were read into alive.
    pub(crate) fn own_shared(&mut self) {
        if self.shared == 0 {
            return;
        }
        self.shared = 0;
        for segment in &mut self.tail {
            if let Segment::Shared(buf, head) = segment {
                *segment = Segment::Owned(buf[*head..].to_vec(), 0);
            }
        }
    }

    /// Queue `len` bytes of `file` from `offset`.
    pub(crate) fn push_file(&mut self, file: Arc<File>, offset: u64, len: u64) {
        self.tail_files += len;
        self.tail.push_back(Segment::File {
            file,
            offset,
            left: len,
        });
    }

    /// Write the tail until the kernel stops taking it or `budget` bytes are written (taken
    /// off it). `Ok(true)` when it is empty.
    pub(crate) fn flush_tail(
        &mut self,
        fd: BorrowedFd<'_>,
        budget: &mut usize,
    ) -> io::Result<bool> {
        while let Some(segment) = self.tail.front_mut() {
            if *budget == 0 {
                return Ok(false);
            }
            let room = *budget as u64;
            // (bytes of a file, whether the file is done, bytes written)
            let written = match segment {
                Segment::File { file, offset, left } => {
                    send_file(fd, file, offset, (*left).min(room)).map(|n| {
                        *left -= n;
                        (n, *left == 0, n)
                    })
                }
                _ => self.write_memory(fd, *budget).map(|n| (0, false, n as u64)),
            };
            match written {
                Ok((n, done, total)) => {
                    *budget -= total as usize;
                    self.tail_files -= n;
                    self.flushed += n;
                    if done {
                        self.tail.pop_front();
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    /// Write the in-memory segments at the front of the tail, up to [`MAX_IOV`] of them and
    /// `max` bytes, with one system call; drop those that went out whole. Returns how many
    /// bytes went.
    fn write_memory(&mut self, fd: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let mut slices = [io::IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        let mut room = max;
        for data in self.tail.iter().map_while(Segment::unsent).take(MAX_IOV) {
            if room == 0 {
                break;
            }
            let data = &data[..data.len().min(room)];
            room -= data.len();
            slices[count] = io::IoSlice::new(data);
            count += 1;
        }
        let sent = sys::send_vectored(fd, &slices[..count])?;
        let mut n = sent;
        self.tail_memory -= n;
        self.flushed += n as u64;
        while let Some(segment) = self.tail.front_mut() {
            let left = segment.unsent().map_or(0, <[u8]>::len);
            if n < left {
                segment.advance(n);
                break;
            }
            n -= left;
            self.tail.pop_front();
            if n == 0 {
                break;
            }
        }
        Ok(sent)
    }

    /// Move up to `max` bytes from the front of the tail into `into`, as plaintext for a TLS
    /// session to encrypt (a file is read); returns how many.
    pub(crate) fn take_front(&mut self, max: usize, into: &mut Vec<u8>) -> io::Result<usize> {
        let Some(segment) = self.tail.front_mut() else {
            return Ok(0);
        };
        let (n, done) = match segment {
            Segment::Owned(..) | Segment::Shared(..) => {
                let data = segment.unsent().unwrap_or_default();
                let n = data.len().min(max);
                into.extend_from_slice(&data[..n]);
                let done = n == data.len();
                segment.advance(n);
                self.tail_memory -= n;
                (n, done)
            }
            Segment::File { file, offset, left } => {
                let start = into.len();
                into.resize(start + (*left).min(max as u64) as usize, 0);
                let n = file.read_at(&mut into[start..], *offset)?;
                into.truncate(start + n);
                if n == 0 {
                    return Err(ended_early());
                }
                *offset += n as u64;
                *left -= n as u64;
                self.tail_files -= n as u64;
                (n, *left == 0)
            }
        };
        if done {
            self.tail.pop_front();
        }
        Ok(n)
    }

    /// Bytes moved out of the tail take `by` more on the wire (TLS records): the `sendwait`
    /// callers still waiting wait for those too.
    pub(crate) fn grew(&mut self, by: u64) {
        let flushed = self.flushed;
        for (target, _) in &mut self.waiters {
            if *target > flushed {
                *target += by;
            }
        }
    }

    /// Drop the tail; returns how many bytes it held.
    pub(crate) fn discard(&mut self) -> usize {
        let dropped = self.tail_total();
        self.tail.clear();
        self.tail_memory = 0;
        self.shared = 0;
        self.tail_files = 0;
        self.wake_all();
        dropped
    }

    /// A `sendwait` caller waits until `flushed` reaches `target`.
    pub(crate) fn wait_for(&mut self, target: u64) {
        self.waiters
            .retain(|(_, t)| t.id() != std::thread::current().id());
        self.waiters.push((target, std::thread::current()));
    }

    /// Stop waiting (the caller's timeout passed).
    pub(crate) fn stop_waiting(&mut self) {
        let me = std::thread::current().id();
        self.waiters.retain(|(_, t)| t.id() != me);
    }

    /// Wake the waiters whose bytes have gone out. They stay listed until they look (and
    /// leave with `stop_waiting`), so this record, and its count, outlive the wake-up.
    pub(crate) fn wake_done(&mut self) {
        let flushed = self.flushed;
        for (target, thread) in &self.waiters {
            if *target <= flushed {
                thread.unpark();
            }
        }
    }

    /// Wake every waiter (the connection closed: they look and find it so). As in
    /// `wake_done`, they stay listed until they look: a waiter whose bytes reached the kernel
    /// before the close (the peer may have read them and hung up) finds that in `flushed`, and
    /// is told `Sent`, not `Closed`.
    fn wake_all(&self) {
        for (_, thread) in &self.waiters {
            thread.unpark();
        }
    }

    /// Whether nothing here is needed any more (it can be freed).
    pub(crate) fn is_idle(&self) -> bool {
        self.tail.is_empty() && self.waiters.is_empty() && self.requested_close.is_none()
    }
}

/// Send up to `left` bytes of `file` from `offset` with `sendfile(2)` (zero-copy), advancing
/// `offset`. A file that ends before `left` bytes is an error (`UnexpectedEof`): the queued
/// range can never be sent, and waiting for it would hang.
fn send_file(fd: BorrowedFd<'_>, file: &File, offset: &mut u64, left: u64) -> io::Result<u64> {
    let chunk = left.min(1 << 30) as usize;
    let mut off = *offset as libc::off_t;
    // SAFETY: both descriptors are open (the socket borrowed, the file owned by `file`);
    // `off` is a valid off_t for the kernel to advance.
    let n = unsafe { libc::sendfile(fd.as_raw_fd(), file.as_raw_fd(), &mut off, chunk) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(err)
        };
    }
    if n == 0 {
        return Err(ended_early());
    }
    *offset = off as u64;
    Ok(n as u64)
}

fn ended_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file ended before the range sendfile was asked for",
    )
}

#[cfg(test)]
mod tests {
    use std::{io::Read, os::fd::AsFd, os::unix::net::UnixStream};

    use bytes::Bytes;

    use super::OutputExt;

    #[test]
    fn a_batch_slice_goes_out_in_order_and_is_copied_when_the_batch_ends() {
        let packets = Bytes::from((0..10_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut ext = OutputExt::default();
        ext.push_bytes(b"<");
        ext.push_shared(packets.slice(..6000));
        ext.push_bytes(b">");
        ext.push_shared(packets.slice(6000..));
        assert_eq!(ext.tail_memory(), 10_002);
        assert!(!packets.is_unique(), "queued as slices, not copies");
        ext.own_shared();
        assert!(
            packets.is_unique(),
            "the batch's buffer is let go when it ends"
        );
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut budget = usize::MAX;
        assert!(
            ext.flush_tail(ours.as_fd(), &mut budget).unwrap(),
            "all of it written"
        );
        assert_eq!((ext.tail_memory(), ext.flushed), (0, 10_002));
        drop(ours);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert!(got == [&b"<"[..], &packets[..6000], b">", &packets[6000..]].concat());
    }
}
