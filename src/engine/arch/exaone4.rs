//! EXAONE 4.0 (LG AI Research's Korean–English–Spanish models): OLMo 2's norms (only on
//! attention's and the MLP's outputs) with per-head q/k RMSNorms; where a sliding window is set
//! (the 32B), three local layers for each global one and rotary on the local layers only.

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, ModelConfig, NormLayout, QkNorm, Rope,
};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let rope = f.rope("full_attention", 10_000.0)?;
    let layers = match f.opt_usize("sliding_window")? {
        None => super::uniform_layers(dims.num_layers, None, rope),
        Some(window) => {
            let sliding = sliding_layers(f, dims.num_layers)?;
            LayerAttention::per_layer(&sliding, Some(window), &rope, &Rope::no_rotation())
        }
    };
    let mut config = dims.into_config(Architecture::Exaone4, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.qk_norm = QkNorm::PerHead;
    config.norm_layout = NormLayout::Post;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// Which layers slide: `layer_types`, else `sliding_window_pattern` as a period (4) or as
/// letters repeated over the layers ("LLLG": three local, one global).
fn sliding_layers(f: &HfFields, num_layers: usize) -> Result<Vec<bool>> {
    if let Some(letters) = f
        .json
        .get("sliding_window_pattern")
        .and_then(serde_json::Value::as_str)
    {
        let pattern: Vec<bool> = letters.chars().map(|c| c == 'L').collect();
        if pattern.is_empty() || letters.chars().any(|c| c != 'L' && c != 'G') {
            return Err(EngineError::config(
                f.path,
                format!("\"sliding_window_pattern\" \"{letters}\" is not a string of L and G"),
            ));
        }
        if f.json.get("layer_types").is_none() {
            return Ok((0..num_layers)
                .map(|i| pattern[i % pattern.len()])
                .collect());
        }
    }
    f.sliding_or_every(num_layers, 4)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::engine::config::{ModelConfig, Rope};

    #[test]
    fn letters_say_which_layers_slide_and_the_global_ones_have_no_rotary() {
        let json = serde_json::json!({
            "model_type": "exaone4", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100, "sliding_window": 16, "sliding_window_pattern": "LLLG",
        });
        let config = ModelConfig::from_hf_json(&json, Path::new("config.json")).unwrap();
        let sliding: Vec<bool> = config
            .layers
            .iter()
            .map(|layer| layer.sliding_window == Some(16))
            .collect();
        assert_eq!(sliding, [true, true, true, false, true, true, true, false]);
        assert_eq!(config.layers[3].rope, Rope::no_rotation());
        assert_ne!(config.layers[0].rope, Rope::no_rotation());
        let bad = serde_json::json!({
            "model_type": "exaone4", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 8, "num_attention_heads": 4, "vocab_size": 100,
            "sliding_window": 16, "sliding_window_pattern": "LLXG",
        });
        let err = ModelConfig::from_hf_json(&bad, Path::new("config.json")).unwrap_err();
        assert!(err.to_string().contains("LLXG"), "{err}");
    }
}
