//! Granite (3.x, dense and MoE): Llama with four multipliers — on the embeddings, as the
//! attention scale, on each sub-layer's output before the residual add, and dividing the
//! logits. Granite MoE (3.0/3.1 1B-A400M, 3B-A800M) puts a mixture of gated SiLU experts in
//! every layer's MLP (see `engine::moe`), the chosen experts' weights a softmax over their
//! logits.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    family_config(f, Architecture::Granite, true)
}

pub fn config_moe(f: &HfFields) -> Result<ModelConfig> {
    let mut config = family_config(f, Architecture::GraniteMoe, false)?;
    config.experts = Some(super::mixtral::top_k_experts(f)?);
    Ok(config)
}

/// What both read alike; transformers' default for `tie_word_embeddings` differs (dense: tied).
fn family_config(f: &HfFields, architecture: Architecture, tied: bool) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(architecture, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", tied)?;
    super::attention_bias(f, &mut config)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.embedding_scale = Some(f.f64_or("embedding_multiplier", 1.0)?);
    config.attention_scale = f.f64_or("attention_multiplier", config.attention_scale)?;
    config.residual_scale = Some(f.f64_or("residual_multiplier", 1.0)?);
    config.logit_scale = Some(1.0 / f.f64_or("logits_scaling", 1.0)?);
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
