//! Listeners and the streams they accept (TCP v4/v6 and unix stream sockets).

use std::{
    io,
    net::{TcpListener, TcpStream},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::PathBuf,
};

use socket2::{Domain, Socket, Type};

use super::addr::{ListenAddr, PeerAddr};

/// An accepted connection's socket (TCP or unix: the record needs only the descriptor, and
/// four bytes keep its hot fields in two cache lines). Owned by its connection record;
/// closed when it drops.
#[derive(Debug)]
pub(crate) struct Stream(OwnedFd);

impl From<TcpStream> for Stream {
    fn from(stream: TcpStream) -> Self {
        Stream(stream.into())
    }
}

impl From<UnixStream> for Stream {
    fn from(stream: UnixStream) -> Self {
        Stream(stream.into())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A bound, listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Bind and listen, non-blocking.
    pub(crate) fn bind(addr: &ListenAddr, backlog: u32, reuse_port: bool) -> io::Result<Listener> {
        let backlog = backlog.min(i32::MAX as u32) as i32;
        match addr {
            ListenAddr::Tcp(sa) => {
                let socket = Socket::new(Domain::for_address(*sa), Type::STREAM, None)?;
                socket.set_reuse_address(true)?;
                if reuse_port {
                    socket.set_reuse_port(true)?;
                }
                if sa.is_ipv6() {
                    socket.set_only_v6(true)?;
                }
                socket.bind(&(*sa).into())?;
                socket.listen(backlog)?;
                socket.set_nonblocking(true)?;
                Ok(Listener::Tcp(socket.into()))
            }
            ListenAddr::Unix(path) => {
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                socket.bind(&socket2::SockAddr::unix(path)?)?;
                socket.listen(backlog)?;
                socket.set_nonblocking(true)?;
                Ok(Listener::Unix(socket.into(), path.clone()))
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{other} is a datagram address, not a stream listener"),
            )),
        }
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub(crate) fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(_, path) => Ok(ListenAddr::Unix(path.clone())),
        }
    }

    /// Accept one connection as a non-blocking stream.
    /// `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: the socket arrives ready, one system
    /// call fewer per connection than accept + set_nonblocking.
    pub(crate) fn accept(&self, nodelay: bool) -> io::Result<(Stream, PeerAddr)> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        match self {
            Listener::Tcp(l) => {
                let (socket, peer) = socket2::SockRef::from(l).accept4(flags)?;
                if nodelay {
                    socket.set_tcp_nodelay(true)?;
                }
                let peer = peer
                    .as_socket()
                    .ok_or_else(|| io::Error::other("accepted a non-IP peer on a TCP listener"))?;
                Ok((Stream(socket.into()), PeerAddr::Tcp(peer)))
            }
            Listener::Unix(l, _) => {
                let (socket, _) = socket2::SockRef::from(l).accept4(flags)?;
                Ok((Stream(socket.into()), PeerAddr::Unix))
            }
        }
    }

    /// Stop listening now, while the descriptor stays open for the reactors that still hold
    /// it: `shutdown(2)` on a listening socket refuses new connections (and resets those
    /// not accepted yet), as closing it would.
    pub(crate) fn stop(&self) {
        crate::sys::shutdown(self.as_fd());
    }

    /// Remove what the listener left on disk (a unix socket file).
    pub(crate) fn cleanup(&self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }
}
