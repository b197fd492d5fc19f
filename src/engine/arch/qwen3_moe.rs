//! Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention and a mixture of gated SiLU
//! experts of `moe_intermediate_size` in every layer's MLP (see `engine::moe`). Configs that
//! keep some layers dense (`mlp_only_layers`, `decoder_sparse_step` > 1) are refused: the
//! captured states need the same neurons in every layer.

use crate::engine::config::{Activation, Architecture, Experts, HfFields, ModelConfig};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut config = super::qwen3::config(f)?;
    qwen_experts(f, &mut config, Architecture::Qwen3Moe, None)?;
    Ok(config)
}

/// What Qwen's mixtures (Qwen2-MoE, Qwen3-MoE) read alike: experts of `moe_intermediate_size`
/// in every layer, and `shared` a shared expert's width.
pub(super) fn qwen_experts(
    f: &HfFields,
    config: &mut ModelConfig,
    architecture: Architecture,
    shared_d_ff: Option<usize>,
) -> Result<()> {
    let dense_layers = f
        .json
        .get("mlp_only_layers")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|layers| !layers.is_empty());
    if dense_layers || f.opt_usize("decoder_sparse_step")?.unwrap_or(1) != 1 {
        return Err(EngineError::config(
            f.path,
            "dense MLP layers among the experts (\"mlp_only_layers\", \"decoder_sparse_step\") \
             are not supported",
        ));
    }
    config.architecture = architecture;
    config.intermediate_size = f.usize("moe_intermediate_size")?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.experts = Some(Experts {
        beside_dense: false,
        count: f.usize_either("num_experts", "num_local_experts")?,
        per_token: f.usize("num_experts_per_tok")?,
        normalize_top_k: f.bool_or("norm_topk_prob", false)?,
        shared_d_ff,
        biased: false,
    });
    Ok(())
}
