//! How much device memory a model and a batch need, measured against what the GPU has free.
//!
//! The estimates are deliberately generous: a refused run costs a message, a CUDA out-of-memory
//! in the middle of a run costs the user's time. On the CPU there is no budget to check (the
//! operating system pages), so only GPUs are planned for.

use candle_core::{DType, Device};

use super::config::ModelConfig;
use super::error::{EngineError, Result};

/// Sentences per batch when the batch size is "auto" on the CPU (measured best, BENCHMARKS.md).
pub const CPU_AUTO_BATCH: usize = 16;
/// Upper bound of an automatic GPU batch: beyond this the GPU is already saturated.
pub const GPU_MAX_BATCH: usize = 256;
/// Share of the free memory (after the weights) that batches may use; the rest is headroom for
/// the allocator, cuBLAS workspaces and fragmentation.
const ACTIVATION_SHARE: f64 = 0.6;

/// Free and total memory of a device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    pub free: u64,
    pub total: u64,
}

/// Free and total memory of `device`, where the backend can tell (CUDA; Metal, as the working
/// set macOS recommends for the GPU less what is allocated); `None` elsewhere.
pub fn device_memory(device: &Device) -> Option<DeviceMemory> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => {
            let (free, total) = cuda.cuda_stream().context().mem_get_info().ok()?;
            Some(DeviceMemory {
                free: free as u64,
                total: total as u64,
            })
        }
        #[cfg(feature = "metal")]
        Device::Metal(metal) => {
            let gpu = metal.device();
            let total = gpu.recommended_max_working_set_size() as u64;
            let used = gpu.current_allocated_size() as u64;
            (total > 0).then(|| DeviceMemory {
                free: total.saturating_sub(used),
                total,
            })
        }
        _ => None,
    }
}

/// RAM the host can give now: what the system calls available (free plus reclaimable caches),
/// within a cgroup's limit where the process runs in one (containers, CI); `None` where the
/// system cannot tell.
pub fn host_memory() -> Option<DeviceMemory> {
    let mut system = sysinfo::System::new().ok()?;
    system.refresh_memory();
    let (mut free, mut total) = (system.available_memory(), system.total_memory());
    if let Some(limits) = system.cgroup_limits() {
        free = free.min(limits.free_memory);
        total = total.min(limits.total_memory);
    }
    (total > 0).then_some(DeviceMemory { free, total })
}

/// A batch size as people type it: `auto` (or `0`) or a number of sentences; `0` means auto.
pub fn parse_batch_size(text: &str) -> std::result::Result<usize, String> {
    match text.trim() {
        "auto" => Ok(0),
        n => n
            .parse::<usize>()
            .map_err(|_| format!("\"{text}\" is neither \"auto\" nor a number of sentences")),
    }
}

pub fn dtype_bytes(dtype: DType) -> u64 {
    dtype.size_in_bytes() as u64
}

/// Bytes `parameters` weights take on the device in `dtype` (norm weights included).
pub fn weight_bytes(parameters: u64, dtype: DType) -> u64 {
    parameters * dtype_bytes(dtype)
}

/// Peak bytes one sentence of `tokens` tokens adds while a layer runs: residual stream and its
/// norms, q/k/v and their rotated copies, f32 attention scores and probabilities, gate/up/act and
/// their product, and with `generic_capture` the generic ops' f32 capture buffers (active mask,
/// magnitudes), which the CUDA capture kernel does without; a linear-attention layer's buffers
/// and state (Qwen3.5); and the sentence's pooled NAS and NAV of every layer, kept until the
/// batch's row is assembled.
pub fn bytes_per_sentence(
    config: &ModelConfig,
    dtype: DType,
    tokens: usize,
    generic_capture: bool,
) -> u64 {
    let e = dtype_bytes(dtype);
    let t = tokens as u64;
    let d_model = config.hidden_size as u64;
    // A mixture of experts runs `per_token` experts (and its shared one) for each token.
    let d_ff = match &config.experts {
        Some(experts) => {
            config.intermediate_size * experts.per_token + experts.shared_d_ff.unwrap_or(0)
        }
        None => config.intermediate_size,
    } as u64;
    let pooled = 2 * 4 * (config.neurons_per_layer() * config.num_layers) as u64;
    let q = (config.num_heads * config.head_dim) as u64;
    let kv = (config.num_kv_heads * config.head_dim) as u64;
    // The decoder keeps the residual stream, and computes norms, in f32 whatever `dtype` is.
    let residual = 6 * d_model * 4;
    let projections = 2 * (q + 2 * kv) * e + 2 * q * e;
    let scores = 3 * config.num_heads as u64 * t * 4;
    let capture = if generic_capture {
        d_ff * (1 + 4 + 4)
    } else {
        0
    };
    let mlp = 4 * d_ff * e + capture;
    // Qwen3.5's Gated DeltaNet: its f32 projections, their padded and convolved copies, the
    // key heads repeated for the value heads, the outputs and their gated norm; and the state
    // with its step's temporaries, whatever the length.
    let linear = config.linear_attention.as_ref().map_or(0, |l| {
        let (c, vd, hv) = (
            l.conv_dim() as u64,
            l.value_dim() as u64,
            l.value_heads as u64,
        );
        let per_token =
            4 * (2 * l.projected_width() as u64 + 3 * c + 2 * hv * l.key_head_dim as u64 + 4 * vd);
        let state = 4 * 4 * hv * (l.key_head_dim * l.value_head_dim) as u64;
        t * per_token + state
    });
    // LFM2's short convolution: B, C and x in f32, B·x, its convolution and the gated output.
    let conv = config.short_conv.as_ref().map_or(0, |_| 4 * 6 * d_model);
    t * (residual + projections + scores + mlp + conv) + linear + pooled
}

/// Checks that the weights fit before any is loaded, so a model too large for the GPU is a
/// message with the numbers rather than a CUDA out-of-memory error half-way through loading,
/// and one too large for the RAM (every CPU load expands the weights to the compute dtype)
/// a message rather than the system killing the program.
pub fn check_weights_fit(config: &ModelConfig, dtype: DType, device: &Device) -> Result<()> {
    let (memory, place) = match device_memory(device) {
        Some(memory) => (memory, Place::Gpu),
        None if device.is_cpu() => match host_memory() {
            Some(memory) => (memory, Place::Ram),
            None => return Ok(()),
        },
        None => return Ok(()),
    };
    weights_fit(config, dtype, memory, place)
}

/// Where the weights go, for [`weights_fit`]'s message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Gpu,
    Ram,
}

/// [`check_weights_fit`] against `memory`.
fn weights_fit(
    config: &ModelConfig,
    dtype: DType,
    memory: DeviceMemory,
    place: Place,
) -> Result<()> {
    let weights = weight_bytes(config.parameter_count(), dtype);
    // One batch of sixteen 64-token sentences must fit beside the weights.
    // Counted with the generic capture: the kernel is only checked once the weights are in.
    let minimum = weights + 16 * bytes_per_sentence(config, dtype, 64, true);
    if minimum <= memory.free {
        return Ok(());
    }
    let (where_, free) = match place {
        Place::Gpu => ("on the GPU", "is free"),
        Place::Ram => ("in memory", "is available"),
    };
    let smaller = match (place, dtype) {
        (Place::Gpu, DType::F32) => " Try --dtype bf16 (half the memory).",
        (Place::Gpu, _) => " A smaller model, or a GGUF loaded on the CPU, would fit.",
        (Place::Ram, DType::F32) => {
            " Try --dtype bf16 (half the memory, slower on a CPU), a GPU, or a smaller model."
        }
        (Place::Ram, _) => " A GPU or a smaller model would fit.",
    };
    Err(EngineError::OutOfMemory(format!(
        "the model needs about {} {where_} ({} of weights in {} plus working memory), but only {} of {} {free}.{smaller}",
        gib(minimum),
        gib(weights),
        super::device::dtype_name(dtype),
        gib(memory.free),
        gib(memory.total),
    )))
}

/// How many sentences of up to `longest` tokens one batch may hold on `device`, given what is
/// free now (weights already loaded). `None` when the device cannot tell (CPU, Metal).
pub fn batch_that_fits(
    config: &ModelConfig,
    dtype: DType,
    device: &Device,
    longest: usize,
    generic_capture: bool,
) -> Option<usize> {
    let memory = device_memory(device)?;
    let budget = memory.free as f64 * ACTIVATION_SHARE;
    let per_sentence = bytes_per_sentence(config, dtype, longest.max(1), generic_capture) as f64;
    Some((budget / per_sentence).floor() as usize)
}

/// The batch size to run with: the requested one, or for "auto" (`0`) what fits the device
/// (GPU, capped at [`GPU_MAX_BATCH`]) or [`CPU_AUTO_BATCH`]. A requested size is never raised.
pub fn resolve_batch_size(
    requested: usize,
    config: &ModelConfig,
    dtype: DType,
    device: &Device,
    longest: usize,
    generic_capture: bool,
) -> Result<usize> {
    let fits = batch_that_fits(config, dtype, device, longest, generic_capture);
    match (requested, fits) {
        (_, Some(0)) => Err(EngineError::OutOfMemory(format!(
            "one sentence of {longest} tokens needs about {} of working memory, more than the GPU has free ({}). Use shorter sentences or a smaller dtype.",
            gib(bytes_per_sentence(config, dtype, longest, generic_capture)),
            device_memory(device).map_or_else(|| "?".into(), |m| gib(m.free)),
        ))),
        (0, Some(fits)) => Ok(fits.min(GPU_MAX_BATCH)),
        (0, None) => Ok(CPU_AUTO_BATCH),
        (requested, Some(fits)) => Ok(requested.min(fits)),
        (requested, None) => Ok(requested),
    }
}

/// `12.3 GiB`, `512 MiB`, `96 KiB`.
pub fn gib(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / (1u64 << 10) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hidden: usize, ff: usize, layers: usize) -> ModelConfig {
        let json = serde_json::json!({
            "model_type": "llama",
            "hidden_size": hidden,
            "intermediate_size": ff,
            "num_hidden_layers": layers,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "vocab_size": 1000,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5,
        });
        ModelConfig::from_hf_json(&json, std::path::Path::new("config.json")).unwrap()
    }

    /// gpt-oss-20b's 20.9 billion parameters in f32 (78 GiB) do not fit 24 GiB of RAM: refused
    /// with the numbers and the bf16 hint; in bf16 (39 GiB) still not, with another hint; a
    /// small model fits.
    #[test]
    fn weights_that_do_not_fit_the_ram_are_refused_with_the_numbers() {
        let json = serde_json::json!({
            "model_type": "gpt_oss", "hidden_size": 2880, "intermediate_size": 2880,
            "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
            "num_hidden_layers": 24, "num_local_experts": 32, "num_experts_per_tok": 4,
            "sliding_window": 128, "vocab_size": 201088, "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5,
        });
        let big = ModelConfig::from_hf_json(&json, std::path::Path::new("config.json")).unwrap();
        let ram = DeviceMemory {
            free: 24 << 30,
            total: 32 << 30,
        };
        let error = weights_fit(&big, DType::F32, ram, Place::Ram)
            .unwrap_err()
            .to_string();
        assert!(error.contains("77.9 GiB of weights in f32"), "{error}");
        assert!(
            error.contains("but only 24.0 GiB of 32.0 GiB is available"),
            "{error}"
        );
        assert!(error.contains("--dtype bf16"), "{error}");
        let error = weights_fit(&big, DType::BF16, ram, Place::Ram)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("in memory (39.0 GiB of weights in bf16"),
            "{error}"
        );
        assert!(!error.contains("--dtype"), "{error}");
        assert!(weights_fit(&config(576, 1536, 30), DType::F32, ram, Place::Ram).is_ok());
    }

    #[test]
    fn weights_scale_with_dtype() {
        let c = config(64, 128, 2);
        let n = c.parameter_count();
        assert_eq!(
            weight_bytes(n, DType::F32),
            2 * weight_bytes(n, DType::BF16)
        );
        assert_eq!(weight_bytes(n, DType::BF16), n * 2);
    }

    #[test]
    fn per_sentence_bytes_by_hand() {
        // hidden 64, d_ff 128, 8 heads of 8, 2 kv heads, bf16 (2 bytes), 10 tokens:
        // residual (f32) 6·64·4 = 1536; projections 2·(64 + 32)·2 + 2·64·2 = 640;
        // scores 3·8·10·4 = 960; mlp 4·128·2 + 128·9 = 2176 → 5312 per token, 53 120 for
        // the tokens; pooled NAS and NAV 2·4·128·2 layers = 2048 → 55 168.
        let mut c = config(64, 128, 2);
        assert_eq!(bytes_per_sentence(&c, DType::BF16, 10, true), 55_168);
        // The CUDA capture kernel keeps no f32 buffers: 128·9 bytes less per token.
        assert_eq!(
            bytes_per_sentence(&c, DType::BF16, 10, false),
            55_168 - 11_520
        );
        // Four experts of 128, two per token: the MLP's buffers for 256 per token,
        // 4·256·2 + 256·9 = 4352 → 7488 per token, 74 880 for the tokens; pooled states of
        // all 512 neurons, 2·4·512·2 = 8192 → 83 072.
        c.experts = Some(crate::engine::config::Experts {
            beside_dense: false,
            count: 4,
            per_token: 2,
            normalize_top_k: false,
            shared_d_ff: None,
            biased: false,
        });
        assert_eq!(bytes_per_sentence(&c, DType::BF16, 10, true), 83_072);
    }

    #[test]
    fn cpu_batch_is_the_requested_one_or_sixteen() {
        let c = config(64, 128, 2);
        let cpu = Device::Cpu;
        assert_eq!(
            resolve_batch_size(0, &c, DType::F32, &cpu, 40, true).unwrap(),
            16
        );
        assert_eq!(
            resolve_batch_size(7, &c, DType::F32, &cpu, 40, true).unwrap(),
            7
        );
        assert!(device_memory(&cpu).is_none());
        assert!(check_weights_fit(&c, DType::F32, &cpu).is_ok());
    }

    #[test]
    fn batch_sizes_parse_as_typed() {
        assert_eq!(parse_batch_size(" auto "), Ok(0));
        assert_eq!(parse_batch_size("0"), Ok(0));
        assert_eq!(parse_batch_size("24"), Ok(24));
        assert!(parse_batch_size("-3").unwrap_err().contains("-3"));
    }

    #[test]
    fn sizes_read_in_words() {
        assert_eq!(gib(3 << 30), "3.0 GiB");
        assert_eq!(gib(512 << 20), "512 MiB");
    }
}
