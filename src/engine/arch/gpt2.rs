//! GPT-2 (and models of its shape, such as mGPT): learned positions instead of rotary,
//! LayerNorms with bias, biases on every projection, and a non-gated MLP `act(c_fc(h))` whose
//! units are the neurons (METHOD §1). Its checkpoints store the projections as `Conv1D`
//! (`[in, out]`) under their own names; [`NAMES`] hands them to the decoder as the
//! Llama-style `[out, in]` tensors it asks for.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::{EngineError, Result};
use crate::engine::weights::{NameTable, Stored};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("scale_attn_by_inverse_layer_idx", false)? {
        return Err(EngineError::config(
            f.path,
            "\"scale_attn_by_inverse_layer_idx\": true is not supported",
        ));
    }
    let mut config = super::LayerNormFamily {
        hidden_size: f.usize("n_embd")?,
        num_heads: f.usize("n_head")?,
        num_kv_heads: None,
        num_layers: f.usize("n_layer")?,
        intermediate_size: f.opt_usize("n_inner")?,
        max_position_embeddings: f.usize("n_positions")?,
    }
    .config(f, Architecture::Gpt2)?;
    if !f.bool_or("scale_attn_weights", true)? {
        config.attention_scale = 1.0;
    }
    config.learned_positions = true;
    config.activation = f.activation(&["activation_function"], Activation::GeluTanh)?;
    Ok(config)
}

/// GPT-2's names: `model.layers.3.self_attn.qkv_proj` is `h.3.attn.c_attn`, transposed, and
/// so on (`transformer.` before them in `GPT2LMHeadModel` checkpoints).
pub const NAMES: NameTable = NameTable {
    family: "GPT-2",
    prefix: "transformer.",
    fixed: &[
        ("model.embed_tokens.weight", "wte.weight"),
        ("model.embed_positions.weight", "wpe.weight"),
        ("model.norm.weight", "ln_f.weight"),
        ("model.norm.bias", "ln_f.bias"),
    ],
    lm_head: "lm_head.weight",
    layers: "h",
    norms: &[
        ("input_layernorm", "ln_1"),
        ("post_attention_layernorm", "ln_2"),
    ],
    parts: &[
        ("self_attn.qkv_proj", "attn.c_attn", Stored::Conv1D),
        ("self_attn.o_proj", "attn.c_proj", Stored::Conv1D),
        ("mlp.up_proj", "mlp.c_fc", Stored::Conv1D),
        ("mlp.down_proj", "mlp.c_proj", Stored::Conv1D),
    ],
};
