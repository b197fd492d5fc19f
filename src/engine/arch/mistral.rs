//! Mistral: Llama with an optional sliding attention window on every layer. Ministral 3: the
//! same with YaRN, and Llama 4's query scaling far out (refused where it would apply).

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let window = f.opt_usize("sliding_window")?;
    let layers =
        super::uniform_layers(dims.num_layers, window, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Mistral, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

pub fn config3(f: &HfFields) -> Result<ModelConfig> {
    let mut config = config(f)?;
    config.architecture = Architecture::Ministral3;
    let params = f.json.get("rope_parameters");
    let beta = params
        .and_then(|p| p.get("llama_4_scaling_beta"))
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    if beta != 0.0 {
        let from = params
            .and_then(|p| p.get("original_max_position_embeddings"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(config.max_position_embeddings as u64);
        config.query_scaling_from = Some(from as usize);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::engine::config::{Architecture, ModelConfig};

    fn text(model_type: &str) -> serde_json::Value {
        serde_json::json!({
            "model_type": model_type, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                "llama_4_scaling_beta": 0.1, "original_max_position_embeddings": 512},
        })
    }

    /// Ministral 3's query scaling starts at its original context: sentences must end before.
    #[test]
    fn ministral3_refuses_sentences_where_its_query_scaling_would_start() {
        let config = ModelConfig::from_hf_json(&text("ministral3"), Path::new("c.json")).unwrap();
        assert_eq!(config.sentence_token_limit().0, 512);
        // Mistral 3 wraps its language model in `text_config`; one this engine cannot run is
        // named with the wrapper.
        let wrapper =
            serde_json::json!({"model_type": "mistral3", "text_config": text("ministral3")});
        let config = ModelConfig::from_hf_json(&wrapper, Path::new("c.json")).unwrap();
        assert_eq!(config.architecture, Architecture::Ministral3);
        let odd = serde_json::json!({"model_type": "mistral3", "text_config": text("mamba")});
        let err = ModelConfig::from_hf_json(&odd, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("mistral3 around mamba"), "{err}");
        assert!(
            err.to_string().contains("mistral3 (its language model)"),
            "{err}"
        );
    }
}
