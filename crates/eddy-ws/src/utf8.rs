//! UTF-8 checked piece by piece, so a text message fails as soon as a piece proves it invalid.

/// Incremental UTF-8 validation: feed a message's bytes in pieces of any size, then finish.
///
/// It keeps the up to 3 bytes of a code point cut by a piece boundary. A piece fails as soon
/// as its bytes cannot begin valid UTF-8, even when the code point they start is incomplete
/// (`F4 90` can never be valid: the error comes without waiting for the next piece).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// A piece that proves the text is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Utf8Validator {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Check the next piece of the text.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len > 0 {
            let have = usize::from(self.partial_len);
            let width = width(self.partial[0]);
            let take = (width - have).min(piece.len());
            let mut buf = self.partial;
            buf[have..have + take].copy_from_slice(&piece[..take]);
            match std::str::from_utf8(&buf[..have + take]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_some() => return Err(Utf8Error),
                Err(_) => {
                    // Still a valid prefix, still incomplete: the piece is used up.
                    self.partial = buf;
                    self.partial_len = (have + take) as u8;
                    return Ok(());
                }
            }
            piece = &piece[take..];
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            Err(e) => {
                let tail = &piece[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// The text ended: `Err` if it ends inside a code point. Resets the validator.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.partial_len == 0;
        *self = Utf8Validator::new();
        if complete {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }
}

/// The length of the code point a valid lead byte starts.
fn width(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &[u8], cuts: &[usize]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        let mut at = 0;
        for &cut in cuts {
            v.feed(&text[at..cut])?;
            at = cut;
        }
        v.feed(&text[at..])?;
        v.finish()
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "a€𝄞b".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xf0\x9f\x98",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"ab\xff",
            b"",
        ];
        for text in samples {
            let expected = std::str::from_utf8(text).is_ok();
            for i in 0..=text.len() {
                for j in i..=text.len() {
                    assert_eq!(pieces(text, &[i, j]).is_ok(), expected, "{text:x?} {i} {j}");
                }
            }
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ok \xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(Utf8Error)); // above U+10FFFF
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xed\xa0"), Err(Utf8Error)); // a surrogate
    }

    #[test]
    fn finish_resets() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xe2\x82").unwrap();
        assert_eq!(v.finish(), Err(Utf8Error));
        v.feed(b"fine").unwrap();
        assert_eq!(v.finish(), Ok(()));
    }
}
