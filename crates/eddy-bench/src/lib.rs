//! `eddy-bench`: benchmark baselines for eddy.
//!
//! * [`tokio_echo`] — a tokio multi-threaded echo server, a task per
//!   connection: the "what a plain async server does" baseline.
//! * [`epoll_echo`] — a single-thread level-triggered epoll echo server:
//!   the per-core ceiling.
//! * [`serve::serve_main`] — the `eddy-baseline` binary: binds, prints
//!   `listening on ADDR`, serves; [`child::ServerChild`] spawns such a
//!   server and reads its address; [`proc_cpu`] measures a process's CPU
//!   time and RSS from `/proc`.
//!
//! Both servers speak the framings of [`eddy_load`]: length framing (4-byte
//! big-endian body length, echoed whole, header included) and line framing.
//! Load them with `eddy-load` or [`eddy_load::run`].

pub mod child;
pub mod epoll_echo;
mod epoll_sys;
pub mod frames;
pub mod proc_cpu;
pub mod serve;
pub mod tokio_echo;

pub use frames::Framing;
pub use serve::serve_main;
