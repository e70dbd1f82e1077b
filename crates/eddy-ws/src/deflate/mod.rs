//! RFC 7692 permessage-deflate: negotiate it in the handshake, then compress and inflate
//! whole messages, one [`Deflater`] and one [`Inflater`] per connection.
//!
//! The backend is zlib-rs (pure Rust, through flate2), which takes window bits: every
//! `server_max_window_bits` and `client_max_window_bits` from 8 to 15 is accepted. zlib-rs
//! compresses a window of 8 with 9 bits, as zlib does, which never refers back more than 250
//! bytes, so a client's 256-byte window reads it ([`MIN_WINDOW_BITS`]).

mod codec;
mod negotiate;

pub use codec::{Deflater, Inflater, MIN_WINDOW_BITS, TRAILER};
pub use negotiate::{negotiate, EXTENSION_NAME};

/// What a server accepts of permessage-deflate (Swoole's `websocket_compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Whether to accept offers at all. Default `false`, as in Swoole.
    pub enabled: bool,
    /// The largest window the server compresses with, 8 to 15. Default 15 (32 KiB).
    pub server_max_window_bits: u8,
    /// The largest window the server asks clients to compress with, 8 to 15, when the client
    /// offers `client_max_window_bits`. Default 15.
    pub client_max_window_bits: u8,
    /// Compress every message on its own, whatever the client offers (costs ratio).
    /// Default `false`.
    pub server_no_context_takeover: bool,
    /// Ask clients to compress every message on its own. Default `false`.
    pub client_no_context_takeover: bool,
    /// Messages shorter than this are sent uncompressed. Default 32 bytes.
    pub min_compress_size: usize,
    /// zlib's compression level, 0 to 9. Default 1 (fastest).
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            enabled: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            min_compress_size: 32,
            level: 1,
        }
    }
}

/// What the handshake settled for one connection (from [`negotiate`]).
///
/// [`Default`] is RFC 7692's defaults: windows of 15 bits, context takeover both ways, every
/// message compressed, level 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server compresses every message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses every message on its own (the server's inflater resets).
    pub client_no_context_takeover: bool,
    /// The window the server compresses with, 8 to 15.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with: the server's inflater window.
    pub client_max_window_bits: u8,
    /// Messages shorter than this are sent uncompressed.
    pub min_compress_size: usize,
    /// zlib's compression level, 0 to 9.
    pub level: u32,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            min_compress_size: 0,
            level: 1,
        }
    }
}

impl DeflateParams {
    /// The compressor for the messages the server sends.
    pub fn deflater(&self) -> Deflater {
        Deflater::new(
            self.server_max_window_bits,
            self.level,
            self.server_no_context_takeover,
        )
    }

    /// The decompressor for the messages the client sends.
    pub fn inflater(&self) -> Inflater {
        Inflater::new(self.client_max_window_bits, self.client_no_context_takeover)
    }
}
