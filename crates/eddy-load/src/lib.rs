//! `eddy-load`: a load generator for echo servers.
//!
//! Opens a number of TCP connections to a loopback address and sends
//! packets in length framing (4-byte big-endian body length, then the body;
//! the server echoes the whole packet), line framing (`\n`-terminated) or
//! as WebSocket binary messages (an HTTP/1.1 upgrade first, then frames
//! masked as a browser masks them, optionally permessage-deflate; see
//! [`ws`]), either ping-pong (one packet in flight per connection) or
//! pipelined; or as UDP datagrams ([`Framing::Udp`]: connected UDP
//! sockets, an 8-byte sequence number per datagram, losses counted and
//! replaced after [`LoadConfig::udp_timeout`]).
//! Every echoed byte is checked against what was sent; any difference is a
//! [`LoadError::Mismatch`]. The run reports throughput and HDR-histogram
//! latency percentiles.
//!
//! With [`LoadConfig::tls`] every connection is a rustls client (length or
//! line framing; see [`tls`]): in [`Mode::Echo`] the handshakes are done
//! first and reported apart, and [`Mode::Handshakes`] measures them: each
//! connection slot connects, completes a handshake, makes one round trip
//! and closes, again and again.
//!
//! It is built to be cheap: non-blocking sockets on a level-triggered
//! [`polling`] poller per thread, per-connection buffers reused for the
//! whole run, no allocation per packet.
//!
//! ```no_run
//! use std::time::Duration;
//! use eddy_load::{run, Framing, LoadConfig};
//!
//! let report = run(&LoadConfig {
//!     addr: "127.0.0.1:9501".into(),
//!     connections: 50,
//!     depth: 16,
//!     framing: Framing::Length,
//!     duration: Some(Duration::from_secs(5)),
//!     ..LoadConfig::default()
//! })?;
//! println!("{report}");
//! # Ok::<(), eddy_load::LoadError>(())
//! ```

pub mod cli;
mod config;
mod conn;
mod connect;
mod cycle;
mod error;
pub mod frame;
mod report;
mod run;
pub mod tls;
mod udp;
mod worker;
pub mod ws;

pub use config::{resolve_loopback, LoadConfig, Mode, DEFAULT_ADDR};
pub use error::LoadError;
pub use frame::{Framing, Mismatch, Payload};
pub use report::{HandshakeReport, LoadReport};
pub use run::run;
pub use tls::{TlsClient, TlsTrust};
