//! `cargo bench --bench codec [-- --quick]`: how fast each codec cuts a buffer into packets.
//!
//! Each benchmark decodes a buffer of about 2 MiB holding many packets of one size (64 B,
//! 1 KiB, 64 KiB), as the reactor does: `decode` from the front, step over each packet, until
//! the buffer is used up. Throughput is in bytes of buffer per second. `typed` also turns each
//! packet into a value (`decode_message`: framing plus bincode).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eddy_codec::{Codec, DecodeState, Decoded, EofCodec, LengthCodec, RawCodec, TypedCodec};

/// Bytes of packets in each benchmark's buffer.
const BUFFER: usize = 2 << 20;

/// Packet sizes, framing included.
const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

/// A typed message: a few fields and a text that fills the packet.
type Message = (u64, Vec<u32>, String);

/// Body bytes that never hold `\r` or `\n`.
fn filler(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Packets of `size` bytes framed by `codec`, back to back, filling about [`BUFFER`] bytes.
fn stream(codec: &dyn Codec, size: usize, framing: usize) -> Vec<u8> {
    let body = filler(size - framing);
    let mut out = Vec::with_capacity(BUFFER + size);
    while out.len() < BUFFER {
        codec.encode(&body, &mut out).unwrap();
    }
    out
}

/// Cut every packet off `buf` as the reactor does; the number of packets.
fn cut_all(codec: &dyn Codec, buf: &[u8], max: usize) -> usize {
    let mut state = DecodeState::default();
    let mut whole = 0;
    let mut packets = 0;
    while let Ok(Decoded::Packet(n)) = codec.decode(&buf[whole..], &mut state, max) {
        whole += n;
        packets += 1;
    }
    assert_eq!(whole, buf.len(), "{codec:?} left bytes over");
    packets
}

/// A message whose packet is `size` bytes.
fn message(size: usize) -> Message {
    let codec = TypedCodec::<Message>::new();
    let mut msg: Message = (7, (0..8).collect(), String::new());
    let mut packet = Vec::new();
    codec.encode_message(&msg, &mut packet).unwrap();
    // The text's own length prefix grows with it: shrink until the packet fits exactly.
    let mut text = size - packet.len();
    loop {
        msg.2 = String::from_utf8(filler(text)).unwrap();
        packet.clear();
        codec.encode_message(&msg, &mut packet).unwrap();
        if packet.len() <= size {
            return msg;
        }
        text -= packet.len() - size;
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let framed: [(&str, Box<dyn Codec>, usize); 4] = [
        ("length", Box::new(LengthCodec::new()), 4),
        ("eof", Box::new(EofCodec::new(b"\r\n".to_vec())), 2),
        ("line", Box::new(EofCodec::line()), 1),
        ("raw", Box::new(RawCodec), 0),
    ];
    for (size, label) in SIZES {
        for (name, codec, framing) in &framed {
            let buf = stream(&**codec, size, *framing);
            group.throughput(Throughput::Bytes(buf.len() as u64));
            group.bench_with_input(BenchmarkId::new(*name, label), &buf, |b, buf| {
                // Raw hands over `max` bytes at a time: the packet size.
                b.iter(|| cut_all(&**codec, black_box(buf), size));
            });
        }

        let codec = TypedCodec::<Message>::new();
        let msg = message(size);
        let mut buf = Vec::with_capacity(BUFFER + size);
        while buf.len() < BUFFER {
            codec.encode_message(&msg, &mut buf).unwrap();
        }
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_with_input(BenchmarkId::new("typed", label), &buf, |b, buf| {
            b.iter(|| {
                let buf = black_box(&buf[..]);
                let mut state = DecodeState::default();
                let mut whole = 0;
                while let Ok(Decoded::Packet(n)) = codec.decode(&buf[whole..], &mut state, size) {
                    let msg = codec.decode_message(&buf[whole..whole + n]).unwrap();
                    black_box(msg);
                    whole += n;
                }
                assert_eq!(whole, buf.len());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
