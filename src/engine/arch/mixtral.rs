//! Mixtral: Mistral's attention and a mixture of gated SiLU experts in every layer's MLP,
//! the chosen experts' weights renormalized (see `engine::moe`). Its checkpoints name them
//! `block_sparse_moe.experts.{e}.w1/w3/w2`.

use crate::engine::config::{Architecture, Experts, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut config = super::mistral::config(f)?;
    config.architecture = Architecture::Mixtral;
    config.experts = Some(Experts {
        count: f.usize_either("num_local_experts", "num_experts")?,
        per_token: f.usize("num_experts_per_tok")?,
        normalize_top_k: true,
        shared_d_ff: None,
        biased: false,
    });
    Ok(config)
}
