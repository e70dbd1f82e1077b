//! Networking: listening addresses, listeners, accepted streams, datagram sockets.
//!
//! Above `sys`. The supervisor owns the listeners; each accepted stream is owned by
//! its connection record (`conn`), which closes it when the last holder lets go.

mod addr;
mod datagram;
mod listener;

pub use addr::{ListenAddr, PacketInfo, PacketPeer, PeerAddr};
pub(crate) use datagram::{DatagramSocket, Received, SEND_BATCH};
pub(crate) use listener::{Listener, Stream};
