//! OLMo 2: Llama's attention and MLP with RMSNorms only on their outputs (before each residual
//! add, none before), and one RMSNorm over all query heads (and one over all key heads).
//! OLMo 3: the same with sliding-window layers (three of four), each kind with its own rotary
//! settings (YaRN on the global ones in the long-context checkpoints).

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, ModelConfig, NormLayout, QkNorm, Rope,
    RopeScaling,
};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    shared(f, dims.into_config(Architecture::Olmo2, layers))
}

pub fn config3(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let sliding = f.sliding_or_every(dims.num_layers, 4)?;
    let window = f.opt_usize("sliding_window")?.unwrap_or(4096);
    let global = f.rope("full_attention", 10_000.0)?;
    // Older configs give one `rope_theta` and a `rope_scaling` that transformers applies to the
    // global layers only.
    let local = if f.json.get("rope_parameters").is_some() {
        f.rope("sliding_attention", 10_000.0)?
    } else {
        Rope {
            theta: global.theta,
            scaling: RopeScaling::None,
        }
    };
    let layers = LayerAttention::per_layer(&sliding, Some(window), &local, &global);
    shared(f, dims.into_config(Architecture::Olmo3, layers))
}

fn shared(f: &HfFields, mut config: ModelConfig) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    family_traits(&mut config);
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What makes an OLMo 2 or 3 model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.qk_norm = QkNorm::AllHeads;
    config.norm_layout = NormLayout::Post;
}
