//! Packet encoding and echo verification.
//!
//! Every packet carries a body of `size` bytes that depends on the
//! connection id and the packet's per-connection sequence number, so a
//! reordered, duplicated, truncated or corrupted echo is detected byte by
//! byte. Bodies are printable ASCII and never contain `\n`, so the same
//! bodies serve every framing.
//!
//! Body layout: a tag `s<seq:x>c<conn:x> ` (lowercase hex without leading
//! zeros, truncated when the body is shorter), the rest depends on the
//! [`Payload`]: by default a rotating 64-symbol alphabet whose phase is a
//! hash of `(conn, seq)` (it compresses to almost nothing), or with
//! [`Payload::Json`] a slice of JSON-like text, partly compressible, at an
//! offset that is a hash of `(conn, seq)`. Even an 8-byte body carries the
//! low digits of the sequence number; an empty body (length framing only)
//! cannot be told apart and is checked for framing only.
//!
//! With [`Framing::WebSocket`], [`write_packet`] writes the frame the
//! server must echo (unmasked, binary); the client sends the same body in
//! a masked frame ([`crate::ws`]).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::Serialize;

use crate::ws;

/// Size of the big-endian length header used by [`Framing::Length`].
pub const LENGTH_HEADER: usize = 4;

/// Leading sequence-number bytes of a [`Framing::Udp`] datagram.
pub const UDP_SEQ_LEN: usize = 8;

/// Largest [`Framing::Udp`] datagram (the IPv4 UDP payload limit).
pub const MAX_DATAGRAM: usize = 65_507;

/// Largest body size the generator accepts (16 MiB).
pub const MAX_BODY: usize = 16 << 20;

/// Longest `s<seq>c<conn> ` tag at the start of each body.
const TAG_LEN: usize = 27;

/// Filler alphabet, twice, so any 64-byte rotation is a contiguous slice.
const FILL2: &[u8; 128] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\
ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// How packets are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// A 4-byte big-endian body length, then the body. The server echoes
    /// the whole packet, header included.
    Length,
    /// The body followed by `\n`. The server echoes the whole line.
    Line,
    /// WebSocket (RFC 6455): each connection upgrades with an HTTP/1.1
    /// handshake, then sends every body as one binary message in a frame
    /// masked with a fresh random key, as browsers do; the server echoes
    /// it as one unmasked binary frame (compressed, with
    /// [`LoadConfig::deflate`](crate::LoadConfig::deflate)).
    #[serde(rename = "ws")]
    WebSocket,
    /// UDP datagrams: each "connection" is a connected UDP socket and each
    /// packet one datagram of exactly `size` bytes, an 8-byte big-endian
    /// sequence number ([`UDP_SEQ_LEN`]) then the body; the server sends
    /// the datagram back as it came. Datagrams may be lost: one not
    /// answered within [`LoadConfig::udp_timeout`](crate::LoadConfig::udp_timeout)
    /// counts as lost and a new one takes its place.
    Udp,
}

impl Framing {
    /// Bytes on the wire for one echoed packet with a body of `body` bytes.
    /// For [`Framing::WebSocket`] that is the server's unmasked frame; the
    /// client's masked frame is 4 bytes longer.
    pub const fn packet_len(self, body: usize) -> usize {
        match self {
            Framing::Length => LENGTH_HEADER + body,
            Framing::Line => body + 1,
            Framing::WebSocket => ws::header_len(body) + body,
            Framing::Udp => body,
        }
    }

    /// The lowercase name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Framing::Length => "length",
            Framing::Line => "line",
            Framing::WebSocket => "ws",
            Framing::Udp => "udp",
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown framing name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFraming(pub String);

impl fmt::Display for UnknownFraming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown framing {:?} (expected `length`, `line`, `ws` or `udp`)",
            self.0
        )
    }
}

impl std::error::Error for UnknownFraming {}

impl FromStr for Framing {
    type Err = UnknownFraming;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "length" => Ok(Framing::Length),
            "line" => Ok(Framing::Line),
            "ws" | "websocket" => Ok(Framing::WebSocket),
            "udp" => Ok(Framing::Udp),
            other => Err(UnknownFraming(other.to_owned())),
        }
    }
}

/// What fills a body after its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// A rotating 64-symbol alphabet: cheap, and compresses to almost
    /// nothing.
    #[default]
    Pattern,
    /// JSON-like records (ids, names, timestamps, prices, flags) with
    /// pseudo-random values, as an API or a chat sends: partly
    /// compressible (DEFLATE level 1 makes 4 KiB of it about a third as
    /// long). Each body is a slice of a fixed 1 MiB text at an offset
    /// hashed from `(conn, seq)`.
    Json,
}

impl Payload {
    /// The lowercase name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Payload::Pattern => "pattern",
            Payload::Json => "json",
        }
    }

    /// Whether this is the default payload (for leaving it out of reports).
    pub fn is_default(&self) -> bool {
        *self == Payload::Pattern
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Payload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pattern" => Ok(Payload::Pattern),
            "json" => Ok(Payload::Json),
            other => Err(format!(
                "unknown payload {other:?} (expected `pattern` or `json`)"
            )),
        }
    }
}

/// Writes packet `seq` of connection `conn` into `out`, which must be
/// exactly [`Framing::packet_len`] bytes long; the body size is derived
/// from `out.len()`.
///
/// # Panics
///
/// Panics if `out` is shorter than the framing overhead, or if the body of
/// a length-framed packet does not fit in `u32`.
pub fn write_packet(framing: Framing, conn: u32, seq: u64, out: &mut [u8]) {
    write_packet_with(framing, Payload::Pattern, conn, seq, out);
}

/// [`write_packet`] with the body filled by `payload`.
///
/// # Panics
///
/// As [`write_packet`]; for [`Framing::WebSocket`], also if `out` is not
/// exactly the length of a frame ([`Framing::packet_len`]).
pub fn write_packet_with(framing: Framing, payload: Payload, conn: u32, seq: u64, out: &mut [u8]) {
    match framing {
        Framing::Length => {
            let (header, body) = out.split_at_mut(LENGTH_HEADER);
            let len = u32::try_from(body.len()).expect("body length fits in u32");
            header.copy_from_slice(&len.to_be_bytes());
            fill_body(payload, conn, seq, body);
        }
        Framing::Line => {
            let (body, newline) = out.split_at_mut(out.len() - 1);
            fill_body(payload, conn, seq, body);
            newline[0] = b'\n';
        }
        Framing::WebSocket => {
            let size = ws::body_len_of_frame(out.len()).expect("a whole WebSocket frame");
            let n = ws::write_header(ws::FIN | ws::OPCODE_BINARY, false, size, out);
            fill_body(payload, conn, seq, &mut out[n..]);
        }
        Framing::Udp => {
            let (head, body) = out.split_at_mut(UDP_SEQ_LEN.min(out.len()));
            head.copy_from_slice(&seq.to_be_bytes()[..head.len()]);
            fill_body(payload, conn, seq, body);
        }
    }
}

/// Appends packet `seq` of connection `conn` with a body of `size` bytes to
/// `out`. Does not allocate when `out` has enough spare capacity.
pub fn append_packet(framing: Framing, conn: u32, seq: u64, size: usize, out: &mut Vec<u8>) {
    append_packet_with(framing, Payload::Pattern, conn, seq, size, out);
}

/// [`append_packet`] with the body filled by `payload`.
pub fn append_packet_with(
    framing: Framing,
    payload: Payload,
    conn: u32,
    seq: u64,
    size: usize,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.resize(start + framing.packet_len(size), 0);
    write_packet_with(framing, payload, conn, seq, &mut out[start..]);
}

/// Size of the JSON-like text [`Payload::Json`] bodies are cut from.
const JSON_POOL: usize = 1 << 20;

/// Fills a body with the deterministic content of `payload` for
/// `(conn, seq)`: the tag, then the payload's bytes.
pub fn fill_body(payload: Payload, conn: u32, seq: u64, body: &mut [u8]) {
    let mixed = (seq ^ (u64::from(conn) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    match payload {
        Payload::Pattern => {
            let phase = (mixed >> 58) as usize;
            for chunk in body.chunks_mut(64) {
                chunk.copy_from_slice(&FILL2[phase..phase + chunk.len()]);
            }
        }
        Payload::Json => {
            let pool = json_pool();
            let mut at = (mixed >> 44) as usize % pool.len();
            let mut rest = &mut body[..];
            while !rest.is_empty() {
                let n = rest.len().min(pool.len() - at);
                let (now, later) = rest.split_at_mut(n);
                now.copy_from_slice(&pool[at..at + n]);
                rest = later;
                at = 0;
            }
        }
    }
    let mut tag = [0u8; TAG_LEN];
    let mut len = 0;
    for (marker, value) in [(b's', seq), (b'c', u64::from(conn))] {
        tag[len] = marker;
        len += 1;
        let digits = hex_digits(value);
        write_hex(value, &mut tag[len..len + digits]);
        len += digits;
    }
    tag[len] = b' ';
    len += 1;
    let n = body.len().min(len);
    body[..n].copy_from_slice(&tag[..n]);
}

/// Number of hex digits needed for `value` (at least 1).
fn hex_digits(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).div_ceil(4).max(1)
}

/// Writes the low `out.len()` hex digits of `value`, most significant first.
fn write_hex(mut value: u64, out: &mut [u8]) {
    for b in out.iter_mut().rev() {
        *b = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// The JSON-like text of [`Payload::Json`], made once per process from a
/// fixed seed: printable ASCII, no `\n`.
fn json_pool() -> &'static [u8] {
    static POOL: OnceLock<Vec<u8>> = OnceLock::new();
    POOL.get_or_init(|| {
        const EVENTS: [&str; 8] = [
            "page_view",
            "click",
            "add_to_cart",
            "checkout",
            "login",
            "search",
            "message",
            "logout",
        ];
        const PATHS: [&str; 6] = ["/items/", "/users/", "/cart/", "/search?q=", "/chat/", "/"];
        const REGIONS: [&str; 5] = ["eu-west", "us-east", "ap-south", "sa-east", "eu-north"];
        let mut rng = ws::Rng::new(0x5eed_1234_abcd_ef01);
        let mut text = String::with_capacity(JSON_POOL + 256);
        text.push('[');
        while text.len() < JSON_POOL {
            let r = rng.next_u64();
            let pick = |shift: u32, n: usize| ((r >> shift) as usize) % n;
            let id = rng.next_u64() % 10_000_000;
            let user = rng.next_u64() % 100_000;
            let ts = 1_700_000_000 + rng.next_u64() % 10_000_000;
            let cents = rng.next_u64() % 100_000;
            let target = rng.next_u64() % 50_000;
            text.push_str(&format!(
                "{{\"id\":{id},\"user\":\"user_{user}\",\"event\":\"{}\",\"path\":\"{}{target}\",                 \"ts\":{ts},\"price\":{}.{:02},\"region\":\"{}\",\"ok\":{},\"ms\":{}}},",
                EVENTS[pick(0, EVENTS.len())],
                PATHS[pick(8, PATHS.len())],
                cents / 100,
                cents % 100,
                REGIONS[pick(16, REGIONS.len())],
                pick(24, 8) != 0,
                pick(32, 2000),
            ));
        }
        let mut bytes = text.into_bytes();
        bytes.truncate(JSON_POOL);
        bytes
    })
}

/// An echoed byte that differs from what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Connection id (0-based, over all threads).
    pub conn: u32,
    /// Sequence number of the packet being verified.
    pub seq: u64,
    /// Byte offset inside that packet (header included).
    pub offset: usize,
    /// Length of one packet on the wire.
    pub packet_len: usize,
    /// The byte that was sent.
    pub expected: u8,
    /// The byte that came back.
    pub got: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "echo mismatch on connection {}, packet seq {}, byte {} of {}: expected {:#04x} {:?}, got {:#04x} {:?}",
            self.conn,
            self.seq,
            self.offset,
            self.packet_len,
            self.expected,
            char::from(self.expected),
            self.got,
            char::from(self.got),
        )
    }
}

impl std::error::Error for Mismatch {}

/// Result of one [`EchoChecker::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input that were verified and consumed.
    pub consumed: usize,
    /// Sequence number of the packet completed by this call, if any.
    pub completed: Option<u64>,
}

/// Verifies the echo stream of one connection, byte by byte, against the
/// packets it must have sent in order `0, 1, 2, ...`.
///
/// Holds one packet-sized buffer, regenerated in place for every packet:
/// no allocation after construction.
#[derive(Debug, Clone)]
pub struct EchoChecker {
    framing: Framing,
    payload: Payload,
    conn: u32,
    seq: u64,
    expected: Vec<u8>,
    offset: usize,
}

impl EchoChecker {
    /// A checker for connection `conn`, expecting packet 0 first.
    pub fn new(framing: Framing, conn: u32, size: usize) -> Self {
        Self::with_payload(framing, Payload::Pattern, conn, size)
    }

    /// A checker for connection `conn` whose bodies are filled by `payload`.
    pub fn with_payload(framing: Framing, payload: Payload, conn: u32, size: usize) -> Self {
        let mut expected = vec![0; framing.packet_len(size)];
        write_packet_with(framing, payload, conn, 0, &mut expected);
        EchoChecker {
            framing,
            payload,
            conn,
            seq: 0,
            expected,
            offset: 0,
        }
    }

    /// Sequence number of the packet currently expected.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Bytes of the current packet already verified.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Verifies a prefix of `data`, up to the end of the current packet.
    ///
    /// Call repeatedly on the unconsumed rest until it is empty; each call
    /// completes at most one packet.
    pub fn feed(&mut self, data: &[u8]) -> Result<Fed, Mismatch> {
        let want = &self.expected[self.offset..];
        let n = want.len().min(data.len());
        if want[..n] != data[..n] {
            let i = want[..n]
                .iter()
                .zip(&data[..n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(Mismatch {
                conn: self.conn,
                seq: self.seq,
                offset: self.offset + i,
                packet_len: self.expected.len(),
                expected: want[i],
                got: data[i],
            });
        }
        self.offset += n;
        let completed = if self.offset == self.expected.len() {
            let done = self.seq;
            self.seq += 1;
            self.offset = 0;
            write_packet_with(
                self.framing,
                self.payload,
                self.conn,
                self.seq,
                &mut self.expected,
            );
            Some(done)
        } else {
            None
        };
        Ok(Fed {
            consumed: n,
            completed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(framing: Framing, conn: u32, seq: u64, size: usize) -> Vec<u8> {
        let mut v = Vec::new();
        append_packet(framing, conn, seq, size, &mut v);
        v
    }

    /// Feeds `data` in chunks of `chunk` bytes and returns completed seqs.
    fn feed_all(c: &mut EchoChecker, data: &[u8], chunk: usize) -> Result<Vec<u64>, Mismatch> {
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
    fn packet_len_per_framing() {
        assert_eq!(Framing::Length.packet_len(64), 68);
        assert_eq!(Framing::Line.packet_len(64), 65);
        assert_eq!(Framing::Length.packet_len(0), 4);
        assert_eq!(Framing::WebSocket.packet_len(64), 66);
        assert_eq!(Framing::WebSocket.packet_len(4096), 4100);
        assert_eq!(Framing::WebSocket.packet_len(70_000), 70_010);
    }

    #[test]
    fn websocket_packet_is_the_servers_binary_frame() {
        let p = packet(Framing::WebSocket, 0xab, 0x1f, 64);
        assert_eq!(&p[..2], &[0x82, 64]);
        assert_eq!(&p[2..9], b"s1fcab ");
        assert_eq!(&p[2..], &packet(Framing::Length, 0xab, 0x1f, 64)[4..]);
    }

    #[test]
    fn json_payload_is_printable_distinct_and_partly_compressible() {
        let body = |seq: u64, size: usize| {
            let mut b = vec![0; size];
            fill_body(Payload::Json, 3, seq, &mut b);
            b
        };
        let a = body(0, 4096);
        assert!(a.iter().all(|b| b.is_ascii_graphic() || *b == b' '));
        assert!(a.windows(7).any(|w| w == b"\"user\":"));
        assert_ne!(a, body(1, 4096));
        assert_eq!(&a[..5], b"s0c3 ");
        // Longer than the pool: wraps around.
        assert!(!body(9, 3 << 20).contains(&b'\n'));
        let mut d = crate::ws::Deflater::new(&crate::ws::DeflateParams::default(), 1);
        let mut packed = Vec::new();
        d.compress(&a, &mut packed).expect("compress");
        let fraction = packed.len() as f64 / a.len() as f64;
        assert!((0.2..0.6).contains(&fraction), "{fraction}");
        let mut p = Vec::new();
        crate::ws::Deflater::new(&crate::ws::DeflateParams::default(), 1)
            .compress(&packet(Framing::Length, 3, 0, 4096), &mut p)
            .expect("compress");
        assert!(p.len() < 200, "the pattern compresses to almost nothing");
    }

    #[test]
    fn length_header_is_big_endian_body_len() {
        let p = packet(Framing::Length, 1, 2, 300);
        assert_eq!(p.len(), 304);
        assert_eq!(&p[..4], &[0, 0, 1, 44]);
    }

    #[test]
    fn line_packet_has_single_trailing_newline() {
        for size in [0, 1, 26, 27, 28, 64, 200, 4096] {
            let p = packet(Framing::Line, 7, 12345, size);
            assert_eq!(p.len(), size + 1);
            assert_eq!(p.last(), Some(&b'\n'));
            assert!(!p[..size].contains(&b'\n'));
        }
    }

    #[test]
    fn body_carries_seq_and_conn_tag() {
        let p = packet(Framing::Length, 0xab, 0x1f, 64);
        assert_eq!(&p[4..11], b"s1fcab ");
        assert!(p[4..].iter().all(|b| b.is_ascii_graphic() || *b == b' '));
        let p = packet(Framing::Line, u32::MAX, u64::MAX, 64);
        assert_eq!(&p[..27], b"sffffffffffffffffcffffffff ");
    }

    #[test]
    fn bodies_differ_between_packets_and_connections() {
        for size in [8, 27, 64, 1000] {
            let a = packet(Framing::Line, 3, 10, size);
            assert_ne!(a, packet(Framing::Line, 3, 11, size));
            assert_ne!(a, packet(Framing::Line, 4, 10, size));
        }
    }

    #[test]
    fn short_bodies_distinguish_many_sequence_numbers() {
        let bodies: std::collections::HashSet<Vec<u8>> = (0..4096)
            .map(|seq| packet(Framing::Length, 5, seq, 8))
            .collect();
        assert_eq!(bodies.len(), 4096);
    }

    #[test]
    fn append_reuses_capacity() {
        let mut v = Vec::with_capacity(4 * 68);
        let ptr = v.as_ptr();
        for seq in 0..4 {
            append_packet(Framing::Length, 0, seq, 64, &mut v);
        }
        assert_eq!(v.len(), 4 * 68);
        assert_eq!(v.as_ptr(), ptr);
    }

    #[test]
    fn checker_accepts_in_order_stream_in_any_chunking() {
        for framing in [Framing::Length, Framing::Line] {
            let mut stream = Vec::new();
            for seq in 0..5 {
                append_packet(framing, 9, seq, 40, &mut stream);
            }
            for chunk in [1, 3, 40, 41, 1000] {
                let mut c = EchoChecker::new(framing, 9, 40);
                assert_eq!(feed_all(&mut c, &stream, chunk), Ok(vec![0, 1, 2, 3, 4]));
                assert_eq!(c.next_seq(), 5);
                assert_eq!(c.offset(), 0);
            }
        }
    }

    #[test]
    fn checker_reports_corrupted_byte() {
        let mut stream = packet(Framing::Length, 2, 0, 64);
        append_packet(Framing::Length, 2, 1, 64, &mut stream);
        stream[68 + 40] ^= 0x20;
        let mut c = EchoChecker::new(Framing::Length, 2, 64);
        let err = feed_all(&mut c, &stream, 17).unwrap_err();
        assert_eq!(
            (err.conn, err.seq, err.offset, err.packet_len),
            (2, 1, 40, 68)
        );
        assert_eq!(err.got, err.expected ^ 0x20);
        assert!(err.to_string().contains("packet seq 1, byte 40 of 68"));
    }

    #[test]
    fn checker_detects_reordering_and_other_connections() {
        let mut c = EchoChecker::new(Framing::Line, 0, 64);
        let err = feed_all(&mut c, &packet(Framing::Line, 0, 1, 64), 64).unwrap_err();
        assert_eq!(err.seq, 0);
        let mut c = EchoChecker::new(Framing::Line, 0, 64);
        assert!(feed_all(&mut c, &packet(Framing::Line, 1, 0, 64), 64).is_err());
    }

    #[test]
    fn checker_detects_wrong_length_header() {
        let mut p = packet(Framing::Length, 0, 0, 64);
        p[3] = 63;
        let mut c = EchoChecker::new(Framing::Length, 0, 64);
        assert_eq!(feed_all(&mut c, &p, 4).unwrap_err().offset, 3);
    }

    #[test]
    fn framing_parses_and_displays() {
        assert_eq!("length".parse::<Framing>(), Ok(Framing::Length));
        assert_eq!("line".parse::<Framing>(), Ok(Framing::Line));
        assert_eq!("ws".parse::<Framing>(), Ok(Framing::WebSocket));
        assert!("lines".parse::<Framing>().is_err());
        assert_eq!(Framing::Line.to_string(), "line");
        assert_eq!(Framing::WebSocket.to_string(), "ws");
        assert_eq!("json".parse::<Payload>(), Ok(Payload::Json));
        assert!("xml".parse::<Payload>().is_err());
    }
}
