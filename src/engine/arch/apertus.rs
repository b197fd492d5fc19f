//! Apertus (the Swiss AI models trained on 1,800+ languages): Llama's attention with
//! per-head RMSNorm on q and k (as Qwen3), llama3 rotary scaling, and a non-gated MLP
//! `down(xIELU(up(h)))` whose activation has parameters of its own in every layer. Its norms
//! are named `attention_layernorm` and `feedforward_layernorm`; [`NAMES`] hands them to the
//! decoder under Llama's names.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig, QkNorm};
use crate::engine::error::Result;
use crate::engine::weights::{NameTable, Stored};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    apertus(f, Architecture::Apertus)
}

/// Apertus 1.5's language model (`apertus1p5_text`, inside the `apertus1p5` wrapper with its
/// image and audio tokenizers): Apertus, with the multimodal codes after the text's ids in the
/// vocabulary and the output head pruned to the text's (`output_vocab_size`).
pub fn config_1p5(f: &HfFields) -> Result<ModelConfig> {
    let mut config = apertus(f, Architecture::Apertus15)?;
    config.output_vocab_size = f
        .opt_usize("output_vocab_size")?
        .filter(|&rows| rows != config.vocab_size);
    Ok(config)
}

fn apertus(f: &HfFields, architecture: Architecture) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 12e6)?);
    let mut config = dims.into_config(architecture, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    config.qk_norm = QkNorm::PerHead;
    config.mlp_gated = false;
    config.activation = f.activation(&["hidden_act"], Activation::XIelu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// Apertus' names: Llama's, but for the two norms of a layer.
pub const NAMES: NameTable = NameTable {
    family: "Apertus",
    prefix: "model.",
    ..WRAPPED_NAMES
};

/// The same inside Apertus 1.5's multimodal wrapper (`model.language_model.`).
pub const WRAPPED_NAMES: NameTable = NameTable {
    family: "Apertus",
    prefix: "model.language_model.",
    fixed: super::LLAMA_FIXED,
    lm_head: "lm_head.weight",
    layers: "layers",
    norms: &[
        ("input_layernorm", "attention_layernorm"),
        ("post_attention_layernorm", "feedforward_layernorm"),
        ("self_attn.q_norm", "self_attn.q_norm"),
        ("self_attn.k_norm", "self_attn.k_norm"),
    ],
    parts: &[
        ("self_attn.q_proj", "self_attn.q_proj", Stored::AsAsked),
        ("self_attn.k_proj", "self_attn.k_proj", Stored::AsAsked),
        ("self_attn.v_proj", "self_attn.v_proj", Stored::AsAsked),
        ("self_attn.o_proj", "self_attn.o_proj", Stored::AsAsked),
        ("mlp.up_proj", "mlp.up_proj", Stored::AsAsked),
        ("mlp.down_proj", "mlp.down_proj", Stored::AsAsked),
        ("mlp.act_fn", "mlp.act_fn", Stored::AsAsked),
    ],
};
