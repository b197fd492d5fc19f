//! BLOOM (and BLOOMZ): ALiBi instead of any position embedding, a LayerNorm right after the
//! token embeddings, LayerNorms with bias, biases on every projection, and a non-gated MLP
//! `gelu(dense_h_to_4h(h))` whose units are the neurons (METHOD §1). [`BloomWeights`] hands its
//! tensors to the decoder under the Llama-style names it asks for, q, k and v regrouped.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::engine::config::{
    Activation, Architecture, Dims, HfFields, ModelConfig, Rope, RopeScaling,
};
use crate::engine::error::{EngineError, Result};
use crate::engine::weights::TensorSource;

/// ALiBi has no trained context length; this only bounds what a sentence may be.
const ALIBI_POSITIONS: usize = 1 << 16;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("apply_residual_connection_post_layernorm", false)? {
        return Err(EngineError::config(
            f.path,
            "\"apply_residual_connection_post_layernorm\": true is not supported",
        ));
    }
    let either = |a: &str, b: &str| -> Result<usize> {
        match f.opt_usize(a)? {
            Some(n) => Ok(n),
            None => f.usize(b),
        }
    };
    let hidden_size = either("hidden_size", "n_embed")?;
    let num_heads = either("n_head", "num_attention_heads")?;
    if num_heads == 0 || !hidden_size.is_multiple_of(num_heads) {
        return Err(EngineError::config(
            f.path,
            format!("hidden_size ({hidden_size}) must be a multiple of n_head ({num_heads})"),
        ));
    }
    let dims = Dims {
        vocab_size: f.usize("vocab_size")?,
        hidden_size,
        intermediate_size: 4 * hidden_size,
        num_layers: either("n_layer", "num_hidden_layers")?,
        num_heads,
        num_kv_heads: num_heads,
        head_dim: hidden_size / num_heads,
        rms_norm_eps: f.f64_or("layer_norm_epsilon", 1e-5)?,
        max_position_embeddings: ALIBI_POSITIONS,
    };
    let no_rotation = Rope {
        theta: 10_000.0,
        scaling: RopeScaling::NoRotation,
    };
    let layers = super::uniform_layers(dims.num_layers, None, no_rotation);
    let mut config = dims.into_config(Architecture::Bloom, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", true)?;
    config.norm_centered = true;
    config.norm_bias = true;
    config.qkv_bias = true;
    config.linear_bias = true;
    config.mlp_gated = false;
    config.embedding_norm = true;
    config.alibi = true;
    config.fused_projections = true;
    // BloomGelu is the tanh approximation.
    config.activation = Activation::GeluTanh;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// ALiBi's slope for each head (transformers' `_get_alibi_slopes`, in f32).
pub fn alibi_slopes(num_heads: usize) -> Vec<f32> {
    let closest = 1usize << num_heads.max(1).ilog2();
    let base = |n: usize| 2f32.powf(-(2f32.powf(-((n as f32).log2() - 3.0))));
    let mut slopes: Vec<f32> = (1..=closest)
        .map(|p| base(closest).powi(p as i32))
        .collect();
    if closest != num_heads {
        let extra = base(2 * closest);
        let remaining = closest.min(num_heads - closest);
        slopes.extend((0..remaining).map(|i| extra.powi(2 * i as i32 + 1)));
    }
    slopes
}

/// A BLOOM checkpoint seen through the decoder's names. Its fused `query_key_value` keeps each
/// head's q, k and v together (`[heads, 3, head_dim]` rows); the decoder wants all q rows, then
/// all k, then all v.
pub struct BloomWeights<S> {
    inner: S,
    /// `transformer.` for `BloomForCausalLM` checkpoints, empty for bare `BloomModel` ones.
    prefix: &'static str,
    heads: usize,
    head_dim: usize,
}

impl<S: TensorSource> BloomWeights<S> {
    pub fn new(inner: S, heads: usize, head_dim: usize) -> Self {
        let prefix = if inner.contains("transformer.word_embeddings.weight") {
            "transformer."
        } else {
            ""
        };
        Self {
            inner,
            prefix,
            heads,
            head_dim,
        }
    }

    /// The checkpoint's name for a decoder name, and whether its rows are grouped by head.
    fn checkpoint_name(&self, name: &str) -> Option<(String, bool)> {
        let p = self.prefix;
        let fixed = match name {
            "model.embed_tokens.weight" => Some("word_embeddings.weight"),
            "model.embed_norm.weight" => Some("word_embeddings_layernorm.weight"),
            "model.embed_norm.bias" => Some("word_embeddings_layernorm.bias"),
            "model.norm.weight" => Some("ln_f.weight"),
            "model.norm.bias" => Some("ln_f.bias"),
            _ => None,
        };
        if let Some(fixed) = fixed {
            return Some((format!("{p}{fixed}"), false));
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        let (part, kind) = rest.rsplit_once('.')?;
        let (bloom_part, by_head) = match part {
            "input_layernorm" | "post_attention_layernorm" => (part, false),
            "self_attn.qkv_proj" => ("self_attention.query_key_value", true),
            "self_attn.o_proj" => ("self_attention.dense", false),
            "mlp.up_proj" => ("mlp.dense_h_to_4h", false),
            "mlp.down_proj" => ("mlp.dense_4h_to_h", false),
            _ => return None,
        };
        Some((format!("{p}h.{layer}.{bloom_part}.{kind}"), by_head))
    }
}

impl<S: TensorSource> TensorSource for BloomWeights<S> {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        if name == "lm_head.weight" {
            return self.inner.load(name, shape, dtype, device);
        }
        let (stored, by_head) = self.checkpoint_name(name).ok_or_else(|| {
            EngineError::weights(self.origin(), format!("BLOOM has no tensor for {name}"))
        })?;
        let tensor = self.inner.load(&stored, shape, dtype, device)?;
        if !by_head {
            return Ok(tensor);
        }
        // Rows [heads, 3, head_dim] → [3, heads, head_dim], columns (if any) unchanged.
        let rest: Vec<usize> = shape[1..].to_vec();
        let mut grouped = vec![self.heads, 3, self.head_dim];
        grouped.extend(&rest);
        Ok(tensor
            .reshape(grouped)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape(shape)?)
    }

    fn contains(&self, name: &str) -> bool {
        if name == "lm_head.weight" {
            return self.inner.contains(name);
        }
        self.checkpoint_name(name)
            .is_some_and(|(stored, _)| self.inner.contains(&stored))
    }

    fn origin(&self) -> &Path {
        self.inner.origin()
    }

    fn storage_dtype(&self) -> String {
        self.inner.storage_dtype()
    }
}

#[cfg(test)]
mod tests {
    use super::alibi_slopes;

    #[test]
    fn alibi_slopes_follow_the_paper() {
        // 8 heads: 2^-1 … 2^-8.
        let eight = alibi_slopes(8);
        for (i, s) in eight.iter().enumerate() {
            assert!((s - 2f32.powi(-(i as i32 + 1))).abs() < 1e-9, "{eight:?}");
        }
        // 12 heads: the 8 of 8 heads, then odd powers of 2^-0.5 (the 16-head base).
        let twelve = alibi_slopes(12);
        assert_eq!(twelve.len(), 12);
        assert_eq!(&twelve[..8], &eight[..]);
        for (k, s) in twelve[8..].iter().enumerate() {
            let expected = 2f32.powf(-0.5 * (2 * k + 1) as f32);
            assert!((s - expected).abs() < 1e-7, "{twelve:?}");
        }
    }
}
