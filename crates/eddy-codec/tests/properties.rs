//! Property tests for every codec: whatever way a byte stream is cut into reads, a reader that
//! works as the reactor does gets back exactly the packets that were sent; encoding then
//! decoding gives the body back; garbage never panics and never yields a packet over the
//! maximum.

use eddy_codec::{
    Codec, DecodeState, Decoded, Endian, EofCodec, FrameError, FrameReader, LengthCodec,
    LengthFnCodec, LengthType, PacketLength, RawCodec, TypedCodec, IMPOSSIBLE_LENGTH,
    MAX_DELIMITER_LEN,
};
use proptest::{collection::vec, prelude::*, sample::Index};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the reactor does with one connection's bytes: append each read to a buffer, cut every
/// whole packet off its front, keep the rest for the next read.
struct Reader<'a> {
    codec: &'a dyn Codec,
    max: usize,
    frames: FrameReader,
    packets: Vec<Vec<u8>>,
    largest_read: usize,
}

impl<'a> Reader<'a> {
    fn new(codec: &'a dyn Codec, max: usize) -> Self {
        Reader {
            codec,
            max,
            frames: FrameReader::new(max),
            packets: Vec::new(),
            largest_read: 0,
        }
    }

    /// One read: cut what can be cut, checking what the codec promises on the way.
    fn read(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.largest_read = self.largest_read.max(bytes.len());
        self.frames.push(bytes);
        let result = loop {
            match self.frames.next_packet(self.codec) {
                Ok(Some(packet)) => self.packets.push(packet.to_vec()),
                Ok(None) => break Ok(()),
                Err(FrameError::Malformed(IMPOSSIBLE_LENGTH)) => {
                    panic!("{:?}: {IMPOSSIBLE_LENGTH}", self.codec)
                }
                Err(err) => break Err(err),
            }
        };
        if let (Ok(()), Some(total)) = (&result, self.frames.pending_total()) {
            assert!(
                total <= self.max,
                "{:?}: pending {total} over the max {}",
                self.codec,
                self.max
            );
            assert!(
                total > self.frames.buffered(),
                "{:?}: pending {total} already buffered",
                self.codec
            );
        }
        assert!(
            self.frames.buffered() <= self.max + self.largest_read,
            "{:?}: {} bytes buffered, max {}, largest read {}",
            self.codec,
            self.frames.buffered(),
            self.max,
            self.largest_read
        );
        result
    }

    /// Feed `stream` cut at `cuts` (positions inside it, in any order): the packets, or the
    /// first error with the packets cut before it.
    fn feed(mut self, stream: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
        let mut at: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
        at.push(0);
        at.push(stream.len());
        at.sort_unstable();
        at.dedup();
        for pair in at.windows(2) {
            if let Err(err) = self.read(&stream[pair[0]..pair[1]]) {
                return (self.packets, Err(err));
            }
        }
        let leftover = if self.frames.buffered() == 0 {
            Ok(())
        } else {
            Err(FrameError::Malformed("bytes left over"))
        };
        (self.packets, leftover)
    }
}

/// Cut points for a stream of `len` bytes.
fn cuts(indices: &[Index], len: usize) -> Vec<usize> {
    indices.iter().map(|i| i.index(len + 1)).collect()
}

fn indices() -> impl Strategy<Value = Vec<Index>> {
    vec(any::<Index>(), 0..24)
}

fn endian() -> impl Strategy<Value = Endian> {
    prop_oneof![
        Just(Endian::Big),
        Just(Endian::Little),
        Just(Endian::Native)
    ]
}

fn length_type() -> impl Strategy<Value = LengthType> {
    prop_oneof![
        Just(LengthType::I8),
        Just(LengthType::U8),
        endian().prop_map(LengthType::I16),
        endian().prop_map(LengthType::U16),
        endian().prop_map(LengthType::I32),
        endian().prop_map(LengthType::U32),
        endian().prop_map(LengthType::I64),
        endian().prop_map(LengthType::U64),
    ]
}

/// A length codec's settings (the codec has no getters for them).
#[derive(Clone, Copy, Debug)]
struct Spec {
    length_type: LengthType,
    length_offset: usize,
    body_offset: usize,
}

impl Spec {
    fn codec(self) -> LengthCodec {
        LengthCodec::new()
            .length_type(self.length_type)
            .length_offset(self.length_offset)
            .body_offset(self.body_offset)
    }
}

/// Any length codec: every type, the field anywhere in a small header, the length counting
/// the body, the whole packet, or anything between and beyond.
fn length_spec() -> impl Strategy<Value = Spec> {
    (length_type(), 0..12usize, 0..24usize).prop_map(|(length_type, length_offset, body_offset)| {
        Spec {
            length_type,
            length_offset,
            body_offset,
        }
    })
}

/// The length field of `codec` in `packet`, read here independently of the codec.
fn field(t: LengthType, offset: usize, packet: &[u8]) -> u64 {
    let (width, endian) = match t {
        LengthType::I8 | LengthType::U8 => (1, Endian::Big),
        LengthType::I16(e) | LengthType::U16(e) => (2, e),
        LengthType::I32(e) | LengthType::U32(e) => (4, e),
        LengthType::I64(e) | LengthType::U64(e) => (8, e),
    };
    let bytes = &packet[offset..offset + width];
    let mut wide = [0u8; 8];
    let value = match endian {
        Endian::Big => {
            wide[8 - width..].copy_from_slice(bytes);
            u64::from_be_bytes(wide)
        }
        Endian::Little => {
            wide[..width].copy_from_slice(bytes);
            u64::from_le_bytes(wide)
        }
        Endian::Native if cfg!(target_endian = "big") => {
            wide[8 - width..].copy_from_slice(bytes);
            u64::from_be_bytes(wide)
        }
        Endian::Native => {
            wide[..width].copy_from_slice(bytes);
            u64::from_le_bytes(wide)
        }
    };
    if t.is_signed() {
        assert_eq!(value >> (width * 8 - 1), 0, "negative length written");
    }
    value
}

fn bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(vec(any::<u8>(), 0..80), 0..8)
}

/// Encode every body that `codec` can frame: the stream and its packets.
fn encode_all(codec: &dyn Codec, bodies: &[Vec<u8>]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut stream = Vec::new();
    let mut packets = Vec::new();
    for body in bodies {
        let mut packet = Vec::new();
        if codec.encode(body, &mut packet).is_ok() {
            stream.extend_from_slice(&packet);
            packets.push(packet);
        }
    }
    (stream, packets)
}

/// The largest packet, but at least what the codec needs to frame anything.
fn max_of(codec: &dyn Codec, packets: &[Vec<u8>]) -> usize {
    packets
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(codec.min_packet())
}

/// Drop bytes from `body` until `body + delimiter` holds the delimiter only at its end.
fn without_delimiter(mut body: Vec<u8>, delimiter: &[u8]) -> Vec<u8> {
    loop {
        let mut framed = body.clone();
        framed.extend_from_slice(delimiter);
        match framed.windows(delimiter.len()).position(|w| w == delimiter) {
            Some(at) if at < body.len() => {
                body.remove(at);
            }
            _ => return body,
        }
    }
}

/// Delimiters of 1 to 8 bytes over a small alphabet, so bodies come close to them often.
fn delimiter() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()],
        1..=MAX_DELIMITER_LEN,
    )
}

/// Bodies over the same small alphabet.
fn near_bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(
        vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()],
            0..40,
        ),
        0..8,
    )
}

/// The test's own framing for [`LengthFnCodec`]: a LEB128 body length (at most 3 bytes), then
/// the body.
fn leb128_codec() -> LengthFnCodec {
    LengthFnCodec::new(|buf| {
        let mut len = 0usize;
        for (i, &b) in buf.iter().enumerate().take(3) {
            len |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return PacketLength::Total(i + 1 + len);
            }
        }
        if buf.len() >= 3 {
            PacketLength::Malformed
        } else {
            PacketLength::NeedMore
        }
    })
}

fn leb128_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut len = body.len();
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    leb128_codec().encode(body, &mut out).unwrap();
    out
}

/// Split a LEB128-framed packet back into its body.
fn leb128_body(packet: &[u8]) -> &[u8] {
    let header = packet.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    &packet[header..]
}

/// Another user framing, one that needs many bytes before it can tell: a decimal body length
/// and `:`, then the body (netstring-like).
fn decimal_codec() -> LengthFnCodec {
    LengthFnCodec::new(|buf| {
        let Some(colon) = buf.iter().position(|&b| b == b':') else {
            return if buf.iter().all(u8::is_ascii_digit) {
                PacketLength::NeedMore
            } else {
                PacketLength::Malformed
            };
        };
        match std::str::from_utf8(&buf[..colon])
            .ok()
            .and_then(|d| d.parse::<usize>().ok())
        {
            Some(len) => PacketLength::Total(colon + 1 + len),
            None => PacketLength::Malformed,
        }
    })
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Kind {
    Get,
    Put(Vec<u8>),
    Note { text: String, urgent: bool },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    delta: i32,
    items: Vec<String>,
    kind: Kind,
    score: Option<f64>,
}

fn order() -> impl Strategy<Value = Order> {
    let kind = prop_oneof![
        Just(Kind::Get),
        vec(any::<u8>(), 0..16).prop_map(Kind::Put),
        (".{0,12}", any::<bool>()).prop_map(|(text, urgent)| Kind::Note { text, urgent }),
    ];
    (
        any::<u64>(),
        any::<i32>(),
        vec(".{0,8}", 0..4),
        kind,
        proptest::option::of(-1e9f64..1e9),
    )
        .prop_map(|(id, delta, items, kind, score)| Order {
            id,
            delta,
            items,
            kind,
            score,
        })
}

/// Random bytes, or bytes from a small alphabet that codecs care about.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let near = prop_oneof![
        Just(b'0'),
        Just(b'9'),
        Just(b':'),
        Just(b'\r'),
        Just(b'\n'),
        Just(b'a'),
        Just(0u8),
        Just(0x80u8),
        Just(0xffu8),
    ];
    prop_oneof![vec(any::<u8>(), 0..300), vec(near, 0..300)]
}

/// Any codec with settings that pass `validate`.
fn any_codec() -> impl Strategy<Value = Arc<dyn Codec>> {
    prop_oneof![
        length_spec().prop_map(|s| Arc::new(s.codec()) as Arc<dyn Codec>),
        delimiter().prop_map(|d| Arc::new(EofCodec::new(d)) as Arc<dyn Codec>),
        delimiter().prop_map(|d| Arc::new(EofCodec::new(d).check_only()) as Arc<dyn Codec>),
        Just(Arc::new(EofCodec::line()) as Arc<dyn Codec>),
        Just(Arc::new(RawCodec) as Arc<dyn Codec>),
        Just(Arc::new(leb128_codec()) as Arc<dyn Codec>),
        (1..16usize).prop_map(|w| Arc::new(leb128_codec().window(w)) as Arc<dyn Codec>),
        Just(Arc::new(decimal_codec()) as Arc<dyn Codec>),
        (1..64usize).prop_map(|w| Arc::new(decimal_codec().window(w)) as Arc<dyn Codec>),
        Just(Arc::new(TypedCodec::<Order>::new()) as Arc<dyn Codec>),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn length_packets_survive_any_cuts(
        spec in length_spec(),
        bodies in bodies(),
        cut in indices(),
    ) {
        let codec = spec.codec();
        prop_assert!(codec.validate().is_ok());
        let (stream, packets) = encode_all(&codec, &bodies);
        let max = max_of(&codec, &packets);
        let (got, result) = Reader::new(&codec, max).feed(&stream, &cuts(&cut, stream.len()));
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(got, packets);
    }

    #[test]
    fn length_round_trip(spec in length_spec(), body in vec(any::<u8>(), 0..300)) {
        let codec = spec.codec();
        let mut packet = vec![0xEE];
        if codec.encode(&body, &mut packet).is_err() {
            // Refused whole: only a field too narrow for the length may refuse.
            prop_assert_eq!(&packet, &[0xEE]);
            let t = spec.length_type;
            let bits = t.width() * 8 - usize::from(t.is_signed());
            let needed = codec.header_len().max(spec.body_offset) + body.len() - spec.body_offset;
            prop_assert!(bits < 64 && needed >> bits != 0, "{:?} refused {}", spec, needed);
            return Ok(());
        }
        let packet = &packet[1..];
        let start = codec.header_len().max(spec.body_offset);
        prop_assert_eq!(&packet[start..], &body[..]);
        // The field says what the packet is, read without the codec.
        prop_assert_eq!(
            field(spec.length_type, spec.length_offset, packet) + spec.body_offset as u64,
            packet.len() as u64
        );
        let mut state = DecodeState::default();
        prop_assert_eq!(
            codec.decode(packet, &mut state, packet.len()),
            Ok(Decoded::Packet(packet.len()))
        );
        // From the header alone: the whole length, or too large for one byte less.
        let header = &packet[..codec.header_len()];
        let pending = codec.decode(header, &mut state, packet.len());
        if header.len() < packet.len() {
            prop_assert_eq!(pending, Ok(Decoded::Incomplete { total: Some(packet.len()) }));
        }
        prop_assert_eq!(
            codec.decode(header, &mut state, packet.len() - 1),
            Err(FrameError::TooLarge { length: packet.len() as u64, max: packet.len() - 1 })
        );
    }

    #[test]
    fn too_large_stops_at_the_first_oversized_packet(
        spec in length_spec(),
        bodies in bodies(),
        max in any::<Index>(),
        cut in indices(),
    ) {
        let codec = spec.codec();
        let (stream, packets) = encode_all(&codec, &bodies);
        let largest = max_of(&codec, &packets);
        let max = codec.min_packet() + max.index(largest - codec.min_packet() + 1);
        let (got, result) = Reader::new(&codec, max).feed(&stream, &cuts(&cut, stream.len()));
        let fit = packets.iter().take_while(|p| p.len() <= max).count();
        prop_assert_eq!(&got[..], &packets[..fit]);
        match packets.get(fit) {
            None => prop_assert_eq!(result, Ok(())),
            Some(p) => prop_assert_eq!(
                result,
                Err(FrameError::TooLarge { length: p.len() as u64, max })
            ),
        }
    }

    #[test]
    fn eof_split_packets_survive_any_cuts(
        delimiter in delimiter(),
        bodies in near_bodies(),
        cut in indices(),
    ) {
        let codec = EofCodec::new(delimiter.clone());
        prop_assert!(codec.validate().is_ok());
        let bodies: Vec<_> = bodies.into_iter().map(|b| without_delimiter(b, &delimiter)).collect();
        let (stream, packets) = encode_all(&codec, &bodies);
        let max = max_of(&codec, &packets);
        let (got, result) = Reader::new(&codec, max).feed(&stream, &cuts(&cut, stream.len()));
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(&got, &packets);
        for (packet, body) in got.iter().zip(&bodies) {
            prop_assert_eq!(&packet[..body.len()], &body[..]);
            prop_assert_eq!(&packet[body.len()..], &delimiter[..]);
        }
    }

    #[test]
    fn eof_split_too_large(
        delimiter in delimiter(),
        bodies in near_bodies(),
        max in any::<Index>(),
        cut in indices(),
    ) {
        let codec = EofCodec::new(delimiter.clone());
        let bodies: Vec<_> = bodies.into_iter().map(|b| without_delimiter(b, &delimiter)).collect();
        let (stream, packets) = encode_all(&codec, &bodies);
        let max = 1 + max.index(max_of(&codec, &packets));
        let (got, result) = Reader::new(&codec, max).feed(&stream, &cuts(&cut, stream.len()));
        let fit = packets.iter().take_while(|p| p.len() <= max).count();
        prop_assert_eq!(&got[..], &packets[..fit]);
        if fit == packets.len() {
            prop_assert_eq!(result, Ok(()));
        } else {
            prop_assert!(matches!(result, Err(FrameError::TooLarge { .. })), "{:?}", result);
        }
    }

    #[test]
    fn line_packets_survive_any_cuts(bodies in near_bodies(), cut in indices()) {
        let codec = EofCodec::line();
        let bodies: Vec<Vec<u8>> = bodies
            .into_iter()
            .map(|b| b.into_iter().filter(|&c| c != b'\n').collect())
            .collect();
        let (stream, packets) = encode_all(&codec, &bodies);
        let (got, result) = Reader::new(&codec, max_of(&codec, &packets))
            .feed(&stream, &cuts(&cut, stream.len()));
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(got.len(), bodies.len());
        for (packet, body) in got.iter().zip(&bodies) {
            prop_assert_eq!(&packet[..packet.len() - 1], &body[..]);
            prop_assert_eq!(packet.last(), Some(&b'\n'));
        }
    }

    #[test]
    fn eof_check_hands_over_the_buffer_when_it_ends_with_the_delimiter(
        delimiter in delimiter(),
        bodies in near_bodies(),
        cut in indices(),
    ) {
        let codec = EofCodec::new(delimiter.clone()).check_only();
        // Check mode does not look inside: bodies may hold the delimiter.
        let (stream, _) = encode_all(&codec, &bodies);
        let cut = cuts(&cut, stream.len());
        let max = stream.len().max(1);
        let (got, result) = Reader::new(&codec, max).feed(&stream, &cut);
        // The model: after each read, the whole buffer goes if it ends with the delimiter.
        let mut at = cut.clone();
        at.extend([0, stream.len()]);
        at.sort_unstable();
        at.dedup();
        let mut expected = Vec::new();
        let mut buffered = Vec::new();
        for pair in at.windows(2) {
            buffered.extend_from_slice(&stream[pair[0]..pair[1]]);
            if buffered.ends_with(&delimiter) {
                expected.push(std::mem::take(&mut buffered));
            }
        }
        prop_assert_eq!(got, expected);
        // Bytes are left over only when the stream's final delimiter began in a packet
        // already handed over (check mode looks at the buffer, not the stream).
        prop_assert_eq!(result.is_ok(), buffered.is_empty());
    }

    #[test]
    fn eof_check_single_buffer(
        delimiter in delimiter(),
        body in vec(any::<u8>(), 0..64),
        extra in 0..4usize,
    ) {
        let codec = EofCodec::new(delimiter.clone()).check_only();
        let mut buf = body.clone();
        buf.extend_from_slice(&delimiter);
        let mut state = DecodeState::default();
        prop_assert_eq!(
            codec.decode(&buf, &mut state, buf.len() + extra),
            Ok(Decoded::Packet(buf.len()))
        );
        let over = codec.decode(&buf, &mut state, buf.len() - 1);
        prop_assert!(matches!(over, Err(FrameError::TooLarge { .. })), "{:?}", over);
        if !body.ends_with(&delimiter) {
            prop_assert_eq!(
                codec.decode(&body, &mut state, body.len() + 1),
                Ok(Decoded::Incomplete { total: None })
            );
        }
    }

    #[test]
    fn raw_hands_over_every_byte(
        stream in vec(any::<u8>(), 0..400),
        max in 1..200usize,
        cut in indices(),
    ) {
        let cut = cuts(&cut, stream.len());
        let (got, result) = Reader::new(&RawCodec, max).feed(&stream, &cut);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(got.concat(), stream);
        let mut out = Vec::new();
        RawCodec.encode(b"as is", &mut out).unwrap();
        prop_assert_eq!(out, b"as is");
    }

    #[test]
    fn length_fn_packets_survive_any_cuts(
        bodies in vec(vec(any::<u8>(), 0..300), 0..6),
        cut in indices(),
    ) {
        let codec = leb128_codec();
        let packets: Vec<Vec<u8>> = bodies.iter().map(|b| leb128_frame(b)).collect();
        let stream = packets.concat();
        let (got, result) = Reader::new(&codec, max_of(&codec, &packets))
            .feed(&stream, &cuts(&cut, stream.len()));
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(&got, &packets);
        for (packet, body) in got.iter().zip(&bodies) {
            prop_assert_eq!(leb128_body(packet), &body[..]);
        }
    }

    #[test]
    fn typed_messages_survive_any_cuts(orders in vec(order(), 0..6), cut in indices()) {
        let codec = TypedCodec::<Order>::new();
        let mut stream = Vec::new();
        let mut packets = Vec::new();
        for order in &orders {
            let mut packet = Vec::new();
            codec.encode_message(order, &mut packet).unwrap();
            stream.extend_from_slice(&packet);
            packets.push(packet);
        }
        let (got, result) = Reader::new(&codec, max_of(&codec, &packets))
            .feed(&stream, &cuts(&cut, stream.len()));
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(&got, &packets);
        let decoded: Vec<Order> = got.iter().map(|p| codec.decode_message(p).unwrap()).collect();
        prop_assert_eq!(decoded, orders);
    }

    #[test]
    fn typed_decode_message_never_panics(
        garbage in vec(any::<u8>(), 0..64),
        framed in any::<bool>(),
    ) {
        let codec = TypedCodec::<Order>::new();
        let packet = if framed {
            // A correct header, so the body reaches bincode.
            let mut packet = Vec::new();
            codec.encode(&garbage, &mut packet).unwrap();
            packet
        } else {
            garbage
        };
        let _ = codec.decode_message(&packet);
    }

    #[test]
    fn garbage_never_panics_nor_overflows(
        codec in any_codec(),
        garbage in garbage(),
        max in 0..400usize,
        cut in indices(),
    ) {
        prop_assert!(codec.validate().is_ok());
        let max = max.max(codec.min_packet());
        let (got, _) = Reader::new(&*codec, max).feed(&garbage, &cuts(&cut, garbage.len()));
        let taken: usize = got.iter().map(Vec::len).sum();
        prop_assert!(taken <= garbage.len());
        prop_assert_eq!(&got.concat()[..], &garbage[..taken]);
    }

    #[test]
    fn length_fn_needing_more_is_bounded_by_max(
        digits in vec(b'0'..=b'9', 1..200),
        max in 1..100usize,
        cut in indices(),
    ) {
        // The length function never sees its `:`: the packet is longer than what it saw.
        let codec = decimal_codec();
        let (got, result) = Reader::new(&codec, max).feed(&digits, &cuts(&cut, digits.len()));
        prop_assert!(got.is_empty());
        if digits.len() >= max {
            prop_assert!(matches!(result, Err(FrameError::TooLarge { .. })), "{:?}", result);
        }
    }
}
