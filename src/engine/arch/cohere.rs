//! Cohere (Command R, Aya 23, Aya Expanse): attention and the MLP side by side on one
//! mean-centred norm (a LayerNorm without bias), interleaved rotary pairs, and scaled logits.
//! Cohere 2 (Command R7B, Aya Vision's text model): the same, with sliding-window layers and
//! global layers that use no rotary embedding at all.

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, ModelConfig, NormLayout, Rope,
};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    shared(f, Architecture::Cohere)
}

pub fn config2(f: &HfFields) -> Result<ModelConfig> {
    let mut config = shared(f, Architecture::Cohere2)?;
    let sliding = f.sliding_or_every(config.num_layers, 4)?;
    let window = f.opt_usize("sliding_window")?.unwrap_or(4096);
    // Only the sliding layers rotate queries and keys.
    let rope = config.layers[0].rope.clone();
    config.layers = LayerAttention::per_layer(&sliding, Some(window), &rope, &Rope::no_rotation());
    Ok(config)
}

fn shared(f: &HfFields, architecture: Architecture) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    if f.bool_or("use_qk_norm", false)? {
        // Command R+: a separate norm weight for every head, which the decoder does not have.
        return Err(EngineError::config(
            f.path,
            "\"use_qk_norm\": true (per-head q/k LayerNorms, Command R+) is not supported",
        ));
    }
    let mut dims = f.dims()?;
    dims.rms_norm_eps = f.f64_or("layer_norm_eps", 1e-5)?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(architecture, layers);
    family_traits(&mut config);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", true)?;
    super::attention_bias(f, &mut config)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.logit_scale = Some(f.f64_or("logit_scale", 0.0625)?);
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What makes a Cohere model, from `config.json` or GGUF alike: attention and the MLP side by
/// side on one mean-centred norm, and rotary on adjacent pairs.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.norm_layout = NormLayout::Parallel;
    config.norm_centered = true;
    config.rope_interleaved = true;
}
