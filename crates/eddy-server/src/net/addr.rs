//! Addresses: where a listener listens, and who a connection's peer is.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

/// Where a listener listens: a TCP address (IPv4 or IPv6, port 0 for any free port), a unix
/// stream socket path, a UDP address, or a unix datagram socket path.
///
/// Parsed from `"127.0.0.1:9501"`, `"[::1]:0"`, `"unix:/run/app.sock"`,
/// `"udp:127.0.0.1:9501"` or `"unix-dgram:/run/app.sock"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix stream socket at this path.
    Unix(PathBuf),
    /// A UDP socket (IPv4 or IPv6).
    Udp(SocketAddr),
    /// A unix datagram socket at this path.
    UnixDatagram(PathBuf),
}

impl ListenAddr {
    /// Whether it is a datagram address (UDP or unix datagram).
    pub fn is_datagram(&self) -> bool {
        matches!(self, ListenAddr::Udp(_) | ListenAddr::UnixDatagram(_))
    }

    /// The IP socket address (TCP or UDP).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Tcp(addr) | ListenAddr::Udp(addr) => Some(*addr),
            _ => None,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            // A bare address, as TCP's: what `echo --udp` prints for clients to use.
            ListenAddr::Udp(addr) => write!(f, "{addr}"),
            ListenAddr::UnixDatagram(path) => write!(f, "unix-dgram:{}", path.display()),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix-dgram:") {
            if path.is_empty() {
                return Err("a unix datagram address needs a path: unix-dgram:/path".into());
            }
            return Ok(ListenAddr::UnixDatagram(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("udp:") {
            return addr
                .parse::<SocketAddr>()
                .map(ListenAddr::Udp)
                .map_err(|_| format!("`{addr}` is not IP:PORT (e.g. udp:127.0.0.1:9501)"));
        }
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

/// Who sent a datagram: an IP address and port, or a unix datagram socket (with its path
/// if it bound one; an unbound client cannot be answered).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PacketPeer {
    /// A UDP peer.
    Ip(SocketAddr),
    /// A unix datagram peer, and its path when it has one.
    Unix(Option<PathBuf>),
}

impl fmt::Display for PacketPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketPeer::Ip(addr) => write!(f, "{addr}"),
            PacketPeer::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            PacketPeer::Unix(None) => f.write_str("unix (unnamed)"),
        }
    }
}

impl From<SocketAddr> for PacketPeer {
    fn from(addr: SocketAddr) -> Self {
        PacketPeer::Ip(addr)
    }
}

/// Where a datagram came from (Swoole's `$clientInfo` of `onPacket`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PacketInfo {
    /// Index of the listener that received it (pass it to `sendto` to answer).
    pub listener: usize,
    /// The listener's port (`server_port`; 0 for unix datagram sockets).
    pub server_port: u16,
    /// The sender (`address` and `port`, or the unix path).
    pub peer: PacketPeer,
    /// When the reactor read it.
    #[serde(serialize_with = "unix_seconds")]
    pub received: std::time::SystemTime,
}

fn unix_seconds<S: serde::Serializer>(
    time: &std::time::SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let seconds = time
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    serializer.serialize_f64(seconds)
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
