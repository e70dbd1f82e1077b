//! `eddy-bench`: benchmark baselines for eddy, and the echo benchmark suite.
//!
//! * [`eddy_echo`] — eddy's own echo server, as an application builds it.
//! * [`tokio_echo`] — a tokio multi-threaded echo server, a task per
//!   connection: the "what a plain async server does" baseline.
//! * [`epoll_echo`] — a single-thread level-triggered epoll echo server:
//!   the per-core ceiling.
//! * [`tokio_ws_echo`] — a tokio-tungstenite WebSocket echo server, a task
//!   per connection: the WebSocket baseline (`--serve tokio --framing ws`;
//!   `--serve eddy --framing ws [--deflate]` is eddy's WebSocket echo).
//! * [`tokio_udp_echo`] — a tokio `UdpSocket` echo, one receiving task
//!   per runtime worker on the shared socket: the UDP baseline
//!   (`--serve tokio --framing udp`; `--serve eddy --framing udp` is eddy's
//!   `listen_udp` with an `on_packet` echo).
//! * [`tokio_tls_echo`] — a tokio-rustls echo server, a task per
//!   connection, TLS 1.3 on ring: the TLS baseline (`--serve tokio
//!   --tls-cert C --tls-key K`; `--serve eddy --tls-cert C --tls-key K` is
//!   eddy's echo with `.tls(TlsConfig::from_pem_files(C, K))`).
//! * [`serve::serve_main`] — `--serve eddy|tokio|epoll` (the
//!   `eddy-baseline` binary, and the `echo` bench re-executing itself):
//!   binds with a backlog of 1024, prints `listening on ADDR`, serves;
//!   [`child::ServerChild`] spawns such a server and reads its address;
//!   [`proc_cpu`] measures a process's CPU time and RSS from `/proc`.
//! * [`host`] — a clock comparable across processes, the open-file limit raised.
//! * [`redis_server`] — a `redis-server` child on a free port, for the cluster tests
//!   and bench.
//! * [`suite`] — the `cargo bench --bench echo` suite: every server as a
//!   child, the same eddy-load runs against each, one table.
//!
//! All servers speak the framings of [`eddy_load`]: length framing (4-byte
//! big-endian body length, echoed whole, header included) and line framing;
//! eddy and tokio(-tungstenite) also WebSocket framing. Load them with
//! `eddy-load` or [`eddy_load::run`].

pub mod child;
pub mod eddy_echo;
pub mod epoll_echo;
mod epoll_sys;
pub mod frames;
pub mod host;
pub mod listen;
pub mod proc_cpu;
pub mod redis_server;
pub mod serve;
pub mod suite;
pub mod tasks;
pub mod tls_cert;
pub mod tokio_echo;
pub mod tokio_tls_echo;
pub mod tokio_udp_echo;
pub mod tokio_ws_echo;

pub use frames::Framing;
pub use serve::serve_main;
