//! Listening addresses, listeners and accepted streams (TCP v4/v6 and unix stream sockets).

use std::{
    fmt, io,
    net::{SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsFd, BorrowedFd},
        fd::{AsRawFd, RawFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::PathBuf,
    str::FromStr,
};

use socket2::{Domain, Socket, Type};

/// Where a listener listens: a TCP address (IPv4 or IPv6, port 0 for any free port) or a unix
/// stream socket path.
///
/// Parsed from `"127.0.0.1:9501"`, `"[::1]:0"` or `"unix:/run/app.sock"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix stream socket at this path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("a unix socket address needs a path: unix:/path/to.sock".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| {
            format!("`{s}` is neither IP:PORT (e.g. 127.0.0.1:9501, [::1]:0) nor unix:/path")
        })
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr::Tcp(addr)
    }
}

/// The address of a connection's peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A unix stream socket peer (usually unnamed).
    Unix,
}

impl PeerAddr {
    /// The peer's socket address, for TCP connections.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Tcp(addr) => Some(*addr),
            PeerAddr::Unix => None,
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => write!(f, "{addr}"),
            PeerAddr::Unix => f.write_str("unix"),
        }
    }
}

/// An accepted connection's socket. Owned by its connection record; closed when it drops.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
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
                Ok((Stream::Tcp(socket.into()), PeerAddr::Tcp(peer)))
            }
            Listener::Unix(l, _) => {
                let (socket, _) = socket2::SockRef::from(l).accept4(flags)?;
                Ok((Stream::Unix(socket.into()), PeerAddr::Unix))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "127.0.0.1:0".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:0".parse().unwrap())
        );
        assert!(matches!(
            "[::1]:80".parse::<ListenAddr>(),
            Ok(ListenAddr::Tcp(_))
        ));
        assert_eq!(
            "unix:/tmp/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("localhost".parse::<ListenAddr>().is_err());
    }
}
