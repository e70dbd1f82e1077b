//! The datagram listeners a reactor reads, and its buffers for them.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;

use crate::{
    net::{ListenAddr, Received},
    shared::DatagramPort,
};

/// How soon a unix datagram queue that met a full peer is tried again; doubled at each
/// retry that sends nothing, up to [`UNIX_RETRY_MAX`] (a peer that stopped reading costs a
/// wake-up a second, not 200), and back to this when a flush sends or a send asks for one.
pub(super) const UNIX_RETRY: Duration = Duration::from_millis(5);

/// The longest wait between two retries of a unix datagram queue.
pub(super) const UNIX_RETRY_MAX: Duration = Duration::from_secs(1);

/// A reactor's datagram sockets and what reading them needs.
#[derive(Debug, Default)]
pub(super) struct Datagrams {
    pub(super) ports: Vec<Arc<DatagramPort>>,
    /// Each port's local port (for `PacketInfo::server_port`).
    pub(super) server_ports: Vec<u16>,
    /// Whether the poller watches each port for writability (its send queue is not empty).
    pub(super) writing: Vec<bool>,
    /// Stopped reading (shutdown).
    pub(super) stopped: bool,
    pub(super) block: BytesMut,
    pub(super) received: Vec<Received>,
    /// When to retry unix datagram queues that met a full peer (they cannot wait for
    /// writability).
    pub(super) retry_at: Option<Instant>,
    /// How long the next retry waits (see `UNIX_RETRY`).
    pub(super) retry_delay: Duration,
}

impl Datagrams {
    /// The ports of `all` this reactor owns.
    pub(super) fn new(reactor: usize, all: &[Option<Arc<DatagramPort>>]) -> Self {
        let ports: Vec<_> = all
            .iter()
            .flatten()
            .filter(|port| port.reactor == reactor)
            .cloned()
            .collect();
        let server_ports = ports
            .iter()
            .map(|p| match p.socket.local_addr() {
                Ok(ListenAddr::Udp(addr)) => addr.port(),
                _ => 0,
            })
            .collect();
        Datagrams {
            writing: vec![false; ports.len()],
            ports,
            server_ports,
            retry_delay: UNIX_RETRY,
            ..Datagrams::default()
        }
    }

    /// Whether every send queue is empty (a shutdown may end).
    pub(super) fn drained(&self) -> bool {
        self.ports.iter().all(|port| port.queued().0 == 0)
    }

    /// Drop what the send queues hold (the shutdown deadline passed); returns the bytes.
    pub(super) fn discard(&self) -> usize {
        self.ports.iter().map(|port| port.discard()).sum()
    }
}
