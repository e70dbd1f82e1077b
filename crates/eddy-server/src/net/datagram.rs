//! Datagram sockets (UDP over IPv4 and IPv6, unix datagram): bound non-blocking, read a batch
//! at a time with `recvmmsg`, written with `sendto`, or a queue at a time with `sendmmsg`.

use std::{
    io,
    net::UdpSocket,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::net::UnixDatagram,
    },
    path::PathBuf,
};

use bytes::{Bytes, BytesMut};
use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

use super::addr::{ListenAddr, PacketPeer};

/// The largest datagram read: the largest a UDP datagram can be (a larger unix datagram is
/// truncated, reported and dropped).
pub(crate) const MAX_DATAGRAM: usize = 65_536;

/// Datagrams read by one `recvmmsg`.
pub(crate) const BATCH: usize = 16;

/// Datagrams written by one `sendmmsg`.
pub(crate) const SEND_BATCH: usize = 64;

/// A bound datagram socket.
#[derive(Debug)]
pub(crate) enum DatagramSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram, PathBuf),
}

/// One datagram of a batch: where it is in the batch's buffer, who sent it, and whether it
/// was cut short (larger than [`MAX_DATAGRAM`]).
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) len: usize,
    pub(crate) peer: PacketPeer,
    pub(crate) truncated: bool,
}

impl DatagramSocket {
    /// Bind, non-blocking: `ListenAddr::Udp` or `ListenAddr::UnixDatagram`.
    pub(crate) fn bind(addr: &ListenAddr, reuse_port: bool) -> io::Result<DatagramSocket> {
        match addr {
            ListenAddr::Udp(sa) => {
                let socket = Socket::new(Domain::for_address(*sa), Type::DGRAM, None)?;
                if reuse_port {
                    socket.set_reuse_port(true)?;
                }
                if sa.is_ipv6() {
                    socket.set_only_v6(true)?;
                }
                socket.bind(&(*sa).into())?;
                socket.set_nonblocking(true)?;
                Ok(DatagramSocket::Udp(socket.into()))
            }
            ListenAddr::UnixDatagram(path) => {
                let socket = UnixDatagram::bind(path)?;
                socket.set_nonblocking(true)?;
                Ok(DatagramSocket::Unix(socket, path.clone()))
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{other} is not a datagram address"),
            )),
        }
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub(crate) fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            DatagramSocket::Udp(s) => s.local_addr().map(ListenAddr::Udp),
            DatagramSocket::Unix(_, path) => Ok(ListenAddr::UnixDatagram(path.clone())),
        }
    }

    /// Whether `peer` is of this socket's family (IPv4, IPv6 or unix).
    /// Whether `peer` is of this socket's family; `ipv4` is the socket's own (from
    /// [`family`](Self::family), asked once).
    pub(crate) fn reaches(&self, ipv4: Option<bool>, peer: &PacketPeer) -> bool {
        match (self, peer) {
            (DatagramSocket::Udp(_), PacketPeer::Ip(to)) => ipv4 == Some(to.is_ipv4()),
            (DatagramSocket::Unix(..), PacketPeer::Unix(Some(_))) => true,
            _ => false,
        }
    }

    /// `Some(true)` for UDP over IPv4, `Some(false)` over IPv6, `None` for unix.
    pub(crate) fn family(&self) -> Option<bool> {
        match self {
            DatagramSocket::Udp(s) => s.local_addr().ok().map(|a| a.is_ipv4()),
            DatagramSocket::Unix(..) => None,
        }
    }

    /// The most one datagram may carry, for a socket of `family`.
    pub(crate) fn max_payload(family: Option<bool>) -> usize {
        match family {
            Some(true) => 65_507,
            Some(false) => 65_527,
            None => MAX_DATAGRAM,
        }
    }

    /// Whether writability can be waited for: a unix datagram socket is always "writable"
    /// (the kernel cannot know which peer's full queue a send will meet), so it is retried
    /// on a timer instead.
    pub(crate) fn signals_writable(&self) -> bool {
        matches!(self, DatagramSocket::Udp(_))
    }

    /// Send one datagram now; `WouldBlock` when the socket's buffer is full.
    pub(crate) fn send_to(&self, data: &[u8], peer: &PacketPeer) -> io::Result<usize> {
        match (self, peer) {
            (DatagramSocket::Udp(s), PacketPeer::Ip(to)) => s.send_to(data, to),
            (DatagramSocket::Unix(s, _), PacketPeer::Unix(Some(path))) => s.send_to(data, path),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "address family mismatch",
            )),
        }
    }

    /// Send `items` in order, [`SEND_BATCH`] to a system call (`sendmmsg`), until one is not
    /// taken: how many were, and the error of the first that was not (`WouldBlock` when the
    /// buffer is full). Every peer must be of the socket's family.
    pub(crate) fn send_batch(&self, items: &[(PacketPeer, Bytes)]) -> (usize, Option<io::Error>) {
        let mut sent = 0;
        while sent < items.len() {
            let chunk = &items[sent..items.len().min(sent + SEND_BATCH)];
            match self.send_chunk(chunk) {
                Ok(n) => sent += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (sent, Some(err)),
            }
        }
        (sent, None)
    }

    /// One `sendmmsg` of up to [`SEND_BATCH`] datagrams: how many the kernel took (at least
    /// one), or the error of the first.
    fn send_chunk(&self, chunk: &[(PacketPeer, Bytes)]) -> io::Result<usize> {
        let mut names: [Option<SockAddr>; SEND_BATCH] = std::array::from_fn(|_| None);
        // SAFETY: zeroed iovec/mmsghdr are valid "empty" values; each is filled below.
        let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
        let mut count = 0;
        for (i, (peer, data)) in chunk.iter().enumerate() {
            let name = match peer {
                PacketPeer::Ip(to) => SockAddr::from(*to),
                PacketPeer::Unix(Some(path)) => match SockAddr::unix(path) {
                    Ok(name) => name,
                    // Sent up to it; it fails on its own in the next call.
                    Err(_) if i > 0 => break,
                    Err(err) => return Err(err),
                },
                PacketPeer::Unix(None) if i > 0 => break,
                PacketPeer::Unix(None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an unnamed unix peer cannot be sent to",
                    ))
                }
            };
            let name = names[i].insert(name);
            iovs[i] = libc::iovec {
                iov_base: data.as_ptr().cast_mut().cast(),
                iov_len: data.len(),
            };
            msgs[i].msg_hdr.msg_name = name.as_ptr().cast_mut().cast();
            msgs[i].msg_hdr.msg_namelen = name.len();
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            count = i + 1;
        }
        // SAFETY: each of the first `count` messages points at its own name and at one iovec
        // over a datagram of `chunk`, all alive for the call; the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                self.as_fd().as_raw_fd(),
                msgs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            // Not documented for a non-empty batch; taken as a full buffer, never as a loop.
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n as usize),
        }
    }

    /// Remove what the socket left on disk (a unix socket file).
    pub(crate) fn cleanup(&self) {
        if let DatagramSocket::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Read up to [`BATCH`] datagrams with one `recvmmsg` into `buf`'s spare capacity, each
    /// in a slot of [`MAX_DATAGRAM`] bytes, then pack them back to back so `buf` grows by
    /// their total length; their lengths and senders go to `out`. `Ok(0)` when none waited.
    pub(crate) fn recv_batch(
        &self,
        buf: &mut BytesMut,
        out: &mut Vec<Received>,
    ) -> io::Result<usize> {
        // The caller copies each datagram out and clears the buffer: one allocation, reused.
        if buf.capacity() - buf.len() < BATCH * MAX_DATAGRAM {
            buf.reserve(BATCH * MAX_DATAGRAM);
        }
        let base = buf.len();
        let spare = buf.spare_capacity_mut();
        let mut names: [SockAddrStorage; BATCH] =
            std::array::from_fn(|_| SockAddrStorage::zeroed());
        // SAFETY: zeroed iovec/mmsghdr are valid "empty" values; each is filled below.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iovs[i] = libc::iovec {
                iov_base: spare[i * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut SockAddrStorage).cast();
            msgs[i].msg_hdr.msg_namelen = names[i].size_of();
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every message points at a slot of `spare` (BATCH * MAX_DATAGRAM bytes were
        // reserved) and at its own name storage, all alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                self.as_fd().as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let mut packed = 0;
        for (i, msg) in msgs.iter().enumerate().take(n as usize) {
            let len = (msg.msg_len as usize).min(MAX_DATAGRAM);
            let truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // SAFETY: the kernel wrote a name of `msg_namelen` bytes for this message.
            let storage = std::mem::replace(&mut names[i], SockAddrStorage::zeroed());
            // SAFETY: see above.
            let name = unsafe { SockAddr::new(storage, msg.msg_hdr.msg_namelen) };
            let peer = match name.as_socket() {
                Some(addr) => PacketPeer::Ip(addr),
                None => PacketPeer::Unix(name.as_pathname().map(PathBuf::from)),
            };
            if i > 0 && len > 0 {
                // SAFETY: both ranges lie in the reserved spare capacity; `copy` allows
                // overlap, and the source (slot i) starts after the destination.
                unsafe {
                    let start = spare.as_mut_ptr();
                    std::ptr::copy(start.add(i * MAX_DATAGRAM), start.add(packed), len);
                }
            }
            packed += len;
            out.push(Received {
                len,
                peer,
                truncated,
            });
        }
        // SAFETY: the first `packed` bytes of the spare capacity were written by the kernel
        // (and packed above).
        unsafe { buf.set_len(base + packed) };
        Ok(n as usize)
    }
}

impl AsFd for DatagramSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DatagramSocket::Udp(s) => s.as_fd(),
            DatagramSocket::Unix(s, _) => s.as_fd(),
        }
    }
}
