//! # eddy
//!
//! A Swoole-style TCP server framework for Rust: reactor threads own every socket and cut the
//! byte stream into packets; each packet goes to one of a pool of worker threads chosen by a
//! dispatch mode; any thread can send to any connection.
//!
//! ```text
//!  listeners ──accept──► supervisor ──spreads connections──► reactor threads
//!                                                            read → codec → packet
//!                                                                    │ dispatch mode
//!                                                                    ▼
//!         client ◄── send: straight to the socket ◄── worker threads (your handler)
//!                    (or queued, flushed by the reactor)
//! ```
//!
//! ```no_run
//! use eddy::{codec::LengthCodec, Bytes, ConnId, Context, EventHandler, Server};
//!
//! struct Echo;
//!
//! impl EventHandler for Echo {
//!     fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
//!         // `packet` is one whole frame, header included: echo it back.
//!         let _ = ctx.send(conn, &packet);
//!     }
//! }
//!
//! let server = Server::builder()
//!     .listen("127.0.0.1:9501")
//!     .codec(LengthCodec::new())
//!     .worker_num(4)
//!     .build(|| Echo)?;
//! println!("listening on {}", server.local_addr());
//! let report = server.run()?; // until SIGTERM / SIGINT / handle.shutdown()
//! println!("{report:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See the `eddy_server` crate docs for the threads and guarantees, and `eddy::codec` for
//! framing.

pub use bytes::Bytes;
pub use eddy_server::*;

/// Framing: where packets end in a byte stream (re-export of the `eddy-codec` crate).
pub mod codec {
    pub use eddy_codec::*;
}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
