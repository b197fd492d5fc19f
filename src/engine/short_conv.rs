//! LFM2's short convolutions, the token mixer of most of its layers: the layer's input projected
//! three ways (B, C, x), `B·x` convolved causally over the last few tokens (`conv_L_cache`),
//! gated by `C`, and projected back.

use candle_core::{DType, Module, Tensor};
use candle_nn::Linear;

use super::causal_conv;
use super::config::{ModelConfig, ShortConvolution};
use super::cpu_ops::Span;
use super::decoder::{Ctx, linear};
use super::error::{EngineError, Result};
use super::weights::TensorSource;

pub(super) struct ShortConv {
    /// B, C and x stacked: `[3·d_model, d_model]`.
    in_proj: Linear,
    out_proj: Linear,
    /// `[d_model, taps]` f32, on the device and (on the CPU) on the host.
    conv: Tensor,
    host_conv: Option<Vec<f32>>,
    taps: usize,
    out_dtype: DType,
}

impl ShortConv {
    pub(super) fn load(
        src: &dyn TensorSource,
        prefix: &str,
        config: &ModelConfig,
        conv: &ShortConvolution,
        ctx: &Ctx,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let p = format!("{prefix}conv.");
        let in_proj = linear(src, &[(format!("{p}in_proj"), 3 * h)], h, false, ctx)?;
        let out_proj = linear(src, &[(format!("{p}out_proj"), h)], h, false, ctx)?;
        let weights = src
            .load(
                &format!("{p}conv.weight"),
                &[h, 1, conv.taps],
                DType::F32,
                &ctx.device,
            )?
            .reshape((h, conv.taps))?;
        let host_conv = ctx
            .device
            .is_cpu()
            .then(|| weights.flatten_all()?.to_vec1())
            .transpose()?;
        Ok(Self {
            in_proj,
            out_proj,
            conv: weights,
            host_conv,
            taps: conv.taps,
            out_dtype: ctx.dtype,
        })
    }

    /// The layer's token mixing of `x` `[rows, cols, d_model]`: packed sentences at `spans`
    /// (the CPU kernels' layout, convolved on the host), else right-padded rows.
    pub(super) fn forward(&self, x: &Tensor, spans: &[Span], packed: bool) -> Result<Tensor> {
        let (rows, cols, h) = x.dims3()?;
        let projected = self.in_proj.forward(x)?.to_dtype(DType::F32)?;
        let gate = projected.narrow(2, h, h)?;
        let bx = (projected.narrow(2, 0, h)? * projected.narrow(2, 2 * h, h)?)?;
        let convolved = if packed {
            let weights = self.host_conv.as_ref().ok_or_else(|| {
                EngineError::Device("a short convolution without host weights".into())
            })?;
            let bx = bx.flatten_all()?.to_vec1::<f32>()?;
            let out = causal_conv::host(&bx, (h, 0, h), weights, self.taps, spans);
            Tensor::from_vec(out, (rows, cols, h), x.device())?
        } else {
            causal_conv::generic(&bx, &self.conv)?
        };
        let y = (gate * convolved)?.to_dtype(self.out_dtype)?;
        Ok(self.out_proj.forward(&y)?)
    }
}
