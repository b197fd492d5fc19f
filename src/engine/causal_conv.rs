//! Causal depthwise convolutions along a sentence (Qwen3.5's linear attention, LFM2's short
//! convolutions): each channel of a token becomes a weighted sum of that channel over the
//! sentence's last `taps` tokens, the last tap on the token itself, zero before the sentence.
//! The weights are `[channels, taps]` f32, as the checkpoints' `[channels, 1, taps]` hold them.

use candle_core::{IndexOp, Tensor};
use rayon::prelude::*;

use super::cpu_ops::Span;
use super::error::Result;

/// On the host, for packed sentences at `spans` (the CPU kernels' layout): `input` is `n` rows
/// of `stride` values whose channels start at `offset`. Gives `[n, channels]`, each sentence
/// convolved alone (rows outside every span stay 0).
pub(super) fn host(
    input: &[f32],
    (stride, offset, channels): (usize, usize, usize),
    weights: &[f32],
    taps: usize,
    spans: &[Span],
) -> Vec<f32> {
    let n = input.len() / stride.max(1);
    let mut out = vec![0f32; n * channels];
    out.par_chunks_mut(channels)
        .enumerate()
        .for_each(|(token, row)| {
            let Some(span) = spans
                .iter()
                .find(|s| (s.start..s.start + s.len).contains(&token))
            else {
                return;
            };
            let back = token - span.start;
            for (channel, value) in row.iter_mut().enumerate() {
                let weights = &weights[channel * taps..][..taps];
                let mut sum = 0f32;
                for (i, w) in weights.iter().enumerate() {
                    // Tap i reads `taps - 1 - i` tokens back.
                    let offset_back = taps - 1 - i;
                    if offset_back <= back {
                        sum += w * input[(token - offset_back) * stride + offset + channel];
                    }
                }
                *value = sum;
            }
        });
    out
}

/// With tensor ops, for right-padded rows `x` `[b, t, channels]` f32 (padding after a
/// sentence never reaches it).
pub(super) fn generic(x: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let (_, t, _) = x.dims3()?;
    let taps = weights.dim(1)?;
    let padded = x.pad_with_zeros(1, taps - 1, 0)?;
    let mut out = padded
        .narrow(1, 0, t)?
        .broadcast_mul(&weights.i((.., 0))?)?;
    for i in 1..taps {
        out = (out
            + padded
                .narrow(1, i, t)?
                .broadcast_mul(&weights.i((.., i))?)?)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn both_ways_convolve_each_sentence_alone_by_hand() {
        // Two channels, taps [1, 10, 100] (100 on the token itself); sentences of 3 and 2
        // tokens. Channel 0 holds 1, 2, 3 | 4, 5; channel 1 the negatives.
        let weights = [1.0, 10.0, 100.0, 1.0, 10.0, 100.0];
        let values = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        let packed: Vec<f32> = values.iter().flat_map(|v| [*v, -v]).collect();
        let spans = [Span { start: 0, len: 3 }, Span { start: 3, len: 2 }];
        let out = host(&packed, (2, 0, 2), &weights, 3, &spans);
        let channel0: Vec<f32> = out.iter().step_by(2).copied().collect();
        // 100·1; 100·2 + 10·1; 100·3 + 10·2 + 1·1; then the second sentence from scratch.
        assert_eq!(channel0, [100.0, 210.0, 321.0, 400.0, 540.0]);
        assert_eq!(out[1], -100.0);

        let rows = Tensor::new(
            &[[[1f32], [2.0], [3.0]], [[4.0], [5.0], [0.0]]],
            &Device::Cpu,
        )
        .unwrap();
        let w = Tensor::new(&[[1f32, 10.0, 100.0]], &Device::Cpu).unwrap();
        let generic: Vec<f32> = generic(&rows, &w)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(&generic[..5], &[100.0, 210.0, 321.0, 400.0, 540.0]);
    }
}
