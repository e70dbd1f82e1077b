//! `sendto`: answering datagram peers from any thread.

use std::sync::atomic::Ordering::Relaxed;

use crate::{
    error::{SendStatus, SendToError},
    net::{PacketInfo, PacketPeer},
    shared::{DatagramPort, ServerHandle},
};

impl ServerHandle {
    /// Send one datagram to `peer` from datagram listener `listener` (Swoole's `sendto`),
    /// from any thread: written now when nothing is queued on that socket
    /// ([`SendStatus::Sent`]), else queued behind what is and flushed by its reactor
    /// ([`SendStatus::Queued`]). A reply to a unix datagram peer goes to its path.
    ///
    /// With [`DispatchMode::Reactor`], the replies `on_packet` makes to a batch of datagrams
    /// read together are held until the batch is handled, then sent with one `sendmmsg`
    /// ([`SendStatus::Queued`], as a corked TCP connection's replies are; a send from another
    /// thread meanwhile waits with them): a datagram costs no system call of its own (the UDP
    /// pipelined benchmark: 7% less CPU per datagram). What the kernel refuses then (a unix
    /// peer gone, a datagram over its socket's buffer) is dropped and counted in
    /// [`Stats::packet_send_failed`], as for any queued datagram, instead of being returned.
    ///
    /// [`Stats::packet_send_failed`]: crate::Stats::packet_send_failed
    ///
    /// [`DispatchMode::Reactor`]: crate::DispatchMode::Reactor
    pub fn sendto(
        &self,
        listener: usize,
        peer: &PacketPeer,
        data: impl AsRef<[u8]>,
    ) -> Result<SendStatus, SendToError> {
        let port = self.datagram_port(listener)?;
        let reactor = self.shared.reactor(port.reactor);
        port.send_to(peer, data.as_ref(), reactor)
    }

    /// Datagram listener `listener`'s socket, to read or set socket options while the server
    /// runs (Swoole's `getSocket` for UDP). Stream listeners: [`Server::listener_socket`]
    /// before `run`.
    ///
    /// [`Server::listener_socket`]: crate::Server::listener_socket
    pub fn datagram_socket(&self, listener: usize) -> Option<socket2::SockRef<'_>> {
        let port = self.datagram_port(listener).ok()?;
        Some(socket2::SockRef::from(&port.socket))
    }

    /// The datagram listener at `listener`.
    pub(crate) fn datagram_port(&self, listener: usize) -> Result<&DatagramPort, SendToError> {
        match self.shared.datagrams.get(listener) {
            Some(Some(port)) => Ok(port),
            Some(None) => Err(SendToError::NotDatagram(listener)),
            None => Err(SendToError::UnknownListener(listener)),
        }
    }

    /// A datagram nobody handles: count it, and say so the first time.
    pub(crate) fn unhandled_packet(&self, len: usize, from: &PacketInfo) {
        let Ok(port) = self.datagram_port(from.listener) else {
            return;
        };
        if port.counters.unhandled.fetch_add(1, Relaxed) == 0 {
            tracing::warn!(
                listener = from.listener,
                peer = %from.peer,
                len,
                "a datagram arrived but the handler has no on_packet: dropped and counted \
                 (Stats::packet_unhandled)"
            );
        }
    }
}
