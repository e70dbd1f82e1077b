//! What a callback can do: send, close, bind, look up, reach the server.

use std::sync::Arc;

use crate::{
    conn::Conn, ClientInfo, CloseReason, ConnId, SendError, SendStatus, ServerHandle, Uid,
};

/// The context handed to every worker callback.
///
/// It sends to and closes connections (the one the event is about, with no table lookup, or
/// any other by id), and reaches the whole server through [`Context::server`].
#[derive(Debug)]
pub struct Context<'a> {
    server: &'a ServerHandle,
    worker_id: usize,
    current: Option<&'a Arc<Conn>>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        server: &'a ServerHandle,
        worker_id: usize,
        current: Option<&'a Arc<Conn>>,
    ) -> Self {
        Context {
            server,
            worker_id,
            current,
        }
    }

    fn conn(&self, conn: ConnId) -> Option<Arc<Conn>> {
        match self.current {
            Some(current) if current.id == conn => Some(current.clone()),
            _ => self.server.shared.table.get(conn),
        }
    }

    /// This worker's id, `0..worker_num`.
    pub fn worker_id(&self) -> usize {
        self.worker_id
    }

    /// The server, to reach anything beyond this event.
    pub fn server(&self) -> &'a ServerHandle {
        self.server
    }

    /// Send bytes to a connection. See [`ServerHandle::send`].
    pub fn send(&self, conn: ConnId, data: impl AsRef<[u8]>) -> Result<SendStatus, SendError> {
        let data = data.as_ref();
        let result = match self.current {
            Some(current) if current.id == conn => current.send(data, &self.server.shared),
            _ => {
                let conn = self
                    .server
                    .shared
                    .table
                    .get(conn)
                    .ok_or(SendError::NotFound)?;
                conn.send(data, &self.server.shared)
            }
        };
        if result.is_ok() {
            self.server.shared.stats.workers[self.worker_id].count_response(data.len());
        }
        result
    }

    /// Frame `body` with the listener's codec and send it. See [`ServerHandle::send_framed`].
    pub fn send_framed(
        &self,
        conn: ConnId,
        body: impl AsRef<[u8]>,
    ) -> Result<SendStatus, SendError> {
        let body = body.as_ref();
        let conn = self.conn(conn).ok_or(SendError::NotFound)?;
        let result = conn.send_framed(body, &self.server.shared);
        if result.is_ok() {
            self.server.shared.stats.workers[self.worker_id].count_response(body.len());
        }
        result
    }

    /// Close a connection after flushing its queued output. See [`ServerHandle::close`].
    pub fn close(&self, conn: ConnId) -> Result<(), SendError> {
        let conn = self.conn(conn).ok_or(SendError::NotFound)?;
        conn.close(CloseReason::ServerClosed, &self.server.shared)
    }

    /// Close a connection at once with a reset, dropping queued output.
    pub fn close_reset(&self, conn: ConnId) -> Result<(), SendError> {
        let conn = self.conn(conn).ok_or(SendError::NotFound)?;
        conn.close(CloseReason::ServerReset, &self.server.shared)
    }

    /// Bind a connection to a user id. See [`ServerHandle::bind`].
    pub fn bind(&self, conn: ConnId, uid: impl Into<Uid>) -> Result<(), SendError> {
        let conn = self.conn(conn).ok_or(SendError::NotFound)?;
        conn.bind(Some(uid.into()), &self.server.shared.uids)
    }

    /// Whether the connection is open. See [`ServerHandle::exists`].
    pub fn exists(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|conn| conn.is_open())
    }

    /// What is known of a connection; answers inside `on_close` too.
    pub fn client_info(&self, conn: ConnId) -> Option<ClientInfo> {
        self.conn(conn)
            .map(|conn| ClientInfo::of(&conn, &self.server.shared))
    }
}
