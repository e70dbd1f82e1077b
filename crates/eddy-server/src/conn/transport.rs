//! The transport: how a connection's bytes reach its socket, under the protocol layer.
//!
//! A plain connection's bytes are as they are on the wire. A TLS connection's session lives
//! in its output (`Output::tls`), behind the record's lock, so the reactor (decrypting what
//! it reads) and any sender (encrypting what it writes) drive the same session in turn.

/// The layer between a connection's socket and its protocol, fixed at accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Bytes as they are on the wire.
    #[default]
    Plain,
    /// TLS, through the session in the connection's output.
    Tls,
}
