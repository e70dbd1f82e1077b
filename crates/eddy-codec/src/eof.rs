use crate::{Codec, CodecConfigError, DecodeState, Decoded, FrameError};

/// The longest delimiter an [`EofCodec`] accepts (Swoole's limit).
pub const MAX_DELIMITER_LEN: usize = 8;

/// Packets end with a delimiter of 1 to 8 bytes (Swoole's `package_eof`).
///
/// In *split* mode (the default, Swoole's `open_eof_split`) each packet is the bytes up to and
/// including the next delimiter. In *check* mode (`open_eof_check` alone) the whole buffer is
/// handed over once it ends with the delimiter, and may hold several messages. Either way a
/// buffer that reaches the maximum packet size without its delimiter is too large.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EofCodec {
    delimiter: Vec<u8>,
    split: bool,
}

impl EofCodec {
    /// Split at every `delimiter` (1 to 8 bytes; checked by [`EofCodec::validate`]).
    pub fn new(delimiter: impl Into<Vec<u8>>) -> Self {
        EofCodec {
            delimiter: delimiter.into(),
            split: true,
        }
    }

    /// One packet per `\n`-terminated line, `\n` included.
    pub fn line() -> Self {
        EofCodec::new(b"\n".to_vec())
    }

    /// Check mode: hand over the whole buffer once it ends with the delimiter.
    pub fn check_only(mut self) -> Self {
        self.split = false;
        self
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        &self.delimiter
    }
}

impl Codec for EofCodec {
    /// Refuse an empty or over-long delimiter (`package_eof`).
    fn validate(&self) -> Result<(), CodecConfigError> {
        if self.delimiter.is_empty() || self.delimiter.len() > MAX_DELIMITER_LEN {
            return Err(CodecConfigError {
                setting: "package_eof",
                reason: format!(
                    "the delimiter must be 1 to {MAX_DELIMITER_LEN} bytes, not {}",
                    self.delimiter.len()
                ),
            });
        }
        Ok(())
    }

    fn decode(
        &self,
        buf: &[u8],
        state: &mut DecodeState,
        max_packet: usize,
    ) -> Result<Decoded, FrameError> {
        let delim = &self.delimiter[..];
        if self.split {
            // Resume where the last search stopped, minus a partial delimiter.
            // (An empty delimiter, which `validate` refuses, must not panic here either.)
            let from = state
                .scanned
                .saturating_sub(delim.len().saturating_sub(1))
                .min(buf.len());
            let found = find(&buf[from..], delim);
            if let Some(at) = found {
                let total = from + at + delim.len();
                state.scanned = 0;
                if total > max_packet {
                    return Err(FrameError::TooLarge {
                        length: total as u64,
                        max: max_packet,
                    });
                }
                return Ok(Decoded::Packet(total));
            }
            state.scanned = buf.len();
        } else if buf.ends_with(delim) && buf.len() <= max_packet {
            return Ok(Decoded::Packet(buf.len()));
        }
        if buf.len() >= max_packet {
            return Err(FrameError::TooLarge {
                length: buf.len() as u64,
                max: max_packet,
            });
        }
        Ok(Decoded::Incomplete { total: None })
    }

    fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        out.extend_from_slice(body);
        out.extend_from_slice(&self.delimiter);
        Ok(())
    }

    /// A packet holds at least its delimiter.
    fn min_packet(&self) -> usize {
        self.delimiter.len().max(1)
    }

    fn name(&self) -> &'static str {
        if self.split {
            "eof"
        } else {
            "eof-check"
        }
    }
}

/// The first `delim` in `hay`: `memchr` for its last byte (delimiters end in a rare byte,
/// like `\n` or `\0`, so this skips ahead fast), then a check of the bytes before it.
/// Faster than a general substring search on both short and long buffers for 1 to 8 bytes.
fn find(hay: &[u8], delim: &[u8]) -> Option<usize> {
    let (&last, head) = delim.split_last()?;
    let mut from = head.len();
    while from < hay.len() {
        let end = from + memchr::memchr(last, &hay[from..])?;
        let start = end - head.len();
        if &hay[start..end] == head {
            return Some(start);
        }
        from = end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_empty_delimiter_never_validated_is_refused_by_the_reader_not_a_panic() {
        let codec = super::EofCodec::new(Vec::new());
        let mut reader = crate::FrameReader::new(10);
        reader.push(b"abc");
        assert_eq!(reader.next_packet(&codec), Ok(None), "no delimiter to find");
        reader.push(b"defghijk");
        assert!(reader.next_packet(&codec).is_err(), "too large, in the end");
    }

    #[test]
    fn find_matches_a_naive_search() {
        let hays: [&[u8]; 6] = [b"", b"\r", b"\r\n", b"a\r\r\nb", b"\n\r\n", b"xx\r\nyy\r\n"];
        for hay in hays {
            for delim in [&b"\r\n"[..], b"\n", b"x\r", b"\r\r\n"] {
                let naive = hay.windows(delim.len()).position(|w| w == delim);
                assert_eq!(super::find(hay, delim), naive, "{hay:?} {delim:?}");
            }
        }
    }

    use super::*;

    #[test]
    fn split_mode_cuts_at_each_delimiter_and_resumes() {
        let c = EofCodec::new(b"\r\n".to_vec());
        let mut st = DecodeState::default();
        assert_eq!(
            c.decode(b"ab\r", &mut st, 100),
            Ok(Decoded::Incomplete { total: None })
        );
        assert_eq!(
            c.decode(b"ab\r\ncd\r\n", &mut st, 100),
            Ok(Decoded::Packet(4))
        );
        assert_eq!(c.decode(b"cd\r\n", &mut st, 100), Ok(Decoded::Packet(4)));
    }

    #[test]
    fn split_mode_limits() {
        let c = EofCodec::line();
        let mut st = DecodeState::default();
        assert_eq!(
            c.decode(b"abcd", &mut st, 4),
            Err(FrameError::TooLarge { length: 4, max: 4 })
        );
        let mut st = DecodeState::default();
        assert_eq!(c.decode(b"abc\n", &mut st, 4), Ok(Decoded::Packet(4)));
        let mut st = DecodeState::default();
        assert!(c.decode(b"abcd\n", &mut st, 4).is_err());
    }

    #[test]
    fn check_mode_hands_over_the_whole_buffer() {
        let c = EofCodec::new(b"\r\n".to_vec()).check_only();
        let mut st = DecodeState::default();
        assert_eq!(
            c.decode(b"a\r\nb", &mut st, 100),
            Ok(Decoded::Incomplete { total: None })
        );
        assert_eq!(
            c.decode(b"a\r\nb\r\n", &mut st, 100),
            Ok(Decoded::Packet(6))
        );
    }

    #[test]
    fn delimiter_is_validated() {
        assert_eq!(
            EofCodec::new(Vec::new()).validate().unwrap_err().setting,
            "package_eof"
        );
        assert!(EofCodec::new(vec![b'x'; 9]).validate().is_err());
        assert!(EofCodec::new(vec![b'x'; 8]).validate().is_ok());
    }

    #[test]
    fn encode_appends_the_delimiter() {
        let mut out = Vec::new();
        EofCodec::line().encode(b"hi", &mut out).unwrap();
        assert_eq!(out, b"hi\n");
    }
}
