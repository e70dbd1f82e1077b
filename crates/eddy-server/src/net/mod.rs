//! Networking: listening addresses, listeners, accepted streams, socket options.
//!
//! Above `sys`. The supervisor owns the listeners; each accepted stream is owned by
//! its connection record (`conn`), which closes it when the last holder lets go.

mod addr;
mod listener;

pub use addr::{ListenAddr, PeerAddr};
pub(crate) use listener::{Listener, Stream};
