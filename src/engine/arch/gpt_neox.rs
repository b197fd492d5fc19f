//! GPT-NeoX (Pythia, Polyglot-Ko, japanese-gpt-neox, …): LayerNorms with bias, biases on every
//! projection, rotary on part of each head (`rotary_pct`, a quarter in Pythia), q, k and v in one
//! matrix grouped by head (as BLOOM's), a non-gated GELU MLP `gelu(dense_h_to_4h(h))` whose
//! units are the neurons (METHOD §1), and by default attention and the MLP side by side, each
//! on its own norm of the layer's input (`use_parallel_residual`).

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig, NormLayout, Rope};
use crate::engine::error::{EngineError, Result};
use crate::engine::weights::{NameTable, Stored};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut dims = f.dims()?;
    dims.rms_norm_eps = f.f64_or("layer_norm_eps", 1e-5)?;
    if dims.num_kv_heads != dims.num_heads {
        return Err(EngineError::config(
            f.path,
            "GPT-NeoX with fewer key/value heads than query heads is not supported",
        ));
    }
    let partial_rotary = f.partial_rotary(dims.head_dim, 0.25)?;
    // Hub configs name the rotary base `rotary_emb_base`; transformers 5 writes `rope_parameters`.
    let rope = match f.opt_f64("rotary_emb_base")? {
        Some(theta) if f.json.get("rope_parameters").is_none() => Rope {
            theta,
            scaling: f.rope("full_attention", theta)?.scaling,
        },
        _ => f.rope("full_attention", 10_000.0)?,
    };
    if !f.bool_or("attention_bias", true)? {
        return Err(EngineError::config(
            f.path,
            "\"attention_bias\": false (GPT-NeoX's attention without biases) is not supported",
        ));
    }
    let layers = super::uniform_layers(dims.num_layers, None, rope);
    let mut config = dims.into_config(Architecture::GptNeoX, layers);
    family_traits(&mut config, f.bool_or("use_parallel_residual", true)?);
    config.partial_rotary = partial_rotary;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.activation = f.activation(&["hidden_act"], Activation::Gelu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What makes a GPT-NeoX model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig, parallel: bool) {
    super::layer_norm_family(config);
    // The family's exact GELU (`hidden_act: "gelu"`); GGUF files do not say, and llama.cpp
    // runs its tanh approximation.
    config.activation = Activation::Gelu;
    if parallel {
        config.norm_layout = NormLayout::ParallelTwoNorms;
    }
}

/// GPT-NeoX's names (`gpt_neox.` before them in `GPTNeoXForCausalLM` checkpoints, whose output
/// head is `embed_out`). Its fused `query_key_value` keeps each head's q, k and v together.
pub const NAMES: NameTable = NameTable {
    family: "GPT-NeoX",
    prefix: "gpt_neox.",
    fixed: &[
        ("model.embed_tokens.weight", "embed_in.weight"),
        ("model.norm.weight", "final_layer_norm.weight"),
        ("model.norm.bias", "final_layer_norm.bias"),
    ],
    lm_head: "embed_out.weight",
    layers: "layers",
    norms: &[
        ("input_layernorm", "input_layernorm"),
        ("post_attention_layernorm", "post_attention_layernorm"),
    ],
    parts: &[
        (
            "self_attn.qkv_proj",
            "attention.query_key_value",
            Stored::Grouped,
        ),
        ("self_attn.o_proj", "attention.dense", Stored::AsAsked),
        ("mlp.up_proj", "mlp.dense_h_to_4h", Stored::AsAsked),
        ("mlp.down_proj", "mlp.dense_4h_to_h", Stored::AsAsked),
    ],
};
