//! What the fuzz targets share: a reader that works as eddy's reactor does, and a cursor that
//! takes a codec's settings and the read sizes from the front of the fuzzer's input.
//!
//! Every target feeds the rest of the input through [`Reader`] as garbage, cut into reads of
//! the sizes the input chose, then encodes bodies taken from the input and checks that the
//! same reads give back exactly the packets that were sent.

use eddy_codec::{Codec, FrameError, FrameReader, IMPOSSIBLE_LENGTH};

/// The most bodies a target sends in one stream.
pub const MAX_BODIES: usize = 64;

/// The input, consumed from the front; reads past its end give zeros.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor over the fuzzer's input.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes as a little-endian number, or 0.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Read sizes: a count (0 to 15), then one byte per read (1 to 256 bytes each).
    pub fn reads(&mut self) -> Reads {
        let count = usize::from(self.byte() % 16);
        Reads(
            self.bytes(count)
                .iter()
                .map(|&b| usize::from(b) + 1)
                .collect(),
        )
    }

    /// Everything not consumed yet.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// The sizes of successive reads, used in turn, again and again. None: one read of everything.
#[derive(Clone, Debug)]
pub struct Reads(pub Vec<usize>);

impl Reads {
    /// Cut `stream` into reads.
    pub fn cut<'s>(&self, stream: &'s [u8]) -> Vec<&'s [u8]> {
        if self.0.is_empty() {
            return vec![stream];
        }
        let mut out = Vec::new();
        let mut rest = stream;
        for &size in self.0.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (read, tail) = rest.split_at(size.min(rest.len()));
            out.push(read);
            rest = tail;
        }
        out
    }

    /// Cut `data` into bodies of the same sizes, shifted by one so bodies and reads differ.
    pub fn bodies<'s>(&self, data: &'s [u8]) -> Vec<&'s [u8]> {
        if self.0.is_empty() {
            return Reads(vec![16]).cut_any(data);
        }
        let mut sizes = self.0.clone();
        sizes.rotate_left(1);
        Reads(sizes.iter().map(|s| s - 1).collect()).cut_any(data)
    }

    /// Like [`cut`](Self::cut), but sizes may be 0 (empty bodies); at most [`MAX_BODIES`],
    /// the last one taking the rest.
    fn cut_any<'s>(&self, data: &'s [u8]) -> Vec<&'s [u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        for &size in self.0.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let size = if out.len() + 1 == MAX_BODIES {
                rest.len()
            } else {
                size.min(rest.len())
            };
            let (body, tail) = rest.split_at(size);
            out.push(body);
            rest = tail;
        }
        out
    }
}

/// What the reactor does with one connection's bytes: append each read to a buffer, cut every
/// whole packet off its front, keep the rest for the next read. It asserts on the way what
/// every codec promises.
#[derive(Debug)]
pub struct Reader<'c, C: Codec + ?Sized> {
    codec: &'c C,
    max: usize,
    frames: FrameReader,
    /// The packets cut so far.
    pub packets: Vec<Vec<u8>>,
    largest_read: usize,
}

impl<'c, C: Codec + ?Sized> Reader<'c, C> {
    /// A reader of packets up to `max` bytes.
    pub fn new(codec: &'c C, max: usize) -> Self {
        Reader {
            codec,
            max,
            frames: FrameReader::new(max),
            packets: Vec::new(),
            largest_read: 0,
        }
    }

    /// One read: cut what can be cut.
    pub fn read(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
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

    /// Feed every read: the packets, and whether the stream ended cleanly (no error, nothing
    /// left over).
    pub fn feed(mut self, reads: &[&[u8]]) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
        for read in reads {
            if let Err(err) = self.read(read) {
                return (self.packets, Err(err));
            }
        }
        let end = if self.frames.buffered() == 0 {
            Ok(())
        } else {
            Err(FrameError::Malformed("bytes left over"))
        };
        (self.packets, end)
    }
}

/// Feed arbitrary bytes: whatever happens, the packets are the front of the stream, in order.
pub fn garbage<C: Codec + ?Sized>(codec: &C, max: usize, reads: &Reads, data: &[u8]) {
    let (packets, _) = Reader::new(codec, max).feed(&reads.cut(data));
    let taken: usize = packets.iter().map(Vec::len).sum();
    assert!(taken <= data.len());
    assert_eq!(packets.concat(), data[..taken]);
}

/// Feed the packets `sent`, back to back: exactly they come out, whatever the reads.
pub fn round_trip<C: Codec + ?Sized>(codec: &C, reads: &Reads, sent: &[Vec<u8>]) {
    let max = sent
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(codec.min_packet());
    let stream = sent.concat();
    let (got, end) = Reader::new(codec, max).feed(&reads.cut(&stream));
    assert_eq!(end, Ok(()));
    assert_eq!(got, sent);
}

/// The largest packet a target accepts for garbage: from the input, at least what the codec
/// needs.
pub fn max_packet<C: Codec + ?Sized>(codec: &C, input: &mut Input<'_>) -> usize {
    usize::from(input.u16() % 4096).max(codec.min_packet())
}

/// Drop bytes from `body` until `body + delimiter` holds the delimiter only at its end.
pub fn without_delimiter(body: &[u8], delimiter: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
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

/// A delimiter of 1 to 8 bytes from the input.
pub fn delimiter(input: &mut Input<'_>) -> Vec<u8> {
    let len = 1 + usize::from(input.byte() % 8);
    let mut delimiter = input.bytes(len).to_vec();
    delimiter.resize(len, b'\n');
    delimiter
}
