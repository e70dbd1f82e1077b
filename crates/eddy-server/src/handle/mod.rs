//! [`ServerHandle`]'s methods, by topic: this file the connections (send, close, bind, look
//! up); `control` the server (reload, commands, messages, tasks, shutdown); `broadcast`,
//! `groups`, `presence`, `listing`, `flow`, `info`, `stats` and `websocket` the rest.
//!
//! The public surface over `shared`, used by the worker's `Context` and by any
//! thread that holds a handle.

mod broadcast;
mod control;
mod datagram;
mod flow;
mod groups;
pub(crate) mod info;
mod listing;
mod presence;
mod sendfile;
mod stats;
mod websocket;

pub use broadcast::{Delivery, Target};
pub use info::{ClientInfo, PeerCredentials};
pub use listing::{Connections, Cursor};
pub use stats::Stats;

use std::sync::Arc;

use crate::{
    conn::{CloseReason, Conn, ConnId, Uid},
    error::{SendError, SendStatus},
    net::ListenAddr,
    shared::ServerHandle,
};

impl ServerHandle {
    /// The record of an id in the table, or `NotFound`.
    pub(crate) fn conn(&self, conn: ConnId) -> Result<Arc<Conn>, SendError> {
        self.shared.table.get(conn).ok_or(SendError::NotFound)
    }

    /// Send bytes to a connection, from any thread.
    ///
    /// When nothing is queued for the connection the bytes are written straight to the socket
    /// ([`SendStatus::Sent`]); whatever the kernel does not take is queued in the connection's
    /// output buffer and flushed by its reactor ([`SendStatus::Queued`]). Bytes on one
    /// connection never reorder: once anything is queued, later sends queue behind it. A
    /// message that does not fit under `socket_buffer_size` is refused whole
    /// ([`SendError::BufferFull`]), as is one on a closing or closed connection.
    pub fn send(&self, conn: ConnId, data: impl AsRef<[u8]>) -> Result<SendStatus, SendError> {
        let data = data.as_ref();
        let result = self.shared.outlet.send(&self.conn(conn)?, data);
        if result.is_ok() {
            self.shared.stats.count_response(data.len());
        }
        result
    }

    /// Frame `body` with the codec of the connection's listener (its length header or
    /// delimiter), then [`send`](Self::send) it: Workerman's `send($data)`, where `send` is
    /// `send($data, true)`. [`SendError::Unframable`] if the codec cannot frame it.
    pub fn send_framed(
        &self,
        conn: ConnId,
        body: impl AsRef<[u8]>,
    ) -> Result<SendStatus, SendError> {
        let body = body.as_ref();
        let result = self.shared.outlet.send_framed(&self.conn(conn)?, body);
        if result.is_ok() {
            self.shared.stats.count_response(body.len());
        }
        result
    }

    /// Close a connection once its queued output is flushed. Packets it sent that no worker
    /// has handled yet are dropped. `on_close` follows with [`CloseReason::ServerClosed`].
    /// If the peer never reads, the flush cannot finish: [`close_reset`](Self::close_reset),
    /// or the heartbeat (for a connection not [`protect`](Self::protect)ed), ends such a
    /// close.
    ///
    /// A TLS connection still in its handshake closes at once if nothing is queued for it.
    /// What was queued can only be encrypted once the handshake ends: the handshake goes on,
    /// the queued bytes go out, then the close (no `on_connect` and no `on_close`: the handler
    /// never saw it connect). The handshake timeout bounds the wait for the handshake; the
    /// flush after it is bounded as any close's is.
    ///
    /// [`CloseReason::ServerClosed`]: crate::CloseReason::ServerClosed
    pub fn close(&self, conn: ConnId) -> Result<(), SendError> {
        self.shared
            .outlet
            .close(&self.conn(conn)?, CloseReason::ServerClosed)
    }

    /// Close a connection at once with a TCP reset, dropping its queued output.
    pub fn close_reset(&self, conn: ConnId) -> Result<(), SendError> {
        self.shared
            .outlet
            .close(&self.conn(conn)?, CloseReason::ServerReset)
    }

    /// Whether the id names a connection that is open (not closing, not closed).
    pub fn exists(&self, conn: ConnId) -> bool {
        self.shared
            .table
            .get(conn)
            .is_some_and(|conn| conn.is_open())
    }

    /// Bind a connection to a user id (Swoole's `bind`).
    ///
    /// A connection may be bound again; the latest uid wins. In a cluster the binding is
    /// registered in presence (asynchronously: other nodes find it within a moment), and
    /// removed when the connection is unbound or closes. With
    /// [`DispatchMode::Uid`](crate::DispatchMode::Uid) the new worker takes over at the next
    /// packet boundary where no event of the connection is in flight, so its events never run
    /// on two workers at once and never reorder.
    pub fn bind(&self, conn: ConnId, uid: impl Into<Uid>) -> Result<(), SendError> {
        self.shared.uids.bind(&*self.conn(conn)?, Some(uid.into()))
    }

    /// What is known of a connection, or `None` for an unknown or stale id.
    pub fn client_info(&self, conn: ConnId) -> Option<ClientInfo> {
        self.shared
            .table
            .get(conn)
            .map(|conn| ClientInfo::of(&conn, &self.shared))
    }

    /// Connections currently open or closing.
    pub fn connection_count(&self) -> usize {
        self.shared.table.len()
    }

    /// The bound address of each listener, in the order they were added (with the real port
    /// when port 0 was asked for).
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.shared.local_addrs
    }

    /// Number of worker threads.
    pub fn worker_num(&self) -> usize {
        self.shared.config.worker_num
    }

    /// Number of reactor threads.
    pub fn reactor_num(&self) -> usize {
        self.shared.config.reactor_num
    }
}
