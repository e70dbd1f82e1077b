/// XOR `data` with the frame's masking key (RFC 6455 §5.3), in place; applying it twice
/// gives the data back.
///
/// `offset` is how many payload bytes of the same frame came before `data`, so a payload can
/// be unmasked piece by piece as it arrives. Works 8 bytes at a time.
///
/// ```
/// use eddy_ws::frame::apply_mask;
///
/// let mask = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"\x7f\x9f\x4d\x51\x58";
/// apply_mask(&mut data[..2], mask, 0);
/// apply_mask(&mut data[2..], mask, 2);
/// assert_eq!(&data, b"Hello");
/// ```
#[inline]
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let shift = offset % 4;
    let mask = [
        mask[shift],
        mask[(shift + 1) % 4],
        mask[(shift + 2) % 4],
        mask[(shift + 3) % 4],
    ];
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(&*chunk) else {
            unreachable!("chunks_exact_mut(8) gives 8 bytes")
        };
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // 8 is a multiple of 4: the tail starts at mask[0] again.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_the_byte_at_a_time_definition() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            for offset in 0..8 {
                let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(31)).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, mask, offset);
                naive(&mut slow, mask, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn pieces_equal_the_whole() {
        let mask = [1, 2, 3, 4];
        let mut whole: Vec<u8> = (0..100).collect();
        let mut pieces = whole.clone();
        apply_mask(&mut whole, mask, 0);
        let (a, rest) = pieces.split_at_mut(3);
        let (b, c) = rest.split_at_mut(30);
        apply_mask(a, mask, 0);
        apply_mask(b, mask, 3);
        apply_mask(c, mask, 33);
        assert_eq!(whole, pieces);
    }
}
