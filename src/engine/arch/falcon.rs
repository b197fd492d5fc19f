//! Falcon (7B, 40B, 180B, Falcon 2 11B): LayerNorms with bias, rotary, q, k and v in one matrix
//! grouped per key/value head, a non-gated GELU MLP `gelu(dense_h_to_4h(h))` whose units are
//! the neurons (METHOD §1), and attention and the MLP side by side — on one norm (7B, or
//! `num_ln_in_parallel_attn: 1`) or each on its own (`ln_attn`, `ln_mlp`: the "new decoder
//! architecture" of 40B and 180B). The ALiBi variants (falcon-rw) are refused.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig, NormLayout};
use crate::engine::error::{EngineError, Result};
use crate::engine::weights::NameTable;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("alibi", false)? {
        return Err(EngineError::config(
            f.path,
            "\"alibi\": true (Falcon-RW) is not supported",
        ));
    }
    let num_heads = f.usize_either("num_attention_heads", "n_head")?;
    let new_architecture = f.bool_or("new_decoder_architecture", false)?;
    let multi_query = f.bool_or("multi_query", true)?;
    let parallel = f.bool_or("parallel_attn", true)?;
    // transformers' FalconAttention: the config's key/value heads in the new architecture and
    // without multi-query, one with it.
    let num_kv_heads = if new_architecture || !multi_query {
        f.opt_usize("num_kv_heads")?.unwrap_or(num_heads)
    } else {
        1
    };
    if !new_architecture && !multi_query && num_kv_heads != num_heads {
        return Err(EngineError::config(
            f.path,
            "\"num_kv_heads\" other than the heads without multi-query or the new decoder \
             architecture is not a Falcon layout",
        ));
    }
    let mut config = super::LayerNormFamily {
        hidden_size: f.usize_either("hidden_size", "n_embed")?,
        num_heads,
        num_kv_heads: Some(num_kv_heads),
        num_layers: f.usize_either("num_hidden_layers", "n_layer")?,
        intermediate_size: f.opt_usize("ffn_hidden_size")?,
        max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(2048),
    }
    .config(f, Architecture::Falcon)?;
    // Rotary, where the rest of the LayerNorm family has none.
    config.layers =
        super::uniform_layers(config.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let bias = f.bool_or("bias", false)?;
    config.qkv_bias = bias;
    config.linear_bias = bias;
    config.norm_layout = if new_architecture {
        match f.opt_usize("num_ln_in_parallel_attn")?.unwrap_or(2) {
            2 => NormLayout::ParallelTwoNorms,
            1 if parallel => NormLayout::Parallel,
            n => {
                return Err(EngineError::config(
                    f.path,
                    format!("\"num_ln_in_parallel_attn\": {n} is not a Falcon layout"),
                ));
            }
        }
    } else if parallel {
        NormLayout::Parallel
    } else {
        NormLayout::Pre
    };
    config.activation = f.activation(&["activation"], Activation::Gelu)?;
    Ok(config)
}

/// Falcon's names: BLOOM's, which it grew from (`transformer.` before them in
/// `FalconForCausalLM` checkpoints), without the embedding norm. For the layouts with
/// `input_layernorm` (and `post_attention_layernorm` when not parallel).
pub const NAMES: NameTable = NameTable {
    family: "Falcon",
    fixed: &[
        ("model.embed_tokens.weight", "word_embeddings.weight"),
        ("model.norm.weight", "ln_f.weight"),
        ("model.norm.bias", "ln_f.bias"),
    ],
    ..super::bloom::NAMES
};

/// The same for the new decoder architecture's two norms, `ln_attn` and `ln_mlp`.
pub const NAMES_TWO_NORMS: NameTable = NameTable {
    norms: &[
        ("input_layernorm", "ln_attn"),
        ("post_attention_layernorm", "ln_mlp"),
    ],
    ..NAMES
};
