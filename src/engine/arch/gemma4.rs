//! Gemma 4 (text): Gemma 3's norms before and after attention and the MLP and its q/k norms,
//! but every norm is `x·w` (not `1 + w`), the values are normed too (without weights) and the
//! scores are not scaled. Global layers have heads of their own (`global_head_dim`, fewer
//! key/value heads, values from the keys' projection) and proportional rotary on a share of each
//! head. The small models (E2B, E4B) add per-layer embeddings and let their last layers reuse the
//! keys and values of earlier ones; every layer's output is scaled by a stored scalar.
//!
//! The 26B A4B runs a mixture of experts beside every layer's dense MLP: its neurons are the
//! experts' and then the MLP's, as a shared expert's (see [`Experts::beside_dense`]).
//!
//! Not read: the double-wide MLPs of the layers that reuse keys and values (their neurons would
//! be twice as many as the other layers'), refused in words.

use serde_json::Value;

use crate::engine::config::{
    Activation, Architecture, Experts, HfFields, LayerAttention, LayerHeads, ModelConfig,
    NormLayout, PerLayerInput, QkNorm, Rope, RopeScaling,
};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.json
        .get("use_bidirectional_attention")
        .and_then(Value::as_str)
        == Some("all")
    {
        return Err(EngineError::config(
            f.path,
            "\"use_bidirectional_attention\": \"all\" makes every token see the whole \
             sentence; NeuronXA reads a causal language model",
        ));
    }
    let dims = f.dims()?;
    let layers = dims.num_layers;
    let kv_shared_layers = f.opt_usize("num_kv_shared_layers")?.unwrap_or(0);
    if kv_shared_layers >= layers {
        return Err(EngineError::config(
            f.path,
            format!(
                "\"num_kv_shared_layers\" is {kv_shared_layers} of {layers} layers: no layer \
                 would compute the keys and values the others reuse (an assistant model, which \
                 runs beside its main model)"
            ),
        ));
    }
    if kv_shared_layers > 0 && f.bool_or("use_double_wide_mlp", false)? {
        return Err(EngineError::config(
            f.path,
            format!(
                "\"use_double_wide_mlp\": the {kv_shared_layers} layers that reuse keys and \
                 values have MLPs twice as wide as the others', and NeuronXA compares layers of \
                 one width; this Gemma 4 is not supported"
            ),
        ));
    }
    let mut sliding = f
        .layer_types(layers)?
        .unwrap_or_else(|| (0..layers).map(|i| (i + 1) % 6 != 0).collect());
    // transformers makes the last layer global whatever the list says.
    if let Some(last) = sliding.last_mut() {
        *last = false;
    }
    let (local_rope, global_rope) = if f.json.get("rope_parameters").is_some_and(Value::is_object) {
        (
            f.rope("sliding_attention", 10_000.0)?,
            f.rope("full_attention", 1_000_000.0)?,
        )
    } else {
        // transformers' defaults: the global layers turn a quarter of each head's pairs.
        (
            Rope {
                theta: 10_000.0,
                scaling: RopeScaling::None,
            },
            Rope {
                theta: 1_000_000.0,
                scaling: RopeScaling::Proportional {
                    fraction: 0.25,
                    factor: 1.0,
                },
            },
        )
    };
    let window = f.opt_usize("sliding_window")?.unwrap_or(512);
    let values_from_keys = f.bool_or("attention_k_eq_v", false)?;
    let overrides = head_overrides(f, &sliding, dims.num_kv_heads, values_from_keys)?;
    let mut per_layer =
        LayerAttention::per_layer(&sliding, Some(window), &local_rope, &global_rope);
    for ((layer, &slides), heads) in per_layer.iter_mut().zip(&sliding).zip(overrides) {
        let heads = heads.unwrap_or(LayerHeads {
            head_dim: dims.head_dim,
            kv_heads: dims.num_kv_heads,
            values_from_keys: false,
        });
        let heads = LayerHeads {
            values_from_keys: values_from_keys && !slides,
            ..heads
        };
        let same_as_model = heads.head_dim == dims.head_dim
            && heads.kv_heads == dims.num_kv_heads
            && !heads.values_from_keys;
        layer.heads = (!same_as_model).then_some(heads);
    }
    let dense_width = dims.intermediate_size;
    let mut config = dims.into_config(Architecture::Gemma4, per_layer);
    family_traits(&mut config);
    if f.bool_or("enable_moe_block", false)? {
        // Every layer: the dense MLP is the mixture's shared expert, its neurons last.
        config.intermediate_size = f.usize("moe_intermediate_size")?;
        config.experts = Some(Experts {
            count: f.usize("num_experts")?,
            per_token: f.usize("top_k_experts")?,
            normalize_top_k: true,
            shared_d_ff: Some(dense_width),
            biased: false,
            beside_dense: true,
        });
    }
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", true)?;
    config.activation = f.activation(&["hidden_activation", "hidden_act"], Activation::GeluTanh)?;
    config.final_logit_softcapping = f.opt_f64("final_logit_softcapping")?;
    config.kv_shared_layers = kv_shared_layers;
    // transformers' defaults where the keys are absent (256 values from 262 144 ids); `null`
    // or 0: none.
    let width = match f.json.get("hidden_size_per_layer_input") {
        None => Some(256),
        Some(_) => f.opt_usize("hidden_size_per_layer_input")?,
    };
    config.per_layer_input = match width {
        Some(width) if width > 0 => Some(PerLayerInput {
            width,
            vocab: f
                .opt_usize("vocab_size_per_layer_input")?
                .unwrap_or(262_144),
        }),
        _ => None,
    };
    super::attention_bias(f, &mut config)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What every Gemma 4 has, whatever file it came from: Gemma 3's four norms and per-head q/k
/// norms (of `x·w`), values normed, unscaled scores, embeddings × √d_model, GELU (tanh), a
/// scalar per layer.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.norm_layout = NormLayout::Sandwich;
    config.qk_norm = QkNorm::PerHead;
    config.value_norm = true;
    config.attention_scale = 1.0;
    config.activation = Activation::GeluTanh;
    config.embedding_scale = Some((config.hidden_size as f64).sqrt());
    config.layer_scalar = true;
}

/// The global layers' heads: transformers' own `per_layer_config` (layer index → `head_dim`,
/// `num_key_value_heads`) where the config has one, else the released configs'
/// `global_head_dim` and `num_global_key_value_heads` (the latter only with
/// `attention_k_eq_v`, as transformers reads it).
fn head_overrides(
    f: &HfFields,
    sliding: &[bool],
    kv_heads: usize,
    values_from_keys: bool,
) -> Result<Vec<Option<LayerHeads>>> {
    let bad = |what: String| EngineError::config(f.path, what);
    if let Some(table) = f.json.get("per_layer_config").and_then(Value::as_object) {
        let mut heads = vec![None; sliding.len()];
        for (index, entry) in table {
            let layer = index
                .parse::<usize>()
                .ok()
                .filter(|&i| i < sliding.len())
                .ok_or_else(|| bad(format!("\"per_layer_config\" names layer \"{index}\"")))?;
            let entry = entry.as_object().ok_or_else(|| {
                bad(format!(
                    "\"per_layer_config\" of layer {layer}: not an object"
                ))
            })?;
            if let Some(key) = entry
                .keys()
                .find(|k| !matches!(k.as_str(), "head_dim" | "num_key_value_heads"))
            {
                return Err(bad(format!(
                    "\"per_layer_config\" of layer {layer} sets \"{key}\", which is not read \
                     (only head_dim and num_key_value_heads are)"
                )));
            }
            let field = |key: &str| -> Result<Option<usize>> {
                match entry.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                        bad(format!(
                            "\"per_layer_config\" of layer {layer}: \"{key}\" is not a whole number"
                        ))
                    }),
                }
            };
            heads[layer] = Some(LayerHeads {
                head_dim: field("head_dim")?.unwrap_or(f.usize("head_dim")?),
                kv_heads: field("num_key_value_heads")?.unwrap_or(kv_heads),
                values_from_keys: false,
            });
        }
        return Ok(heads);
    }
    let head_dim = f.opt_usize("global_head_dim")?.unwrap_or(512);
    let global_kv_heads = match f.opt_usize("num_global_key_value_heads")? {
        Some(n) if values_from_keys => n,
        _ => kv_heads,
    };
    Ok(sliding
        .iter()
        .map(|&slides| {
            (!slides).then_some(LayerHeads {
                head_dim,
                kv_heads: global_kv_heads,
                values_from_keys: false,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use crate::engine::config::ModelConfig;

    /// A small Gemma 4 text config in the released form: five local layers for each global one,
    /// the last two layers reusing keys and values.
    fn released() -> serde_json::Value {
        json!({
            "model_type": "gemma4_text", "vocab_size": 512, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 12, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "global_head_dim": 32,
            "num_global_key_value_heads": 1, "attention_k_eq_v": true,
            "hidden_size_per_layer_input": 8, "vocab_size_per_layer_input": 512,
            "num_kv_shared_layers": 2,
            "rms_norm_eps": 1e-6, "sliding_window": 16, "max_position_embeddings": 1024
        })
    }

    fn read(json: &serde_json::Value) -> crate::engine::error::Result<ModelConfig> {
        ModelConfig::from_hf_json(json, Path::new("config.json"))
    }

    #[test]
    fn global_layers_get_their_own_heads_and_the_last_layers_reuse_keys_and_values() {
        let config = read(&released()).unwrap();
        // Layers 5 and 11 are global (every sixth; the last one always).
        let global: Vec<usize> = (0..12)
            .filter(|&i| config.layers[i].sliding_window.is_none())
            .collect();
        assert_eq!(global, [5, 11]);
        let heads = config.heads_of(&config.layers[5]);
        assert_eq!((heads.head_dim, heads.kv_heads), (32, 1));
        assert!(heads.values_from_keys);
        assert_eq!(config.layers[4].heads, None);
        // Layers 10 (local) and 11 (global) reuse the last local and global layers before them.
        assert_eq!(config.kv_source(10), Some(9));
        assert_eq!(config.kv_source(11), Some(5));
        assert_eq!(config.kv_source(9), None);
        assert!(!config.has_own_kv(10) && config.has_own_kv(9));
        assert_eq!(
            config.per_layer_input.map(|p| (p.width, p.vocab)),
            Some((8, 512))
        );
        assert_eq!(config.attention_scale, 1.0);
        assert!(!config.norm_plus_one && config.value_norm && config.layer_scalar);
        // Without rope_parameters, transformers' defaults; the anatomy says what was read.
        let anatomy = config.anatomy().join("\n");
        for words in [
            "2 layers with heads of 32 (1 key/value, values from the keys' projection)",
            "the last 2 layers reuse the keys and values",
            "10 layers: θ 10000, window 16; 2 layers: θ 1000000, proportional: 4 of 16 pairs turn",
            "per-layer embeddings: 8 values per layer and token (512 ids)",
        ] {
            assert!(anatomy.contains(words), "{words}: {anatomy}");
        }
    }

    #[test]
    fn transformers_per_layer_config_reads_as_the_released_fields() {
        let mut saved = released();
        let object = saved.as_object_mut().unwrap();
        object.remove("global_head_dim");
        object.remove("num_global_key_value_heads");
        object.insert(
            "per_layer_config".into(),
            json!({
                "5": {"head_dim": 32, "num_key_value_heads": 1},
                "11": {"head_dim": 32, "num_key_value_heads": 1}
            }),
        );
        assert_eq!(read(&saved).unwrap(), read(&released()).unwrap());
        saved["per_layer_config"]["5"]["sliding_window"] = json!(4);
        let error = read(&saved).unwrap_err().to_string();
        assert!(
            error.contains("\"sliding_window\", which is not read"),
            "{error}"
        );
    }

    #[test]
    fn per_layer_embeddings_default_as_in_transformers() {
        let mut json = released();
        for key in ["hidden_size_per_layer_input", "vocab_size_per_layer_input"] {
            json.as_object_mut().unwrap().remove(key);
        }
        let ple = read(&json).unwrap().per_layer_input.unwrap();
        assert_eq!((ple.width, ple.vocab), (256, 262_144));
        json["hidden_size_per_layer_input"] = json!(null);
        assert_eq!(read(&json).unwrap().per_layer_input, None);
        json["hidden_size_per_layer_input"] = json!(0);
        assert_eq!(read(&json).unwrap().per_layer_input, None);
    }

    #[test]
    fn global_key_value_heads_count_only_where_keys_are_values() {
        let mut json = released();
        json["attention_k_eq_v"] = json!(false);
        let config = read(&json).unwrap();
        let heads = config.heads_of(&config.layers[5]);
        assert_eq!(
            (heads.head_dim, heads.kv_heads, heads.values_from_keys),
            (32, 2, false)
        );
    }

    #[test]
    fn the_mixture_beside_the_mlp_counts_the_mlp_as_its_shared_expert() {
        let mut json = released();
        for (key, value) in [
            ("enable_moe_block", json!(true)),
            ("num_experts", json!(8)),
            ("top_k_experts", json!(2)),
            ("moe_intermediate_size", json!(32)),
        ] {
            json[key] = value;
        }
        let config = read(&json).unwrap();
        let experts = config.experts.clone().unwrap();
        assert_eq!((experts.count, experts.per_token), (8, 2));
        assert_eq!(experts.shared_d_ff, Some(128));
        assert!(experts.beside_dense && experts.normalize_top_k);
        assert_eq!(config.intermediate_size, 32);
        assert_eq!(config.neurons_per_layer(), 8 * 32 + 128);
        json["moe_intermediate_size"] = json!(null);
        let error = read(&json).unwrap_err().to_string();
        assert!(error.contains("moe_intermediate_size"), "{error}");
    }

    #[test]
    fn what_is_not_supported_is_refused_in_words() {
        let refused = |key: &str, value: serde_json::Value, words: &str| {
            let mut json = released();
            json[key] = value;
            let error = read(&json).unwrap_err().to_string();
            assert!(error.contains(words), "{key}: {error}");
        };
        refused("use_double_wide_mlp", json!(true), "twice as wide");
        refused(
            "num_kv_shared_layers",
            json!(12),
            "no layer would compute the keys",
        );
        refused(
            "use_bidirectional_attention",
            json!("all"),
            "causal language model",
        );
        // Without shared layers the double-wide MLPs are the model's only width: read.
        let mut json = released();
        json["use_double_wide_mlp"] = json!(true);
        json["num_kv_shared_layers"] = json!(0);
        assert!(read(&json).is_ok());
    }
}
