//! A loaded model: config, tokenizer and decoder, from a folder, a GGUF file or a Hub id.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{Architecture, ModelConfig, NormLayout};
use super::decoder::Decoder;
use super::device::{DTypeChoice, DeviceChoice};
use super::error::{EngineError, Result};
use super::tokenizer::TextTokenizer;
use super::transfer::HostCopy;
use super::weights::{AliasedWeights, FolderWeights, RenamedWeights, TensorSource};
use super::{gguf, hub};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelSource {
    /// A folder with `config.json`, `tokenizer.json` and safetensors weights.
    Folder(PathBuf),
    /// A single llama.cpp GGUF file.
    Gguf(PathBuf),
    /// A Hugging Face model id, looked up in the local cache.
    Hub(String),
}

impl ModelSource {
    /// Reads what a user typed: `demo`, a path to a folder or `.gguf`, or a Hub id.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        if text == "demo" {
            return Self::Gguf(hub::demo_model_path());
        }
        let path = Path::new(text);
        if path.is_dir() {
            Self::Folder(path.to_path_buf())
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            || path.is_file()
        {
            Self::Gguf(path.to_path_buf())
        } else if text.contains('/') && !path.exists() && !text.starts_with(['/', '.', '~']) {
            Self::Hub(text.to_string())
        } else {
            Self::Folder(path.to_path_buf())
        }
    }

    /// The text [`Self::parse`] turns back into this source.
    pub fn spec(&self) -> String {
        match self {
            Self::Folder(p) | Self::Gguf(p) => p.display().to_string(),
            Self::Hub(id) => id.clone(),
        }
    }

    /// A short name for tables and legends.
    pub fn display_name(&self) -> String {
        match self {
            Self::Folder(p) => p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            Self::Gguf(p) => p.file_stem().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            Self::Hub(id) => id.clone(),
        }
    }

    /// A folder or file on disk (Hub ids resolved in the local cache).
    fn resolve(&self) -> Result<ResolvedSource> {
        match self {
            Self::Folder(p) => {
                if !p.is_dir() {
                    return Err(EngineError::config(p, "no such model folder"));
                }
                Ok(ResolvedSource::Folder(p.clone()))
            }
            Self::Gguf(p) => {
                if !p.is_file() {
                    let hint = if *p == hub::demo_model_path() {
                        " (fetch the demo model with `neuronxa fetch-demo-model`)"
                    } else {
                        ""
                    };
                    return Err(EngineError::gguf(p, format!("no such file{hint}")));
                }
                Ok(ResolvedSource::Gguf(p.clone()))
            }
            Self::Hub(id) => Ok(ResolvedSource::Folder(hub::resolve_cached(id)?)),
        }
    }
}

enum ResolvedSource {
    Folder(PathBuf),
    Gguf(PathBuf),
}

/// What was recognised in a model, shown before running and stored with every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub source: ModelSource,
    pub architecture: Architecture,
    pub layers: usize,
    /// The neurons of a layer (every expert's in a mixture of experts).
    pub d_ff: usize,
    /// A mixture's experts per layer (their neurons make up `d_ff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<usize>,
    /// A mixture's shared expert's width (Qwen2-MoE), the last of `d_ff`'s neurons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_d_ff: Option<usize>,
    pub d_model: usize,
    /// Whether the MLP is gated (`act(gate)·up`); GPT-2's, BLOOM's, … are `act(fc_in)`. Runs
    /// saved before this was kept read as gated, as nearly every model is.
    #[serde(default = "gated_default", skip_serializing_if = "is_gated")]
    pub mlp_gated: bool,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab_size: usize,
    pub parameters: u64,
    /// How the weights are stored ("bf16", "q4_1+f32", …).
    pub storage_dtype: String,
    /// sha256 over the config and the weight files' headers: identifies the weights.
    pub fingerprint: String,
}

fn gated_default() -> bool {
    true
}

fn is_gated(gated: &bool) -> bool {
    *gated
}

impl ModelInfo {
    fn new(
        source: &ModelSource,
        config: &ModelConfig,
        storage_dtype: String,
        files: &[PathBuf],
    ) -> Result<Self> {
        Ok(Self {
            name: source.display_name(),
            source: source.clone(),
            architecture: config.architecture,
            layers: config.num_layers,
            d_ff: config.neurons_per_layer(),
            experts: config.experts.as_ref().map(|e| e.count),
            shared_d_ff: config.experts.as_ref().and_then(|e| e.shared_d_ff),
            d_model: config.hidden_size,
            mlp_gated: config.mlp_gated,
            heads: config.num_heads,
            kv_heads: config.num_kv_heads,
            vocab_size: config.vocab_size,
            parameters: config.parameter_count(),
            storage_dtype,
            fingerprint: fingerprint(config, files)?,
        })
    }

    /// "Llama · 30 layers · d_ff 1536 · d_model 576 · 135M params · Q4_1 + F32 + Q8_0" (the
    /// storage types spaced, so that a long list wraps between names).
    pub fn summary(&self) -> String {
        format!(
            "{} · {} layers · d_ff {} · d_model {} · {} params · {}",
            self.architecture,
            self.layers,
            self.neurons(),
            self.d_model,
            human_count(self.parameters),
            self.storage_dtype.replace('+', " + ")
        )
    }
}

impl ModelInfo {
    /// A layer's neurons: "1536", "128 (8 experts × 16)", or with a shared expert
    /// "128 (8 experts × 12 + shared 32)".
    pub fn neurons(&self) -> String {
        let Some(experts) = self.experts.filter(|&n| n > 0) else {
            return self.d_ff.to_string();
        };
        let shared = self.shared_d_ff.unwrap_or(0);
        let each = self.d_ff.saturating_sub(shared) / experts;
        match self.shared_d_ff {
            Some(shared) => format!(
                "{} ({experts} experts × {each} + shared {shared})",
                self.d_ff
            ),
            None => format!("{} ({experts} experts × {each})", self.d_ff),
        }
    }
}

pub fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.0}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Reads what a model is without loading its weights (fast: config or GGUF metadata only).
pub fn inspect(source: &ModelSource) -> Result<ModelInfo> {
    Ok(inspect_with_config(source)?.0)
}

/// [`inspect`], and the config the model was read as.
pub fn inspect_with_config(source: &ModelSource) -> Result<(ModelInfo, ModelConfig)> {
    match source.resolve()? {
        ResolvedSource::Folder(folder) => {
            let config = ModelConfig::from_hf_file(&folder.join("config.json"))?;
            TextTokenizer::check_folder(&folder)?;
            let weights = FolderWeights::open(&folder)?;
            let info = ModelInfo::new(source, &config, weights.storage_dtype(), weights.files())?;
            Ok((info, config))
        }
        ResolvedSource::Gguf(path) => {
            let (config, storage) = gguf::inspect(&path)?;
            let info = ModelInfo::new(source, &config, storage, std::slice::from_ref(&path))?;
            Ok((info, config))
        }
    }
}

/// The config alone, for what needs a model's shape but not its weights or tokenizer.
pub fn inspect_config(source: &ModelSource) -> Result<ModelConfig> {
    match source.resolve()? {
        ResolvedSource::Folder(folder) => ModelConfig::from_hf_file(&folder.join("config.json")),
        ResolvedSource::Gguf(path) => Ok(gguf::inspect(&path)?.0),
    }
}

pub struct Model {
    pub info: ModelInfo,
    pub config: ModelConfig,
    pub tokenizer: TextTokenizer,
    pub decoder: Decoder,
    /// "CPU, 2 threads", "CUDA GPU 0", …
    pub device_label: String,
    /// The host buffer batches are copied into (page-locked on a GPU), kept between calls:
    /// allocating a gigabyte of page-locked memory costs more than copying it.
    pub(crate) host: Mutex<HostCopy>,
    /// Whether extraction hands on one batch's states while the next batch computes; see
    /// [`Self::set_overlapped_copies`].
    pub(crate) overlapped_copies: bool,
}

impl Model {
    pub fn load(source: &ModelSource, device: DeviceChoice, dtype: DTypeChoice) -> Result<Self> {
        let (device, device_label) = device.resolve()?;
        Self::load_on(source, device, &device_label, dtype)
    }

    /// Loads onto a device already opened (`DeviceChoice::resolve`), described by `device_label`.
    pub fn load_on(
        source: &ModelSource,
        device: Device,
        device_label: &str,
        dtype: DTypeChoice,
    ) -> Result<Self> {
        let dtype = dtype.resolve(&device);
        let (config, weights, tokenizer, files): (
            ModelConfig,
            Box<dyn TensorSource>,
            _,
            Vec<PathBuf>,
        ) = match source.resolve()? {
            ResolvedSource::Folder(folder) => {
                let config = ModelConfig::from_hf_file(&folder.join("config.json"))?;
                let tokenizer = TextTokenizer::from_folder(&folder)?;
                let weights = FolderWeights::open(&folder)?;
                let files = weights.files().to_vec();
                let names = match config.architecture {
                    Architecture::Gpt2 => Some(&super::arch::gpt2::NAMES),
                    Architecture::Bloom => Some(&super::arch::bloom::NAMES),
                    Architecture::Xglm => Some(&super::arch::xglm::NAMES),
                    Architecture::GptNeoX => Some(&super::arch::gpt_neox::NAMES),
                    Architecture::Falcon if config.norm_layout == NormLayout::ParallelTwoNorms => {
                        Some(&super::arch::falcon::NAMES_TWO_NORMS)
                    }
                    Architecture::Falcon => Some(&super::arch::falcon::NAMES),
                    Architecture::Apertus | Architecture::Apertus15 => {
                        // A wrapper's language model (Apertus 1.5 as released), or bare.
                        if weights.contains("model.language_model.embed_tokens.weight") {
                            Some(&super::arch::apertus::WRAPPED_NAMES)
                        } else {
                            Some(&super::arch::apertus::NAMES)
                        }
                    }
                    Architecture::Glm4 => Some(&super::arch::glm::NAMES4),
                    Architecture::Lfm2 => Some(&super::arch::lfm2::NAMES),
                    Architecture::Lfm3 => Some(&super::arch::lfm2::NAMES3),
                    _ => None,
                };
                let weights: Box<dyn TensorSource> = match names {
                    Some(names) => Box::new(RenamedWeights::new(weights, names, &config)),
                    None if config.architecture == Architecture::OlmoHybrid => Box::new(
                        AliasedWeights::new(weights, super::arch::olmo2::HYBRID_NORM_NAMES),
                    ),
                    None => Box::new(weights),
                };
                (config, weights, tokenizer, files)
            }
            ResolvedSource::Gguf(path) => {
                let model = gguf::open(&path)?;
                (
                    model.config,
                    Box::new(model.weights),
                    model.tokenizer,
                    vec![path],
                )
            }
        };
        let info = ModelInfo::new(source, &config, weights.storage_dtype(), &files)?;
        super::memory::check_weights_fit(&config, dtype, &device)?;
        let decoder =
            Decoder::load(&config, weights.as_ref(), &device, dtype).map_err(map_device_error)?;
        Ok(Self {
            info,
            config,
            tokenizer,
            decoder,
            device_label: format!("{device_label}, {}", super::device::dtype_name(dtype)),
            host: Mutex::new(HostCopy::new()),
            overlapped_copies: !device.is_cpu(),
        })
    }

    /// On a GPU (the default there) extraction queues batch k + 1 before it hands on batch k's
    /// states, so the host's share overlaps the device's. On the CPU, where a forward pass
    /// runs to its end before it returns, this only delays each batch's report by one batch;
    /// tests turn it on there to run the GPU's order of work.
    pub fn set_overlapped_copies(&mut self, enabled: bool) {
        self.overlapped_copies = enabled;
    }
}

/// Turns a device allocation failure into [`EngineError::OutOfMemory`], and a CUDA error that
/// comes from the machine (a kernel not built for this GPU, a driver too old) into what to do
/// about it, so users read them in words.
pub fn map_device_error(error: EngineError) -> EngineError {
    use super::error::{candle_message, cuda_advice, tidy_driver_error};
    match error {
        EngineError::Candle(e) if e.to_string().to_lowercase().contains("out of memory") => {
            EngineError::OutOfMemory(format!(
                "{}; try a smaller batch size or a smaller dtype",
                candle_message(&e)
            ))
        }
        EngineError::Candle(e) => {
            let message = candle_message(&e);
            match cuda_advice(&message) {
                Some(advice) => EngineError::Device(format!(
                    "the GPU could not run a kernel: {}. {advice}",
                    tidy_driver_error(&message)
                )),
                None => EngineError::Candle(e),
            }
        }
        other => other,
    }
}

/// sha256 of the config and, per weight file, its length and first and last bytes (the
/// safetensors header or GGUF metadata, and the end of the tensor data).
fn fingerprint(config: &ModelConfig, files: &[PathBuf]) -> Result<String> {
    const HEAD: u64 = 1 << 20;
    const TAIL: u64 = 1 << 16;
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(config).unwrap_or_default());
    for path in files {
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        hasher.update(len.to_le_bytes());
        let mut head = Vec::new();
        (&mut file)
            .take(HEAD)
            .read_to_end(&mut head)
            .map_err(|e| EngineError::io(path, e))?;
        hasher.update(&head);
        if len > HEAD + TAIL {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(len - TAIL))
                .map_err(|e| EngineError::io(path, e))?;
            let mut tail = Vec::new();
            file.take(TAIL)
                .read_to_end(&mut tail)
                .map_err(|e| EngineError::io(path, e))?;
            hasher.update(&tail);
        }
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary's neuron count says what a layer's neurons are made of: Qwen2-MoE's tiny
    /// model has 8 experts of 12 and a shared expert of 32 (not "8 × 16").
    #[test]
    fn a_mixture_says_its_experts_and_shared_expert() {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
        let info = |name: &str| inspect(&ModelSource::Folder(tiny.join(name))).unwrap();
        assert_eq!(
            info("qwen2_moe").neurons(),
            "128 (8 experts × 12 + shared 32)"
        );
        assert_eq!(info("olmoe").neurons(), "128 (8 experts × 16)");
        assert_eq!(info("llama").neurons(), info("llama").d_ff.to_string());
    }

    /// Whether the MLP is gated travels with a run (the header names the NAV source by it);
    /// run files saved before it was kept read as gated, and a gated model writes nothing new.
    #[test]
    fn a_run_knows_whether_its_model_is_gated() {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
        let info = |name: &str| inspect(&ModelSource::Folder(tiny.join(name))).unwrap();
        let (llama, gpt2) = (info("llama"), info("gpt2"));
        assert!(llama.mlp_gated && !gpt2.mlp_gated);
        let json = serde_json::to_value(&llama).unwrap();
        assert!(json.get("mlp_gated").is_none(), "{json}");
        let back: ModelInfo = serde_json::from_value(json).unwrap();
        assert!(back.mlp_gated);
        let json = serde_json::to_value(&gpt2).unwrap();
        assert_eq!(json["mlp_gated"], false);
        assert!(!serde_json::from_value::<ModelInfo>(json).unwrap().mlp_gated);
    }
}
