//! Run configuration and target address checks.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;
use crate::frame::{Framing, Payload, MAX_BODY, MAX_DATAGRAM, UDP_SEQ_LEN};
use crate::tls::TlsClient;

/// Default target address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9501";

/// What each connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Connections stay open and echo packets, `depth` in flight each.
    #[default]
    Echo,
    /// Each connection slot opens a connection, completes the TLS handshake (with
    /// [`LoadConfig::tls`]), does one round trip of one packet, closes, and starts over:
    /// the report counts these cycles (handshakes per second with TLS; without it, TCP
    /// connections per second).
    Handshakes,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Handshakes => "handshakes",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "echo" => Ok(Mode::Echo),
            "handshakes" => Ok(Mode::Handshakes),
            other => Err(format!(
                "unknown mode {other:?} (expected `echo` or `handshakes`)"
            )),
        }
    }
}

/// What to run: target, traffic shape and how long.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Target `host:port`; must resolve to a loopback address.
    pub addr: String,
    /// Number of connections (in [`Mode::Handshakes`], of connections open at once).
    pub connections: usize,
    /// Packets in flight per connection (1 = ping-pong).
    pub depth: usize,
    /// Body size of each packet in bytes (framing overhead not included).
    pub size: usize,
    /// Wire framing.
    pub framing: Framing,
    /// With [`Framing::WebSocket`]: offer permessage-deflate (RFC 7692),
    /// compress every message sent and inflate every echo. The run fails if
    /// the server declines.
    pub deflate: bool,
    /// What fills each body after its tag.
    pub payload: Payload,
    /// Length of the measured phase; `None` runs until `count` is reached.
    pub duration: Option<Duration>,
    /// Number of measured packets over all connections; `None` runs for
    /// `duration`. When both are set the run stops at whichever comes first.
    pub count: Option<u64>,
    /// Unmeasured traffic before the measured phase.
    pub warmup: Duration,
    /// Worker threads, each with its own poller; connections are split
    /// round-robin between them.
    pub threads: usize,
    /// Print a progress line on stderr once per second.
    pub progress: bool,
    /// Deadline for establishing all connections (retries included).
    pub connect_timeout: Duration,
    /// Fail if no echo arrives for this long while packets are outstanding.
    pub io_timeout: Duration,
    /// With [`Framing::Udp`]: a datagram not echoed within this long counts
    /// as lost, and a new one is sent in its place (default 200 ms).
    pub udp_timeout: Duration,
    /// Run every connection over TLS (length or line framing): a rustls client trusting
    /// these certificates. In [`Mode::Echo`] all handshakes are done before the clock starts
    /// and reported apart ([`LoadReport::handshakes`](crate::LoadReport::handshakes)).
    pub tls: Option<TlsClient>,
    /// What each connection does.
    pub mode: Mode,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            addr: DEFAULT_ADDR.to_owned(),
            connections: 50,
            depth: 1,
            size: 64,
            framing: Framing::Length,
            deflate: false,
            payload: Payload::Pattern,
            duration: Some(Duration::from_secs(10)),
            count: None,
            warmup: Duration::from_secs(1),
            threads: 1,
            progress: false,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
            udp_timeout: Duration::from_millis(200),
            tls: None,
            mode: Mode::Echo,
        }
    }
}

impl LoadConfig {
    /// Checks field ranges and combinations.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |msg: &str| Err(LoadError::Config(msg.to_owned()));
        if self.connections == 0 || self.connections > u32::MAX as usize {
            return bad("connections must be between 1 and 2^32-1");
        }
        if self.depth == 0 {
            return bad("depth must be at least 1");
        }
        if self.threads == 0 {
            return bad("threads must be at least 1");
        }
        if self.size > MAX_BODY {
            return bad("size must be at most 16 MiB");
        }
        if self.framing == Framing::Udp {
            if !(UDP_SEQ_LEN..=MAX_DATAGRAM).contains(&self.size) {
                return bad("udp datagrams must be between 8 and 65507 bytes");
            }
            if self.udp_timeout.is_zero() {
                return bad("udp_timeout must be positive");
            }
        }
        if self.deflate && self.framing != Framing::WebSocket {
            return bad("deflate needs WebSocket framing");
        }
        if self.tls.is_some() && !matches!(self.framing, Framing::Length | Framing::Line) {
            return bad("TLS works with length and line framing only");
        }
        if self.mode == Mode::Handshakes {
            if !matches!(self.framing, Framing::Length | Framing::Line) {
                return bad("handshakes mode works with length and line framing only");
            }
            if self.depth != 1 {
                return bad("handshakes mode makes one round trip per connection: depth must be 1");
            }
        }
        match (self.duration, self.count) {
            (None, None) => return bad("set a duration, a count, or both"),
            (Some(d), _) if d.is_zero() => return bad("duration must be positive"),
            (_, Some(0)) => return bad("count must be positive"),
            _ => {}
        }
        if self.io_timeout.is_zero() {
            return bad("io_timeout must be positive");
        }
        Ok(())
    }

    /// Number of threads actually used (never more than connections).
    pub fn effective_threads(&self) -> usize {
        self.threads.clamp(1, self.connections.max(1))
    }
}

/// Resolves `addr` and returns its first address, refusing anything that
/// is not loopback (127.0.0.0/8 or ::1).
pub fn resolve_loopback(addr: &str) -> Result<SocketAddr, LoadError> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|source| LoadError::Resolve {
            addr: addr.to_owned(),
            source,
        })?
        .collect();
    if resolved.is_empty() || !resolved.iter().all(|a| a.ip().is_loopback()) {
        return Err(LoadError::NotLoopback {
            addr: addr.to_owned(),
        });
    }
    Ok(resolved[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert!(LoadConfig::default().validate().is_ok());
    }

    #[test]
    fn rejects_bad_combinations() {
        let base = LoadConfig::default();
        let cases = [
            LoadConfig {
                connections: 0,
                ..base.clone()
            },
            LoadConfig {
                depth: 0,
                ..base.clone()
            },
            LoadConfig {
                duration: None,
                count: None,
                ..base.clone()
            },
            LoadConfig {
                count: Some(0),
                ..base.clone()
            },
            LoadConfig {
                size: MAX_BODY + 1,
                ..base.clone()
            },
            LoadConfig {
                deflate: true,
                ..base.clone()
            },
            LoadConfig {
                framing: Framing::Udp,
                size: 7,
                ..base.clone()
            },
            LoadConfig {
                framing: Framing::Udp,
                size: MAX_DATAGRAM + 1,
                ..base.clone()
            },
            LoadConfig {
                framing: Framing::WebSocket,
                tls: Some(TlsClient::from_pem(Vec::new())),
                ..base.clone()
            },
            LoadConfig {
                mode: Mode::Handshakes,
                depth: 2,
                ..base.clone()
            },
            LoadConfig {
                mode: Mode::Handshakes,
                framing: Framing::Udp,
                size: 64,
                ..base.clone()
            },
        ];
        for c in cases {
            assert!(matches!(c.validate(), Err(LoadError::Config(_))), "{c:?}");
        }
    }

    #[test]
    fn deflate_with_websocket_is_valid() {
        let c = LoadConfig {
            framing: Framing::WebSocket,
            deflate: true,
            payload: Payload::Json,
            ..LoadConfig::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn modes_parse_and_tls_with_length_is_valid() {
        assert_eq!("handshakes".parse::<Mode>(), Ok(Mode::Handshakes));
        assert_eq!("echo".parse::<Mode>(), Ok(Mode::Echo));
        assert!("flood".parse::<Mode>().is_err());
        let c = LoadConfig {
            tls: Some(TlsClient::from_ca_file("ca.pem")),
            mode: Mode::Handshakes,
            framing: Framing::Line,
            ..LoadConfig::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn loopback_only() {
        assert!(resolve_loopback("127.0.0.1:9501").is_ok());
        assert!(resolve_loopback("127.3.2.1:9501").is_ok());
        assert!(resolve_loopback("[::1]:9501").is_ok());
        for addr in [
            "10.0.0.1:80",
            "192.168.1.1:80",
            "8.8.8.8:53",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(
                matches!(resolve_loopback(addr), Err(LoadError::NotLoopback { .. })),
                "{addr}"
            );
        }
        assert!(matches!(
            resolve_loopback("no port"),
            Err(LoadError::Resolve { .. })
        ));
    }

    #[test]
    fn threads_capped_by_connections() {
        let c = LoadConfig {
            connections: 2,
            threads: 8,
            ..LoadConfig::default()
        };
        assert_eq!(c.effective_threads(), 2);
    }
}
