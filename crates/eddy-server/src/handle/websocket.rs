//! WebSocket calls on any connection, from any thread: messages of a chosen opcode, raw
//! bytes past the protocol, and the close handshake.

use crate::{
    conn::{CloseReason, ConnId},
    error::{SendError, SendStatus},
    shared::ServerHandle,
    ws::{is_sendable_close_code, Opcode, WsStatus},
};

impl ServerHandle {
    /// Send one WebSocket text message. [`SendError::NotWebSocket`] on other connections,
    /// [`SendError::NotEstablished`] before the handshake is done.
    pub fn send_text(&self, conn: ConnId, text: impl AsRef<str>) -> Result<SendStatus, SendError> {
        self.send_opcode(conn, Opcode::Text, text.as_ref().as_bytes())
    }

    /// Send one WebSocket binary message.
    pub fn send_binary(
        &self,
        conn: ConnId,
        data: impl AsRef<[u8]>,
    ) -> Result<SendStatus, SendError> {
        self.send_opcode(conn, Opcode::Binary, data.as_ref())
    }

    /// Send one WebSocket message of `opcode` (Swoole's `push($fd, $data, $opcode)`).
    pub fn send_opcode(
        &self,
        conn: ConnId,
        opcode: Opcode,
        data: &[u8],
    ) -> Result<SendStatus, SendError> {
        let result = self.shared.outlet.send_ws(&self.conn(conn)?, opcode, data);
        if result.is_ok() {
            self.shared.stats.count_response(data.len());
        }
        result
    }

    /// Swoole's name for [`send`](Self::send) on a WebSocket: one message of the default
    /// opcode.
    pub fn push(&self, conn: ConnId, data: impl AsRef<[u8]>) -> Result<SendStatus, SendError> {
        self.send(conn, data)
    }

    /// Send bytes as they are, past the connection's protocol (Workerman's
    /// `send($data, true)`): on a WebSocket, bytes that must already be frames.
    pub fn send_raw(&self, conn: ConnId, data: impl AsRef<[u8]>) -> Result<SendStatus, SendError> {
        let data = data.as_ref();
        let result = self.shared.outlet.send_raw(&self.conn(conn)?, data);
        if result.is_ok() {
            self.shared.stats.count_response(data.len());
        }
        result
    }

    /// Close a WebSocket connection with a close frame (Swoole's `disconnect`): `code` 1000
    /// or 3000 to 4999 ([`SendError::InvalidCloseCode`] otherwise), `reason` cut to 123
    /// bytes. What is queued goes first; `on_close` then gets
    /// [`CloseReason::WebSocket`](crate::CloseReason::WebSocket) with this code.
    pub fn disconnect(&self, conn: ConnId, code: u16, reason: &str) -> Result<(), SendError> {
        if !is_sendable_close_code(code) {
            return Err(SendError::InvalidCloseCode(code));
        }
        let conn = self.conn(conn)?;
        let outlet = &self.shared.outlet;
        match conn.out.lock().ws.as_ref().map(|ws| ws.status) {
            None => return Err(SendError::NotWebSocket),
            Some(WsStatus::Handshaking) => return Err(SendError::NotEstablished),
            Some(WsStatus::Closing) => return Err(SendError::Closed),
            Some(WsStatus::Open) => {}
        }
        // Sent unless the socket broke meanwhile; the close goes ahead either way.
        outlet.send_close_frame(&conn, code, reason);
        let reason = reason.to_string();
        let by_peer = false;
        outlet.close(
            &conn,
            CloseReason::WebSocket {
                code,
                reason,
                by_peer,
            },
        )
    }

    /// Whether the connection is a WebSocket whose handshake is done and that is not closing
    /// (Swoole's `isEstablished`).
    pub fn is_established(&self, conn: ConnId) -> bool {
        self.shared.table.get(conn).is_some_and(|conn| {
            let out = conn.out.lock();
            out.ws
                .as_ref()
                .is_some_and(|ws| ws.status == WsStatus::Open)
        })
    }
}
