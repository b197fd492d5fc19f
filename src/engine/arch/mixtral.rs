//! Mixtral: Mistral's attention and a mixture of gated SiLU experts in every layer's MLP,
//! the chosen experts' weights renormalized (see `engine::moe`). Its checkpoints name them
//! `block_sparse_moe.experts.{e}.w1/w3/w2`.

use crate::engine::config::{Architecture, Experts, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut config = super::mistral::config(f)?;
    config.architecture = Architecture::Mixtral;
    config.experts = Some(top_k_experts(f)?);
    Ok(config)
}

/// `num_local_experts` experts, `num_experts_per_tok` per token, their weights renormalized
/// over the chosen ones (a softmax over the chosen logits comes to the same): Mixtral's
/// reading, and Granite MoE's.
pub(super) fn top_k_experts(f: &HfFields) -> Result<Experts> {
    Ok(Experts {
        beside_dense: false,
        count: f.usize_either("num_local_experts", "num_experts")?,
        per_token: f.usize("num_experts_per_tok")?,
        normalize_top_k: true,
        shared_d_ff: None,
        biased: false,
    })
}
