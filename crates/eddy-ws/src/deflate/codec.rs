use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::DeflateError;

/// The 4 bytes a sync flush ends with, which RFC 7692 §7.2.1 removes from each message and
/// §7.2.2 appends again before inflating.
pub const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib-rs compresses with: a request for 8 bits is compressed with 9,
/// which zlib-rs (like zlib) never lets reach further back than 250 bytes, so a 256-byte
/// window inflates it.
pub const MIN_WINDOW_BITS: u8 = 9;

/// One connection's compressor for the messages it sends (RFC 7692 §7.2.1).
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
    /// A raw-DEFLATE compressor with a window of `window_bits` (8 to 15; 8 compresses with 9,
    /// see [`MIN_WINDOW_BITS`]) at `level` (0 to 9). With `no_context_takeover`, every message
    /// is compressed on its own.
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        let bits = window_bits.clamp(MIN_WINDOW_BITS, 15);
        Deflater {
            compress: Compress::new_with_window_bits(Compression::new(level.min(9)), false, bits),
            no_context_takeover,
        }
    }

    /// Append one whole message, compressed, to `out`: a sync flush with its trailing
    /// `00 00 ff ff` removed. An empty message is the single byte `00` (§7.2.3.6).
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        if input.is_empty() {
            out.push(0x00);
            return Ok(());
        }
        let start = out.len();
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve((input.len() - consumed) / 2 + 128);
            }
            let (in_before, out_before) = (self.compress.total_in(), out.len());
            self.compress
                .compress_vec(&input[consumed..], out, FlushCompress::Sync)
                .map_err(|e| DeflateError::Compress(e.to_string()))?;
            consumed += (self.compress.total_in() - in_before) as usize;
            // zlib stops with room to spare only once the flush is complete.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
            if self.compress.total_in() == in_before && out.len() == out_before {
                return Err(DeflateError::Compress("no progress".into()));
            }
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

/// One connection's decompressor for the messages it receives (RFC 7692 §7.2.2), bounded:
/// inflating never produces more than the `max` it is given.
pub struct Inflater {
    decompress: Decompress,
    window_bits: u8,
    no_context_takeover: bool,
    /// The peer ended its DEFLATE stream (a block with BFINAL): the rest of the message is
    /// ignored, and the next message starts a new stream.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A raw-DEFLATE decompressor whose window holds `window_bits` (8 to 15; a window of 9 is
    /// the least zlib-rs has, and a larger one reads smaller windows' data). With
    /// `no_context_takeover`, every message is inflated on its own.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        let window_bits = window_bits.clamp(MIN_WINDOW_BITS, 15);
        Inflater {
            decompress: Decompress::new_with_window_bits(false, window_bits),
            window_bits,
            no_context_takeover,
            ended: false,
        }
    }

    /// Inflate the next piece of a message's compressed payload, appending to `out`, which
    /// must never grow past `max` bytes: [`DeflateError::TooLarge`] if it would.
    pub fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), DeflateError> {
        let limit = max.saturating_add(1);
        while !self.ended {
            if out.len() == out.capacity() {
                if out.capacity().saturating_mul(2) >= limit {
                    // Doubling would pass the limit: grow once, to exactly the limit.
                    out.reserve_exact(limit - out.len());
                } else {
                    out.reserve(input.len().saturating_mul(4).clamp(256, 1 << 16));
                }
            }
            let (in_before, out_before) = (self.decompress.total_in(), out.len());
            let status = self
                .decompress
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| DeflateError::Corrupt(e.to_string()))?;
            if out.len() > max {
                return Err(DeflateError::TooLarge { max });
            }
            input = &input[(self.decompress.total_in() - in_before) as usize..];
            if status == Status::StreamEnd {
                self.ended = true;
            } else if input.is_empty() && out.len() < out.capacity() {
                break;
            } else if self.decompress.total_in() == in_before
                && out.len() == out_before
                && out.len() < out.capacity()
            {
                return Err(DeflateError::Corrupt("inflate made no progress".into()));
            }
        }
        Ok(())
    }

    /// The message's compressed payload is all given: inflate the trailer RFC 7692 removed,
    /// then get ready for the next message.
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), DeflateError> {
        self.inflate(&TRAILER, out, max)?;
        if self.no_context_takeover || self.ended {
            self.decompress.reset(false);
            self.ended = false;
        }
        Ok(())
    }

    /// Inflate one whole message (as [`inflate`](Self::inflate) then
    /// [`finish`](Self::finish)).
    pub fn inflate_message(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), DeflateError> {
        self.inflate(input, out, max)?;
        self.finish(out, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7692_hello() {
        // §7.2.3.1: "Hello" compressed, as one frame.
        let mut out = Vec::new();
        Deflater::new(15, 6, false)
            .compress(b"Hello", &mut out)
            .unwrap();
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut text = Vec::new();
        Inflater::new(15, false)
            .inflate_message(&out, &mut text, 100)
            .unwrap();
        assert_eq!(text, b"Hello");
        // §7.2.3.2: the second "Hello" with context takeover is shorter.
        let mut second = Vec::new();
        let mut inflater = Inflater::new(15, false);
        for packet in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
        ] {
            second.clear();
            inflater.inflate_message(packet, &mut second, 100).unwrap();
            assert_eq!(second, b"Hello");
        }
        // §7.2.3.3: a stored (uncompressed) block, and §7.2.3.6: an empty message.
        let mut stored = Vec::new();
        Inflater::new(15, false)
            .inflate_message(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                &mut stored,
                100,
            )
            .unwrap();
        assert_eq!(stored, b"Hello");
        let mut empty = Vec::new();
        Deflater::new(15, 1, false)
            .compress(b"", &mut empty)
            .unwrap();
        assert_eq!(empty, [0x00]);
        let mut nothing = Vec::new();
        Inflater::new(15, false)
            .inflate_message(&empty, &mut nothing, 0)
            .unwrap();
        assert!(nothing.is_empty());
    }

    #[test]
    fn context_takeover_and_not() {
        for (bits, nct) in [(15, false), (15, true), (9, false), (8, true), (12, false)] {
            let mut deflater = Deflater::new(bits, 1, nct);
            let mut inflater = Inflater::new(bits, nct);
            let mut sizes = Vec::new();
            for i in 0..5 {
                let message = format!("{{\"id\":{i},\"text\":\"the same words again and again\"}}");
                let mut packed = Vec::new();
                deflater.compress(message.as_bytes(), &mut packed).unwrap();
                sizes.push(packed.len());
                let mut unpacked = Vec::new();
                inflater
                    .inflate_message(&packed, &mut unpacked, 1000)
                    .unwrap();
                assert_eq!(unpacked, message.as_bytes(), "bits {bits} nct {nct}");
            }
            // With context takeover the later messages refer back to the first.
            assert_eq!(
                sizes[4] < sizes[0],
                !nct,
                "bits {bits} nct {nct}: {sizes:?}"
            );
        }
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let bomb = vec![0u8; 8 << 20];
        let mut packed = Vec::new();
        Deflater::new(15, 9, true)
            .compress(&bomb, &mut packed)
            .unwrap();
        assert!(packed.len() < 16 << 10, "{}", packed.len());
        let mut out = Vec::new();
        let max = 1 << 20;
        assert_eq!(
            Inflater::new(15, false).inflate_message(&packed, &mut out, max),
            Err(DeflateError::TooLarge { max })
        );
        assert!(out.capacity() <= max + 1, "{}", out.capacity());
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        let mut packed = Vec::new();
        Deflater::new(15, 9, true)
            .compress(&bomb[..max], &mut packed)
            .unwrap();
        Inflater::new(15, false)
            .inflate_message(&packed, &mut out, max)
            .unwrap();
        assert_eq!(out.len(), max);
    }

    #[test]
    fn garbage_is_corrupt_and_bfinal_restarts() {
        let mut out = Vec::new();
        let err = Inflater::new(15, false)
            .inflate_message(&[0xff, 0xff, 0xff], &mut out, 100)
            .unwrap_err();
        assert!(matches!(err, DeflateError::Corrupt(_)), "{err:?}");
        assert_eq!(err.close_code(), 1007);
        // A message that ends its DEFLATE stream (BFINAL), then one that starts anew.
        let mut inflater = Inflater::new(15, false);
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        for _ in 0..2 {
            out.clear();
            inflater
                .inflate_message(&final_block, &mut out, 100)
                .unwrap();
            assert_eq!(out, b"Hello");
        }
    }
}
