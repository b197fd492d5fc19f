//! GLM (the "-hf" GLM-4-9B checkpoints, GLM-Edge) and GLM-4 (GLM-4-9B-0414, GLM-Z1): Llama's
//! attention with q/k/v biases and rotary on the first half of each head in neighbouring pairs,
//! gate and up in one `gate_up_proj`. GLM-4 adds a norm on attention's and on the MLP's output
//! (Gemma 2's four norms, under its own names: [`NAMES4`]).
//!
//! The neighbouring pairs are turned into halves at load (`PartialRotaryWeights`), as partial
//! rotary is for the other families.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig, NormLayout};
use crate::engine::error::Result;
use crate::engine::weights::{NameTable, Stored};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    family(f, Architecture::Glm)
}

pub fn config4(f: &HfFields) -> Result<ModelConfig> {
    family(f, Architecture::Glm4)
}

/// What GLM and GLM-4 files share whether read from `config.json` or GGUF: rotary in
/// neighbouring pairs, gate and up stacked, and GLM-4's norms after attention and the MLP.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.rope_interleaved = true;
    config.fused_gate_up = true;
    if config.architecture == Architecture::Glm4 {
        config.norm_layout = NormLayout::Sandwich;
    }
}

fn family(f: &HfFields, architecture: Architecture) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let partial_rotary = f.partial_rotary(dims.head_dim, 0.5)?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(architecture, layers);
    config.partial_rotary = partial_rotary;
    family_traits(&mut config);
    // GLM's `attention_bias` stops at v.
    config.qkv_bias = f.bool_or("attention_bias", true)?;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// GLM-4's names: Llama's, but for the norms of a layer (its `post_attention_layernorm` is the
/// MLP's input norm, Gemma 2's `pre_feedforward_layernorm`).
pub const NAMES4: NameTable = NameTable {
    family: "GLM-4",
    prefix: "model.",
    fixed: super::LLAMA_FIXED,
    lm_head: "lm_head.weight",
    layers: "layers",
    norms: &[
        ("input_layernorm", "input_layernorm"),
        ("post_attention_layernorm", "post_self_attn_layernorm"),
        ("pre_feedforward_layernorm", "post_attention_layernorm"),
        ("post_feedforward_layernorm", "post_mlp_layernorm"),
    ],
    parts: &[
        ("self_attn.q_proj", "self_attn.q_proj", Stored::AsAsked),
        ("self_attn.k_proj", "self_attn.k_proj", Stored::AsAsked),
        ("self_attn.v_proj", "self_attn.v_proj", Stored::AsAsked),
        ("self_attn.o_proj", "self_attn.o_proj", Stored::AsAsked),
        ("mlp.gate_up_proj", "mlp.gate_up_proj", Stored::AsAsked),
        ("mlp.down_proj", "mlp.down_proj", Stored::AsAsked),
    ],
};
