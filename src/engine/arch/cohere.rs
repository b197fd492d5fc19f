//! Cohere (Command R, Aya 23, Aya Expanse): attention and the MLP side by side on one
//! mean-centred norm (a LayerNorm without bias), interleaved rotary pairs, and scaled logits.
//! Cohere 2 (Command R7B, Aya Vision's text model): the same, with sliding-window layers and
//! global layers that use no rotary embedding at all.

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, ModelConfig, NormLayout, Rope, RopeScaling,
};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    shared(f, Architecture::Cohere)
}

pub fn config2(f: &HfFields) -> Result<ModelConfig> {
    let mut config = shared(f, Architecture::Cohere2)?;
    let n = config.num_layers;
    let sliding = match f.layer_types(n)? {
        Some(types) => types,
        // transformers' default: every fourth layer global.
        None => {
            let period = f.opt_usize("sliding_window_pattern")?.unwrap_or(4).max(1);
            (0..n).map(|i| (i + 1) % period != 0).collect()
        }
    };
    let window = f.opt_usize("sliding_window")?.unwrap_or(4096);
    let rope = config.layers[0].rope.clone();
    config.layers = sliding
        .into_iter()
        .map(|is_sliding| LayerAttention {
            sliding_window: is_sliding.then_some(window),
            // Only the sliding layers rotate queries and keys.
            rope: if is_sliding {
                rope.clone()
            } else {
                Rope {
                    theta: rope.theta,
                    scaling: RopeScaling::NoRotation,
                }
            },
        })
        .collect();
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
    config.norm_layout = NormLayout::Parallel;
    config.norm_centered = true;
    config.rope_interleaved = true;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", true)?;
    config.qkv_bias = f.bool_or("attention_bias", false)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.logit_scale = Some(f.f64_or("logit_scale", 0.0625)?);
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
