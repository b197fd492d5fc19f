//! GGUF files (llama.cpp's single-file format): configuration, weights and tokenizer in one file.
//!
//! The metadata is read into the same [`ModelConfig`] a Hugging Face `config.json` gives, and the
//! tensors are served under their Hugging Face names and shapes, dequantized to f32 when asked
//! for, so the shared decoder never knows the model came from a GGUF file. Where llama.cpp's
//! converter changed a tensor on the way in (rows of Q and K permuted for the models it writes
//! through its `LlamaModel`, `+1` folded into Gemma's norms, Qwen3.5's value heads reordered),
//! the change is undone here; where it moved configuration into tensors (llama 3's
//! `rope_freqs`, Phi-3's rotary factors), they are read into the config. Each family is checked
//! against transformers on a tiny model that llama.cpp's own converter wrote
//! (`tests/fixtures/gguf/`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::{DType, Device, Tensor};

use super::config::{
    Activation, Architecture, Dims, Experts, LayerAttention, LayerHeads, LayerMixer,
    LinearAttention, ModelConfig, NormLayout, PerLayerInput, QkNorm, Rope, RopeScaling,
    ShortConvolution, SwigluClamp, yarn_mscale,
};
use super::error::{EngineError, Result, candle_message};
use super::gguf_file::{GgufHeader, HeaderError, Storage, StoredTensor};
use super::tokenizer::TextTokenizer;
use super::weights::{TensorSource, check_shape};

/// Everything a GGUF file describes, ready for the decoder.
pub struct GgufModel {
    pub config: ModelConfig,
    pub weights: GgufSource,
    pub tokenizer: TextTokenizer,
}

/// Reads the metadata, the tensor directory (tensor data is read and dequantized lazily, on
/// [`TensorSource::load`]) and the tokenizer of a GGUF file.
pub fn open(path: &Path) -> Result<GgufModel> {
    let (mut file, content) = read_header(path)?;
    let config = model_config(&content, &mut file, path)?;
    let tokenizer = super::gguf_tokenizer::from_gguf(&content, path)?;
    let from_metadata = metadata_tensors(&content, &config, path)?;
    let mut weights = GgufSource::new(path, content, &config)?;
    weights.from_metadata = from_metadata;
    Ok(GgufModel {
        config,
        weights,
        tokenizer: TextTokenizer::from_tokenizer(tokenizer),
    })
}

/// The tokenizer of a GGUF file alone (a file of llama.cpp's `ggml-vocab-*` kind has no
/// model in it).
pub fn tokenizer(path: &Path) -> Result<TextTokenizer> {
    let (_, content) = read_header(path)?;
    let tokenizer = super::gguf_tokenizer::from_gguf(&content, path)?;
    Ok(TextTokenizer::from_tokenizer(tokenizer))
}

/// The configuration and a summary of the storage types (`"Q4_1+F32+Q8_0"`, most used first),
/// from the header alone: no tensor data is read, except the small rotary tables (llama 3's
/// `rope_freqs`, Phi-3's `rope_factors_short`).
pub fn inspect(path: &Path) -> Result<(ModelConfig, String)> {
    let (mut file, content) = read_header(path)?;
    let config = model_config(&content, &mut file, path)?;
    super::gguf_tokenizer::check(&content, path)?;
    Ok((config, storage_summary(&content.tensor_infos)))
}

/// The tensors of a GGUF file, served under their Hugging Face names.
pub struct GgufSource {
    path: PathBuf,
    tensor_data_offset: u64,
    /// Hugging Face name → where the tensor is and how to turn it into the HF convention.
    tensors: HashMap<String, GgufTensor>,
    /// Hugging Face name → values llama.cpp keeps in the metadata instead (Apertus' xIELU
    /// parameters).
    from_metadata: HashMap<String, MetadataTensor>,
    storage_dtype: String,
}

/// A small tensor's values and shape, as the metadata holds them.
type MetadataTensor = (Vec<f32>, Vec<usize>);

struct GgufTensor {
    gguf_name: String,
    info: StoredTensor,
    fix: Fix,
}

/// What llama.cpp's converter did to a tensor that has to be undone.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fix {
    None,
    /// `permute(w, n_head)` of llama.cpp's `LlamaModel`: the two halves of each head's rotary
    /// dimensions were interleaved, because ggml's llama rope rotates adjacent pairs.
    UnpermuteHeads {
        heads: usize,
    },
    /// Gemma's RMSNorms scale by `1 + w`; llama.cpp stores `1 + w` itself.
    SubtractOne,
    /// A convolution's `[channels, 1, taps]` stored as `[channels, taps]`.
    UnitAxis,
    /// Qwen3.5's linear attention: llama.cpp's converter reorders its value heads from grouped
    /// by key head to tiled (and stores `-exp(A_log)` for `A_log`).
    ValueHeads(ValueHeadOrder),
}

/// Where value heads sit in a Qwen3.5 linear-attention tensor that llama.cpp's converter tiled:
/// along `axis` (0: rows, 1: columns), after `skip` leading rows (the queries and keys), in
/// blocks of `head_dim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ValueHeadOrder {
    axis: usize,
    skip: usize,
    key_heads: usize,
    per_key_head: usize,
    head_dim: usize,
    /// `A_log`, stored as `-exp(A_log)`.
    negated_exp: bool,
    /// The convolution, stored without its unit axis.
    unit_axis: bool,
}

impl ValueHeadOrder {
    /// Undoes the converter's `_reorder_v_heads`: `[key_heads, per_key_head, head_dim]` became
    /// `[per_key_head, key_heads, head_dim]` along the axis.
    fn undo(self, values: &Tensor) -> candle_core::Result<Tensor> {
        let values = if self.negated_exp {
            values.neg()?.log()?
        } else {
            values.clone()
        };
        let dims = values.dims().to_vec();
        let length = dims.get(self.axis).copied().unwrap_or(0);
        let heads = self.key_heads * self.per_key_head * self.head_dim;
        if self.axis >= dims.len() || self.skip + heads != length {
            candle_core::bail!(
                "expected {} + {heads} values along axis {} for {} key heads × {} value heads of {}, \
                 found shape {dims:?}",
                self.skip,
                self.axis,
                self.key_heads,
                self.per_key_head,
                self.head_dim
            )
        }
        let kept = values.narrow(self.axis, 0, self.skip)?;
        let tiled = values.narrow(self.axis, self.skip, heads)?;
        let mut split = dims[..self.axis].to_vec();
        split.extend([self.per_key_head, self.key_heads, self.head_dim]);
        split.extend_from_slice(&dims[self.axis + 1..]);
        let mut heads_dims = dims.clone();
        heads_dims[self.axis] = heads;
        let grouped = tiled
            .reshape(split)?
            .transpose(self.axis, self.axis + 1)?
            .contiguous()?
            .reshape(heads_dims)?;
        let values = Tensor::cat(&[kept, grouped], self.axis)?;
        match (self.unit_axis, values.dims()) {
            (true, &[channels, taps]) => values.reshape((channels, 1, taps)),
            _ => Ok(values),
        }
    }
}

impl Fix {
    /// The shape a stored tensor has once fixed.
    fn shape(self, stored: &[usize]) -> Vec<usize> {
        match (self, stored) {
            (Self::UnitAxis, &[channels, taps]) => vec![channels, 1, taps],
            (Self::ValueHeads(order), &[channels, taps]) if order.unit_axis => {
                vec![channels, 1, taps]
            }
            _ => stored.to_vec(),
        }
    }
}

impl GgufSource {
    fn new(path: &Path, content: GgufHeader, config: &ModelConfig) -> Result<Self> {
        let storage_dtype = storage_summary(&content.tensor_infos);
        let mut tensors = HashMap::with_capacity(content.tensor_infos.len());
        let mut unknown = Vec::new();
        for (gguf_name, info) in content.tensor_infos {
            match hf_name(&gguf_name, config) {
                Some((name, fix)) => {
                    tensors.insert(
                        name,
                        GgufTensor {
                            gguf_name,
                            info,
                            fix,
                        },
                    );
                }
                None if IGNORED_TENSORS.contains(&gguf_name.as_str()) => {}
                // Multi-token prediction blocks (`nextn_predict_layers`) after the model's own.
                None if block_index(&gguf_name).is_some_and(|b| b >= config.num_layers) => {}
                None => unknown.push(gguf_name),
            }
        }
        // A tensor we cannot place means a variant of the architecture the decoder does not
        // implement (biases, extra norms…): refuse rather than run without it.
        if !unknown.is_empty() {
            unknown.sort();
            let shown = unknown
                .iter()
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = unknown.len().saturating_sub(6);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            return Err(EngineError::gguf(
                path,
                format!(
                    "tensors this engine has no place for in a {} model: {shown}{more}",
                    config.architecture
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensor_data_offset: content.tensor_data_offset,
            tensors,
            from_metadata: HashMap::new(),
            storage_dtype,
        })
    }

    /// The GGUF name a Hugging Face tensor name is stored under, if the file has it.
    pub fn gguf_name(&self, name: &str) -> Option<&str> {
        self.tensors.get(name).map(|t| t.gguf_name.as_str())
    }

    /// The Hugging Face names of every tensor in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    fn read_f32(&self, name: &str, tensor: &GgufTensor) -> Result<Tensor> {
        let fail = |message: String| {
            EngineError::gguf(
                &self.path,
                format!(
                    "tensor \"{}\" ({name}, {}): {message}",
                    tensor.gguf_name,
                    tensor.info.storage.name(),
                ),
            )
        };
        let mut file = File::open(&self.path).map_err(|e| EngineError::io(&self.path, e))?;
        let values = tensor
            .info
            .read_f32(&mut file, self.tensor_data_offset)
            .map_err(fail)?;
        let fail = |e: candle_core::Error| fail(candle_message(&e));
        match tensor.fix {
            Fix::None => Ok(values),
            Fix::SubtractOne => Ok((values - 1.0)?),
            Fix::UnpermuteHeads { heads } => unpermute_heads(&values, heads).map_err(fail),
            Fix::UnitAxis => values
                .reshape(tensor.fix.shape(&tensor.info.shape))
                .map_err(fail),
            Fix::ValueHeads(order) => order.undo(&values).map_err(fail),
        }
    }
}

impl TensorSource for GgufSource {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        if let Some((values, stored_shape)) = self.from_metadata.get(name) {
            check_shape(name, stored_shape, shape, &self.path)?;
            let tensor = Tensor::from_slice(values, stored_shape.as_slice(), &Device::Cpu)?;
            return Ok(tensor.to_dtype(dtype)?.to_device(device)?);
        }
        let Some(tensor) = self.tensors.get(name) else {
            return Err(EngineError::gguf(
                &self.path,
                format!("tensor \"{name}\" is missing"),
            ));
        };
        let fixed = tensor.fix.shape(&tensor.info.shape);
        check_shape(name, &fixed, shape, &self.path)?;
        let values = self.read_f32(name, tensor)?;
        Ok(values.to_dtype(dtype)?.to_device(device)?)
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.from_metadata.contains_key(name)
    }

    fn origin(&self) -> &Path {
        &self.path
    }

    fn storage_dtype(&self) -> String {
        self.storage_dtype.clone()
    }
}

/// Tensors present in GGUF files that carry nothing the decoder needs as a weight.
/// (`rope_freqs` holds llama 3's rotary scaling, `rope_factors_*` Phi-3's, read into the config
/// instead; only the short factors run, as on the `config.json` path.)
/// The block a `blk.N.…` tensor belongs to.
fn block_index(gguf_name: &str) -> Option<usize> {
    gguf_name
        .strip_prefix("blk.")?
        .split_once('.')?
        .0
        .parse()
        .ok()
}

const IGNORED_TENSORS: &[&str] = &[
    "rope_freqs.weight",
    "rope_factors_short.weight",
    "rope_factors_long.weight",
];

/// The values llama.cpp's converter moves from tensors into the metadata, under the Hugging
/// Face tensor names the decoder asks for: Apertus' xIELU parameters, one array per
/// parameter with a value per layer (`xielu.alpha_p`, …, without the architecture's prefix),
/// stored as transformers stores them (`alpha_p` and `alpha_n` before their softplus).
fn metadata_tensors(
    content: &GgufHeader,
    config: &ModelConfig,
    path: &Path,
) -> Result<HashMap<String, MetadataTensor>> {
    let mut tensors = HashMap::new();
    if config.activation != Activation::XIelu {
        return Ok(tensors);
    }
    let meta = Metadata::new(content, path);
    for (name, shape) in [
        ("alpha_p", vec![1]),
        ("alpha_n", vec![1]),
        ("beta", vec![]),
        ("eps", vec![]),
    ] {
        let key = format!("xielu.{name}");
        let values = meta
            .opt_f32_array(&key)?
            .ok_or_else(|| meta.error(format!("\"{key}\" (xIELU's parameters) is missing")))?;
        if values.len() != config.num_layers {
            return Err(meta.error(format!(
                "\"{key}\" has {} values for {} layers",
                values.len(),
                config.num_layers
            )));
        }
        for (layer, value) in values.into_iter().enumerate() {
            tensors.insert(
                format!("model.layers.{layer}.mlp.act_fn.{name}"),
                (vec![value], shape.clone()),
            );
        }
    }
    Ok(tensors)
}

/// The Hugging Face name of a GGUF tensor, and what must be undone to get HF values.
fn hf_name(gguf_name: &str, config: &ModelConfig) -> Option<(String, Fix)> {
    // llama.cpp stores Gemma's norm weights with the 1 of `(1 + w)` added.
    let norm_fix = if config.norm_plus_one {
        Fix::SubtractOne
    } else {
        Fix::None
    };
    let sandwich = config.norm_layout == NormLayout::Sandwich;
    let has_post_norms = matches!(config.norm_layout, NormLayout::Sandwich | NormLayout::Post);
    let has_pre_norms = config.norm_layout != NormLayout::Post;
    // Cohere's MLP reads attention's norm.
    let has_mlp_norm = config.norm_layout != NormLayout::Parallel;
    let falcon_two_norms = config.architecture == Architecture::Falcon
        && config.norm_layout == NormLayout::ParallelTwoNorms;
    match gguf_name {
        "token_embd.weight" => return Some(("model.embed_tokens.weight".into(), Fix::None)),
        "position_embd.weight" if config.learned_positions => {
            return Some(("model.embed_positions.weight".into(), Fix::None));
        }
        "output_norm.weight" => return Some(("model.norm.weight".into(), norm_fix)),
        "output_norm.bias" if config.norm_bias => {
            return Some(("model.norm.bias".into(), Fix::None));
        }
        "token_embd_norm.weight" if config.embedding_norm => {
            return Some(("model.embed_norm.weight".into(), Fix::None));
        }
        // LFM2's final norm (`embedding_norm` in its checkpoints) is llama.cpp's embedding norm.
        "token_embd_norm.weight" if config.architecture == Architecture::Lfm2 => {
            return Some(("model.norm.weight".into(), Fix::None));
        }
        "token_embd_norm.bias" if config.embedding_norm && config.norm_bias => {
            return Some(("model.embed_norm.bias".into(), Fix::None));
        }
        "output.weight" => return Some(("lm_head.weight".into(), Fix::None)),
        // Gemma 4's per-layer embeddings.
        "per_layer_token_embd.weight" if config.per_layer_input.is_some() => {
            return Some(("model.embed_tokens_per_layer.weight".into(), Fix::None));
        }
        "per_layer_model_proj.weight" if config.per_layer_input.is_some() => {
            return Some(("model.per_layer_model_projection.weight".into(), Fix::None));
        }
        "per_layer_proj_norm.weight" if config.per_layer_input.is_some() => {
            return Some(("model.per_layer_projection_norm.weight".into(), Fix::None));
        }
        _ => {}
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    if let Some(found) = qwen35_name(rest, layer, config) {
        return Some(found);
    }
    let (part, kind) = rest.rsplit_once('.')?;
    if config.architecture == Architecture::GptOss
        && let Some(found) = gpt_oss_name(part, kind, layer)
    {
        return Some(found);
    }
    if config.architecture == Architecture::Gemma4
        && let Some(found) = gemma4_name(part, kind, layer)
    {
        return Some(found);
    }
    // Biases: on q, k and v (Qwen2), or everywhere in the LayerNorm families (GPT-2, BLOOM).
    let is_norm = part.ends_with("_norm") || part.ends_with("_norm_2");
    let bias_allowed = matches!(part, "attn_q" | "attn_k" | "attn_v")
        || (part == "attn_output" && config.o_bias)
        || (config.linear_bias && !is_norm)
        || (config.norm_bias && is_norm);
    if kind != "weight" && !(kind == "bias" && bias_allowed) {
        return None;
    }
    // llama.cpp's converter permutes Q and K rows for the models it writes through its
    // `LlamaModel` (ggml's NORM rope rotates adjacent pairs); the others keep HF's layout.
    let permuted = matches!(
        config.architecture,
        Architecture::Llama
            | Architecture::Arcee
            | Architecture::Mixtral
            | Architecture::Granite
            | Architecture::GraniteMoe
            | Architecture::SmolLm3
            | Architecture::Olmo
            | Architecture::Ministral3
            | Architecture::Mistral
    );
    let (hf_part, fix) = match (part, sandwich) {
        ("attn_q", _) if permuted => (
            "self_attn.q_proj",
            Fix::UnpermuteHeads {
                heads: config.num_heads,
            },
        ),
        ("attn_k", _) if permuted => (
            "self_attn.k_proj",
            Fix::UnpermuteHeads {
                heads: config.num_kv_heads,
            },
        ),
        ("attn_q", _) => ("self_attn.q_proj", Fix::None),
        ("attn_k", _) => ("self_attn.k_proj", Fix::None),
        ("attn_v", _) => ("self_attn.v_proj", Fix::None),
        // q, k and v in one matrix, all q rows first (BLOOM's converter regroups them so).
        ("attn_qkv", _) if config.fused_projections => ("self_attn.qkv_proj", Fix::None),
        ("attn_output", _) => ("self_attn.o_proj", Fix::None),
        ("attn_q_norm", _) => ("self_attn.q_norm", norm_fix),
        ("attn_k_norm", _) => ("self_attn.k_norm", norm_fix),
        ("ffn_gate", _) => ("mlp.gate_proj", Fix::None),
        // Phi-3 and GLM keep gate and up in one matrix, gate rows first, as transformers does.
        ("ffn_up", _) if (config.fused_projections || config.fused_gate_up) && config.mlp_gated => {
            ("mlp.gate_up_proj", Fix::None)
        }
        ("ffn_up", _) => ("mlp.up_proj", Fix::None),
        ("ffn_down", _) => ("mlp.down_proj", Fix::None),
        // LFM2's short convolutions; the convolution's `[channels, 1, taps]` lost its 1.
        ("shortconv.in_proj", _) if config.short_conv.is_some() => ("conv.in_proj", Fix::None),
        ("shortconv.out_proj", _) if config.short_conv.is_some() => ("conv.out_proj", Fix::None),
        ("shortconv.conv", _) if config.short_conv.is_some() => ("conv.conv", Fix::UnitAxis),
        // A mixture's router, and its experts stacked `[experts, out, in]`.
        ("ffn_gate_inp", _) if config.experts.is_some() => ("mlp.gate", Fix::None),
        ("ffn_gate_exps", _) if config.experts.is_some() => ("mlp.experts.gate_proj", Fix::None),
        ("ffn_up_exps", _) if config.experts.is_some() => ("mlp.experts.up_proj", Fix::None),
        ("ffn_down_exps", _) if config.experts.is_some() => ("mlp.experts.down_proj", Fix::None),
        // Qwen2-MoE's shared expert and its gate.
        ("ffn_gate_shexp", _) => ("mlp.shared_expert.gate_proj", Fix::None),
        ("ffn_up_shexp", _) => ("mlp.shared_expert.up_proj", Fix::None),
        ("ffn_down_shexp", _) => ("mlp.shared_expert.down_proj", Fix::None),
        ("ffn_gate_inp_shexp", _) => ("mlp.shared_expert_gate", Fix::None),
        // Falcon 40B's two norms: llama.cpp's converter names `ln_mlp` (the MLP's)
        // `attn_norm` and `ln_attn` (attention's) `attn_norm_2`.
        ("attn_norm", _) if falcon_two_norms => ("post_attention_layernorm", norm_fix),
        ("attn_norm_2", _) if falcon_two_norms => ("input_layernorm", norm_fix),
        ("attn_norm", _) if has_pre_norms => ("input_layernorm", norm_fix),
        ("ffn_norm", false) if has_pre_norms && has_mlp_norm => {
            ("post_attention_layernorm", norm_fix)
        }
        ("ffn_norm", true) => ("pre_feedforward_layernorm", norm_fix),
        ("post_attention_norm", _) if has_post_norms => ("post_attention_layernorm", norm_fix),
        ("post_ffw_norm", _) if has_post_norms => ("post_feedforward_layernorm", norm_fix),
        _ => return None,
    };
    // The `1 +` of Gemma's and Nemotron's norms is in their weights, never their biases.
    let fix = if kind == "bias" && fix == Fix::SubtractOne {
        Fix::None
    } else {
        fix
    };
    Some((format!("model.layers.{layer}.{hf_part}.{kind}"), fix))
}

/// Gemma 4's tensors that no other family has: the per-layer embeddings' gate, projection and
/// norm, the layer's scalar, and the mixture beside the MLP (its router with its input scale
/// and per-expert scales, its stacked experts, its norms).
fn gemma4_name(part: &str, kind: &str, layer: usize) -> Option<(String, Fix)> {
    let hf = match (part, kind) {
        ("inp_gate", "weight") => "per_layer_input_gate.weight",
        ("proj", "weight") => "per_layer_projection.weight",
        ("post_norm", "weight") => "post_per_layer_input_norm.weight",
        ("layer_output_scale", "weight") => "layer_scalar",
        ("ffn_gate_inp", "weight") => "router.proj.weight",
        ("ffn_gate_inp", "scale") => "router.scale",
        ("ffn_down_exps", "scale") => "router.per_expert_scale",
        ("ffn_gate_up_exps", "weight") => "experts.gate_up_proj",
        ("ffn_down_exps", "weight") => "experts.down_proj",
        ("pre_ffw_norm_2", "weight") => "pre_feedforward_layernorm_2.weight",
        ("post_ffw_norm_1", "weight") => "post_feedforward_layernorm_1.weight",
        ("post_ffw_norm_2", "weight") => "post_feedforward_layernorm_2.weight",
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}"), Fix::None))
}

/// gpt-oss' tensors where llama.cpp names them apart from the other families: its attention
/// sinks, the MLP's norm (`post_attention_norm`, as transformers), and the router and experts
/// with their biases (the experts `[experts, out, in]`, gate and up apart; see `engine::moe`).
fn gpt_oss_name(part: &str, kind: &str, layer: usize) -> Option<(String, Fix)> {
    let hf = match (part, kind) {
        ("attn_sinks", "weight") => "self_attn.sinks".to_string(),
        ("post_attention_norm", "weight") => "post_attention_layernorm.weight".to_string(),
        ("ffn_gate_inp", _) => format!("mlp.router.{kind}"),
        ("ffn_gate_exps", _) => format!("mlp.experts.gate_proj.{kind}"),
        ("ffn_up_exps", _) => format!("mlp.experts.up_proj.{kind}"),
        ("ffn_down_exps", _) => format!("mlp.experts.down_proj.{kind}"),
        _ => return None,
    };
    (kind == "weight" || kind == "bias").then(|| (format!("model.layers.{layer}.{hf}"), Fix::None))
}

/// Qwen3.5's tensors where llama.cpp names or stores them apart from the other families: its
/// linear attention (value heads tiled, `A_log` as `-exp(A_log)`, `dt_bias` as a bias) and the
/// MLP's norm, which llama.cpp calls `post_attention_norm` as transformers does.
fn qwen35_name(name: &str, layer: usize, config: &ModelConfig) -> Option<(String, Fix)> {
    if !matches!(
        config.architecture,
        Architecture::Qwen35 | Architecture::Qwen35Moe
    ) {
        return None;
    }
    let linear = config.linear_attention.as_ref()?;
    let tiled = |axis, skip, head_dim| ValueHeadOrder {
        axis,
        skip,
        key_heads: linear.key_heads,
        per_key_head: linear.value_heads / linear.key_heads.max(1),
        head_dim,
        negated_exp: false,
        unit_axis: false,
    };
    let queries_and_keys = 2 * linear.key_heads * linear.key_head_dim;
    let value_head_dim = linear.value_head_dim;
    let (hf_name, order) = match name {
        "post_attention_norm.weight" => {
            return Some((
                format!("model.layers.{layer}.post_attention_layernorm.weight"),
                Fix::SubtractOne,
            ));
        }
        "ssm_norm.weight" => {
            return Some((
                format!("model.layers.{layer}.linear_attn.norm.weight"),
                Fix::None,
            ));
        }
        "attn_qkv.weight" => (
            "in_proj_qkv.weight",
            tiled(0, queries_and_keys, value_head_dim),
        ),
        "attn_gate.weight" => ("in_proj_z.weight", tiled(0, 0, value_head_dim)),
        "ssm_beta.weight" => ("in_proj_b.weight", tiled(0, 0, 1)),
        "ssm_alpha.weight" => ("in_proj_a.weight", tiled(0, 0, 1)),
        "ssm_dt.bias" => ("dt_bias", tiled(0, 0, 1)),
        "ssm_a" => (
            "A_log",
            ValueHeadOrder {
                negated_exp: true,
                ..tiled(0, 0, 1)
            },
        ),
        "ssm_conv1d.weight" => (
            "conv1d.weight",
            ValueHeadOrder {
                unit_axis: true,
                ..tiled(0, queries_and_keys, value_head_dim)
            },
        ),
        "ssm_out.weight" => ("out_proj.weight", tiled(1, 0, value_head_dim)),
        _ => return None,
    };
    Some((
        format!("model.layers.{layer}.linear_attn.{hf_name}"),
        Fix::ValueHeads(order),
    ))
}

/// Inverse of llama.cpp's `permute`: rows `[head, half, pair]` back to `[head, pair, half]`.
fn unpermute_heads(values: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = values.dims().to_vec();
    let rows = dims.first().copied().unwrap_or(0);
    if heads == 0 || !rows.is_multiple_of(heads * 2) {
        candle_core::bail!("{rows} rows cannot be split into {heads} rotary heads")
    }
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend_from_slice(&dims[1..]);
    values
        .reshape(split)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// Opens the file and reads its header, with errors that say what is wrong with it.
fn read_header(path: &Path) -> Result<(File, GgufHeader)> {
    let mut file = File::open(path).map_err(|e| EngineError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    let mut magic = [0u8; 4];
    let read = read_up_to(&mut file, &mut magic).map_err(|e| EngineError::io(path, e))?;
    if read < 4 || &magic != b"GGUF" {
        return Err(EngineError::gguf(
            path,
            format!(
                "not a GGUF file: it starts with {:?}, a GGUF file starts with \"GGUF\"",
                String::from_utf8_lossy(&magic[..read])
            ),
        ));
    }
    let mut reader = BufReader::new(file);
    let content = super::gguf_file::read_header(&mut reader).map_err(|e| match e {
        HeaderError::UnreadableType { tensor, type_id } => {
            unsupported_type_error(path, &tensor, type_id)
        }
        HeaderError::Malformed(message) => EngineError::gguf(
            path,
            format!(
                "cannot read the header ({message}); is the file truncated or still downloading?"
            ),
        ),
    })?;
    check_tensor_extents(&content, file_len, path)?;
    Ok((reader.into_inner(), content))
}

/// Reads as many bytes as the file has, up to `buf.len()`.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Every tensor must lie inside the file: a cut-off download fails here, not mid-run.
fn check_tensor_extents(content: &GgufHeader, file_len: u64, path: &Path) -> Result<()> {
    let mut last_end = 0u64;
    let mut last_name = "";
    for (name, info) in &content.tensor_infos {
        let bytes = info
            .byte_len()
            .map_err(|why| EngineError::gguf(path, format!("tensor \"{name}\": {why}")))?;
        let end = content
            .tensor_data_offset
            .saturating_add(info.offset)
            .saturating_add(bytes);
        if end > last_end {
            last_end = end;
            last_name = name;
        }
    }
    if last_end > file_len {
        return Err(EngineError::gguf(
            path,
            format!(
                "the file is truncated: it has {file_len} bytes but tensor \"{last_name}\" ends at byte {last_end}; download it again"
            ),
        ));
    }
    Ok(())
}

/// Storage types by number of tensors, most used first: `"Q4_1+F32+Q8_0"`.
fn storage_summary(tensors: &HashMap<String, StoredTensor>) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for info in tensors.values() {
        *counts.entry(info.storage.name()).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
        .into_iter()
        .map(|(name, _)| name)
        .collect::<Vec<_>>()
        .join("+")
}

fn unsupported_type_error(path: &Path, tensor: &str, type_id: u32) -> EngineError {
    EngineError::gguf(
        path,
        format!(
            "tensor \"{tensor}\" is stored as {} (ggml type {type_id}), which cannot be read; \
             supported storage types: {}",
            super::gguf_file::unreadable_type_name(type_id),
            Storage::readable_names().join(", ")
        ),
    )
}

/// Typed access to GGUF metadata, with errors naming the file and the key.
pub(crate) struct Metadata<'a> {
    content: &'a GgufHeader,
    path: &'a Path,
}

impl<'a> Metadata<'a> {
    pub(crate) fn new(content: &'a GgufHeader, path: &'a Path) -> Self {
        Self { content, path }
    }

    pub(crate) fn path(&self) -> &Path {
        self.path
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.content.metadata.get(key)
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> EngineError {
        EngineError::gguf(self.path, message)
    }

    fn missing(&self, key: &str) -> EngineError {
        self.error(format!("metadata key \"{key}\" is missing"))
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> EngineError {
        self.error(format!(
            "metadata key \"{key}\" should be {expected}, found {}",
            describe(found)
        ))
    }

    pub(crate) fn string(&self, key: &str) -> Result<&'a str> {
        self.opt_string(key)?.ok_or_else(|| self.missing(key))
    }

    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.wrong_type(key, "a string", v)),
        }
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    /// A non-negative integer of any width; a per-layer array is accepted when all its entries
    /// are equal, since the decoder has one value for every layer.
    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let expected = "a non-negative integer";
        if let Value::Array(items) = value {
            let numbers: Option<Vec<u64>> = items.iter().map(as_u64).collect();
            let Some(numbers) = numbers else {
                return Err(self.wrong_type(key, expected, value));
            };
            return match numbers.split_first() {
                Some((first, rest)) if rest.iter().all(|n| n == first) => Ok(Some(*first as usize)),
                Some(_) => Err(self.error(format!(
                    "metadata key \"{key}\" differs from layer to layer ({numbers:?}), which this engine does not support"
                ))),
                None => Err(self.wrong_type(key, expected, value)),
            };
        }
        as_u64(value)
            .map(|n| Some(n as usize))
            .ok_or_else(|| self.wrong_type(key, expected, value))
    }

    /// An integer of any width, negative ones included.
    pub(crate) fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => as_i64(v)
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "an integer", v)),
        }
    }

    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(f64::from(*v))),
            Some(Value::F64(v)) => Ok(Some(*v)),
            Some(v) => as_u64(v)
                .map(|n| Some(n as f64))
                .ok_or_else(|| self.wrong_type(key, "a number", v)),
        }
    }

    pub(crate) fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?.ok_or_else(|| self.missing(key))
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "true or false", v)),
        }
    }

    fn opt_array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.as_slice())),
            Some(v) => Err(self.wrong_type(key, "an array", v)),
        }
    }

    pub(crate) fn opt_string_array(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.wrong_type(key, "an array of strings", other)),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub(crate) fn string_array(&self, key: &str) -> Result<Vec<&'a str>> {
        self.opt_string_array(key)?.ok_or_else(|| self.missing(key))
    }

    pub(crate) fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                other => Err(self.wrong_type(key, "an array of numbers", other)),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub(crate) fn opt_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| as_i64(v).ok_or_else(|| self.wrong_type(key, "an array of integers", v)))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::U64(n) => Some(*n),
        other => as_i64(other).and_then(|n| u64::try_from(n).ok()),
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::U8(n) => Some(i64::from(*n)),
        Value::I8(n) => Some(i64::from(*n)),
        Value::U16(n) => Some(i64::from(*n)),
        Value::I16(n) => Some(i64::from(*n)),
        Value::U32(n) => Some(i64::from(*n)),
        Value::I32(n) => Some(i64::from(*n)),
        Value::U64(n) => i64::try_from(*n).ok(),
        Value::I64(n) => Some(*n),
        _ => None,
    }
}

/// A short description of a metadata value for error messages (never a whole token list).
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() > 40 => "a long string".into(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(items) => format!("an array of {} values", items.len()),
        Value::Bool(b) => format!("the boolean {b}"),
        other => format!("{other:?}"),
    }
}

/// The GGUF architecture names this engine reads, with what they map to.
const GGUF_ARCHITECTURES: &[(&str, Architecture)] = &[
    // llama.cpp also writes Mistral (v0.x) checkpoints as `llama`.
    ("llama", Architecture::Llama),
    ("qwen2", Architecture::Qwen2),
    ("qwen3", Architecture::Qwen3),
    ("gemma", Architecture::Gemma),
    ("gemma2", Architecture::Gemma2),
    ("gemma3", Architecture::Gemma3),
    ("gemma4", Architecture::Gemma4),
    // OLMo 3 too: it is `olmo2` with sliding-window keys.
    ("olmo2", Architecture::Olmo2),
    ("olmo", Architecture::Olmo),
    ("phi3", Architecture::Phi3),
    ("stablelm", Architecture::StableLm),
    ("smollm3", Architecture::SmolLm3),
    ("granite", Architecture::Granite),
    ("granitemoe", Architecture::GraniteMoe),
    ("command-r", Architecture::Cohere),
    ("cohere2", Architecture::Cohere2),
    ("gpt2", Architecture::Gpt2),
    ("bloom", Architecture::Bloom),
    ("gptneox", Architecture::GptNeoX),
    ("falcon", Architecture::Falcon),
    ("apertus", Architecture::Apertus),
    ("jais2", Architecture::Jais2),
    ("nemotron", Architecture::Nemotron),
    ("olmoe", Architecture::Olmoe),
    ("qwen2moe", Architecture::Qwen2Moe),
    ("qwen3moe", Architecture::Qwen3Moe),
    ("exaone4", Architecture::Exaone4),
    ("arcee", Architecture::Arcee),
    ("lfm2", Architecture::Lfm2),
    ("qwen35", Architecture::Qwen35),
    ("qwen35moe", Architecture::Qwen35Moe),
    // Ministral 3 and Mistral 3's language model.
    ("mistral3", Architecture::Ministral3),
    ("gpt-oss", Architecture::GptOss),
    // GLM-4-0414 and GLM-Z1; `chatglm` is llama.cpp's name for GlmForCausalLM (the "-hf"
    // GLM-4-9B checkpoints) as for the original ChatGLM ones.
    ("glm4", Architecture::Glm4),
    ("chatglm", Architecture::Glm),
];

/// Granite's four multipliers (dense and MoE), as llama.cpp names them.
fn granite_scales(
    meta: &Metadata<'_>,
    key: &dyn Fn(&str) -> String,
    config: &mut ModelConfig,
) -> Result<()> {
    config.embedding_scale = meta.opt_f64(&key("embedding_scale"))?;
    config.residual_scale = meta.opt_f64(&key("residual_scale"))?;
    if let Some(scale) = meta.opt_f64(&key("attention.scale"))? {
        config.attention_scale = scale;
    }
    // Stored as transformers' `logits_scaling`, a divisor.
    config.logit_scale = meta.opt_f64(&key("logit_scale"))?.map(|d| 1.0 / d);
    Ok(())
}

/// The `general.architecture` names this reader knows, for messages.
pub fn supported_list() -> String {
    let names: Vec<&str> = GGUF_ARCHITECTURES.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// Builds the model description from GGUF metadata, as `arch/*.rs` do from `config.json`;
/// each family's traits come from the same functions there.
fn model_config(content: &GgufHeader, file: &mut File, path: &Path) -> Result<ModelConfig> {
    let meta = Metadata::new(content, path);
    let arch_name = meta.string("general.architecture")?;
    let Some(&(_, mut architecture)) = GGUF_ARCHITECTURES.iter().find(|(n, _)| *n == arch_name)
    else {
        return Err(EngineError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            found: arch_name.to_string(),
            supported: supported_list(),
        });
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    // A mixture of experts: llama.cpp writes Mixtral as `llama` with experts.
    let expert_count = meta.opt_usize(&key("expert_count"))?.filter(|&n| n > 0);
    if expert_count.is_some() {
        architecture = match architecture {
            Architecture::Llama => Architecture::Mixtral,
            Architecture::Olmoe
            | Architecture::Qwen2Moe
            | Architecture::Qwen3Moe
            | Architecture::Qwen35Moe
            | Architecture::GraniteMoe
            | Architecture::GptOss
            | Architecture::Gemma4 => architecture,
            _ => {
                return Err(meta.error(format!(
                    "a mixture of experts in a \"{arch_name}\" GGUF file is not supported"
                )));
            }
        };
    } else if matches!(
        architecture,
        Architecture::Olmoe
            | Architecture::Qwen2Moe
            | Architecture::Qwen3Moe
            | Architecture::Qwen35Moe
            | Architecture::GraniteMoe
            | Architecture::GptOss
    ) {
        return Err(meta.error(format!("\"{}\" is missing", key("expert_count"))));
    }
    if architecture == Architecture::Olmo2 && meta.get(&key("attention.sliding_window")).is_some() {
        architecture = Architecture::Olmo3;
    }
    // Learned positions (GPT-2) or ALiBi (BLOOM) instead of rotary.
    let rotary = !matches!(architecture, Architecture::Gpt2 | Architecture::Bloom);
    let layer_norms = matches!(
        architecture,
        Architecture::Gpt2
            | Architecture::Bloom
            | Architecture::Cohere
            | Architecture::Cohere2
            | Architecture::Olmo
            | Architecture::StableLm
            | Architecture::GptNeoX
            | Architecture::Falcon
            | Architecture::Jais2
            | Architecture::Nemotron
    );

    // Blocks for multi-token prediction (Qwen3.5's, written by default) follow the model's own
    // layers and are counted in `block_count`; a forward pass never runs them.
    let blocks = meta.usize(&key("block_count"))?;
    let prediction_blocks = meta.opt_usize(&key("nextn_predict_layers"))?.unwrap_or(0);
    let num_layers = blocks
        .checked_sub(prediction_blocks)
        .filter(|&layers| layers > 0)
        .ok_or_else(|| {
            meta.error(format!(
                "\"{}\" ({prediction_blocks}) leaves none of the {blocks} blocks to the model",
                key("nextn_predict_layers")
            ))
        })?;
    let hidden_size = meta.usize(&key("embedding_length"))?;
    let num_heads = meta.usize(&key("attention.head_count"))?;
    if num_heads == 0 {
        return Err(meta.error(format!("\"{}\" is 0", key("attention.head_count"))));
    }
    // One count per layer where the layers differ (LFM2: 0 for its convolution layers).
    let kv_key = key("attention.head_count_kv");
    let kv_heads_per_layer = per_layer_values(&meta, &kv_key)?;
    let num_kv_heads = match &kv_heads_per_layer {
        Some(counts) => counts.iter().copied().max().unwrap_or(0).max(0) as usize,
        None => meta.opt_usize(&kv_key)?.unwrap_or(num_heads),
    };
    // transformers reads llama's head_dim from the rotary dimension count.
    let rotary_dims = meta.opt_usize(&key("rope.dimension_count"))?;
    let head_dim = match meta.opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None if architecture == Architecture::Llama => {
            rotary_dims.unwrap_or(hidden_size / num_heads)
        }
        None => hidden_size / num_heads,
    };
    // Rotary on part of each head (Phi-4-mini); `validate` refuses what the decoder cannot run.
    let partial_rotary = rotary_dims.filter(|&d| rotary && d != head_dim);
    let Some(embeddings) = content.tensor_infos.get("token_embd.weight") else {
        return Err(meta.error("tensor \"token_embd.weight\" is missing"));
    };
    let vocab_size = embeddings.shape.first().copied().unwrap_or(0);
    // d_ff as the weights have it (`ffn_down` is `[d_model, d_ff]` in every family, fused or
    // not): llama.cpp's converter writes `feed_forward_length` as 4 × n_embd for GPT-2 and
    // Falcon whatever `n_inner` or `ffn_hidden_size` say.
    // A mixture's `ffn_down_exps` is `[experts, d_model, d_ff]`.
    let intermediate_size = match (
        content.tensor_infos.get("blk.0.ffn_down.weight"),
        content.tensor_infos.get("blk.0.ffn_down_exps.weight"),
    ) {
        (Some(down), _) => down.shape.get(1).copied().unwrap_or(0),
        (None, Some(down)) => down.shape.get(2).copied().unwrap_or(0),
        (None, None) => meta.usize(&key("feed_forward_length"))?,
    };
    let max_position_embeddings = match architecture {
        // The converter writes `seq_length` or n_embd; ALiBi has no trained length.
        Architecture::Bloom => super::arch::bloom::ALIBI_POSITIONS,
        _ => meta.usize(&key("context_length"))?,
    };
    let rms_norm_eps = if layer_norms {
        meta.f64(&key("attention.layer_norm_epsilon"))?
    } else {
        meta.f64(&key("attention.layer_norm_rms_epsilon"))?
    };

    let default_theta = match architecture {
        Architecture::Gemma3 => 1_000_000.0,
        _ => 10_000.0,
    };
    let theta = meta
        .opt_f64(&key("rope.freq_base"))?
        .unwrap_or(default_theta);
    let scaling = if let Some(info) = content.tensor_infos.get("rope_freqs.weight") {
        frequency_divisors(
            &meta,
            info,
            content,
            file,
            partial_rotary.unwrap_or(head_dim),
        )?
    } else if let Some(info) = content.tensor_infos.get("rope_factors_short.weight") {
        long_rope(
            &meta,
            arch_name,
            info,
            content,
            file,
            partial_rotary.unwrap_or(head_dim),
        )?
    } else {
        rope_scaling(&meta, arch_name)?
    };
    let rope = if rotary {
        Rope { theta, scaling }
    } else {
        Rope::no_rotation()
    };
    // The rotary settings of sliding layers where they have their own (Gemma 3, OLMo 3).
    let local_rope = Rope {
        theta: meta.opt_f64(&key("rope.freq_base_swa"))?.unwrap_or(theta),
        scaling: RopeScaling::None,
    };
    let window = meta.opt_usize(&key("attention.sliding_window"))?;

    let dims = Dims {
        vocab_size,
        hidden_size,
        intermediate_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps,
        max_position_embeddings,
    };
    let layers = vec![
        LayerAttention {
            sliding_window: None,
            rope: rope.clone(),
            mixer: LayerMixer::Attention,
            heads: None,
        };
        num_layers
    ];
    let mut config = dims.into_config(architecture, layers);
    config.partial_rotary = partial_rotary;
    // llama.cpp writes `output.weight` only when it differs from the embeddings.
    config.tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
    config.qkv_bias = content.tensor_infos.contains_key("blk.0.attn_q.bias");
    config.bos_token_id = meta
        .opt_i64("tokenizer.ggml.bos_token_id")?
        .and_then(|id| u32::try_from(id).ok())
        .filter(|&id| (id as usize) < vocab_size);
    let pattern_key = key("attention.sliding_window_pattern");

    match architecture {
        Architecture::Llama | Architecture::Mistral | Architecture::Qwen2 => {}
        // llama.cpp has no XGLM, and no Helium, … files are read yet: never named by
        // GGUF_ARCHITECTURES.
        Architecture::Xglm
        | Architecture::Helium
        | Architecture::Apertus15
        | Architecture::GraniteSwa
        | Architecture::Lfm3
        | Architecture::OlmoHybrid => {}
        Architecture::Gemma4 => {
            gemma4_config(&mut config, &meta, &key, content)?;
        }
        Architecture::Ministral3 => {
            // Llama 4's query scaling from the original context on, as llama.cpp reads it
            // (its floor is YaRN's original context); refused where it would apply.
            let beta = meta.opt_f64(&key("attention.temperature_scale"))?;
            if beta.is_some_and(|beta| beta != 0.0) {
                let original = meta
                    .opt_usize(&key("rope.scaling.original_context_length"))?
                    .filter(|&n| n > 0)
                    .unwrap_or(max_position_embeddings);
                config.query_scaling_from = Some(original);
            } else if config
                .layers
                .iter()
                .all(|l| l.rope.scaling == RopeScaling::None)
            {
                // Mistral Small 3.x: the converter writes its language model (`mistral`, no
                // YaRN, no query scaling) as `mistral3` too.
                config.architecture = Architecture::Mistral;
            }
        }
        Architecture::Qwen35 | Architecture::Qwen35Moe => {
            let value_heads = meta.usize(&key("ssm.time_step_rank"))?;
            let value_dim = meta.usize(&key("ssm.inner_size"))?;
            if value_heads == 0 || !value_dim.is_multiple_of(value_heads) {
                return Err(meta.error(format!(
                    "\"{}\" ({value_dim}) is not a multiple of \"{}\" ({value_heads})",
                    key("ssm.inner_size"),
                    key("ssm.time_step_rank")
                )));
            }
            super::arch::qwen3_5::family_traits(
                &mut config,
                LinearAttention {
                    conv_kernel: meta.usize(&key("ssm.conv_kernel"))?,
                    key_heads: meta.usize(&key("ssm.group_count"))?,
                    key_head_dim: meta.usize(&key("ssm.state_size"))?,
                    value_heads,
                    value_head_dim: value_dim / value_heads,
                    negative_eigenvalues: false,
                    output_norm_eps: None,
                    separate_projections: false,
                },
            );
            // Listed per block (`attention.recurrent_layers`), else all but every
            // `full_attention_interval`-th (4), as transformers' default.
            let interval = meta
                .opt_usize(&key("full_attention_interval"))?
                .unwrap_or(4);
            let recurrent =
                sliding_layers(&meta, &key("attention.recurrent_layers"), blocks, interval)?;
            for (layer, recurrent) in config.layers.iter_mut().zip(recurrent) {
                if recurrent {
                    layer.mixer = LayerMixer::LinearAttention;
                }
            }
            if architecture == Architecture::Qwen35Moe {
                // Every layer a mixture with a shared expert, its top-k weights renormalized
                // (as `arch::qwen3_5::config_moe`).
                config.experts = Some(Experts {
                    beside_dense: false,
                    count: expert_count.unwrap_or(0),
                    per_token: meta.usize(&key("expert_used_count"))?,
                    normalize_top_k: true,
                    shared_d_ff: content
                        .tensor_infos
                        .get("blk.0.ffn_down_shexp.weight")
                        .and_then(|down| down.shape.get(1).copied()),
                    biased: false,
                });
            }
        }
        Architecture::Lfm2 => {
            config.qk_norm = QkNorm::PerHead;
            config.short_conv = Some(ShortConvolution {
                taps: meta.usize(&key("shortconv.l_cache"))?,
            });
            // A layer without key/value heads convolves.
            let Some(counts) = &kv_heads_per_layer else {
                return Err(meta.error(format!(
                    "\"{}\" must list each layer's key/value heads",
                    key("attention.head_count_kv")
                )));
            };
            if counts.len() != num_layers {
                return Err(meta.error(format!(
                    "\"{}\" has {} entries for {num_layers} layers",
                    key("attention.head_count_kv"),
                    counts.len()
                )));
            }
            for (layer, &count) in config.layers.iter_mut().zip(counts) {
                if count == 0 {
                    layer.mixer = LayerMixer::ShortConv;
                }
            }
        }
        Architecture::Exaone4 => {
            config.qk_norm = QkNorm::PerHead;
            config.norm_layout = NormLayout::Post;
            // llama.cpp's pattern where a window is set: three sliding layers, then one global
            // without rotary.
            if window.is_some() {
                let sliding = sliding_layers(&meta, &pattern_key, num_layers, 4)?;
                config.layers =
                    LayerAttention::per_layer(&sliding, window, &rope, &Rope::no_rotation());
            }
        }
        // Rotary on part of each head comes from `rope.dimension_count`, the biases from the
        // tensors present.
        Architecture::Glm | Architecture::Glm4 => {
            // The original ChatGLM checkpoints (THUDM's remote code) keep q, k and v in one
            // `query_key_value`; only the "-hf" layout, apart, is checked against transformers.
            if content.tensor_infos.contains_key("blk.0.attn_qkv.weight") {
                return Err(meta.error(
                    "q, k and v in one tensor (`attn_qkv`, ChatGLM's original `query_key_value`) \
                     are not read; a GGUF converted from the \"-hf\" checkpoint (GlmForCausalLM, \
                     q, k and v apart) is",
                ));
            }
            super::arch::glm::family_traits(&mut config);
        }
        Architecture::Arcee => {
            config.mlp_gated = false;
            config.activation = Activation::Relu2;
        }
        Architecture::GptOss => {
            // Sliding and full layers in turn (llama.cpp's pattern of 2: even layers slide),
            // the same rotary on both.
            let sliding = sliding_layers(&meta, &pattern_key, num_layers, 2)?;
            if window.is_none() && sliding.contains(&true) {
                return Err(meta.error(format!(
                    "\"{}\" is missing",
                    key("attention.sliding_window")
                )));
            }
            let mut rope = rope.clone();
            // The released configs' YaRN does not round its correction range (`truncate:
            // false`), which GGUF cannot say; llama.cpp rounds it regardless.
            if let RopeScaling::Yarn { truncate, .. } = &mut rope.scaling {
                *truncate = false;
            }
            config.layers = LayerAttention::per_layer(&sliding, window, &rope, &rope);
            // llama.cpp's constants for every gpt-oss file, the released configs' values.
            let clamp = SwigluClamp {
                alpha: 1.702,
                limit: 7.0,
            };
            super::arch::gpt_oss::family_traits(
                &mut config,
                clamp,
                expert_count.unwrap_or(0),
                meta.usize(&key("expert_used_count"))?,
            );
        }
        Architecture::Olmoe
        | Architecture::Qwen2Moe
        | Architecture::Qwen3Moe
        | Architecture::Mixtral
        | Architecture::GraniteMoe => {
            if architecture == Architecture::GraniteMoe {
                granite_scales(&meta, &key, &mut config)?;
            }
            config.qk_norm = match architecture {
                Architecture::Olmoe => QkNorm::AllHeads,
                Architecture::Qwen3Moe => QkNorm::PerHead,
                _ => QkNorm::Off,
            };
            // llama.cpp renormalizes the chosen experts' weights for Mixtral and Qwen3-MoE,
            // not for OLMoE and Qwen2-MoE, unless the file says.
            let normalize_top_k = meta
                .opt_bool(&key("expert_weights_norm"))?
                .unwrap_or(!matches!(
                    architecture,
                    Architecture::Olmoe | Architecture::Qwen2Moe
                ));
            // Qwen2-MoE's shared expert: `ffn_down_shexp` is `[d_model, d_ff]`.
            let shared_d_ff = content
                .tensor_infos
                .get("blk.0.ffn_down_shexp.weight")
                .and_then(|down| down.shape.get(1).copied());
            config.experts = Some(Experts {
                beside_dense: false,
                count: expert_count.unwrap_or(0),
                per_token: meta.usize(&key("expert_used_count"))?,
                normalize_top_k,
                shared_d_ff,
                biased: false,
            });
        }
        Architecture::Falcon => {
            super::arch::layer_norm_family(&mut config);
            let bias = content.tensor_infos.contains_key("blk.0.attn_qkv.bias");
            config.qkv_bias = bias;
            config.linear_bias = bias;
            // The checkpoints' exact GELU (`activation: "gelu"`); GGUF files do not say.
            config.activation = Activation::Gelu;
            // llama.cpp runs every Falcon side by side: on two norms where the file has them
            // (40B, 180B), else on one.
            config.norm_layout = if content
                .tensor_infos
                .contains_key("blk.0.attn_norm_2.weight")
            {
                NormLayout::ParallelTwoNorms
            } else {
                NormLayout::Parallel
            };
        }
        Architecture::Qwen3 => config.qk_norm = QkNorm::PerHead,
        Architecture::Jais2 | Architecture::Nemotron => {
            if architecture == Architecture::Jais2 {
                super::arch::jais2::family_traits(&mut config);
            } else {
                super::arch::nemotron::family_traits(&mut config);
            }
            // Biases on the MLP (and so on the output projection) where the file has them.
            config.linear_bias = content.tensor_infos.contains_key("blk.0.ffn_up.bias");
        }
        Architecture::Apertus => {
            // Its xIELU parameters are metadata arrays, served by `metadata_tensors`.
            config.qk_norm = QkNorm::PerHead;
            config.mlp_gated = false;
            config.activation = Activation::XIelu;
        }
        Architecture::Olmo2 => super::arch::olmo2::family_traits(&mut config),
        Architecture::StableLm => {
            if content
                .tensor_infos
                .contains_key("blk.0.attn_q_norm.weight")
            {
                return Err(
                    meta.error("per-head q/k LayerNorms (StableLM 2 12B) are not supported")
                );
            }
            // llama.cpp's own rule: attention and the MLP side by side where no MLP norm is.
            let parallel = !content.tensor_infos.contains_key("blk.0.ffn_norm.weight");
            super::arch::stablelm::family_traits(&mut config, parallel);
        }
        Architecture::Olmo => {
            super::arch::olmo::family_traits(&mut config);
            config.qkv_clip = meta.opt_f64(&key("attention.clamp_kqv"))?;
        }
        Architecture::Olmo3 => {
            super::arch::olmo2::family_traits(&mut config);
            // llama.cpp, as transformers: no YaRN on the sliding layers.
            let sliding = sliding_layers(&meta, &pattern_key, num_layers, 4)?;
            config.layers = LayerAttention::per_layer(&sliding, window, &local_rope, &rope);
        }
        Architecture::Phi3 => {
            config.fused_projections = true;
            // 0 marks Phi-4's files: no window.
            let window = window.filter(|&w| w > 0);
            for layer in &mut config.layers {
                layer.sliding_window = window;
            }
        }
        Architecture::SmolLm3 => {
            // llama.cpp's fixed step (its `n_no_rope_layer_step`): every 4th layer has no rotary.
            for (i, layer) in config.layers.iter_mut().enumerate() {
                if (i + 1) % 4 == 0 {
                    layer.rope = Rope::no_rotation();
                }
            }
        }
        Architecture::Granite => granite_scales(&meta, &key, &mut config)?,
        Architecture::Cohere | Architecture::Cohere2 => {
            super::arch::cohere::family_traits(&mut config);
            config.logit_scale = Some(meta.opt_f64(&key("logit_scale"))?.unwrap_or(0.0625));
            if architecture == Architecture::Cohere2 {
                // llama.cpp's pattern: three sliding layers, then one global without rotary.
                let sliding = sliding_layers(&meta, &pattern_key, num_layers, 4)?;
                let window = window.or(Some(4096));
                config.layers =
                    LayerAttention::per_layer(&sliding, window, &rope, &Rope::no_rotation());
            }
        }
        Architecture::Gpt2 => {
            super::arch::layer_norm_family(&mut config);
            config.learned_positions = true;
        }
        Architecture::Bloom => {
            super::arch::layer_norm_family(&mut config);
            super::arch::bloom::family_traits(&mut config);
        }
        Architecture::GptNeoX => {
            let parallel = meta
                .opt_bool(&key("use_parallel_residual"))?
                .unwrap_or(true);
            super::arch::gpt_neox::family_traits(&mut config, parallel);
        }
        Architecture::Gemma => {
            config.norm_plus_one = true;
            config.activation = Activation::GeluTanh;
            config.embedding_scale = Some((hidden_size as f64).sqrt());
        }
        Architecture::Gemma2 | Architecture::Gemma3 => {
            let gemma3 = architecture == Architecture::Gemma3;
            config.norm_plus_one = true;
            config.norm_layout = NormLayout::Sandwich;
            if gemma3 {
                config.qk_norm = QkNorm::PerHead;
            }
            config.activation = Activation::GeluTanh;
            config.embedding_scale = Some((hidden_size as f64).sqrt());
            // llama.cpp's rule: only the 27B models (46 / 62 layers) scale queries by
            // hidden/heads instead of head_dim, matching their `query_pre_attn_scalar`.
            let is_27b = (!gemma3 && num_layers == 46) || (gemma3 && num_layers == 62);
            let query_scalar = if is_27b {
                hidden_size as f64 / num_heads as f64
            } else {
                head_dim as f64
            };
            config.attention_scale = 1.0 / query_scalar.sqrt();
            // Gemma 2 always soft-caps (llama.cpp and transformers default to 50 and 30).
            let (attn_cap, final_cap) = if gemma3 {
                (None, None)
            } else {
                (Some(50.0), Some(30.0))
            };
            config.attn_logit_softcapping =
                meta.opt_f64(&key("attn_logit_softcapping"))?.or(attn_cap);
            config.final_logit_softcapping =
                meta.opt_f64(&key("final_logit_softcapping"))?.or(final_cap);
            let sliding =
                sliding_layers(&meta, &pattern_key, num_layers, if gemma3 { 6 } else { 2 })?;
            // Gemma 3's local layers use their own rotary base (10 000 unless the file says)
            // and no scaling; Gemma 2's the global ones.
            let local = if gemma3 {
                Rope {
                    theta: meta
                        .opt_f64(&key("rope.freq_base_swa"))?
                        .unwrap_or(10_000.0),
                    scaling: RopeScaling::None,
                }
            } else {
                rope.clone()
            };
            config.layers =
                LayerAttention::per_layer(&sliding, window.or(Some(4096)), &local, &rope);
        }
    }
    // An output bias of its own (Llama's `attention_bias`), where the family's biases do not
    // already include it.
    config.o_bias =
        !config.linear_bias && content.tensor_infos.contains_key("blk.0.attn_output.bias");
    config.validate(path)?;
    Ok(config)
}

/// Gemma 4 as llama.cpp's converter writes it: the head width of the global layers as
/// `attention.key_length` and the local ones' as `key_length_swa`, key/value heads per layer,
/// no `attn_v` where the keys are the values, proportional rotary as divisors of 1 and 1e30
/// in `rope_freqs`, the MLP beside a mixture as the plain `ffn_*` tensors.
fn gemma4_config(
    config: &mut ModelConfig,
    meta: &Metadata,
    key: &dyn Fn(&str) -> String,
    content: &GgufHeader,
) -> Result<()> {
    super::arch::gemma4::family_traits(config);
    let layers = config.num_layers;
    // Every layer has the global rotary so far (the file's base, `rope_freqs`).
    let global = config.layers[0].rope.clone();
    let global_head_dim = config.head_dim;
    config.head_dim = meta.usize(&key("attention.key_length_swa"))?;
    config.final_logit_softcapping = meta.opt_f64(&key("final_logit_softcapping"))?;
    let width_key = key("feed_forward_length");
    if let Some(widths) = per_layer_values(meta, &width_key)?
        && widths.windows(2).any(|pair| pair[0] != pair[1])
    {
        return Err(meta.error(format!(
            "\"{width_key}\" gives the layers MLPs of different widths (Gemma 4's double-wide \
             MLPs), and NeuronXA compares layers of one width; this Gemma 4 is not supported"
        )));
    }
    let sliding = sliding_layers(meta, &key("attention.sliding_window_pattern"), layers, 6)?;
    let kv_heads: Vec<usize> = match per_layer_values(meta, &key("attention.head_count_kv"))? {
        Some(counts) if counts.len() == layers => {
            counts.iter().map(|&n| n.max(0) as usize).collect()
        }
        Some(counts) => {
            return Err(meta.error(format!(
                "\"{}\" has {} entries for {layers} layers",
                key("attention.head_count_kv"),
                counts.len()
            )));
        }
        None => vec![config.num_kv_heads; layers],
    };
    if let Some(first_local) = sliding.iter().position(|&slides| slides) {
        config.num_kv_heads = kv_heads[first_local];
    }
    let local = Rope {
        theta: meta
            .opt_f64(&key("rope.freq_base_swa"))?
            .unwrap_or(10_000.0),
        scaling: RopeScaling::None,
    };
    // The global layers' proportional rotary comes from `rope_freqs` (see `frequency_divisors`).
    let window = meta
        .opt_usize(&key("attention.sliding_window"))?
        .unwrap_or(512);
    config.layers = LayerAttention::per_layer(&sliding, Some(window), &local, &global);
    config.kv_shared_layers = meta
        .opt_usize(&key("attention.shared_kv_layers"))?
        .unwrap_or(0);
    // The values are the keys wherever a global layer with keys of its own has no `attn_v`.
    let values_from_keys = (0..layers).any(|i| {
        let has = |part: &str| {
            content
                .tensor_infos
                .contains_key(&format!("blk.{i}.{part}.weight"))
        };
        !sliding[i] && has("attn_k") && !has("attn_v")
    });
    for ((layer, &slides), &kv) in config.layers.iter_mut().zip(&sliding).zip(&kv_heads) {
        let heads = LayerHeads {
            head_dim: if slides {
                config.head_dim
            } else {
                global_head_dim
            },
            kv_heads: kv,
            values_from_keys: values_from_keys && !slides,
        };
        let model_heads = heads.head_dim == config.head_dim
            && heads.kv_heads == config.num_kv_heads
            && !heads.values_from_keys;
        layer.heads = (!model_heads).then_some(heads);
    }
    let width = meta
        .opt_usize(&key("embedding_length_per_layer_input"))?
        .unwrap_or(0);
    if width > 0 {
        let table = content
            .tensor_infos
            .get("per_layer_token_embd.weight")
            .ok_or_else(|| meta.error("tensor \"per_layer_token_embd.weight\" is missing"))?;
        config.per_layer_input = Some(PerLayerInput {
            width,
            vocab: table.shape.first().copied().unwrap_or(0),
        });
    }
    if let Some(count) = meta.opt_usize(&key("expert_count"))?.filter(|&n| n > 0) {
        // The dense MLP beside the mixture is its shared expert.
        let dense = config.intermediate_size;
        config.intermediate_size = meta.usize(&key("expert_feed_forward_length"))?;
        config.experts = Some(Experts {
            count,
            per_token: meta.usize(&key("expert_used_count"))?,
            normalize_top_k: true,
            shared_d_ff: Some(dense),
            biased: false,
            beside_dense: true,
        });
    }
    Ok(())
}

/// Which layers attend locally (or, for Qwen3.5, are recurrent): an explicit per-layer list or
/// period from the metadata, else llama.cpp's fixed pattern for the family (every `period`-th
/// layer is global).
fn sliding_layers(
    meta: &Metadata,
    key: &str,
    num_layers: usize,
    period: usize,
) -> Result<Vec<bool>> {
    let period = match meta.get(key) {
        None => period,
        Some(Value::Array(items)) => {
            let flags: Option<Vec<bool>> = items
                .iter()
                .map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect();
            return match flags {
                Some(flags) if flags.len() == num_layers => Ok(flags),
                _ => Err(meta.error(format!(
                    "metadata key \"{key}\" should list one true/false per layer ({num_layers})"
                ))),
            };
        }
        Some(_) => meta.usize(key)?.max(1),
    };
    Ok((0..num_layers).map(|i| (i + 1) % period != 0).collect())
}

/// Rotary scaling declared in the metadata (`{arch}.rope.scaling.*`).
fn rope_scaling(meta: &Metadata, arch: &str) -> Result<RopeScaling> {
    let kind_key = format!("{arch}.rope.scaling.type");
    let factor_key = format!("{arch}.rope.scaling.factor");
    let kind = meta.opt_string(&kind_key)?;
    let factor = meta.opt_f64(&factor_key)?;
    match (kind, factor) {
        (None | Some("none"), _) => Ok(RopeScaling::None),
        (Some("linear"), Some(1.0)) => Ok(RopeScaling::None),
        (Some("linear"), Some(factor)) => Ok(RopeScaling::Linear { factor }),
        (Some("linear" | "yarn"), None) => Err(meta.error(format!(
            "\"{kind_key}\" is {} but \"{factor_key}\" is missing",
            kind.unwrap_or_default()
        ))),
        (Some("yarn"), Some(factor)) => {
            let key = |k: &str| format!("{arch}.rope.scaling.{k}");
            let original = meta.usize(&key("original_context_length"))? as f64;
            // What the converter writes only where the config gave it; transformers' defaults.
            let nonzero = |v: Option<f64>| v.filter(|v| *v != 0.0);
            Ok(RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original,
                beta_fast: nonzero(meta.opt_f64(&key("yarn_beta_fast"))?).unwrap_or(32.0),
                beta_slow: nonzero(meta.opt_f64(&key("yarn_beta_slow"))?).unwrap_or(1.0),
                attention_factor: match (
                    meta.opt_f64(&key("yarn_attn_factor"))?,
                    nonzero(meta.opt_f64(&key("yarn_log_multiplier"))?),
                ) {
                    (Some(given), _) => given,
                    // transformers' `mscale_all_dim`, with `mscale` 1 as llama.cpp takes it
                    // (Ministral 3: both 1, so no scaling).
                    (None, Some(all_dims)) => {
                        yarn_mscale(factor, 1.0) / yarn_mscale(factor, all_dims)
                    }
                    (None, None) => yarn_mscale(factor, 1.0),
                },
                truncate: true,
            })
        }
        (Some(other), _) => Err(meta.error(format!(
            "unsupported rope scaling \"{other}\" in \"{kind_key}\" (supported: none, linear, yarn, llama 3's rope_freqs and Phi-3's rope factors)"
        ))),
    }
}

/// Phi-3's LongRoPE: the converter stores the short and long factors as tensors and the
/// original context and attention factor as metadata. Like the `config.json` path, only the
/// short factors run (sentences past the original context are refused).
fn long_rope(
    meta: &Metadata,
    arch: &str,
    info: &StoredTensor,
    content: &GgufHeader,
    file: &mut File,
    rotary_dims: usize,
) -> Result<RopeScaling> {
    let short_factor: Vec<f64> =
        read_small_f32(meta, "rope_factors_short.weight", info, content, file)?
            .into_iter()
            .map(f64::from)
            .collect();
    if short_factor.len() != rotary_dims / 2 {
        return Err(meta.error(format!(
            "tensor \"rope_factors_short.weight\" has {} entries, {rotary_dims} rotary dimensions need {}",
            short_factor.len(),
            rotary_dims / 2
        )));
    }
    let original_key = format!("{arch}.rope.scaling.original_context_length");
    let original = meta.usize(&original_key)?;
    if original == 0 {
        return Err(meta.error(format!("\"{original_key}\" is 0")));
    }
    let attention_factor = match meta.opt_f64(&format!("{arch}.rope.scaling.attn_factor"))? {
        Some(given) => given,
        // The converter's (and transformers') default for a context stretched `scale` times.
        None => {
            let scale = meta.usize(&format!("{arch}.context_length"))? as f64 / original as f64;
            if scale <= 1.0 {
                1.0
            } else {
                (1.0 + scale.ln() / (original as f64).ln()).sqrt()
            }
        }
    };
    Ok(RopeScaling::LongRope {
        short_factor,
        original_max_position_embeddings: original,
        attention_factor,
    })
}

/// A small table stored as a tensor (rotary factors), as f32 values.
fn read_small_f32(
    meta: &Metadata,
    name: &str,
    info: &StoredTensor,
    content: &GgufHeader,
    file: &mut File,
) -> Result<Vec<f32>> {
    info.read_f32(file, content.tensor_data_offset)
        .and_then(|t| {
            t.flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(|e| candle_message(&e))
        })
        .map_err(|message| meta.error(format!("tensor \"{name}\": {message}")))
}

/// Llama 3.1+ GGUF files carry their rotary scaling as a table of per-frequency divisors
/// (`rope_freqs.weight`) instead of its parameters; it is applied as llama.cpp applies it.
/// The values of a key that the file gives per layer (an array), or `None` where it gives one
/// for all.
fn per_layer_values(meta: &Metadata, key: &str) -> Result<Option<Vec<i64>>> {
    match meta.get(key) {
        Some(Value::Array(_)) => meta.opt_i64_array(key),
        _ => Ok(None),
    }
}

/// A rotary divisor this large stops a pair turning (its angle stays below 1e-20 rad).
const STILL_DIVISOR: f32 = 1e29;

fn frequency_divisors(
    meta: &Metadata,
    info: &StoredTensor,
    content: &GgufHeader,
    file: &mut File,
    rotary_dims: usize,
) -> Result<RopeScaling> {
    let divisors = read_small_f32(meta, "rope_freqs.weight", info, content, file)?;
    if divisors.len() != rotary_dims / 2 {
        return Err(meta.error(format!(
            "tensor \"rope_freqs.weight\" has {} entries, {rotary_dims} rotary dimensions need {}",
            divisors.len(),
            rotary_dims / 2
        )));
    }
    if let Some(bad) = divisors.iter().find(|d| !(d.is_finite() && **d > 0.0)) {
        return Err(meta.error(format!(
            "tensor \"rope_freqs.weight\" holds {bad}; rotary divisors must be positive"
        )));
    }
    if divisors.iter().all(|&d| d == 1.0) {
        return Ok(RopeScaling::None);
    }
    // 1 for the first pairs and 1e30 for the rest: those stand still (llama.cpp's converter
    // writes Gemma 4's proportional rotary so), which is transformers' proportional rotary.
    let turning = divisors.iter().take_while(|&&d| d == 1.0).count();
    if divisors[turning..].iter().all(|&d| d >= STILL_DIVISOR) {
        return Ok(RopeScaling::Proportional {
            fraction: turning as f64 / divisors.len() as f64,
            factor: 1.0,
        });
    }
    Ok(RopeScaling::FrequencyDivisors {
        divisors: divisors.into_iter().map(f64::from).collect(),
    })
}
