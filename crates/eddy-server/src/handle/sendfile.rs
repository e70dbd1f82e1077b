//! `sendfile` and `sendwait`: a file's bytes zero-copy, and a send that waits for the kernel.

use std::{fs::File, path::Path, sync::Arc, time::Duration};

use crate::{
    conn::ConnId,
    error::{SendError, SendFileError, SendStatus},
    shared::ServerHandle,
};

impl ServerHandle {
    /// Send `len` bytes of the file at `path` from `offset` (to its end when `len` is
    /// `None`) to a connection, zero-copy with `sendfile(2)` (Swoole's `sendfile`), from any
    /// thread. The range goes out in order behind what is already queued, and anything sent
    /// later goes behind it; it counts in the output watermarks (a slow reader is paused, as
    /// for any output) but takes no memory. A file that cannot be opened, or a range past its
    /// end, is refused at once with the reason; a file that shrinks while it is being sent
    /// closes the connection with that error, never hangs it. The caller writes at most the
    /// first MiB itself (`SendStatus::Queued` tells what is left); the connection's reactor
    /// writes the rest, a MiB a turn, between its other connections' events.
    pub fn sendfile(
        &self,
        conn: ConnId,
        path: impl AsRef<Path>,
        offset: u64,
        len: Option<u64>,
    ) -> Result<SendStatus, SendFileError> {
        let file = File::open(path).map_err(|err| SendFileError::Io(err.kind()))?;
        self.sendfile_from(conn, file, offset, len)
    }

    /// [`sendfile`](Self::sendfile) from a file already open.
    pub fn sendfile_from(
        &self,
        conn: ConnId,
        file: File,
        offset: u64,
        len: Option<u64>,
    ) -> Result<SendStatus, SendFileError> {
        let meta = file
            .metadata()
            .map_err(|err| SendFileError::Io(err.kind()))?;
        if !meta.is_file() {
            return Err(SendFileError::NotAFile);
        }
        let file_len = meta.len();
        let len = len.unwrap_or(file_len.saturating_sub(offset));
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(SendFileError::OutOfRange {
                offset,
                len,
                file_len,
            });
        }
        let conn = self.conn(conn)?;
        let status = self
            .shared
            .outlet
            .send_file(&conn, Arc::new(file), offset, len)?;
        self.shared.stats.count_response(len as usize);
        Ok(status)
    }

    /// Send `data` (as [`send`](Self::send) does), then block the calling thread until it is
    /// in the kernel's socket buffer, or `timeout` passes (Swoole's `sendwait`):
    /// [`SendError::TimedOut`] then, and the bytes stay queued. A timeout too long for a
    /// deadline (`Duration::MAX`) waits as long as it takes (or until the connection closes). Refused with
    /// [`SendError::OnReactor`] on a reactor thread (a handler in `DispatchMode::Reactor`),
    /// which is the thread that would flush them.
    pub fn sendwait(
        &self,
        conn: ConnId,
        data: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<SendStatus, SendError> {
        let data = data.as_ref();
        let result = self
            .shared
            .outlet
            .send_wait(&self.conn(conn)?, data, timeout);
        // Timed out, the bytes are queued all the same: they count as sent.
        if matches!(result, Ok(_) | Err(SendError::TimedOut)) {
            self.shared.stats.count_response(data.len());
        }
        result
    }
}
