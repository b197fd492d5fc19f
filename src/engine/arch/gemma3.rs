//! Gemma 3 (text): Gemma 2's norms plus per-head q/k RMSNorm; five local layers for each global
//! one, local layers with their own rotary base and no scaling.

use crate::engine::config::{
    Architecture, HfFields, LayerAttention, ModelConfig, NormLayout, QkNorm, Rope, RopeScaling,
};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let global_rope = f.rope("full_attention", 1_000_000.0)?;
    let local_rope = if f.json.get("rope_parameters").is_some() {
        f.rope("sliding_attention", 10_000.0)?
    } else {
        Rope {
            theta: f.f64_or("rope_local_base_freq", 10_000.0)?,
            scaling: RopeScaling::None,
        }
    };
    let window = f.opt_usize("sliding_window")?.unwrap_or(4096);
    let sliding = f.sliding_or_every(dims.num_layers, 6)?;
    let layers = LayerAttention::per_layer(&sliding, Some(window), &local_rope, &global_rope);
    let head_dim = dims.head_dim;
    let hidden = dims.hidden_size;
    let mut config = dims.into_config(Architecture::Gemma3, layers);
    super::gemma2::apply_gemma_common(f, &mut config, head_dim, hidden)?;
    config.norm_layout = NormLayout::Sandwich;
    config.qk_norm = QkNorm::PerHead;
    config.attn_logit_softcapping = f.opt_f64("attn_logit_softcapping")?;
    config.final_logit_softcapping = f.opt_f64("final_logit_softcapping")?;
    Ok(config)
}
