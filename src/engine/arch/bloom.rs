//! BLOOM (and BLOOMZ): ALiBi instead of any position embedding, a LayerNorm right after the
//! token embeddings, LayerNorms with bias, biases on every projection, and a non-gated MLP
//! `gelu(dense_h_to_4h(h))` whose units are the neurons (METHOD §1). [`NAMES`] hands its
//! tensors to the decoder under the Llama-style names it asks for, q, k and v regrouped.

use crate::engine::config::{Architecture, HfFields, ModelConfig};
use crate::engine::error::{EngineError, Result};
use crate::engine::weights::{NameTable, Stored};

/// ALiBi has no trained context length; this only bounds what a sentence may be.
pub(crate) const ALIBI_POSITIONS: usize = 1 << 16;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("apply_residual_connection_post_layernorm", false)? {
        return Err(EngineError::config(
            f.path,
            "\"apply_residual_connection_post_layernorm\": true is not supported",
        ));
    }
    let mut config = super::LayerNormFamily {
        hidden_size: f.usize_either("hidden_size", "n_embed")?,
        num_heads: f.usize_either("n_head", "num_attention_heads")?,
        num_kv_heads: None,
        num_layers: f.usize_either("n_layer", "num_hidden_layers")?,
        intermediate_size: None,
        max_position_embeddings: ALIBI_POSITIONS,
    }
    .config(f, Architecture::Bloom)?;
    // BloomGelu is the tanh approximation, as the family's default.
    family_traits(&mut config);
    Ok(config)
}

/// What BLOOM adds to the LayerNorm family, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.embedding_norm = true;
    config.alibi = true;
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

/// BLOOM's names (`transformer.` before them in `BloomForCausalLM` checkpoints). Its fused
/// `query_key_value` keeps each head's q, k and v together.
pub const NAMES: NameTable = NameTable {
    family: "BLOOM",
    prefix: "transformer.",
    fixed: &[
        ("model.embed_tokens.weight", "word_embeddings.weight"),
        (
            "model.embed_norm.weight",
            "word_embeddings_layernorm.weight",
        ),
        ("model.embed_norm.bias", "word_embeddings_layernorm.bias"),
        ("model.norm.weight", "ln_f.weight"),
        ("model.norm.bias", "ln_f.bias"),
    ],
    lm_head: "lm_head.weight",
    layers: "h",
    norms: &[
        ("input_layernorm", "input_layernorm"),
        ("post_attention_layernorm", "post_attention_layernorm"),
    ],
    parts: &[
        (
            "self_attn.qkv_proj",
            "self_attention.query_key_value",
            Stored::Grouped,
        ),
        ("self_attn.o_proj", "self_attention.dense", Stored::AsAsked),
        ("mlp.up_proj", "mlp.dense_h_to_4h", Stored::AsAsked),
        ("mlp.down_proj", "mlp.dense_4h_to_h", Stored::AsAsked),
    ],
};

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
