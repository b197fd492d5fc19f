//! Phi-3 / Phi-3.5 (text): Llama with q, k, v stored as one `qkv_proj` and gate, up as one
//! `gate_up_proj`, an optional sliding window on every layer, and LongRoPE in the long-context
//! variants. Phi-4-mini turns only part of each head (`partial_rotary_factor`).

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    // transformers writes it into the rope settings too; any of the three places may hold it.
    let in_rope = ["rope_parameters", "rope_scaling"]
        .iter()
        .find_map(|key| f.json.get(*key)?.get("partial_rotary_factor")?.as_f64());
    let partial = match in_rope {
        Some(factor) => factor,
        None => f.f64_or("partial_rotary_factor", 1.0)?,
    };
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(EngineError::config(
            f.path,
            format!("\"partial_rotary_factor\" is {partial}; it must be in (0, 1]"),
        ));
    }
    let dims = f.dims()?;
    // transformers: `int(head_dim * partial_rotary_factor)`.
    let rotary = (dims.head_dim as f64 * partial) as usize;
    let window = f.opt_usize("sliding_window")?;
    let layers =
        super::uniform_layers(dims.num_layers, window, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Phi3, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.fused_projections = true;
    config.partial_rotary = (rotary != config.head_dim).then_some(rotary);
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
