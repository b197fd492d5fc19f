//! XGLM (Meta's multilingual decoders, 564M to 7.5B, 30 languages): fairseq's transformer
//! decoder, with fixed sinusoidal positions, embeddings scaled by sqrt(d_model), LayerNorms with
//! bias before attention and the MLP, biases on every projection and a non-gated GELU MLP
//! `gelu(fc1(h))` whose units are the neurons (METHOD §1). [`NAMES`] hands its tensors to the
//! decoder under the Llama-style names it asks for.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;
use crate::engine::weights::{NameTable, Stored};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut config = super::LayerNormFamily {
        hidden_size: f.usize("d_model")?,
        num_heads: f.usize("attention_heads")?,
        num_kv_heads: None,
        num_layers: f.usize("num_layers")?,
        intermediate_size: Some(f.usize("ffn_dim")?),
        max_position_embeddings: f.usize("max_position_embeddings")?,
    }
    .config(f, Architecture::Xglm)?;
    // q, k and v are three projections, not one.
    config.fused_projections = false;
    config.sinusoidal_positions = true;
    if f.bool_or("scale_embedding", true)? {
        config.embedding_scale = Some((config.hidden_size as f64).sqrt());
    }
    config.activation = f.activation(&["activation_function"], Activation::Gelu)?;
    Ok(config)
}

/// fairseq's sinusoidal table as transformers builds it (`XGLMSinusoidalPositionalEmbedding`,
/// in f32): row `p` is position `p + 2`, `[sin(p·w_i)…, cos(p·w_i)…]` with
/// `w_i = exp(−i · ln 10000 / (d/2 − 1))`.
pub fn sinusoidal_positions(positions: usize, d_model: usize) -> Vec<f32> {
    const OFFSET: usize = 2;
    let half = d_model / 2;
    let step = (10_000f64.ln() / (half.max(2) - 1) as f64) as f32;
    let frequencies: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut table = Vec::with_capacity(positions * d_model);
    for p in OFFSET..positions + OFFSET {
        let angles = frequencies.iter().map(|w| p as f32 * w);
        table.extend(angles.clone().map(f32::sin));
        table.extend(angles.map(f32::cos));
        if d_model % 2 == 1 {
            table.push(0.0);
        }
    }
    table
}

/// XGLM's names (`model.` before them in `XGLMForCausalLM` checkpoints).
pub const NAMES: NameTable = NameTable {
    family: "XGLM",
    prefix: "model.",
    fixed: &[
        ("model.embed_tokens.weight", "embed_tokens.weight"),
        ("model.norm.weight", "layer_norm.weight"),
        ("model.norm.bias", "layer_norm.bias"),
    ],
    lm_head: "lm_head.weight",
    layers: "layers",
    norms: &[
        ("input_layernorm", "self_attn_layer_norm"),
        ("post_attention_layernorm", "final_layer_norm"),
    ],
    parts: &[
        ("self_attn.q_proj", "self_attn.q_proj", Stored::AsAsked),
        ("self_attn.k_proj", "self_attn.k_proj", Stored::AsAsked),
        ("self_attn.v_proj", "self_attn.v_proj", Stored::AsAsked),
        ("self_attn.o_proj", "self_attn.out_proj", Stored::AsAsked),
        ("mlp.up_proj", "fc1", Stored::AsAsked),
        ("mlp.down_proj", "fc2", Stored::AsAsked),
    ],
};

#[cfg(test)]
mod tests {
    use super::sinusoidal_positions;

    #[test]
    fn sinusoids_start_at_position_two() {
        // d = 4: w = [1, 1e-4]; the first row is position 2.
        let table = sinusoidal_positions(2, 4);
        let expected = [2f32.sin(), 2e-4f32.sin(), 2f32.cos(), 2e-4f32.cos()];
        for (got, want) in table[..4].iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{table:?}");
        }
        assert!((table[4] - 3f32.sin()).abs() < 1e-6);
    }
}
