//! The client side of [`Framing::WebSocket`](crate::Framing::WebSocket)
//! (RFC 6455, RFC 7692), written here rather than borrowed from the server
//! under test, so a bug shared by both ends cannot hide.
//!
//! * The handshake: [`upgrade_request`] with a random 16-byte key
//!   ([`new_key`]), then [`check_response`] wants `101`, `Upgrade`,
//!   `Connection` and the right `Sec-WebSocket-Accept` ([`accept_key`]), and
//!   reads the `permessage-deflate` answer when it was offered.
//!   [`handshake_all`] does that on many blocking sockets at once.
//! * Frames: the client masks every frame with a fresh key from a cheap
//!   xorshift generator ([`Rng`]), as browsers do
//!   ([`append_client_frame_with`]); the server's frames are unmasked.
//! * permessage-deflate: [`Deflater`] compresses what the client sends and
//!   [`Inflater`] inflates what the server sends (raw DEFLATE, sync flush,
//!   the `00 00 ff ff` trailer removed and restored), with zlib-rs through
//!   `flate2`.
//!
//! Echoes of uncompressed messages are checked byte for byte, frame header
//! included ([`EchoChecker`](crate::frame::EchoChecker)); compressed ones
//! frame by frame: the header checked, the payload inflated, then compared
//! with the body that was sent.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::LoadError;
use crate::frame::{fill_body, Fed, Mismatch, Payload};

/// FIN bit of a frame's first byte.
pub const FIN: u8 = 0x80;
/// RSV1 bit of a frame's first byte: the message is compressed (RFC 7692).
pub const RSV1: u8 = 0x40;
/// Opcode of a text frame.
pub const OPCODE_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OPCODE_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OPCODE_CLOSE: u8 = 0x8;
/// The mask bit of a frame's second byte.
pub const MASK_BIT: u8 = 0x80;
/// Longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER: usize = 14;
/// RFC 6455's GUID for `Sec-WebSocket-Accept`.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The tail of a sync flush, removed from every compressed message.
pub const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// zlib level of the client's compressor: the fastest, so the client, which
/// shares the machine with the server, spends as little as it can.
pub const CLIENT_LEVEL: u32 = 1;
/// Longest handshake response head accepted.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Header bytes of an unmasked frame with a payload of `payload` bytes.
pub const fn header_len(payload: usize) -> usize {
    if payload < 126 {
        2
    } else if payload <= 0xffff {
        4
    } else {
        10
    }
}

/// The payload length of an unmasked frame that is `frame` bytes long in
/// all, if there is one.
pub fn body_len_of_frame(frame: usize) -> Option<usize> {
    [2, 4, 10]
        .into_iter()
        .filter_map(|h| frame.checked_sub(h))
        .find(|&body| header_len(body) + body == frame)
}

/// Writes a frame header (without the mask key) for a payload of `len`
/// bytes into `out` and returns its length. `first` is the first byte (FIN,
/// RSV bits and opcode).
///
/// # Panics
///
/// Panics if `out` is shorter than [`header_len`]`(len)`.
pub fn write_header(first: u8, masked: bool, len: usize, out: &mut [u8]) -> usize {
    let mask = if masked { MASK_BIT } else { 0 };
    out[0] = first;
    if len < 126 {
        out[1] = mask | len as u8;
        2
    } else if len <= 0xffff {
        out[1] = mask | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = mask | 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A cheap xorshift64* generator for mask keys and handshake keys. Not for
/// secrets: masking only has to keep a payload from steering a proxy.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A generator seeded from the standard library's per-process random
    /// keys, mixed with `salt` (e.g. a connection id).
    pub fn from_entropy(salt: u64) -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(salt);
        Rng::new(hasher.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A fresh 4-byte mask key.
    pub fn mask(&mut self) -> [u8; 4] {
        ((self.next_u64() >> 32) as u32).to_ne_bytes()
    }
}

/// XORs `data` with `mask`, the first byte with `mask[0]` (RFC 6455 §5.3),
/// eight bytes at a time.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Appends a client frame to `out`: `first` (FIN, RSV bits, opcode), the
/// length with the mask bit, `mask`, then a payload of `len` bytes that
/// `fill` writes in the clear and that is then masked in place.
pub fn append_client_frame_with(
    first: u8,
    mask: [u8; 4],
    len: usize,
    out: &mut Vec<u8>,
    fill: impl FnOnce(&mut [u8]),
) {
    let start = out.len();
    let header = header_len(len);
    out.resize(start + header + 4 + len, 0);
    write_header(first, true, len, &mut out[start..]);
    out[start + header..start + header + 4].copy_from_slice(&mask);
    let payload = &mut out[start + header + 4..];
    fill(payload);
    apply_mask(payload, mask);
}

/// Appends a client frame carrying `payload`, masked with `mask`.
pub fn append_client_frame(first: u8, mask: [u8; 4], payload: &[u8], out: &mut Vec<u8>) {
    append_client_frame_with(first, mask, payload.len(), out, |p| {
        p.copy_from_slice(payload)
    });
}

/// A random `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key(rng: &mut Rng) -> String {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&rng.next_u64().to_ne_bytes());
    key[8..].copy_from_slice(&rng.next_u64().to_ne_bytes());
    BASE64.encode(key)
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.digest().bytes())
}

/// The upgrade request for `host` (`Host` header) with `key`, offering
/// `permessage-deflate; client_max_window_bits` (as browsers do) when
/// `deflate`.
pub fn upgrade_request(host: &str, key: &str, deflate: bool) -> String {
    let mut request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if deflate {
        request
            .push_str("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
    }
    request.push_str("\r\n");
    request
}

/// What the server agreed to for permessage-deflate, as the client applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server compresses every message on its own.
    pub server_no_context_takeover: bool,
    /// The client must compress every message on its own.
    pub client_no_context_takeover: bool,
    /// The window the server compresses with (8 to 15).
    pub server_max_window_bits: u8,
    /// The largest window the client may compress with (8 to 15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// Checks a handshake response head (status line to the empty line, both
/// included) against the request's `key`. Returns the permessage-deflate
/// parameters when the server accepted the offer (`None` when it was not
/// made or declined), or why the response is not a valid `101`.
pub fn check_response(
    head: &[u8],
    key: &str,
    offered_deflate: bool,
) -> Result<Option<DeflateParams>, String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.split_whitespace();
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") || code != "101" {
        return Err(format!(
            "expected `101 Switching Protocols`, got {status:?}"
        ));
    }
    let (mut upgrade, mut connection, mut accept) = (false, false, None);
    let mut extensions = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line {line:?}"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade |= value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-accept" => accept = Some(value),
            "sec-websocket-extensions" => extensions.push(value),
            _ => {}
        }
    }
    if !upgrade {
        return Err("no `Upgrade: websocket` header".into());
    }
    if !connection {
        return Err("no `Connection: Upgrade` header".into());
    }
    let want = accept_key(key);
    match accept {
        None => return Err("no `Sec-WebSocket-Accept` header".into()),
        Some(got) if got != want => {
            return Err(format!(
                "`Sec-WebSocket-Accept: {got}` does not match the key (expected {want})"
            ))
        }
        Some(_) => {}
    }
    let mut deflate = None;
    for extension in extensions.iter().flat_map(|v| v.split(',')) {
        let mut params = extension.split(';').map(str::trim);
        let name = params.next().unwrap_or_default();
        if name != "permessage-deflate" || !offered_deflate {
            return Err(format!("the server chose extension {name:?}, not offered"));
        }
        if deflate.is_some() {
            return Err("permessage-deflate accepted twice".into());
        }
        deflate = Some(parse_deflate(params)?);
    }
    Ok(deflate)
}

/// The parameters of the server's permessage-deflate answer.
fn parse_deflate<'a>(params: impl Iterator<Item = &'a str>) -> Result<DeflateParams, String> {
    let mut p = DeflateParams::default();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let bits = || {
            value
                .and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
                .ok_or_else(|| format!("bad {name} value {value:?}"))
        };
        match name {
            "server_no_context_takeover" if value.is_none() => p.server_no_context_takeover = true,
            "client_no_context_takeover" if value.is_none() => p.client_no_context_takeover = true,
            "server_max_window_bits" => p.server_max_window_bits = bits()?,
            "client_max_window_bits" => p.client_max_window_bits = bits()?,
            other => return Err(format!("unknown permessage-deflate parameter {other:?}")),
        }
    }
    Ok(p)
}

/// Upgrades every one of `streams` (connected, blocking): sends all the
/// requests first, then reads and checks each answer, so the handshakes run
/// side by side. Connection `i` of the errors is the stream's index. Gives
/// up at `deadline`. Returns each connection's permessage-deflate
/// parameters (`None` when not offered or declined).
pub fn handshake_all(
    streams: &[TcpStream],
    host: &str,
    deflate: bool,
    deadline: Instant,
    rng: &mut Rng,
) -> Result<Vec<Option<DeflateParams>>, LoadError> {
    let io_err = |i: usize, source: io::Error| LoadError::Io {
        conn: Some(i as u32),
        source,
    };
    let keys: Vec<String> = streams.iter().map(|_| new_key(rng)).collect();
    for (i, (stream, key)) in streams.iter().zip(&keys).enumerate() {
        (&*stream)
            .write_all(upgrade_request(host, key, deflate).as_bytes())
            .map_err(|e| io_err(i, e))?;
    }
    let mut agreed = Vec::with_capacity(streams.len());
    for (i, (stream, key)) in streams.iter().zip(&keys).enumerate() {
        let fail = |reason: String| LoadError::Handshake {
            conn: i as u32,
            reason,
        };
        let head = read_head(stream, deadline).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => fail(e.to_string()),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                fail("no answer to the upgrade request before the connect deadline".into())
            }
            _ => io_err(i, e),
        })?;
        agreed.push(check_response(&head, key, deflate).map_err(fail)?);
    }
    Ok(agreed)
}

/// Reads a response head, up to and including its empty line, from a
/// blocking `stream`. Reading stops at the head's end; bytes after it in
/// the same read are an error (an echo server sends nothing before it is
/// sent something).
fn read_head(stream: &TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = match (&*stream).read(&mut buf) {
            Ok(0) => {
                break Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the handshake",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + end + 4;
            if end != head.len() {
                break Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} unexpected bytes after the 101 response",
                        head.len() - end
                    ),
                ));
            }
            break Ok(head);
        }
        if head.len() > MAX_RESPONSE_HEAD {
            break Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head longer than 8 KiB",
            ));
        }
    };
    stream.set_read_timeout(None)?;
    result
}

/// The client's compressor (RFC 7692 §7.2.1): raw DEFLATE, each message
/// ended by a sync flush whose trailing `00 00 ff ff` is removed.
pub struct Deflater {
    compress: Compress,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor at `level` within what `params` allow the client (a
    /// window of 8 bits is compressed with 9, which zlib never lets reach
    /// further back than 250 bytes).
    pub fn new(params: &DeflateParams, level: u32) -> Self {
        let bits = params.client_max_window_bits.clamp(9, 15);
        Deflater {
            compress: Compress::new_with_window_bits(Compression::new(level.min(9)), false, bits),
            no_context_takeover: params.client_no_context_takeover,
        }
    }

    /// Appends `input`, compressed, to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if input.is_empty() {
            // §7.2.3.6: an empty message is one empty stored block's first byte.
            out.push(0x00);
            return Ok(());
        }
        let start = out.len();
        let mut consumed = 0;
        out.reserve(input.len() / 2 + 64);
        loop {
            let (in_before, out_before) = (self.compress.total_in(), out.len());
            self.compress
                .compress_vec(&input[consumed..], out, FlushCompress::Sync)
                .map_err(|e| format!("deflate failed: {e}"))?;
            consumed += (self.compress.total_in() - in_before) as usize;
            // zlib returns with output space left only once the flush is done.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
            if self.compress.total_in() == in_before
                && out.len() == out_before
                && out.len() < out.capacity()
            {
                return Err("deflate made no progress".into());
            }
            out.reserve(out.capacity().max(256));
        }
        if out[start..].ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        if self.no_context_takeover {
            self.compress.reset();
        }
        Ok(())
    }
}

/// The client's decompressor for the server's messages (RFC 7692 §7.2.2).
pub struct Inflater {
    decompress: Decompress,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A decompressor for what the server sends under `params`. Its window
    /// is 15 bits, which reads every smaller window too.
    pub fn new(params: &DeflateParams) -> Self {
        Inflater {
            decompress: Decompress::new_with_window_bits(false, 15),
            no_context_takeover: params.server_no_context_takeover,
        }
    }

    /// Inflates one whole message's payload, appending to `out`, which it
    /// never lets grow past `max` bytes (an error if the message would).
    pub fn inflate(&mut self, payload: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), String> {
        let limit = out.len() + max;
        out.reserve_exact((limit + 1).saturating_sub(out.len()));
        let mut ended = false;
        for mut input in [payload, &TRAILER[..]] {
            while !ended {
                let (in_before, out_before) = (self.decompress.total_in(), out.len());
                let status = self
                    .decompress
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|e| format!("corrupt compressed echo: {e}"))?;
                if out.len() > limit {
                    return Err(format!("compressed echo inflates past {max} bytes"));
                }
                input = &input[(self.decompress.total_in() - in_before) as usize..];
                if status == Status::StreamEnd {
                    // A final block: the message ends here, the next starts afresh.
                    ended = true;
                } else if input.is_empty() && out.len() < out.capacity() {
                    break;
                } else if self.decompress.total_in() == in_before && out.len() == out_before {
                    return Err("inflate made no progress".into());
                }
            }
        }
        if ended || self.no_context_takeover {
            self.decompress.reset(false);
        }
        Ok(())
    }
}

/// Verifies the echo stream of one connection frame by frame when
/// permessage-deflate is on: each frame must be one whole binary message,
/// unmasked; a compressed payload (RSV1) is inflated, then every body is
/// compared with the one sent, in order.
#[derive(Debug)]
pub(crate) struct FrameChecker {
    payload: Payload,
    conn: u32,
    size: usize,
    seq: u64,
    /// The body of packet `seq`.
    expected: Vec<u8>,
    header: [u8; MAX_HEADER],
    have: usize,
    need: usize,
    /// Payload bytes of the current frame still to come.
    remaining: usize,
    frame_len: usize,
    compressed: bool,
    /// Bytes of an uncompressed payload verified so far.
    offset: usize,
    /// The compressed payload of the current frame.
    packed: Vec<u8>,
    inflated: Vec<u8>,
    inflater: Inflater,
    last_frame_len: usize,
}

impl FrameChecker {
    /// A checker for connection `conn`, packet 0 first.
    pub(crate) fn new(payload: Payload, conn: u32, size: usize, params: &DeflateParams) -> Self {
        let mut expected = vec![0; size];
        fill_body(payload, conn, 0, &mut expected);
        FrameChecker {
            payload,
            conn,
            size,
            seq: 0,
            expected,
            header: [0; MAX_HEADER],
            have: 0,
            need: 2,
            remaining: 0,
            frame_len: 0,
            compressed: false,
            offset: 0,
            packed: Vec::with_capacity(size / 2 + 64),
            inflated: Vec::with_capacity(size + 1),
            inflater: Inflater::new(params),
            last_frame_len: 0,
        }
    }

    /// Sequence number of the packet currently expected.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Wire length of the frame completed last.
    pub(crate) fn last_frame_len(&self) -> usize {
        self.last_frame_len
    }

    fn protocol(&self, reason: String) -> LoadError {
        LoadError::Protocol {
            conn: self.conn,
            reason: format!("packet seq {}: {reason}", self.seq),
        }
    }

    /// Verifies a prefix of `data`, up to the end of the current frame; call
    /// again on the rest. Completes at most one packet per call.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Fed, LoadError> {
        let mut used = 0;
        if self.have < self.need {
            let take = (self.need - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            used = take;
            if self.have == 2 {
                self.need = match self.header[1] & 0x7f {
                    126 => 4,
                    127 => 10,
                    _ => 2,
                };
                if self.need > 2 {
                    let more = (self.need - 2).min(data.len() - used);
                    self.header[2..2 + more].copy_from_slice(&data[used..used + more]);
                    self.have += more;
                    used += more;
                }
            }
            if self.have < self.need {
                return Ok(Fed {
                    consumed: used,
                    completed: None,
                });
            }
            self.start_frame()?;
        }
        let take = self.remaining.min(data.len() - used);
        let chunk = &data[used..used + take];
        if self.compressed {
            self.packed.extend_from_slice(chunk);
        } else {
            let want = &self.expected[self.offset..self.offset + take];
            if let Some(i) = want.iter().zip(chunk).position(|(a, b)| a != b) {
                return Err(self.mismatch(self.offset + i, chunk[i]));
            }
            self.offset += take;
        }
        self.remaining -= take;
        used += take;
        if self.remaining > 0 {
            return Ok(Fed {
                consumed: used,
                completed: None,
            });
        }
        if self.compressed {
            self.inflated.clear();
            let packed = std::mem::take(&mut self.packed);
            let inflated = self
                .inflater
                .inflate(&packed, &mut self.inflated, self.size);
            self.packed = packed;
            inflated.map_err(|reason| self.protocol(reason))?;
            if self.inflated.len() != self.size {
                return Err(self.protocol(format!(
                    "the echo inflates to {} bytes, {} were sent",
                    self.inflated.len(),
                    self.size
                )));
            }
            if let Some(i) = self
                .expected
                .iter()
                .zip(&self.inflated)
                .position(|(a, b)| a != b)
            {
                return Err(self.mismatch(i, self.inflated[i]));
            }
        }
        let done = self.seq;
        self.seq += 1;
        fill_body(self.payload, self.conn, self.seq, &mut self.expected);
        self.last_frame_len = self.frame_len;
        self.have = 0;
        self.need = 2;
        Ok(Fed {
            consumed: used,
            completed: Some(done),
        })
    }

    /// Checks a complete header and gets ready for its payload.
    fn start_frame(&mut self) -> Result<(), LoadError> {
        let (b0, b1) = (self.header[0], self.header[1]);
        let len = match self.need {
            2 => u64::from(b1 & 0x7f),
            4 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            _ => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(bytes)
            }
        };
        let opcode = b0 & 0x0f;
        if opcode == OPCODE_CLOSE {
            return Err(self.protocol("the server sent a close frame".into()));
        }
        if opcode != OPCODE_BINARY {
            return Err(self.protocol(format!("expected a binary frame, got opcode {opcode:#x}")));
        }
        if b0 & FIN == 0 {
            return Err(self.protocol("the echo is fragmented (FIN not set)".into()));
        }
        if b0 & 0x30 != 0 {
            return Err(self.protocol("RSV2 or RSV3 set".into()));
        }
        if b1 & MASK_BIT != 0 {
            return Err(self.protocol("the server masked its frame".into()));
        }
        self.compressed = b0 & RSV1 != 0;
        // Incompressible data grows by a few bytes per 16 KiB block.
        let limit = if self.compressed {
            self.size + self.size / 8 + 1024
        } else {
            self.size
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > limit || (!self.compressed && len != self.size) {
            return Err(self.protocol(format!(
                "a {}frame of {len} bytes echoes a {}-byte message",
                if self.compressed { "compressed " } else { "" },
                self.size
            )));
        }
        self.remaining = len;
        self.frame_len = self.need + len;
        self.offset = 0;
        self.packed.clear();
        Ok(())
    }

    fn mismatch(&self, offset: usize, got: u8) -> LoadError {
        LoadError::Mismatch(Mismatch {
            conn: self.conn,
            seq: self.seq,
            offset,
            packet_len: self.size,
            expected: self.expected[offset],
            got,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{append_packet_with, Framing};

    #[test]
    fn rfc_6455_accept_key() {
        // §1.3's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_are_16_random_bytes() {
        let mut rng = Rng::from_entropy(1);
        let (a, b) = (new_key(&mut rng), new_key(&mut rng));
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(&a).map(|k| k.len()), Ok(16));
    }

    #[test]
    fn headers_and_lengths() {
        for len in [0, 1, 125, 126, 65535, 65536, 1 << 20] {
            let mut h = [0u8; 10];
            let n = write_header(FIN | OPCODE_BINARY, false, len, &mut h);
            assert_eq!(n, header_len(len));
            assert_eq!(body_len_of_frame(n + len), Some(len));
        }
        assert_eq!(body_len_of_frame(128), None);
        assert_eq!(body_len_of_frame(1), None);
    }

    #[test]
    fn masking_matches_the_rfc_example_and_round_trips() {
        // §5.7: a masked "Hello".
        let mut out = Vec::new();
        append_client_frame(
            FIN | OPCODE_TEXT,
            [0x37, 0xfa, 0x21, 0x3d],
            b"Hello",
            &mut out,
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        let mut rng = Rng::new(7);
        for len in [0, 3, 8, 13, 4096] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mask = rng.mask();
            let mut masked = data.clone();
            apply_mask(&mut masked, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(masked, slow);
            apply_mask(&mut masked, mask);
            assert_eq!(masked, data);
        }
    }

    #[test]
    fn fresh_mask_per_call() {
        let mut rng = Rng::new(0);
        let masks: std::collections::HashSet<[u8; 4]> = (0..1000).map(|_| rng.mask()).collect();
        assert!(masks.len() > 990);
    }

    fn response(key: &str, extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
            accept_key(key)
        )
        .into_bytes()
    }

    #[test]
    fn checks_the_response() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        assert_eq!(check_response(&response(key, ""), key, false), Ok(None));
        assert_eq!(check_response(&response(key, ""), key, true), Ok(None));
        let ext = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                   client_max_window_bits=10\r\n";
        let p = check_response(&response(key, ext), key, true)
            .expect("valid")
            .expect("deflate");
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (15, 10)
        );
        assert!(check_response(&response(key, ext), key, false).is_err());
        assert!(check_response(&response("other", ""), key, false)
            .unwrap_err()
            .contains("does not match"));
        let bad = b"HTTP/1.1 426 Upgrade Required\r\n\r\n";
        assert!(check_response(bad, key, false).unwrap_err().contains("426"));
        let odd = "Sec-WebSocket-Extensions: permessage-deflate; x=1\r\n";
        assert!(check_response(&response(key, odd), key, true).is_err());
        let request = upgrade_request("127.0.0.1:1", key, true);
        assert!(request.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(request.contains("permessage-deflate; client_max_window_bits\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
    }

    /// A server's frames for `bodies`, compressed with `compress`.
    fn server_frames(bodies: &[Vec<u8>], compress: Option<&mut Deflater>) -> Vec<u8> {
        let mut stream = Vec::new();
        let mut compress = compress;
        for body in bodies {
            let (first, payload) = match compress.as_deref_mut() {
                Some(d) => {
                    let mut packed = Vec::new();
                    d.compress(body, &mut packed).expect("compress");
                    (FIN | RSV1 | OPCODE_BINARY, packed)
                }
                None => (FIN | OPCODE_BINARY, body.clone()),
            };
            let mut header = [0u8; 10];
            let n = write_header(first, false, payload.len(), &mut header);
            stream.extend_from_slice(&header[..n]);
            stream.extend_from_slice(&payload);
        }
        stream
    }

    fn bodies(conn: u32, n: u64, size: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|seq| {
                let mut b = vec![0; size];
                fill_body(Payload::Json, conn, seq, &mut b);
                b
            })
            .collect()
    }

    fn feed_all(c: &mut FrameChecker, data: &[u8], chunk: usize) -> Result<Vec<u64>, LoadError> {
        let mut done = Vec::new();
        for mut part in data.chunks(chunk) {
            while !part.is_empty() {
                let fed = c.feed(part)?;
                part = &part[fed.consumed..];
                done.extend(fed.completed);
            }
        }
        Ok(done)
    }

    #[test]
    fn frame_checker_inflates_and_verifies_in_any_chunking() {
        for (params, size) in [
            (DeflateParams::default(), 4096),
            (
                DeflateParams {
                    server_no_context_takeover: true,
                    ..DeflateParams::default()
                },
                64,
            ),
            (DeflateParams::default(), 70_000),
        ] {
            let sent = bodies(3, 6, size);
            let server = DeflateParams {
                client_no_context_takeover: params.server_no_context_takeover,
                ..params
            };
            let stream = server_frames(&sent, Some(&mut Deflater::new(&server, 1)));
            for chunk in [1, 7, 200, 100_000] {
                let mut c = FrameChecker::new(Payload::Json, 3, size, &params);
                let done = feed_all(&mut c, &stream, chunk).expect("valid echo");
                assert_eq!(done, (0..6).collect::<Vec<_>>());
                assert_eq!(c.next_seq(), 6);
            }
            // Uncompressed frames are fine too (a server may skip small messages).
            let plain = server_frames(&sent, None);
            let mut c = FrameChecker::new(Payload::Json, 3, size, &params);
            assert_eq!(feed_all(&mut c, &plain, 333).map(|d| d.len()).ok(), Some(6));
            assert_eq!(c.last_frame_len(), header_len(size) + size);
        }
    }

    #[test]
    fn frame_checker_catches_corruption_and_foreign_frames() {
        let params = DeflateParams::default();
        let sent = bodies(1, 2, 500);
        let mut stream = server_frames(&sent, None);
        stream[4 + 500 + 100] ^= 0x01;
        let mut c = FrameChecker::new(Payload::Json, 1, 500, &params);
        match feed_all(&mut c, &stream, 64) {
            Err(LoadError::Mismatch(m)) => assert_eq!((m.seq, m.offset), (1, 96)),
            other => panic!("expected a mismatch, got {other:?}"),
        }
        let mut c = FrameChecker::new(Payload::Json, 1, 500, &params);
        let close = [FIN | OPCODE_CLOSE, 2, 0x03, 0xe8];
        assert!(matches!(
            feed_all(&mut c, &close, 10),
            Err(LoadError::Protocol { .. })
        ));
        // A compressed echo of the wrong body.
        let other = bodies(2, 1, 500);
        let stream = server_frames(
            &other,
            Some(&mut Deflater::new(&DeflateParams::default(), 1)),
        );
        let mut c = FrameChecker::new(Payload::Json, 1, 500, &params);
        assert!(matches!(
            feed_all(&mut c, &stream, 1000),
            Err(LoadError::Mismatch(_))
        ));
    }

    #[test]
    fn client_frames_carry_the_packet_body() {
        // What the server unmasks is the body the echo checker expects.
        let mut expected = Vec::new();
        append_packet_with(
            Framing::WebSocket,
            Payload::Pattern,
            4,
            9,
            300,
            &mut expected,
        );
        let mut frame = Vec::new();
        append_client_frame_with(FIN | OPCODE_BINARY, [1, 2, 3, 4], 300, &mut frame, |p| {
            fill_body(Payload::Pattern, 4, 9, p)
        });
        assert_eq!(frame.len(), expected.len() + 4);
        assert_eq!(frame[1], MASK_BIT | 126);
        let mut payload = frame[8..].to_vec();
        apply_mask(&mut payload, [1, 2, 3, 4]);
        assert_eq!(&payload[..], &expected[4..]);
        assert_eq!(&expected[..4], &[0x82, 126, 1, 44]);
    }
}
