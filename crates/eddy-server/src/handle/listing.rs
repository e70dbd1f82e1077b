//! Walking the connections: `client_list` pages and iterators.

use std::sync::Arc;

use crate::{
    conn::{Conn, ConnId},
    shared::ServerHandle,
};

/// Where a walk over the connections stands (Swoole's `start_fd`, made opaque).
///
/// Start with [`Cursor::START`]; each page returns the cursor of the next. Walks go in slot
/// order, so one walk never returns a connection twice. A connection opened during a walk may
/// be missed; one closed during it may still be listed once, and a send to it then fails with
/// `Closed` or `NotFound`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Cursor(usize);

impl Cursor {
    /// The beginning of a walk.
    pub const START: Cursor = Cursor(0);
}

/// An iterator over the open connections, in slot order (see [`Cursor`] for what a walk sees).
#[derive(Debug)]
pub struct Connections<'a> {
    server: &'a ServerHandle,
    next: usize,
    listener: Option<usize>,
}

impl Iterator for Connections<'_> {
    type Item = ConnId;

    fn next(&mut self) -> Option<ConnId> {
        loop {
            let (slot, conn) = self.server.shared.table.next_from(self.next)?;
            self.next = slot + 1;
            if listed(&conn, self.listener) {
                return Some(conn.id);
            }
        }
    }
}

fn listed(conn: &Arc<Conn>, listener: Option<usize>) -> bool {
    listener.is_none_or(|l| conn.listener == l) && conn.is_open()
}

impl ServerHandle {
    /// Up to `limit` open connections from `cursor` on, and the cursor to continue from
    /// (Swoole's `getClientList`). A page is empty when the walk is done, never an error;
    /// `limit` 0 returns an empty page and the same cursor.
    ///
    /// ```no_run
    /// # fn demo(server: &eddy_server::ServerHandle) {
    /// use eddy_server::Cursor;
    /// let mut cursor = Cursor::START;
    /// loop {
    ///     let (page, next) = server.client_list(cursor, 100);
    ///     if page.is_empty() {
    ///         break;
    ///     }
    ///     for conn in page {
    ///         let _ = server.send(conn, b"hello\n");
    ///     }
    ///     cursor = next;
    /// }
    /// # }
    /// ```
    pub fn client_list(&self, cursor: Cursor, limit: usize) -> (Vec<ConnId>, Cursor) {
        let mut page = Vec::with_capacity(limit.min(1024));
        let mut next = cursor.0;
        while page.len() < limit {
            let Some((slot, conn)) = self.shared.table.next_from(next) else {
                break;
            };
            next = slot + 1;
            if listed(&conn, None) {
                page.push(conn.id);
            }
        }
        (page, Cursor(next))
    }

    /// Every open connection, lazily, in slot order (Swoole's `$server->connections`).
    pub fn connections(&self) -> Connections<'_> {
        Connections {
            server: self,
            next: 0,
            listener: None,
        }
    }

    /// The open connections of one listener (index in the order listeners were added).
    pub fn connections_on(&self, listener: usize) -> Connections<'_> {
        Connections {
            server: self,
            next: 0,
            listener: Some(listener),
        }
    }

    /// Connections (open or closing) accepted by one listener.
    pub fn connection_count_on(&self, listener: usize) -> usize {
        self.shared.table.len_on(listener)
    }
}
