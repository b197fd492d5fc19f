//! The Gated DeltaNet of Qwen3.5 and OLMo Hybrid, the token mixer of their linear-attention
//! layers.
//!
//! Per value head, a `[key_head_dim × value_head_dim]` state runs along the sentence: at each
//! token it decays by `exp(g)`, then moves towards the token's value along its key by the
//! delta rule (`S += k ⊗ β·(v − kᵀS)`), and the token reads `qᵀS`. Queries, keys and values
//! first pass a causal depthwise convolution and SiLU, and queries and keys are L2-normed;
//! the output goes through an RMSNorm gated by `silu(z)` before the output projection.
//!
//! transformers runs the same recurrence in chunks (its torch fallback of the fla kernels);
//! here it runs token by token, in f32 from the projections on, as transformers casts it.
//! The CPU kernels' path (packed sentences) computes it on the host, each value head on its own
//! thread through the batch's sentences; the generic path (right-padded batches, the GPUs') with tensor ops,
//! all sentences of a batch at once. Right padding comes after a sentence's last token, so it
//! never reaches the sentence's states.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use super::causal_conv;
use super::config::{LinearAttention, ModelConfig};
use super::cpu_ops::Span;
use super::cuda_delta_rule::DeltaRule;
use super::decoder::{Ctx, linear};
use super::error::{EngineError, Result};
use super::weights::TensorSource;

/// transformers' `l2norm` epsilon (fla's), under the square root with the sum of squares.
const L2_EPS: f32 = 1e-6;

pub(super) struct GatedDeltaNet {
    /// q, k and v (convolved), the output gate, b and a stacked: `[projected_width, d_model]`
    /// (Qwen3.5's `in_proj_qkv`, `in_proj_z`, `in_proj_b`, `in_proj_a`; OLMo Hybrid's six).
    in_proj: Linear,
    out_proj: Linear,
    dims: LinearAttention,
    eps: f32,
    out_dtype: DType,
    /// β's range: 1, or 2 where the state's eigenvalues may turn negative (OLMo Hybrid).
    beta_scale: f32,
    /// f32 on the device for the generic ops: the convolution `[conv_dim, taps]`, `-exp(A_log)`
    /// and `dt_bias` `[value_heads]`, the gated norm's weight `[value_head_dim]`.
    conv: Tensor,
    decay_rate: Tensor,
    dt_bias: Tensor,
    norm_weight: Tensor,
    /// The same on the host for the CPU kernels' path.
    host: Option<HostWeights>,
}

struct HostWeights {
    conv: Vec<f32>,
    decay_rate: Vec<f32>,
    dt_bias: Vec<f32>,
    norm_weight: Vec<f32>,
}

impl GatedDeltaNet {
    pub(super) fn load(
        src: &dyn TensorSource,
        prefix: &str,
        config: &ModelConfig,
        dims: &LinearAttention,
        ctx: &Ctx,
    ) -> Result<Self> {
        let p = format!("{prefix}linear_attn.");
        let h = config.hidden_size;
        let kd = dims.key_heads * dims.key_head_dim;
        let vd = dims.value_dim();
        let hv = dims.value_heads;
        // Stacked as the recurrence reads them: q, k, v (convolved), the gate, b, a.
        let (projections, out_name, norm_name) = if dims.separate_projections {
            let parts = [("q_proj", kd), ("k_proj", kd), ("v_proj", vd)];
            let rest = [("g_proj", vd), ("b_proj", hv), ("a_proj", hv)];
            (
                parts.into_iter().chain(rest).collect::<Vec<_>>(),
                "o_proj",
                "o_norm",
            )
        } else {
            let parts = [("in_proj_qkv", dims.conv_dim()), ("in_proj_z", vd)];
            let rest = [("in_proj_b", hv), ("in_proj_a", hv)];
            (parts.into_iter().chain(rest).collect(), "out_proj", "norm")
        };
        let projections: Vec<(String, usize)> = projections
            .into_iter()
            .map(|(name, rows)| (format!("{p}{name}"), rows))
            .collect();
        let in_proj = linear(src, &projections, h, false, ctx)?;
        let out_proj = linear(src, &[(format!("{p}{out_name}"), h)], vd, false, ctx)?;
        let f32_tensor = |name: &str, shape: &[usize]| {
            src.load(&format!("{p}{name}"), shape, DType::F32, &ctx.device)
        };
        let taps = dims.conv_kernel;
        // One convolution of q, k and v together, or (OLMo Hybrid's checkpoints) one each.
        let conv = if src.contains(&format!("{p}conv1d.weight")) {
            f32_tensor("conv1d.weight", &[dims.conv_dim(), 1, taps])?
        } else {
            let parts = [("q_conv1d", kd), ("k_conv1d", kd), ("v_conv1d", vd)]
                .map(|(name, rows)| f32_tensor(&format!("{name}.weight"), &[rows, 1, taps]));
            let [q, k, v] = parts;
            Tensor::cat(&[q?, k?, v?], 0)?
        }
        .reshape((dims.conv_dim(), taps))?;
        let decay_rate = f32_tensor("A_log", &[hv])?.exp()?.neg()?;
        let dt_bias = f32_tensor("dt_bias", &[hv])?;
        let norm_weight = f32_tensor(&format!("{norm_name}.weight"), &[dims.value_head_dim])?;
        let host = if ctx.device.is_cpu() {
            Some(HostWeights {
                conv: conv.flatten_all()?.to_vec1()?,
                decay_rate: decay_rate.to_vec1()?,
                dt_bias: dt_bias.to_vec1()?,
                norm_weight: norm_weight.to_vec1()?,
            })
        } else {
            None
        };
        Ok(Self {
            in_proj,
            out_proj,
            dims: dims.clone(),
            eps: dims.output_norm_eps.unwrap_or(config.rms_norm_eps) as f32,
            out_dtype: ctx.dtype,
            beta_scale: if dims.negative_eigenvalues { 2.0 } else { 1.0 },
            conv,
            decay_rate,
            dt_bias,
            norm_weight,
            host,
        })
    }

    /// The layer's token mixing of `x` `[rows, cols, d_model]`: packed sentences at `spans`
    /// on the host (the CPU kernels' layout), else right-padded rows with tensor ops, the
    /// recurrence itself by the [`DeltaRule`] kernel where `kernel`.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        spans: &[Span],
        packed: bool,
        kernel: bool,
    ) -> Result<Tensor> {
        let (rows, cols, _) = x.dims3()?;
        let projected = self.in_proj.forward(x)?.to_dtype(DType::F32)?;
        let gated = if packed {
            let host = self.host.as_ref().ok_or_else(|| {
                EngineError::Device("linear attention without host weights".into())
            })?;
            let width = projected.dim(2)?;
            let projected = projected.flatten_all()?.to_vec1::<f32>()?;
            let out = self.host_forward(host, &projected, width, spans)?;
            let vd = self.dims.value_dim();
            Tensor::from_vec(out, (rows, cols, vd), x.device())?
        } else {
            self.generic_forward(&projected, kernel)?
        };
        Ok(self.out_proj.forward(&gated.to_dtype(self.out_dtype)?)?)
    }

    /// Tensor ops on `[b, t, width]` projections of right-padded rows; `[b, t, vd]` f32.
    fn generic_forward(&self, projected: &Tensor, kernel: bool) -> Result<Tensor> {
        let d = &self.dims;
        let (b, t, _) = projected.dims3()?;
        let (kd, vd, hv) = (d.key_heads * d.key_head_dim, d.value_dim(), d.value_heads);
        let c = d.conv_dim();
        let mixed = projected.narrow(2, 0, c)?;
        let z = projected.narrow(2, c, vd)?;
        let b_in = projected.narrow(2, c + vd, hv)?;
        let a_in = projected.narrow(2, c + vd + hv, hv)?;

        let conv = candle_nn::ops::silu(&causal_conv::generic(&mixed, &self.conv)?)?;

        // `[b, heads, t, dim]`, key heads repeated for the value heads they serve.
        let repeat = hv / d.key_heads;
        let heads = |x: Tensor, count: usize, dim: usize, norm: bool| -> Result<Tensor> {
            let mut x = x.reshape((b, t, count, dim))?;
            if norm {
                let sum = x.sqr()?.sum_keepdim(D::Minus1)?;
                x = x.broadcast_div(&(sum + f64::from(L2_EPS))?.sqrt()?)?;
            }
            if count != hv {
                x = x
                    .unsqueeze(3)?
                    .broadcast_as((b, t, count, repeat, dim))?
                    .reshape((b, t, hv, dim))?;
            }
            Ok(x.transpose(1, 2)?.contiguous()?)
        };
        let q = (heads(conv.narrow(2, 0, kd)?, d.key_heads, d.key_head_dim, true)?
            * (d.key_head_dim as f64).powf(-0.5))?;
        let k = heads(conv.narrow(2, kd, kd)?, d.key_heads, d.key_head_dim, true)?;
        let v = heads(conv.narrow(2, 2 * kd, vd)?, hv, d.value_head_dim, false)?;
        // `[b, hv, t]`: β = σ(b), and the decay exp(g), g = -exp(A_log)·softplus(a + dt_bias).
        let beta = (candle_nn::ops::sigmoid(&b_in)? * f64::from(self.beta_scale))?
            .transpose(1, 2)?
            .contiguous()?;
        let g = softplus(&a_in.broadcast_add(&self.dt_bias)?)?.broadcast_mul(&self.decay_rate)?;
        let decay = g.exp()?.transpose(1, 2)?.contiguous()?;

        // One row per head of each sentence: `[b·hv, t, …]`.
        let rows = b * hv;
        let qk = Tensor::cat(&[&q, &k], 3)?.reshape((rows, t, 2 * d.key_head_dim))?;
        let v = v.reshape((rows, t, d.value_head_dim))?;
        let beta_decay = Tensor::stack(&[&beta, &decay], 3)?.reshape((rows, t, 2))?;
        let out = if kernel {
            qk.apply_op3_no_bwd(&v, &beta_decay, &DeltaRule)?
        } else {
            delta_rule_generic(&qk, &v, &beta_decay)?
        };
        // `[b, t, hv, dv]`, then the gated RMSNorm per head.
        let out = out
            .reshape((b, hv, t, d.value_head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let normed = candle_nn::ops::rms_norm(&out, &self.norm_weight, self.eps)?;
        let gate = candle_nn::ops::silu(&z.reshape((b, t, hv, d.value_head_dim))?)?;
        Ok((normed * gate)?.reshape((b, t, vd))?)
    }

    /// The same on the host, for packed sentences at `spans` of `projected` (`[n, width]`
    /// row-major): `[n, vd]`.
    fn host_forward(
        &self,
        host: &HostWeights,
        projected: &[f32],
        width: usize,
        spans: &[Span],
    ) -> Result<Vec<f32>> {
        let d = &self.dims;
        let n = projected.len() / width.max(1);
        if spans.iter().any(|s| s.start + s.len > n) {
            return Err(EngineError::Device("a span runs past its batch".into()));
        }
        let (kd, dk, dv, hv) = (
            d.key_heads * d.key_head_dim,
            d.key_head_dim,
            d.value_head_dim,
            d.value_heads,
        );
        let vd = hv * dv;
        let c = d.conv_dim();
        let taps = d.conv_kernel;

        // Convolution and SiLU, then L2-normed (and scaled) queries and keys: `[n, c]`.
        let mut conv = causal_conv::host(projected, (width, 0, c), &host.conv, taps, spans);
        conv.par_chunks_mut(c).for_each(|out| {
            out.iter_mut().for_each(|v| *v = silu(*v));
            let scale = (dk as f32).powf(-0.5);
            for (head, x) in out[..2 * kd].chunks_mut(dk).enumerate() {
                let norm = (x.iter().map(|v| v * v).sum::<f32>() + L2_EPS).sqrt();
                let factor = if head < d.key_heads {
                    scale / norm
                } else {
                    1.0 / norm
                };
                x.iter_mut().for_each(|v| *v *= factor);
            }
        });

        // The recurrence, one value head per task: `[heads][n·dv]`, then `[n, vd]` below.
        let repeat = hv / d.key_heads;
        let per_head: Vec<Vec<f32>> = (0..hv)
            .into_par_iter()
            .map(|head| {
                let key_head = head / repeat;
                let mut out = vec![0f32; n * dv];
                let mut state = vec![0f32; dk * dv];
                for span in spans {
                    state.fill(0.0);
                    for token in span.start..span.start + span.len {
                        let row = &conv[token * c..][..c];
                        let q = &row[key_head * dk..][..dk];
                        let k = &row[kd + key_head * dk..][..dk];
                        let v = &row[2 * kd + head * dv..][..dv];
                        let proj = &projected[token * width..][..width];
                        let beta = self.beta_scale * sigmoid(proj[c + vd + head]);
                        let g = host.decay_rate[head]
                            * softplus_scalar(proj[c + vd + hv + head] + host.dt_bias[head]);
                        delta_rule_steps(
                            &mut state,
                            (q, k, v),
                            (beta, g.exp()),
                            &mut out[token * dv..][..dv],
                        );
                    }
                }
                out
            })
            .collect();

        // The gated RMSNorm per (token, head): normed · w · silu(z).
        let mut gated = vec![0f32; n * vd];
        gated
            .par_chunks_mut(vd)
            .enumerate()
            .for_each(|(token, row)| {
                let z = &projected[token * width + c..][..vd];
                for (head, out) in row.chunks_mut(dv).enumerate() {
                    let x = &per_head[head][token * dv..][..dv];
                    let mean_square = x.iter().map(|v| v * v).sum::<f32>() / dv as f32;
                    let inv = 1.0 / (mean_square + self.eps).sqrt();
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = x[j] * inv * host.norm_weight[j] * silu(z[head * dv + j]);
                    }
                }
            });
        Ok(gated)
    }
}

/// One token of the gated delta rule on a head's state `[dk × dv]` (row-major): decay it,
/// move it towards `v` along `k` by `β`, and write what `q` reads from it into `read`. The
/// host path's step, and the definition the CUDA kernel is held to (the same sums in the
/// same order as each of its threads).
pub(super) fn delta_rule_steps(
    state: &mut [f32],
    (q, k, v): (&[f32], &[f32], &[f32]),
    (beta, decay): (f32, f32),
    read: &mut [f32],
) {
    let dv = v.len();
    // delta = β·(v − kᵀS), S decayed first; kᵀS taken off v term by term.
    let mut delta = v.to_vec();
    for (ki, row) in k.iter().zip(state.chunks_mut(dv)) {
        for (s, d) in row.iter_mut().zip(delta.iter_mut()) {
            *s *= decay;
            *d -= ki * *s;
        }
    }
    delta.iter_mut().for_each(|d| *d *= beta);
    read.fill(0.0);
    for ((ki, qi), row) in k.iter().zip(q).zip(state.chunks_mut(dv)) {
        for ((s, d), r) in row.iter_mut().zip(&delta).zip(read.iter_mut()) {
            *s += ki * d;
            *r += qi * *s;
        }
    }
}

/// The recurrence with tensor ops, token by token (the generic path where the kernel does not
/// run): `qk` `[n, t, 2·dk]` (scaled queries, then keys), `v` `[n, t, dv]`, `beta_decay`
/// `[n, t, 2]` (β, then the decay), one row per head of each sentence; `[n, t, dv]`.
pub fn delta_rule_generic(
    qk: &Tensor,
    v: &Tensor,
    beta_decay: &Tensor,
) -> candle_core::Result<Tensor> {
    let (n, t, dk2) = qk.dims3()?;
    let (dk, dv) = (dk2 / 2, v.dim(2)?);
    let mut state = Tensor::zeros((n, dk, dv), DType::F32, qk.device())?;
    let mut outputs = Vec::with_capacity(t);
    for r in 0..t {
        let at = |x: &Tensor| x.narrow(1, r, 1);
        let (qk_r, v_r, beta_decay_r) = (at(qk)?, at(v)?, at(beta_decay)?);
        let (q, k) = (qk_r.narrow(2, 0, dk)?, qk_r.narrow(2, dk, dk)?);
        state = state.broadcast_mul(&beta_decay_r.narrow(2, 1, 1)?)?;
        let remembered = k.matmul(&state)?;
        let delta = (v_r - remembered)?.broadcast_mul(&beta_decay_r.narrow(2, 0, 1)?)?;
        state = (state + k.transpose(1, 2)?.contiguous()?.matmul(&delta)?)?;
        outputs.push(q.matmul(&state)?);
    }
    Tensor::cat(&outputs, 1)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// `ln(1 + eˣ)`, as torch computes it: `x` itself above 20.
fn softplus_scalar(x: f32) -> f32 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

/// [`softplus_scalar`] on a tensor: `max(x, 0) + ln(1 + e^-|x|)`, which never overflows and
/// is within rounding of torch's above 20.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.relu()? + tail)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn softplus_agrees_with_its_definition() {
        let xs = [-30.0f32, -3.0, -0.5, 0.0, 0.7, 5.0, 19.0, 25.0];
        let tensor = Tensor::new(&xs, &Device::Cpu).unwrap();
        let ours: Vec<f32> = softplus(&tensor).unwrap().to_vec1().unwrap();
        for (x, y) in xs.iter().zip(&ours) {
            let exact = (f64::from(*x).exp()).ln_1p() as f32;
            assert!(
                (y - exact).abs() <= 1e-6 * exact.max(1.0),
                "{x}: {y} vs {exact}"
            );
            assert!((softplus_scalar(*x) - exact).abs() <= 1e-6 * exact.max(1.0));
        }
    }
}
