//! GGUF storage types candle cannot read, dequantized to f32 here: llama.cpp's i-quants (IQ1–IQ4,
//! the most common low-bit files), its ternary types (TQ1_0, TQ2_0), the 4-bit float blocks
//! (MXFP4, NVFP4) and F64. Each follows gguf-py's `dequantize_blocks` (the code transformers'
//! GGUF loader runs), arithmetic in the same order, so the values are the same bits;
//! `tests/gguf.rs` checks every type against gguf-py on blocks that
//! `scripts/make_fixtures.py --only quants` wrote.

mod grids;

use std::sync::LazyLock;

use half::f16;
use rayon::prelude::*;

use grids::PackedGrid;

use super::mxfp4::E2M1;

/// A storage type this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantType {
    Iq2Xxs,
    Iq2Xs,
    Iq2S,
    Iq3Xxs,
    Iq3S,
    Iq1S,
    Iq1M,
    Iq4Nl,
    Iq4Xs,
    Tq1_0,
    Tq2_0,
    Mxfp4,
    Nvfp4,
    F64,
}

/// Values per super-block of the k- and i-quants.
const QK_K: usize = 256;

impl QuantType {
    pub const ALL: [Self; 14] = [
        Self::Iq2Xxs,
        Self::Iq2Xs,
        Self::Iq2S,
        Self::Iq3Xxs,
        Self::Iq3S,
        Self::Iq1S,
        Self::Iq1M,
        Self::Iq4Nl,
        Self::Iq4Xs,
        Self::Tq1_0,
        Self::Tq2_0,
        Self::Mxfp4,
        Self::Nvfp4,
        Self::F64,
    ];

    /// The type of a ggml type id, if this module reads it.
    pub fn from_type_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_id() == id)
    }

    /// ggml's id for the type (`enum ggml_type`).
    pub fn type_id(self) -> u32 {
        match self {
            Self::Iq2Xxs => 16,
            Self::Iq2Xs => 17,
            Self::Iq3Xxs => 18,
            Self::Iq1S => 19,
            Self::Iq4Nl => 20,
            Self::Iq3S => 21,
            Self::Iq2S => 22,
            Self::Iq4Xs => 23,
            Self::F64 => 28,
            Self::Iq1M => 29,
            Self::Tq1_0 => 34,
            Self::Tq2_0 => 35,
            Self::Mxfp4 => 39,
            Self::Nvfp4 => 40,
        }
    }

    /// llama.cpp's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Iq2Xxs => "IQ2_XXS",
            Self::Iq2Xs => "IQ2_XS",
            Self::Iq2S => "IQ2_S",
            Self::Iq3Xxs => "IQ3_XXS",
            Self::Iq3S => "IQ3_S",
            Self::Iq1S => "IQ1_S",
            Self::Iq1M => "IQ1_M",
            Self::Iq4Nl => "IQ4_NL",
            Self::Iq4Xs => "IQ4_XS",
            Self::Tq1_0 => "TQ1_0",
            Self::Tq2_0 => "TQ2_0",
            Self::Mxfp4 => "MXFP4",
            Self::Nvfp4 => "NVFP4",
            Self::F64 => "F64",
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            Self::Iq4Nl | Self::Mxfp4 => 32,
            Self::Nvfp4 => 64,
            Self::F64 => 1,
            _ => QK_K,
        }
    }

    /// Bytes per block (gguf-py's `GGML_QUANT_SIZES`).
    pub fn type_size(self) -> usize {
        match self {
            Self::Iq2Xxs => 2 + QK_K / 4,
            Self::Iq2Xs => 2 + QK_K / 4 + QK_K / 32,
            Self::Iq2S => 2 + QK_K / 4 + QK_K / 16,
            Self::Iq3Xxs => 2 + QK_K / 4 + QK_K / 8,
            Self::Iq3S => 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4,
            Self::Iq1S => 2 + QK_K / 8 + QK_K / 16,
            Self::Iq1M => QK_K / 8 + QK_K / 16 + QK_K / 32,
            Self::Iq4Nl => 2 + 16,
            Self::Iq4Xs => 2 + 2 + QK_K / 2 + QK_K / 64,
            Self::Tq1_0 => 2 + 4 * 13,
            Self::Tq2_0 => 2 + 64,
            Self::Mxfp4 => 1 + 16,
            Self::Nvfp4 => 4 + 32,
            Self::F64 => 8,
        }
    }

    /// The values of `bytes`, whole blocks of this type, in order. Errors when `bytes` is not a
    /// whole number of blocks.
    pub fn dequantize(self, bytes: &[u8]) -> Result<Vec<f32>, String> {
        let (size, values) = (self.type_size(), self.block_size());
        if !bytes.len().is_multiple_of(size) {
            return Err(format!(
                "{} bytes are not a whole number of {} blocks of {size} bytes",
                bytes.len(),
                self.name()
            ));
        }
        let block: fn(&[u8], &mut [f32]) = match self {
            Self::Iq2Xxs => iq2_xxs,
            Self::Iq2Xs => iq2_xs,
            Self::Iq2S => iq2_s,
            Self::Iq3Xxs => iq3_xxs,
            Self::Iq3S => iq3_s,
            Self::Iq1S => iq1_s,
            Self::Iq1M => iq1_m,
            Self::Iq4Nl => iq4_nl,
            Self::Iq4Xs => iq4_xs,
            Self::Tq1_0 => tq1_0,
            Self::Tq2_0 => tq2_0,
            Self::Mxfp4 => mxfp4,
            Self::Nvfp4 => nvfp4,
            Self::F64 => |b, out| out[0] = f64::from_le_bytes(array(b, 0)) as f32,
        };
        let blocks = bytes.len() / size;
        let mut out = vec![0f32; blocks * values];
        // An 8B model holds billions of these values: in parallel, a few thousand at a time.
        let per_task = (4096 / values).max(1);
        out.par_chunks_mut(values * per_task)
            .zip(bytes.par_chunks(size * per_task))
            .for_each(|(out, bytes)| {
                for (out, bytes) in out.chunks_exact_mut(values).zip(bytes.chunks_exact(size)) {
                    block(bytes, out);
                }
            });
        Ok(out)
    }

    /// The lookup grid the type decodes with, rows of `width` values one after another, and that
    /// width; `None` for types without one.
    pub fn grid(self) -> Option<(&'static [f32], usize)> {
        let (grid, packed) = match self {
            Self::Iq2Xxs => (&*IQ2XXS_GRID, &grids::IQ2XXS),
            Self::Iq2Xs => (&*IQ2XS_GRID, &grids::IQ2XS),
            Self::Iq2S => (&*IQ2S_GRID, &grids::IQ2S),
            Self::Iq3Xxs => (&*IQ3XXS_GRID, &grids::IQ3XXS),
            Self::Iq3S => (&*IQ3S_GRID, &grids::IQ3S),
            Self::Iq1S | Self::Iq1M => (&*IQ1S_GRID, &grids::IQ1S),
            _ => return None,
        };
        Some((grid.as_slice(), packed.width))
    }
}

static IQ2XXS_GRID: LazyLock<Vec<f32>> = LazyLock::new(|| unpack(&grids::IQ2XXS));
static IQ2XS_GRID: LazyLock<Vec<f32>> = LazyLock::new(|| unpack(&grids::IQ2XS));
static IQ2S_GRID: LazyLock<Vec<f32>> = LazyLock::new(|| unpack(&grids::IQ2S));
static IQ3XXS_GRID: LazyLock<Vec<f32>> = LazyLock::new(|| unpack(&grids::IQ3XXS));
static IQ3S_GRID: LazyLock<Vec<f32>> = LazyLock::new(|| unpack(&grids::IQ3S));
static IQ1S_GRID: LazyLock<Vec<f32>> = LazyLock::new(|| unpack(&grids::IQ1S));

/// A grid's values, as gguf-py's `init_grid` decodes them: each pair of hexadecimal digits is
/// a byte (high digit first) holding `8 / bits` indices, the lowest bits first.
fn unpack(grid: &PackedGrid) -> Vec<f32> {
    let bits = usize::BITS - (grid.values.len() - 1).leading_zeros();
    let per_byte = 8 / bits;
    let step = 8 / per_byte;
    let mask = (1u8 << bits) - 1;
    let digit = |c: u8| (if c > 0x40 { c + 9 } else { c }) & 0x0f;
    let values: Vec<f32> = grid
        .hex
        .chunks_exact(2)
        .flat_map(|pair| {
            let byte = (digit(pair[0]) << 4) | digit(pair[1]);
            (0..per_byte).map(move |e| usize::from((byte >> (e * step)) & mask))
        })
        .map(|index| grid.values[index])
        .collect();
    debug_assert_eq!(values.len(), grid.rows * grid.width);
    values
}

fn grid_row(grid: &[f32], width: usize, row: usize) -> &[f32] {
    &grid[row * width..(row + 1) * width]
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes(array(bytes, at)).to_f32()
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array(bytes, at))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(bytes, at))
}

/// Nibble `i` of `bytes`, two to a byte, the low one first.
fn nibble(bytes: &[u8], i: usize) -> u8 {
    (bytes[i / 2] >> (4 * (i % 2))) & 0x0f
}

/// ±1 for bit `bit` of `bits`: set means negative.
fn sign(bits: u8, bit: usize) -> f32 {
    if (bits >> bit) & 1 == 0 { 1.0 } else { -1.0 }
}

/// ggml's `ksigns_iq2xs`: seven sign bits and an eighth that makes the count of negatives even.
fn even_signs(seven: u32) -> u8 {
    let seven = (seven & 0x7f) as u8;
    seven | (((seven.count_ones() & 1) as u8) << 7)
}

/// The non-linear 4-bit values of IQ4_NL and IQ4_XS.
const IQ4_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// 256 values in 8 groups of 32; each group a u32 of four grid rows and a u32 of four 7-bit
/// sign patterns and a 4-bit scale.
fn iq2_xxs(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let grid = &*IQ2XXS_GRID;
    for ib in 0..8 {
        let rows = array::<4>(block, 2 + 8 * ib);
        let aux = u32_at(block, 2 + 8 * ib + 4);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.25;
        for (l, &row) in rows.iter().enumerate() {
            let signs = even_signs(aux >> (7 * l));
            let values = grid_row(grid, 8, usize::from(row));
            for (j, v) in values.iter().enumerate() {
                out[ib * 32 + l * 8 + j] = db * v * sign(signs, j);
            }
        }
    }
}

/// 32 u16s (a 9-bit grid row and a 7-bit sign pattern for 8 values), then 16 4-bit scales.
fn iq2_xs(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let scales = &block[2 + QK_K / 4..];
    let grid = &*IQ2XS_GRID;
    for q in 0..32 {
        let packed = u16_at(block, 2 + 2 * q);
        let scale = nibble(scales, q / 2);
        let db = d * (0.5 + f32::from(scale)) * 0.25;
        let signs = even_signs(u32::from(packed >> 9));
        let values = grid_row(grid, 8, usize::from(packed & 511));
        for (j, v) in values.iter().enumerate() {
            out[q * 8 + j] = db * v * sign(signs, j);
        }
    }
}

/// 32 grid-row bytes, 32 sign bytes, 8 bytes of the rows' two high bits, 16 4-bit scales.
fn iq2_s(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let qs = &block[2..2 + QK_K / 8];
    let signs = &block[2 + QK_K / 8..2 + QK_K / 4];
    let high = &block[2 + QK_K / 4..2 + QK_K / 4 + QK_K / 32];
    let scales = &block[2 + QK_K / 4 + QK_K / 32..];
    let grid = &*IQ2S_GRID;
    for q in 0..32 {
        let row = usize::from(qs[q]) | (usize::from((high[q / 4] >> (2 * (q % 4))) & 3) << 8);
        let scale = nibble(scales, q / 2);
        let db = d * (0.5 + f32::from(scale)) * 0.25;
        for (j, v) in grid_row(grid, 8, row).iter().enumerate() {
            out[q * 8 + j] = db * v * sign(signs[q], j);
        }
    }
}

/// 64 grid-row bytes (rows of 4), then 8 u32s of four 7-bit sign patterns and a 4-bit scale.
fn iq3_xxs(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let qs = &block[2..2 + QK_K / 4];
    let grid = &*IQ3XXS_GRID;
    for ib in 0..8 {
        let aux = u32_at(block, 2 + QK_K / 4 + 4 * ib);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
        for l in 0..4 {
            let signs = even_signs(aux >> (7 * l));
            for j in 0..8 {
                let row = usize::from(qs[ib * 8 + 2 * l + j / 4]);
                out[ib * 32 + l * 8 + j] = db * grid_row(grid, 4, row)[j % 4] * sign(signs, j);
            }
        }
    }
}

/// 64 grid-row bytes (rows of 4), 8 bytes of their ninth bits, 32 sign bytes, 8 4-bit scales.
fn iq3_s(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let qs = &block[2..2 + QK_K / 4];
    let high = &block[2 + QK_K / 4..2 + QK_K / 4 + QK_K / 32];
    let signs = &block[2 + QK_K / 4 + QK_K / 32..2 + QK_K / 4 + QK_K / 32 + QK_K / 8];
    let scales = &block[2 + QK_K / 4 + QK_K / 32 + QK_K / 8..];
    let grid = &*IQ3S_GRID;
    for group in 0..8 {
        let scale = nibble(scales, group);
        let db = d * f32::from(1 + 2 * scale);
        for q in group * 8..group * 8 + 8 {
            let row = usize::from(qs[q]) | (usize::from((high[q / 8] >> (q % 8)) & 1) << 8);
            for (j, g) in grid_row(grid, 4, row).iter().enumerate() {
                let v = q * 4 + j;
                out[v] = db * g * sign(signs[v / 8], v % 8);
            }
        }
    }
}

/// 32 grid-row bytes (rows of 8 values in −1, 0, 1), then 8 u16s: three high bits for each of
/// four rows, a 3-bit scale and the sign of a shift of ⅛.
fn iq1_s(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let qs = &block[2..2 + QK_K / 8];
    let grid = &*IQ1S_GRID;
    for ib in 0..8 {
        let qh = u16_at(block, 2 + QK_K / 8 + 2 * ib);
        let dl = d * f32::from(2 * ((qh >> 12) & 7) + 1);
        let delta = if qh & 0x8000 == 0 { 0.125 } else { -0.125 };
        for l in 0..4 {
            let row = usize::from(qs[4 * ib + l]) | (usize::from((qh >> (3 * l)) & 7) << 8);
            for (j, v) in grid_row(grid, 8, row).iter().enumerate() {
                out[ib * 32 + l * 8 + j] = dl * (v + delta);
            }
        }
    }
}

/// 32 grid-row bytes, 16 bytes of two nibbles (three high row bits and a shift sign each), then
/// 4 u16s of 3-bit scales whose top nibbles together are the f16 block scale.
fn iq1_m(block: &[u8], out: &mut [f32]) {
    let qs = &block[..QK_K / 8];
    let qh = &block[QK_K / 8..QK_K / 8 + QK_K / 16];
    let at = QK_K / 8 + QK_K / 16;
    let scales: [u16; 4] = std::array::from_fn(|k| u16_at(block, at + 2 * k));
    let d_bits = ((scales[0] & 0xf000) >> 12)
        | ((scales[1] & 0xf000) >> 8)
        | ((scales[2] & 0xf000) >> 4)
        | (scales[3] & 0xf000);
    let d = f16::from_bits(d_bits).to_f32();
    let grid = &*IQ1S_GRID;
    for q in 0..32 {
        let high = nibble(qh, q);
        let row = usize::from(qs[q]) | (usize::from(high & 7) << 8);
        let delta = if high & 0x08 == 0 { 0.125 } else { -0.125 };
        let s = q / 2;
        let scale = (scales[s / 4] >> (3 * (s % 4))) & 7;
        let dl = d * f32::from(2 * scale + 1);
        for (j, v) in grid_row(grid, 8, row).iter().enumerate() {
            out[q * 8 + j] = dl * (v + delta);
        }
    }
}

/// 32 values: an f16 scale and 16 bytes, the low nibbles the first 16 values.
fn iq4_nl(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    for (j, &byte) in block[2..18].iter().enumerate() {
        out[j] = d * f32::from(IQ4_VALUES[usize::from(byte & 0x0f)]);
        out[16 + j] = d * f32::from(IQ4_VALUES[usize::from(byte >> 4)]);
    }
}

/// 256 values: an f16 scale, 8 6-bit signed group scales (high bits in a u16, low nibbles in 4
/// bytes), then IQ4_NL's nibbles, 16 bytes per group of 32.
fn iq4_xs(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 0);
    let scales_high = u16_at(block, 2);
    let scales_low = &block[4..8];
    let qs = &block[8..];
    for group in 0..8 {
        let low = nibble(scales_low, group);
        let high = ((scales_high >> (2 * group)) & 3) as u8;
        let scale = (low | (high << 4)) as i8 - 32;
        let dl = d * f32::from(scale);
        for j in 0..16 {
            let byte = qs[group * 16 + j];
            out[group * 32 + j] = dl * f32::from(IQ4_VALUES[usize::from(byte & 0x0f)]);
            out[group * 32 + 16 + j] = dl * f32::from(IQ4_VALUES[usize::from(byte >> 4)]);
        }
    }
}

/// A ternary digit of TQ1_0: the byte times 3^k (wrapping, as in u8), its top "trit" read as
/// `(x · 3) >> 8`, shifted to −1, 0, 1.
fn trit(byte: u8, power: u8) -> f32 {
    let x = byte.wrapping_mul(power);
    f32::from(((u16::from(x) * 3) >> 8) as i8 - 1)
}

/// 256 ternary values, five to a byte (48 bytes), four to a byte (4 bytes), then an f16 scale.
fn tq1_0(block: &[u8], out: &mut [f32]) {
    const POWERS: [u8; 5] = [1, 3, 9, 27, 81];
    let d = half_at(block, 52);
    let (first, rest) = block[..48].split_at(32);
    for (p, &power) in POWERS.iter().enumerate() {
        for (j, &byte) in first.iter().enumerate() {
            out[p * 32 + j] = d * trit(byte, power);
        }
        for (j, &byte) in rest.iter().enumerate() {
            out[160 + p * 16 + j] = d * trit(byte, power);
        }
    }
    for (p, &power) in POWERS[..4].iter().enumerate() {
        for (j, &byte) in block[48..52].iter().enumerate() {
            out[240 + p * 4 + j] = d * trit(byte, power);
        }
    }
}

/// 256 ternary values, four 2-bit codes to a byte (two runs of 32 bytes), then an f16 scale.
fn tq2_0(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 64);
    for chunk in 0..2 {
        for p in 0..4 {
            for j in 0..32 {
                let code = (block[chunk * 32 + j] >> (2 * p)) & 3;
                out[chunk * 128 + p * 32 + j] = d * f32::from(code as i8 - 1);
            }
        }
    }
}

/// 32 E2M1 values sharing an E8M0 scale: the scale byte, then 16 bytes, low nibbles first.
fn mxfp4(block: &[u8], out: &mut [f32]) {
    // gguf-py halves the scale and doubles the values; scaling by powers of two, the products
    // are the same bits.
    let d = super::mxfp4::e8m0_scale(block[0]);
    for (j, &byte) in block[1..17].iter().enumerate() {
        out[j] = d * E2M1[usize::from(byte & 0x0f)];
        out[16 + j] = d * E2M1[usize::from(byte >> 4)];
    }
}

/// An unsigned E4M3 scale (bias 7), 0x7f read as 0, as gguf-py's `ue4m3_to_fp32` (which halves
/// it for its doubled values).
fn ue4m3(x: u8) -> f32 {
    if x == 0 || x == 0x7f {
        return 0.0;
    }
    let exponent = i32::from((x >> 3) & 0x0f);
    let mantissa = f32::from(x & 7);
    if exponent == 0 {
        mantissa * 2f32.powi(-9)
    } else {
        (1.0 + mantissa / 8.0) * 2f32.powi(exponent - 7)
    }
}

/// 64 E2M1 values in four groups of 16, each with an unsigned E4M3 scale: the four scale bytes,
/// then 8 bytes per group, its low nibbles first.
fn nvfp4(block: &[u8], out: &mut [f32]) {
    for group in 0..4 {
        let d = ue4m3(block[group]);
        let qs = &block[4 + 8 * group..4 + 8 * group + 8];
        for (j, &byte) in qs.iter().enumerate() {
            out[group * 16 + j] = d * E2M1[usize::from(byte & 0x0f)];
            out[group * 16 + 8 + j] = d * E2M1[usize::from(byte >> 4)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuantType as Q;

    #[test]
    fn type_sizes_are_gguf_pys() {
        // GGML_QUANT_SIZES of gguf-py 0.19, written out.
        let sizes = [
            (Q::Iq2Xxs, 66),
            (Q::Iq2Xs, 74),
            (Q::Iq2S, 82),
            (Q::Iq3Xxs, 98),
            (Q::Iq3S, 110),
            (Q::Iq1S, 50),
            (Q::Iq1M, 56),
            (Q::Iq4Nl, 18),
            (Q::Iq4Xs, 136),
            (Q::Tq1_0, 54),
            (Q::Tq2_0, 66),
            (Q::Mxfp4, 17),
            (Q::Nvfp4, 36),
            (Q::F64, 8),
        ];
        for (kind, size) in sizes {
            assert_eq!(kind.type_size(), size, "{}", kind.name());
            assert_eq!(QuantType::from_type_id(kind.type_id()), Some(kind));
        }
    }

    #[test]
    fn even_signs_are_ggmls_table() {
        // The first and last rows of ggml's ksigns_iq2xs.
        let first: Vec<u8> = (0..8).map(even_signs).collect();
        assert_eq!(first, [0x00, 0x81, 0x82, 0x03, 0x84, 0x05, 0x06, 0x87]);
        let last: Vec<u8> = (120..128).map(even_signs).collect();
        assert_eq!(last, [0x78, 0xf9, 0xfa, 0x7b, 0xfc, 0x7d, 0x7e, 0xff]);
    }

    #[test]
    fn grids_have_their_shapes_and_values() {
        for (kind, rows, width) in [
            (Q::Iq2Xxs, 256, 8),
            (Q::Iq2Xs, 512, 8),
            (Q::Iq2S, 1024, 8),
            (Q::Iq3Xxs, 256, 4),
            (Q::Iq3S, 512, 4),
            (Q::Iq1S, 2048, 8),
        ] {
            let (grid, w) = kind.grid().unwrap();
            assert_eq!((grid.len(), w), (rows * width, width), "{}", kind.name());
        }
        // ggml-common.h: iq2xxs_grid[0] = 0x0808080808080808, [1] = 0x080808080808082b;
        // iq1s_grid[0] = 0xffffffffffffffff (all −1).
        let (iq2, _) = Q::Iq2Xxs.grid().unwrap();
        assert_eq!(
            &iq2[..16],
            &[
                8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 43.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0
            ]
        );
        let (iq1, _) = Q::Iq1S.grid().unwrap();
        assert_eq!(&iq1[..8], &[-1.0; 8]);
    }

    #[test]
    fn iq4_nl_and_mxfp4_by_hand() {
        // IQ4_NL: scale 0.5 (f16 0x3800); byte 0x8f: low nibble 15 (113), high 8 (1).
        let mut block = vec![0u8; 18];
        block[..2].copy_from_slice(&0x3800u16.to_le_bytes());
        block[2] = 0x8f;
        let values = Q::Iq4Nl.dequantize(&block).unwrap();
        assert_eq!((values[0], values[16], values[1]), (56.5, 0.5, -63.5));
        // MXFP4: scale 128 (×2); byte 0x21: low 1 (0.5), high 2 (1.0) → 1, 2.
        let mut block = vec![0u8; 17];
        block[0] = 128;
        block[1] = 0x21;
        let values = Q::Mxfp4.dequantize(&block).unwrap();
        assert_eq!((values[0], values[16], values[1]), (1.0, 2.0, 0.0));
        assert!(Q::Mxfp4.dequantize(&block[..16]).is_err());
    }
}
