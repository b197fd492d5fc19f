//! OLMoE (AI2's open mixture of experts, e.g. OLMoE-1B-7B): Llama's pre-norm layout with q
//! and k RMSNorms over all heads (as OLMo 2), and a mixture of gated SiLU experts in every
//! layer's MLP (see `engine::moe`).

use crate::engine::config::{Activation, Architecture, Experts, HfFields, ModelConfig, QkNorm};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    // OLMoE clamps q and k after their norms, the decoder before; the released models do not
    // clamp at all.
    if f.opt_f64("clip_qkv")?.is_some() {
        return Err(EngineError::config(
            f.path,
            "\"clip_qkv\" in an OLMoE model is not supported",
        ));
    }
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Olmoe, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    config.qk_norm = QkNorm::AllHeads;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.experts = Some(Experts {
        beside_dense: false,
        count: f.usize_either("num_experts", "num_local_experts")?,
        per_token: f.usize("num_experts_per_tok")?,
        normalize_top_k: f.bool_or("norm_topk_prob", false)?,
        shared_d_ff: None,
        biased: false,
    });
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
