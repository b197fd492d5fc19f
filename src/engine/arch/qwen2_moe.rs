//! Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): Qwen2's attention, a mixture of gated SiLU
//! experts in every layer's MLP, and a shared expert every token runs, its output scaled by
//! `sigmoid(w·h)` (see `engine::moe`). A layer's neurons are the experts', then the shared
//! expert's.

use crate::engine::config::{Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut config = super::qwen2::config(f)?;
    let shared = f.usize("shared_expert_intermediate_size")?;
    super::qwen3_moe::qwen_experts(f, &mut config, Architecture::Qwen2Moe, Some(shared))?;
    Ok(config)
}
