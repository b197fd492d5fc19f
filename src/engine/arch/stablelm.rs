//! StableLM (2, e.g. the multilingual StableLM 2 1.6B): Llama's gated MLP with LayerNorms
//! (weight and bias), rotary on a quarter of each head by default, optional q/k/v biases, and
//! optionally attention and the MLP side by side on one norm (`use_parallel_residual`).

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig, NormLayout};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("qk_layernorm", false)? {
        return Err(EngineError::config(
            f.path,
            "\"qk_layernorm\": true (a LayerNorm per head, StableLM 2 12B) is not supported",
        ));
    }
    let mut dims = f.dims()?;
    dims.rms_norm_eps = f.f64_or("layer_norm_eps", 1e-5)?;
    let partial_rotary = f.partial_rotary(dims.head_dim, 0.25)?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::StableLm, layers);
    family_traits(&mut config, f.bool_or("use_parallel_residual", false)?);
    config.partial_rotary = partial_rotary;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.qkv_bias = f.bool_or("use_qkv_bias", false)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What makes a StableLM model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig, parallel: bool) {
    config.norm_centered = true;
    config.norm_bias = true;
    if parallel {
        config.norm_layout = NormLayout::Parallel;
    }
}
