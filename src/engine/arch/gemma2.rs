//! Gemma 2: (1 + w) RMSNorms before and after attention and FFN, GELU-tanh gate, embeddings
//! scaled by sqrt(hidden), attention logits soft-capped, local (sliding) and global layers
//! alternating, starting with a local one.

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, ModelConfig, NormLayout,
};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let rope = f.rope("full_attention", 10_000.0)?;
    let window = f.opt_usize("sliding_window")?.unwrap_or(4096);
    let sliding = f.sliding_or_every(dims.num_layers, 2)?;
    let layers = LayerAttention::per_layer(&sliding, Some(window), &rope, &rope);
    let head_dim = dims.head_dim;
    let hidden = dims.hidden_size;
    let mut config = dims.into_config(Architecture::Gemma2, layers);
    apply_gemma_common(f, &mut config, head_dim, hidden)?;
    config.norm_layout = NormLayout::Sandwich;
    config.attn_logit_softcapping = f.opt_f64("attn_logit_softcapping")?;
    config.final_logit_softcapping = f.opt_f64("final_logit_softcapping")?;
    Ok(config)
}

/// What the Gemma generations share.
pub(super) fn apply_gemma_common(
    f: &HfFields,
    config: &mut ModelConfig,
    head_dim: usize,
    hidden: usize,
) -> Result<()> {
    config.norm_plus_one = true;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", true)?;
    config.activation = f.activation(&["hidden_activation", "hidden_act"], Activation::GeluTanh)?;
    config.embedding_scale = Some((hidden as f64).sqrt());
    let scalar = f.f64_or("query_pre_attn_scalar", head_dim as f64)?;
    config.attention_scale = 1.0 / scalar.sqrt();
    super::attention_bias(f, config)?;
    config.bos_token_id = f.bos_token_id();
    Ok(())
}
