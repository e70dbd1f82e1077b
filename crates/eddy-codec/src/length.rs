use crate::{Codec, CodecConfigError, DecodeState, Decoded, FrameError};

/// The largest `length_offset` / `body_offset` accepted (Swoole's header window, 8152 bytes).
pub const MAX_LENGTH_OFFSET: usize = 8152;

/// Byte order of a multi-byte length field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Most significant byte first (network order; PHP `n`, `N`, `J`).
    Big,
    /// Least significant byte first (PHP `v`, `V`, `P`).
    Little,
    /// The machine's own order (PHP `s`, `S`, `l`, `L`, `q`, `Q`).
    Native,
}

/// Width, signedness and byte order of a length field: Swoole's `package_length_type`
/// letters `c C s S n v l L N V q Q J P` as a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LengthType {
    /// Signed 8-bit (`c`).
    I8,
    /// Unsigned 8-bit (`C`).
    U8,
    /// Signed 16-bit (`s` is native order).
    I16(Endian),
    /// Unsigned 16-bit (`S` native, `n` big, `v` little).
    U16(Endian),
    /// Signed 32-bit (`l` is native order).
    I32(Endian),
    /// Unsigned 32-bit (`L` native, `N` big, `V` little).
    U32(Endian),
    /// Signed 64-bit (`q` is native order).
    I64(Endian),
    /// Unsigned 64-bit (`Q` native, `J` big, `P` little).
    U64(Endian),
}

impl LengthType {
    /// The field's size in bytes.
    pub const fn width(self) -> usize {
        match self {
            LengthType::I8 | LengthType::U8 => 1,
            LengthType::I16(_) | LengthType::U16(_) => 2,
            LengthType::I32(_) | LengthType::U32(_) => 4,
            LengthType::I64(_) | LengthType::U64(_) => 8,
        }
    }

    /// Whether the field is signed (a negative value is malformed input).
    pub const fn is_signed(self) -> bool {
        matches!(
            self,
            LengthType::I8 | LengthType::I16(_) | LengthType::I32(_) | LengthType::I64(_)
        )
    }

    /// Whether the field is stored most significant byte first.
    fn big_endian(self) -> bool {
        let endian = match self {
            LengthType::I8 | LengthType::U8 => Endian::Big,
            LengthType::I16(e)
            | LengthType::U16(e)
            | LengthType::I32(e)
            | LengthType::U32(e)
            | LengthType::I64(e)
            | LengthType::U64(e) => e,
        };
        match endian {
            Endian::Big => true,
            Endian::Little => false,
            Endian::Native => cfg!(target_endian = "big"),
        }
    }

    /// Read the field from the first `width()` bytes of `field`. `Err` if it is negative.
    fn read(self, field: &[u8]) -> Result<u64, FrameError> {
        let width = self.width();
        let big = self.big_endian();
        // A fixed-size load per width (this runs once per packet: a copy of a variable
        // length would be a `memcpy` call).
        let unsigned = match width {
            1 => load::<1>(field, big),
            2 => load::<2>(field, big),
            4 => load::<4>(field, big),
            _ => load::<8>(field, big),
        };
        if self.is_signed() && unsigned >> (width * 8 - 1) & 1 == 1 {
            return Err(FrameError::Malformed("negative length"));
        }
        Ok(unsigned)
    }

    fn write(self, value: u64, out: &mut [u8]) -> Result<(), FrameError> {
        let width = self.width();
        let bits = width * 8 - usize::from(self.is_signed());
        if bits < 64 && value >> bits != 0 {
            return Err(FrameError::TooLarge {
                length: value,
                max: ((1u128 << bits) - 1).min(usize::MAX as u128) as usize,
            });
        }
        if self.big_endian() {
            out[..width].copy_from_slice(&value.to_be_bytes()[8 - width..]);
        } else {
            out[..width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        Ok(())
    }
}

/// The unsigned value of the first `N` bytes of `field`, in that byte order, widened to 8
/// bytes (the caller checked `field` holds the header).
fn load<const N: usize>(field: &[u8], big_endian: bool) -> u64 {
    let mut raw = [0u8; 8];
    if big_endian {
        raw[8 - N..].copy_from_slice(&field[..N]);
        u64::from_be_bytes(raw)
    } else {
        raw[..N].copy_from_slice(&field[..N]);
        u64::from_le_bytes(raw)
    }
}

impl std::str::FromStr for LengthType {
    type Err = String;

    /// `i8 u8 i16be u16be i16le u16le i32be u32be i32le u32le i64be u64be i64le u64le`, or a
    /// Swoole `pack()` letter (`c C s S n v l L N V q Q J P`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use Endian::*;
        Ok(match s {
            "i8" | "c" => LengthType::I8,
            "u8" | "C" => LengthType::U8,
            "i16be" => LengthType::I16(Big),
            "i16le" => LengthType::I16(Little),
            "s" => LengthType::I16(Native),
            "u16be" | "n" => LengthType::U16(Big),
            "u16le" | "v" => LengthType::U16(Little),
            "S" => LengthType::U16(Native),
            "i32be" => LengthType::I32(Big),
            "i32le" => LengthType::I32(Little),
            "l" => LengthType::I32(Native),
            "u32be" | "N" => LengthType::U32(Big),
            "u32le" | "V" => LengthType::U32(Little),
            "L" => LengthType::U32(Native),
            "i64be" => LengthType::I64(Big),
            "i64le" => LengthType::I64(Little),
            "q" => LengthType::I64(Native),
            "u64be" | "J" => LengthType::U64(Big),
            "u64le" | "P" => LengthType::U64(Little),
            "Q" => LengthType::U64(Native),
            other => {
                return Err(format!(
                    "unknown length type `{other}` (i8 u8 i16be u16be i16le u16le i32be u32be \
                     i32le u32le i64be u64be i64le u64le)"
                ))
            }
        })
    }
}

/// A length field at a fixed offset gives each packet's size (Swoole's `open_length_check`).
///
/// The packet is `body_offset + length` bytes long, header included. The default is Swoole's:
/// a `u32` big-endian length at offset 0 counting the body only (`body_offset` 4). Set
/// `body_offset(0)` when the length counts the whole packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthCodec {
    length_type: LengthType,
    length_offset: usize,
    body_offset: usize,
}

impl Default for LengthCodec {
    fn default() -> Self {
        LengthCodec::new()
    }
}

impl LengthCodec {
    /// Swoole's default framing: `u32` big-endian body length, then the body.
    pub const fn new() -> Self {
        LengthCodec {
            length_type: LengthType::U32(Endian::Big),
            length_offset: 0,
            body_offset: 4,
        }
    }

    /// The length field's type (`package_length_type`). Default `U32(Big)`.
    pub const fn length_type(mut self, length_type: LengthType) -> Self {
        self.length_type = length_type;
        self
    }

    /// Where the length field starts (`package_length_offset`). Default 0, at most
    /// [`MAX_LENGTH_OFFSET`].
    pub const fn length_offset(mut self, offset: usize) -> Self {
        self.length_offset = offset;
        self
    }

    /// Added to the length field to get the packet's full size (`package_body_offset`).
    /// Default 4 (the field counts the body after a 4-byte header); 0 when it counts the whole
    /// packet. At most [`MAX_LENGTH_OFFSET`].
    pub const fn body_offset(mut self, offset: usize) -> Self {
        self.body_offset = offset;
        self
    }

    /// Bytes needed before the length can be read: `length_offset + width`.
    pub const fn header_len(&self) -> usize {
        self.length_offset + self.length_type.width()
    }
}

impl Codec for LengthCodec {
    /// Refuse settings that can never frame anything.
    fn validate(&self) -> Result<(), CodecConfigError> {
        if self.length_offset > MAX_LENGTH_OFFSET {
            return Err(CodecConfigError {
                setting: "package_length_offset",
                reason: format!(
                    "{} is beyond the {MAX_LENGTH_OFFSET}-byte header window",
                    self.length_offset
                ),
            });
        }
        if self.body_offset > MAX_LENGTH_OFFSET {
            return Err(CodecConfigError {
                setting: "package_body_offset",
                reason: format!(
                    "{} is beyond the {MAX_LENGTH_OFFSET}-byte header window",
                    self.body_offset
                ),
            });
        }
        Ok(())
    }

    fn decode(
        &self,
        buf: &[u8],
        _state: &mut DecodeState,
        max_packet: usize,
    ) -> Result<Decoded, FrameError> {
        if self.length_offset > MAX_LENGTH_OFFSET || self.body_offset > MAX_LENGTH_OFFSET {
            // Settings `validate` refuses (a reader that never asked): refused, not a panic.
            return Err(FrameError::Malformed("length codec settings out of range"));
        }
        let header = self.header_len();
        if buf.len() < header {
            return Ok(Decoded::Incomplete { total: None });
        }
        let value = self.length_type.read(&buf[self.length_offset..])?;
        let total = (self.body_offset as u64).saturating_add(value);
        if total < header as u64 {
            return Err(FrameError::Malformed("length is smaller than the header"));
        }
        if total > max_packet as u64 {
            return Err(FrameError::TooLarge {
                length: total,
                max: max_packet,
            });
        }
        let total = total as usize;
        if buf.len() >= total {
            Ok(Decoded::Packet(total))
        } else {
            Ok(Decoded::Incomplete { total: Some(total) })
        }
    }

    fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let header = self.header_len().max(self.body_offset);
        let total = header + body.len();
        let value = (total - self.body_offset) as u64;
        let start = out.len();
        out.resize(start + header, 0);
        self.length_type
            .write(value, &mut out[start + self.length_offset..])
            .inspect_err(|_| out.truncate(start))?;
        out.extend_from_slice(body);
        Ok(())
    }

    /// The shortest valid packet: the header, and the body offset if that is further.
    fn min_packet(&self) -> usize {
        self.header_len().max(self.body_offset)
    }

    fn name(&self) -> &'static str {
        "length"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn offsets_never_validated_are_refused_by_the_reader_not_a_panic() {
        for codec in [
            super::LengthCodec::new().length_offset(usize::MAX - 1),
            super::LengthCodec::new().body_offset(usize::MAX),
        ] {
            let mut reader = crate::FrameReader::new(1024);
            reader.push(b"abcdefgh");
            assert!(reader.next_packet(&codec).is_err());
        }
    }

    use super::*;

    fn decode(codec: &LengthCodec, buf: &[u8], max: usize) -> Result<Decoded, FrameError> {
        codec.decode(buf, &mut DecodeState::default(), max)
    }

    #[test]
    fn default_is_u32_big_endian_body_length() {
        let c = LengthCodec::new();
        assert_eq!(
            decode(&c, b"\0\0\0", 100),
            Ok(Decoded::Incomplete { total: None })
        );
        assert_eq!(
            decode(&c, b"\0\0\0\x03ab", 100),
            Ok(Decoded::Incomplete { total: Some(7) })
        );
        assert_eq!(decode(&c, b"\0\0\0\x03abcXX", 100), Ok(Decoded::Packet(7)));
        assert_eq!(decode(&c, b"\0\0\0\0", 100), Ok(Decoded::Packet(4)));
    }

    #[test]
    fn too_large_is_known_from_the_header() {
        let c = LengthCodec::new();
        assert_eq!(
            decode(&c, b"\x7f\0\0\0", 1024),
            Err(FrameError::TooLarge {
                length: 0x7f00_0004,
                max: 1024
            })
        );
        assert_eq!(
            decode(&c, b"\0\0\x03\xfc", 1024),
            Ok(Decoded::Incomplete { total: Some(1024) })
        );
        assert!(decode(&c, b"\0\0\x03\xfd", 1024).is_err());
    }

    #[test]
    fn whole_packet_length_and_malformed_cases() {
        let c = LengthCodec::new().body_offset(0);
        assert_eq!(decode(&c, b"\0\0\0\x06ab", 100), Ok(Decoded::Packet(6)));
        assert_eq!(
            decode(&c, b"\0\0\0\x02", 100),
            Err(FrameError::Malformed("length is smaller than the header"))
        );
        let signed = LengthCodec::new().length_type(LengthType::I16(Endian::Little));
        assert_eq!(
            decode(&signed, b"\xff\xff", 100),
            Err(FrameError::Malformed("negative length"))
        );
    }

    #[test]
    fn lengths_are_read_in_their_byte_order() {
        use Endian::*;
        let cases: [(LengthType, &[u8]); 8] = [
            (LengthType::U8, b"\x01"),
            (LengthType::U16(Big), b"\x01\x02"),
            (LengthType::U16(Little), b"\x02\x01"),
            (LengthType::I32(Big), b"\0\0\x01\x02"),
            (LengthType::U32(Little), b"\x02\x01\0\0"),
            (LengthType::U64(Big), b"\0\0\0\0\0\0\x01\x02"),
            (LengthType::I64(Little), b"\x02\x01\0\0\0\0\0\0"),
            (LengthType::I8, b"\x7f"),
        ];
        for (t, field) in cases {
            let c = LengthCodec::new().length_type(t).body_offset(t.width());
            let value = if t.width() == 1 {
                field[0] as usize
            } else {
                0x0102
            };
            assert_eq!(
                decode(&c, field, 1 << 20),
                Ok(Decoded::Incomplete {
                    total: Some(t.width() + value)
                }),
                "{t:?}"
            );
        }
        let negative = LengthCodec::new().length_type(LengthType::I64(Big));
        assert_eq!(
            decode(&negative, &[0x80, 0, 0, 0, 0, 0, 0, 1], 100),
            Err(FrameError::Malformed("negative length"))
        );
    }

    #[test]
    fn every_type_round_trips() {
        use Endian::*;
        let types = [
            LengthType::I8,
            LengthType::U8,
            LengthType::I16(Big),
            LengthType::U16(Little),
            LengthType::I32(Native),
            LengthType::U32(Little),
            LengthType::I64(Big),
            LengthType::U64(Native),
        ];
        for t in types {
            for (lo, bo) in [(0, t.width()), (2, 2 + t.width()), (1, 0), (0, 9)] {
                let c = LengthCodec::new()
                    .length_type(t)
                    .length_offset(lo)
                    .body_offset(bo);
                let mut out = Vec::new();
                c.encode(b"hello", &mut out).unwrap();
                assert_eq!(
                    decode(&c, &out, 1000),
                    Ok(Decoded::Packet(out.len())),
                    "{c:?}"
                );
                assert!(out.ends_with(b"hello"));
            }
        }
    }

    #[test]
    fn encode_refuses_what_the_field_cannot_hold() {
        let c = LengthCodec::new()
            .length_type(LengthType::I8)
            .body_offset(1);
        assert!(c.encode(&[0; 127], &mut Vec::new()).is_ok());
        let mut out = vec![9];
        assert!(c.encode(&[0; 128], &mut out).is_err());
        assert_eq!(out, vec![9]);
    }

    #[test]
    fn type_names_parse() {
        assert_eq!("u32be".parse(), Ok(LengthType::U32(Endian::Big)));
        assert_eq!("N".parse(), Ok(LengthType::U32(Endian::Big)));
        assert_eq!("i16le".parse(), Ok(LengthType::I16(Endian::Little)));
        assert_eq!("Q".parse(), Ok(LengthType::U64(Endian::Native)));
        assert!("u24be".parse::<LengthType>().is_err());
    }

    #[test]
    fn offsets_are_validated() {
        assert!(LengthCodec::new().validate().is_ok());
        let err = LengthCodec::new()
            .length_offset(9000)
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "package_length_offset");
        let err = LengthCodec::new().body_offset(9000).validate().unwrap_err();
        assert_eq!(err.setting, "package_body_offset");
    }
}
