//! A datagram listener as every thread sees it: its socket (read only by its reactor), its
//! bounded send queue, and its counters. `sendto` from any thread writes straight to the
//! socket when nothing is queued, else queues behind (in order) for the reactor to flush.
//! While the reactor answers a batch of datagrams itself (`DispatchMode::Reactor`), the port
//! is corked: the replies queue, and go out together (one `sendmmsg` per 64) when it uncorks.

use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use bytes::Bytes;
use parking_lot::Mutex;

use super::reactor_mail::{Command, ReactorHandle};
use crate::{
    error::{SendStatus, SendToError},
    net::{DatagramSocket, PacketPeer, SEND_BATCH},
};

/// The most datagrams a send queue holds, however small (each entry costs its peer's address
/// and a buffer).
const MAX_QUEUED: usize = 16 * 1024;

/// A unix peer may hold at most this share (1/4) of a send queue's bytes and datagrams: one
/// that stops reading fills its part, and the others are still served.
const PEER_SHARE: usize = 4;

/// The most queued datagrams one flush tries to send (the lock it holds is every sender's;
/// datagrams to a peer found full are passed over, not counted).
const FLUSH_LOOK: usize = 1024;

/// The most datagrams a corked port holds back (one `sendmmsg`'s worth); the next send
/// flushes them first.
const CORK_HOLD: usize = SEND_BATCH;

/// Datagrams handed to the socket at once by a flush.
const FLUSH_RUN: usize = SEND_BATCH;

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
    /// The reactor is answering a batch (see `DatagramPort::cork`).
    corked: bool,
    /// Datagrams queued since the port was corked or last flushed by a send (what the cork
    /// holds back, not what waits for a full socket).
    held: usize,
    /// Unix sockets only: datagrams and bytes queued per peer (see [`PEER_SHARE`]). UDP
    /// keeps none: its socket is full for every peer at once.
    per_peer: HashMap<PacketPeer, (usize, usize)>,
}

impl SendQueue {
    /// A queued datagram of `len` bytes to `peer` left the queue (sent, refused, dropped).
    fn dequeued(&mut self, peer: &PacketPeer, len: usize) {
        self.bytes -= len;
        if self.per_peer.is_empty() {
            return;
        }
        if let Some(held) = self.per_peer.get_mut(peer) {
            *held = (held.0 - 1, held.1 - len);
            if held.0 == 0 {
                self.per_peer.remove(peer);
            }
        }
    }
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
        if queue.held > 0
            && (queue.held >= CORK_HOLD || queue.bytes + data.len() > self.queue_limit)
        {
            // Held back long enough: what the cork holds goes first, as it would have. (Once:
            // what a full socket keeps is the reactor's to flush, as without the cork.)
            queue.held = 0;
            self.flush_locked(&mut queue);
        }
        if queue.items.is_empty() && !queue.corked {
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
        let per_peer = !self.socket.signals_writable();
        if per_peer {
            let (items, bytes) = queue.per_peer.get(peer).copied().unwrap_or_default();
            let limit = self.queue_limit / PEER_SHARE;
            if items >= MAX_QUEUED / PEER_SHARE || bytes + data.len() > limit {
                self.counters.queue_full.fetch_add(1, Relaxed);
                return Err(SendToError::QueueFull {
                    pending: bytes,
                    limit,
                });
            }
            let held = queue.per_peer.entry(peer.clone()).or_default();
            *held = (held.0 + 1, held.1 + data.len());
        }
        queue
            .items
            .push_back((peer.clone(), Bytes::copy_from_slice(data)));
        queue.bytes += data.len();
        queue.held += usize::from(queue.corked);
        let pending = queue.bytes;
        // A corked port is flushed when it uncorks; otherwise the reactor must know.
        let wake = !queue.corked && !std::mem::replace(&mut queue.flush_requested, true);
        drop(queue);
        if wake {
            reactor.command(Command::DatagramOutput(self.listener));
        }
        Ok(SendStatus::Queued { pending })
    }

    /// Reactor side, before it answers a batch of datagrams on its own thread: hold the sends
    /// (to any peer, from any thread) until [`uncork`](Self::uncork), so a batch of replies
    /// costs one system call rather than one each. A send to a corked port returns `Queued`.
    pub(crate) fn cork(&self) {
        let mut queue = self.queue.lock();
        queue.corked = true;
        queue.held = 0;
    }

    /// Reactor side, after the batch: sends go straight out again; the caller flushes what
    /// the cork held.
    pub(crate) fn uncork(&self) {
        let mut queue = self.queue.lock();
        queue.corked = false;
        queue.held = 0;
    }

    /// Reactor side: send what is queued, in order per peer; a peer whose queue is full
    /// (`WouldBlock`) keeps the rest of its datagrams for later without holding up the others.
    /// Returns whether the queue is empty now.
    pub(crate) fn flush(&self) -> bool {
        let mut queue = self.queue.lock();
        let (empty, only_blocked) = self.flush_locked(&mut queue);
        // Nothing left but datagrams to peers found full: a send to anyone else asks for a
        // flush again (rather than wait for the retry of the full ones).
        if empty || only_blocked {
            queue.flush_requested = false;
        }
        empty
    }

    /// `flush` under the queue's lock: runs of datagrams to peers that are not full, each run
    /// with as few system calls as the kernel allows (`sendmmsg`). Returns whether the queue
    /// is empty, and whether all that is left is for peers found full.
    fn flush_locked(&self, queue: &mut SendQueue) -> (bool, bool) {
        let mut stopped = false;
        let mut blocked: Vec<PacketPeer> = Vec::new();
        let mut kept = VecDeque::new();
        let mut run = Vec::with_capacity(FLUSH_RUN.min(queue.items.len()));
        let mut looked = 0;
        'flush: while looked < FLUSH_LOOK && !queue.items.is_empty() {
            while run.len() < FLUSH_RUN && looked < FLUSH_LOOK {
                let Some((peer, data)) = queue.items.pop_front() else {
                    break;
                };
                // A blocked peer's datagrams are passed over without counting against the
                // look: counted, a peer that stopped reading could fill every flush's look
                // with its own and hold up everyone queued behind. (Passing over costs a
                // move; the queue's length, MAX_QUEUED at most, bounds it.)
                if blocked.contains(&peer) {
                    kept.push_back((peer, data));
                } else {
                    looked += 1;
                    run.push((peer, data));
                }
            }
            let (sent, error) = self.socket.send_batch(&run);
            for (peer, data) in run.drain(..sent) {
                self.counters.sent.fetch_add(1, Relaxed);
                queue.dequeued(&peer, data.len());
            }
            let Some(err) = error else {
                continue;
            };
            let (peer, data) = run.remove(0);
            if err.kind() == std::io::ErrorKind::WouldBlock {
                blocked.push(peer.clone());
                kept.push_back((peer, data));
                if self.socket.signals_writable() || blocked.len() > 64 {
                    // UDP: the whole socket is full; unix: enough peers are full.
                    kept.extend(run.drain(..));
                    stopped = true;
                    break 'flush;
                }
            } else {
                self.counters.send_failed.fetch_add(1, Relaxed);
                tracing::debug!(listener = self.listener, "queued datagram refused: {err}");
                queue.dequeued(&peer, data.len());
            }
            // The rest of the run is looked at again, in its order.
            looked -= run.len();
            for item in run.drain(..).rev() {
                queue.items.push_front(item);
            }
        }
        let only_blocked = !stopped && queue.items.is_empty();
        // What was kept goes first: it came before everything still queued.
        kept.append(&mut queue.items);
        queue.items = kept;
        (queue.items.is_empty(), only_blocked)
    }

    /// Drop what is queued (the shutdown deadline passed); returns the bytes dropped.
    pub(crate) fn discard(&self) -> usize {
        let mut queue = self.queue.lock();
        queue.items.clear();
        queue.per_peer.clear();
        queue.flush_requested = false;
        std::mem::take(&mut queue.bytes)
    }

    /// Datagrams and bytes waiting in the send queue.
    pub(crate) fn queued(&self) -> (usize, usize) {
        let queue = self.queue.lock();
        (queue.items.len(), queue.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::net::UnixDatagram, path::PathBuf, sync::Arc};

    use super::*;
    use crate::{
        net::{DatagramSocket, ListenAddr},
        sys::Poller,
    };

    /// A fresh directory for this test's sockets.
    fn socket_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eddy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Everything `socket` holds now, without waiting.
    fn drain(socket: &UnixDatagram) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while let Ok(n) = socket.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    }

    /// Fill the receive queue of the socket bound at `path` with `x` datagrams, before the
    /// port sends to it: fillers send until a fresh one cannot (a filler may run out of its
    /// own send buffer first). Keep them: their datagrams stay queued as long as they live.
    fn fill(path: &std::path::Path) -> Vec<UnixDatagram> {
        let mut fillers = Vec::new();
        let peer_full = loop {
            let filler = UnixDatagram::unbound().unwrap();
            filler.set_nonblocking(true).unwrap();
            let mut sent = 0;
            while filler.send_to(b"x", path).is_ok() {
                sent += 1;
            }
            fillers.push(filler);
            if sent == 0 || fillers.len() > 1000 {
                break sent == 0;
            }
        };
        assert!(peer_full, "the peer's queue never filled");
        fillers
    }

    /// A unix datagram port, the reactor handle it tells (and what it is told), and two
    /// bound peers: one whose queue is full (its fillers kept: bind every field, or the full
    /// peer and its fillers go at the end of the `let`), one that reads.
    struct TwoPeers {
        dir: std::path::PathBuf,
        port: DatagramPort,
        reactor: ReactorHandle,
        commands: crossbeam_channel::Receiver<Command>,
        full_peer: UnixDatagram,
        reading_peer: UnixDatagram,
        to_full: PacketPeer,
        to_reading: PacketPeer,
        _fillers: Vec<UnixDatagram>,
    }

    fn two_peers(name: &str) -> TwoPeers {
        let dir = socket_dir(name);
        let server = DatagramSocket::bind(&ListenAddr::UnixDatagram(dir.join("s")), false);
        let port = DatagramPort::new(0, server.unwrap(), 0, 1 << 20);
        let (tx, commands) = crossbeam_channel::unbounded();
        let reactor = ReactorHandle::new(tx, Arc::new(Poller::new().unwrap()));
        let (full, reading) = (dir.join("full"), dir.join("reading"));
        let full_peer = UnixDatagram::bind(&full).unwrap();
        let reading_peer = UnixDatagram::bind(&reading).unwrap();
        full_peer.set_nonblocking(true).unwrap();
        reading_peer.set_nonblocking(true).unwrap();
        let fillers = fill(&full);
        TwoPeers {
            dir,
            port,
            reactor,
            commands,
            full_peer,
            reading_peer,
            to_full: PacketPeer::Unix(Some(full)),
            to_reading: PacketPeer::Unix(Some(reading)),
            _fillers: fillers,
        }
    }

    #[test]
    fn a_queue_left_with_only_full_peers_asks_for_a_flush_again_at_the_next_send() {
        let TwoPeers {
            dir,
            port,
            reactor,
            commands,
            full_peer: _full_peer,
            reading_peer,
            to_full,
            to_reading,
            _fillers: _kept,
        } = two_peers("dgram-ask");
        let queued = |peer, data: &[u8]| {
            let status = port.send_to(peer, data, &reactor).unwrap();
            assert!(matches!(status, SendStatus::Queued { .. }), "{status:?}");
        };
        // Queued for the full peer: the reactor is asked once.
        queued(&to_full, b"f1");
        queued(&to_full, b"f2");
        assert_eq!(commands.try_iter().count(), 1);
        assert!(!port.flush(), "the full peer's wait");
        // Only the full peer's are left: a send to another peer asks again (before, the
        // request stayed set, and its datagram waited for the full peer's retry).
        queued(&to_reading, b"r");
        assert_eq!(commands.try_iter().count(), 1, "asked again");
        port.flush();
        assert_eq!(drain(&reading_peer), [b"r".to_vec()]);
        assert_eq!(port.queued().0, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corked_port_flushes_in_runs_past_a_full_peer_keeping_each_peers_order() {
        let TwoPeers {
            dir,
            port,
            reactor,
            full_peer,
            reading_peer,
            to_full,
            to_reading,
            commands: _commands,
            _fillers: _kept,
        } = two_peers("dgram-runs");

        // More than a cork holds: the sends past it flush what it held, in runs.
        const EACH: u8 = 50;
        port.cork();
        for i in 0..EACH {
            for (peer, tag) in [(&to_full, b'f'), (&to_reading, b'r')] {
                let status = port.send_to(peer, &[tag, i], &reactor).unwrap();
                assert!(matches!(status, SendStatus::Queued { .. }), "{status:?}");
            }
        }
        port.uncork();
        // The peer that reads gets all of its datagrams, in order, past the full one's.
        let expected = |tag: u8| (0..EACH).map(|i| vec![tag, i]).collect::<Vec<_>>();
        let mut got = Vec::new();
        for _ in 0..1000 {
            port.flush();
            got.extend(drain(&reading_peer));
            if got.len() >= EACH as usize {
                break;
            }
        }
        assert_eq!(got, expected(b'r'));
        assert_eq!(port.queued().0, EACH as usize, "the full peer's all wait");

        // As the full peer reads, flushes send the rest, in order.
        let mut got = Vec::new();
        for _ in 0..1000 {
            got.extend(drain(&full_peer).into_iter().filter(|d| d != b"x"));
            if port.flush() {
                break;
            }
        }
        got.extend(drain(&full_peer));
        assert_eq!(got, expected(b'f'));
        assert_eq!(port.queued(), (0, 0));
        assert_eq!(port.counters.sent.load(Relaxed), 2 * EACH as u64);
        assert_eq!(port.counters.send_failed.load(Relaxed), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
