//! OLMo 2: Llama's attention and MLP with RMSNorms only on their outputs (before each residual
//! add, none before), and one RMSNorm over all query heads (and one over all key heads).

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig, NormLayout, QkNorm};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Olmo2, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.qkv_bias = f.bool_or("attention_bias", false)?;
    config.qk_norm = QkNorm::AllHeads;
    config.norm_layout = NormLayout::Post;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
