//! A datagram listener as every thread sees it: its socket (read only by its reactor), its
//! bounded send queue, and its counters. `sendto` from any thread writes straight to the
//! socket when nothing is queued, else queues behind (in order) for the reactor to flush.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use bytes::Bytes;
use parking_lot::Mutex;

use super::reactor_mail::{Command, ReactorHandle};
use crate::{
    error::{SendStatus, SendToError},
    net::{DatagramSocket, PacketPeer},
};

/// The most datagrams a send queue holds, however small (each entry costs its peer's address
/// and a buffer).
const MAX_QUEUED: usize = 16 * 1024;

/// The most queued datagrams one flush looks at (the lock it holds is every sender's).
const FLUSH_LOOK: usize = 1024;

/// Why datagrams were dropped, counted per listener.
#[derive(Debug, Default)]
pub(crate) struct DatagramCounters {
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    /// Larger than the read buffer (unix datagrams over 64 KiB).
    pub(crate) oversized: AtomicU64,
    /// The worker's queue was full: dropped, as the network would.
    pub(crate) inbox_full: AtomicU64,
    /// `sendto` found the send queue full.
    pub(crate) queue_full: AtomicU64,
    /// The kernel refused a queued datagram when it was flushed.
    pub(crate) send_failed: AtomicU64,
    /// No `on_packet`: logged and dropped.
    pub(crate) unhandled: AtomicU64,
}

/// Datagrams waiting for room in the socket's buffer, in order.
#[derive(Debug, Default)]
struct SendQueue {
    items: VecDeque<(PacketPeer, Bytes)>,
    bytes: usize,
    /// The reactor was told there is something to flush.
    flush_requested: bool,
}

/// One datagram listener.
#[derive(Debug)]
pub(crate) struct DatagramPort {
    /// The listener's index.
    pub(crate) listener: usize,
    pub(crate) socket: DatagramSocket,
    /// The reactor that reads it and flushes its queue.
    pub(crate) reactor: usize,
    /// The most bytes the send queue holds (`socket_buffer_size`).
    queue_limit: usize,
    /// The socket's family (`Some(ipv4)` for UDP), asked once at bind.
    family: Option<bool>,
    queue: Mutex<SendQueue>,
    pub(crate) counters: DatagramCounters,
}

impl DatagramPort {
    pub(crate) fn new(
        listener: usize,
        socket: DatagramSocket,
        reactor: usize,
        queue_limit: usize,
    ) -> Self {
        DatagramPort {
            listener,
            family: socket.family(),
            socket,
            reactor,
            queue_limit,
            queue: Mutex::default(),
            counters: DatagramCounters::default(),
        }
    }

    /// Send one datagram to `peer` (Swoole's `sendto`): now if nothing is queued, else
    /// behind what is; a full queue refuses at once.
    pub(crate) fn send_to(
        &self,
        peer: &PacketPeer,
        data: &[u8],
        reactor: &ReactorHandle,
    ) -> Result<SendStatus, SendToError> {
        if data.is_empty() {
            return Err(SendToError::Empty);
        }
        let max = DatagramSocket::max_payload(self.family);
        if data.len() > max {
            return Err(SendToError::TooLarge {
                len: data.len(),
                max,
            });
        }
        if !self.socket.reaches(self.family, peer) {
            return Err(SendToError::FamilyMismatch);
        }
        let mut queue = self.queue.lock();
        if queue.items.is_empty() {
            match self.socket.send_to(data, peer) {
                Ok(_) => {
                    self.counters.sent.fetch_add(1, Relaxed);
                    return Ok(SendStatus::Sent);
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) if err.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Err(SendToError::TooLarge {
                        len: data.len(),
                        max,
                    })
                }
                Err(err) => return Err(SendToError::Io(err.kind())),
            }
        }
        if queue.bytes + data.len() > self.queue_limit || queue.items.len() >= MAX_QUEUED {
            self.counters.queue_full.fetch_add(1, Relaxed);
            return Err(SendToError::QueueFull {
                pending: queue.bytes,
                limit: self.queue_limit,
            });
        }
        queue
            .items
            .push_back((peer.clone(), Bytes::copy_from_slice(data)));
        queue.bytes += data.len();
        let pending = queue.bytes;
        let wake = !std::mem::replace(&mut queue.flush_requested, true);
        drop(queue);
        if wake {
            reactor.command(Command::DatagramOutput(self.listener));
        }
        Ok(SendStatus::Queued { pending })
    }

    /// Reactor side: send what is queued, in order per peer; a peer whose queue is full
    /// (`WouldBlock`) keeps the rest of its datagrams for later without holding up the others.
    /// Returns whether the queue is empty now.
    pub(crate) fn flush(&self) -> bool {
        let mut queue = self.queue.lock();
        let mut blocked: Vec<PacketPeer> = Vec::new();
        let mut kept = VecDeque::new();
        let mut looked = 0;
        while let Some((peer, data)) = queue.items.pop_front() {
            looked += 1;
            if looked > FLUSH_LOOK {
                // Enough for one pass: the rest keeps its order for the next.
                kept.push_back((peer, data));
                kept.append(&mut queue.items);
                break;
            }
            if blocked.contains(&peer) {
                kept.push_back((peer, data));
                continue;
            }
            match self.socket.send_to(&data, &peer) {
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    blocked.push(peer.clone());
                    kept.push_back((peer, data));
                    if self.socket.signals_writable() || blocked.len() > 64 {
                        // UDP: the whole socket is full; unix: enough peers are full.
                        kept.append(&mut queue.items);
                        break;
                    }
                    continue;
                }
                Ok(_) => {
                    self.counters.sent.fetch_add(1, Relaxed);
                }
                Err(err) => {
                    self.counters.send_failed.fetch_add(1, Relaxed);
                    tracing::debug!(listener = self.listener, "queued datagram refused: {err}");
                }
            }
            queue.bytes -= data.len();
        }
        queue.items = kept;
        let empty = queue.items.is_empty();
        if empty {
            queue.flush_requested = false;
        }
        empty
    }

    /// Drop what is queued (the shutdown deadline passed); returns the bytes dropped.
    pub(crate) fn discard(&self) -> usize {
        let mut queue = self.queue.lock();
        queue.items.clear();
        queue.flush_requested = false;
        std::mem::take(&mut queue.bytes)
    }

    /// Datagrams and bytes waiting in the send queue.
    pub(crate) fn queued(&self) -> (usize, usize) {
        let queue = self.queue.lock();
        (queue.items.len(), queue.bytes)
    }
}
