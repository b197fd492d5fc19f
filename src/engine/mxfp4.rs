//! MXFP4 (the OCP microscaling format gpt-oss' experts are released in): blocks of 32 values,
//! each a 4-bit float (E2M1), sharing one power-of-two scale (E8M0, bias 127). Expanded to
//! f32 at load, as transformers' `convert_moe_packed_tensors` does.

use rayon::prelude::*;

/// The sixteen E2M1 values, by their 4-bit code (sign in the high bit).
pub const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// Bytes per block: 32 values, two to a byte.
pub const BLOCK_BYTES: usize = 16;

/// The values of `blocks` (16 bytes per block, the low nibble first) scaled by their block's
/// `scales` byte: `2^(scale − 127)`. One scale per block; the caller checked the lengths.
pub fn dequantize(blocks: &[u8], scales: &[u8]) -> Vec<f32> {
    // gpt-oss-20b has 19 billion of these values: in parallel, a block at a time.
    let mut out = vec![0f32; blocks.len() * 2];
    out.par_chunks_mut(2 * BLOCK_BYTES)
        .zip(blocks.par_chunks_exact(BLOCK_BYTES))
        .zip(scales.par_iter())
        .for_each(|((values, block), &scale)| {
            let factor = e8m0_scale(scale);
            for (pair, &byte) in values.chunks_exact_mut(2).zip(block) {
                pair[0] = E2M1[usize::from(byte & 0x0f)] * factor;
                pair[1] = E2M1[usize::from(byte >> 4)] * factor;
            }
        });
    out
}

/// An E8M0 scale, `2^(e − 127)`, built from its bits (`e = 0` is the denormal 2^-127).
pub fn e8m0_scale(e: u8) -> f32 {
    let e = u32::from(e);
    f32::from_bits(if e == 0 { 0x0040_0000 } else { e << 23 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_scales_by_hand() {
        // 0x21: low nibble 1 (0.5), high 2 (1.0), scale 128 (×2) → 1, 2. 0x9f: low 0xf (−6),
        // high 0x9 (−0.5), scale 126 (×½) → −3, −0.25. The other bytes are 0.
        let mut blocks = vec![0u8; 2 * BLOCK_BYTES];
        blocks[0] = 0x21;
        blocks[BLOCK_BYTES + 3] = 0x9f;
        let values = dequantize(&blocks, &[128, 126]);
        assert_eq!(values.len(), 64);
        assert_eq!(&values[..3], &[1.0, 2.0, 0.0]);
        assert_eq!(&values[32 + 6..32 + 8], &[-3.0, -0.25]);
        assert_eq!(values.iter().filter(|v| **v != 0.0).count(), 4);
    }
}
