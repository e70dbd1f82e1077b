//! The transport: how a connection's bytes reach its socket, under the protocol layer.
//!
//! Today every connection is plain; TLS comes as another variant, whose session state lives
//! here behind the record so that the reactor (decrypting what it reads) and any sender
//! (encrypting what it writes) drive the same session.

use std::{io, os::fd::BorrowedFd};

use bytes::BytesMut;

use crate::sys;

/// The layer between a connection's socket and its protocol.
#[derive(Debug, Default)]
#[non_exhaustive]
pub(crate) enum Transport {
    /// Bytes as they are on the wire.
    #[default]
    Plain,
}

impl Transport {
    /// Read at most `max` bytes of the peer's plaintext into `buf`'s spare capacity; 0 at the
    /// end of the stream.
    #[inline]
    pub(crate) fn read(
        &self,
        fd: BorrowedFd<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> io::Result<usize> {
        match self {
            Transport::Plain => sys::read_into(fd, buf, max),
        }
    }

    /// Write plaintext; returns how much of `data` the transport took.
    #[inline]
    pub(crate) fn write(&self, fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => sys::send(fd, data),
        }
    }
}
