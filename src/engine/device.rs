//! Which device and dtype the model runs on. `auto` takes CUDA, then Metal, then the CPU, and
//! always says which it chose and why.

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

impl DeviceChoice {
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            "metal" => Ok(Self::Metal),
            _ => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    EngineError::Device(format!(
                        "unknown device \"{text}\" (use auto, cpu, cuda, cuda:N or metal)"
                    ))
                }),
        }
    }

    pub fn label(self) -> String {
        match self {
            Self::Auto => "auto".into(),
            Self::Cpu => "cpu".into(),
            Self::Cuda(n) => format!("cuda:{n}"),
            Self::Metal => "metal".into(),
        }
    }

    /// The device to run on, and a sentence saying what was chosen.
    pub fn resolve(self) -> Result<(Device, String)> {
        match self {
            Self::Cpu => Ok((Device::Cpu, cpu_label())),
            Self::Cuda(n) => cuda(n),
            Self::Metal => metal(),
            Self::Auto => {
                let mut gpu_problem = None;
                if candle_core::utils::cuda_is_available() {
                    match cuda(0) {
                        Ok(found) => return Ok(found),
                        Err(EngineError::UnsupportedGpu(why)) => gpu_problem = Some(why),
                        Err(_) => {}
                    }
                }
                if candle_core::utils::metal_is_available()
                    && let Ok(found) = metal()
                {
                    return Ok(found);
                }
                let why = match gpu_problem {
                    Some(problem) => format!("no usable GPU found: {problem}"),
                    None if cfg!(any(feature = "cuda", feature = "metal")) => {
                        "no usable GPU found".into()
                    }
                    None => "this build has no GPU support".into(),
                };
                Ok((Device::Cpu, format!("{} ({why})", cpu_label())))
            }
        }
    }
}

fn cpu_label() -> String {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("CPU, {threads} threads")
}

fn cuda(ordinal: usize) -> Result<(Device, String)> {
    if !candle_core::utils::cuda_is_available() {
        return Err(EngineError::Device(
            "CUDA was asked for, but this build has no CUDA support (rebuild with --features cuda)"
                .into(),
        ));
    }
    let device = Device::new_cuda(ordinal).map_err(|e| {
        let message = super::error::candle_message(&e);
        let advice = super::error::cuda_advice(&message)
            .unwrap_or("is the NVIDIA driver installed and the GPU visible?");
        EngineError::Device(format!(
            "cannot open CUDA device {ordinal}: {} ({advice})",
            super::error::tidy_driver_error(&message)
        ))
    })?;
    check_compute_capability(&device)?;
    keep_freed_memory(&device);
    Ok((device, format!("CUDA GPU {ordinal}")))
}

/// The compute capability this binary's CUDA kernels were built for: `CUDA_COMPUTE_CAP` at
/// build time, which candle's kernels are compiled for too (`scripts/build-cuda.sh` sets it).
#[cfg(feature = "cuda")]
const BUILT_FOR_COMPUTE_CAP: Option<&str> = option_env!("CUDA_COMPUTE_CAP");

/// Refuses a GPU older than the kernels were built for (they cannot run there), in words,
/// before a model is loaded onto it; a newer one is let through with a warning.
#[cfg(feature = "cuda")]
fn check_compute_capability(device: &Device) -> Result<()> {
    let Device::Cuda(cuda) = device else {
        return Ok(());
    };
    let built = BUILT_FOR_COMPUTE_CAP.and_then(parse_compute_cap);
    let (Some(built), Some(found)) = (built, compute_capability(cuda)) else {
        return Ok(());
    };
    if let Some(problem) = compute_capability_problem(found, built) {
        return Err(EngineError::UnsupportedGpu(problem));
    }
    if found != built {
        tracing::warn!(
            "this GPU has compute capability {}, the CUDA kernels were built for {}: if a \
             kernel fails to load, rebuild with CUDA_COMPUTE_CAP={found}",
            dotted(found),
            dotted(built)
        );
    }
    Ok(())
}

/// The GPU's compute capability as `major·10 + minor` (`90` for an H100).
#[cfg(feature = "cuda")]
fn compute_capability(cuda: &candle_core::CudaDevice) -> Option<u32> {
    let (major, minor) = cuda.cuda_stream().context().compute_capability().ok()?;
    u32::try_from(major * 10 + minor).ok()
}

#[cfg(not(feature = "cuda"))]
fn check_compute_capability(_device: &Device) -> Result<()> {
    Ok(())
}

/// `90` from `"90"` or `"90a"` (an architecture-specific build).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn parse_compute_cap(text: &str) -> Option<u32> {
    text.trim()
        .trim_end_matches(char::is_alphabetic)
        .parse()
        .ok()
}

/// What is wrong with running kernels built for compute capability `built` on a GPU of
/// capability `found` (both as `major·10 + minor`), if it cannot work.
pub fn compute_capability_problem(found: u32, built: u32) -> Option<String> {
    (found < built).then(|| {
        format!(
            "this GPU has compute capability {}, but this program's CUDA kernels were built for \
             {} and need at least that; rebuild for this GPU with \
             `CUDA_COMPUTE_CAP={found} scripts/build-cuda.sh` (or `cargo build --release \
             --features cuda` on this machine)",
            dotted(found),
            dotted(built)
        )
    })
}

/// `9.0` for `90`.
fn dotted(capability: u32) -> String {
    format!("{}.{}", capability / 10, capability % 10)
}

/// Lets CUDA's stream-ordered allocator keep memory freed between batches instead of handing it
/// back to the driver at every synchronisation (its default), which made each batch map its
/// working memory afresh. Set `NEURONXA_CUDA_RELEASE_MEMORY=1` to keep the driver's default.
#[cfg(feature = "cuda")]
fn keep_freed_memory(device: &Device) {
    use candle_core::cuda_backend::cudarc::driver::sys;
    if std::env::var_os("NEURONXA_CUDA_RELEASE_MEMORY").is_some_and(|v| v == "1") {
        return;
    }
    let Device::Cuda(cuda) = device else {
        return;
    };
    let stream = cuda.cuda_stream();
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold = u64::MAX;
    // SAFETY: plain driver calls on the device of a live context; `pool` and `threshold` outlive
    // them. A failure only leaves the default in place, so the result is logged, not fatal.
    let status = unsafe {
        match sys::cuDeviceGetDefaultMemPool(&mut pool, stream.context().cu_device()) {
            sys::CUresult::CUDA_SUCCESS => sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            ),
            failed => failed,
        }
    };
    if status != sys::CUresult::CUDA_SUCCESS {
        tracing::warn!("could not keep freed GPU memory in the pool: {status:?}");
    }
}

#[cfg(not(feature = "cuda"))]
fn keep_freed_memory(_device: &Device) {}

fn metal() -> Result<(Device, String)> {
    if !candle_core::utils::metal_is_available() {
        return Err(EngineError::Device(
            "Metal was asked for, but this build has no Metal support (rebuild with --features metal)"
                .into(),
        ));
    }
    let device = Device::new_metal(0)
        .map_err(|e| EngineError::Device(format!("cannot open the Metal device: {e}")))?;
    Ok((device, "Metal GPU".into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DTypeChoice {
    /// f32 on the CPU, bf16 on a GPU.
    #[default]
    Auto,
    F32,
    F16,
    Bf16,
}

impl DTypeChoice {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(EngineError::Device(format!(
                "unknown dtype \"{text}\" (use auto, f32, f16 or bf16)"
            ))),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    pub fn resolve(self, device: &Device) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
            Self::Auto if device.is_cpu() => DType::F32,
            Self::Auto if gpu_has_bf16(device) => DType::BF16,
            Self::Auto => DType::F16,
        }
    }
}

/// Whether the GPU computes in bf16: CUDA from compute capability 8.0 (Ampere), Metal from
/// macOS 14 (Metal 3.1's `bfloat`). Where that cannot be told, it is assumed.
fn gpu_has_bf16(device: &Device) -> bool {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => compute_capability(cuda).is_none_or(cuda_has_bf16),
        Device::Metal(_) => sysinfo::System::os_version()
            .ok()
            .as_deref()
            .and_then(major_version)
            .is_none_or(metal_has_bf16),
        _ => true,
    }
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn cuda_has_bf16(compute_capability: u32) -> bool {
    compute_capability >= 80
}

fn metal_has_bf16(macos_major: u32) -> bool {
    macos_major >= 14
}

/// `14` from `"14.5"`.
fn major_version(version: &str) -> Option<u32> {
    version.trim().split('.').next()?.parse().ok()
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_older_than_the_kernels_is_refused_in_words() {
        let problem = compute_capability_problem(80, 90).unwrap();
        assert!(problem.contains("compute capability 8.0"), "{problem}");
        assert!(problem.contains("built for 9.0"), "{problem}");
        assert!(problem.contains("CUDA_COMPUTE_CAP=80"), "{problem}");
        assert_eq!(compute_capability_problem(90, 90), None);
        assert_eq!(compute_capability_problem(100, 90), None);
        assert_eq!(parse_compute_cap("90a"), Some(90));
        assert_eq!(parse_compute_cap(" 86 "), Some(86));
        assert_eq!(parse_compute_cap("sm"), None);
    }

    #[test]
    fn a_gpu_without_bf16_computes_in_f16() {
        assert!(cuda_has_bf16(80) && cuda_has_bf16(90));
        assert!(!cuda_has_bf16(75), "Turing has no bf16");
        assert!(metal_has_bf16(14) && !metal_has_bf16(13));
        assert_eq!(major_version("14.5"), Some(14));
        assert_eq!(major_version("13"), Some(13));
        assert_eq!(major_version("Sonoma"), None);
        assert_eq!(DTypeChoice::Auto.resolve(&Device::Cpu), DType::F32);
    }

    #[test]
    fn parses_device_names() {
        assert_eq!(
            DeviceChoice::parse("CUDA:1").unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!(DeviceChoice::parse("cpu").unwrap(), DeviceChoice::Cpu);
        assert!(DeviceChoice::parse("tpu").is_err());
    }

    #[test]
    fn auto_falls_back_to_cpu_without_gpu_support() {
        let (device, label) = DeviceChoice::Auto.resolve().unwrap();
        if !candle_core::utils::cuda_is_available() && !candle_core::utils::metal_is_available() {
            assert!(device.is_cpu());
            assert!(label.starts_with("CPU"), "{label}");
        }
        assert_eq!(DTypeChoice::Auto.resolve(&Device::Cpu), DType::F32);
    }
}
