//! One CUDA kernel for an MLP layer's NAS and NAV pools on the GPU (padded batches).
//!
//! The generic tensor ops pool by writing the activation's sign and magnitude out in f32 and
//! running two batched products with the pooling weights: about 26 bytes of memory traffic per
//! neuron and token, 32 times per batch for an 8B model. The kernel reads the gate (and for
//! [`NavSource::ActivationTimesUp`] the up projection) once, 2–4 bytes, and writes only the
//! pooled `[b, 2, d_ff]`. It is compiled at run time with NVRTC, so the program needs no CUDA
//! toolkit where it runs; at load the decoder checks it against the generic ops on the device
//! and falls back to them, with a warning, if they disagree ([`verify`]).

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

use super::activation::LayerActivation;
use super::capture::NavSource;
use super::config::Activation;
use super::decoder::generic_pools;

/// The kernels' CUDA C source: the capture pool, and the fused steps of
/// [`super::cuda_fused`] (one NVRTC module, sharing the dtype helpers and activations). Plain C
/// but for the f16 conversions, so that tests compile it as C++ on the host (where there is no
/// GPU) and check each kernel against its definition in Rust.
///
/// `gate_up` is `[b, t, 2·f]` (gate in columns `0..f`, up in `f..2f`), `weights` `[b, t]` f32
/// (0 for padding and skipped tokens), `out` `[b, 2, f]` f32: NAS, then NAV. One thread per
/// neuron and sentence. The activation is computed in f32 and rounded to the batch's dtype, as
/// the generic ops store it.
pub const SOURCE: &str = r#"
__device__ __forceinline__ float load_f32(float x) { return x; }
__device__ __forceinline__ float round_f32(float x) { return x; }

__device__ __forceinline__ float load_bf16(unsigned short x) {
    return __uint_as_float(((unsigned int)x) << 16);
}
__device__ __forceinline__ float round_bf16(float x) {
    unsigned int u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x; /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return __uint_as_float(u & 0xffff0000u);
}

#ifdef NEURONXA_HOST_EMULATION
__device__ __forceinline__ float load_f16(unsigned short x) {
    _Float16 h; memcpy(&h, &x, 2); return (float)h;
}
__device__ __forceinline__ unsigned short store_f16(float x) {
    _Float16 h = (_Float16)x; unsigned short u; memcpy(&u, &h, 2); return u;
}
#else
__device__ __forceinline__ float load_f16(unsigned short x) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x)); return f;
}
__device__ __forceinline__ unsigned short store_f16(float x) {
    unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x)); return h;
}
#endif
__device__ __forceinline__ float round_f16(float x) { return load_f16(store_f16(x)); }
__device__ __forceinline__ float store_f32(float x) { return x; }
__device__ __forceinline__ unsigned short store_bf16(float x) {
    return (unsigned short)(__float_as_uint(round_bf16(x)) >> 16);
}

/* 0: SiLU, 1: GELU (tanh approximation), 2: GELU (erf). */
__device__ __forceinline__ float activate(float x, int activation) {
    if (activation == 0) return x / (1.0f + expf(-x));
    if (activation == 1) {
        return 0.5f * x * (1.0f + tanhf(0.7978846f * x * (1.0f + 0.044715f * x * x)));
    }
    return 0.5f * x * (1.0f + erff(x * 0.70710678f));
}

#define CAPTURE_POOL(NAME, T, LOAD, ROUND)                                                   \
extern "C" __global__ void NAME(const T *gate_up, const float *weights, float *out, int t,  \
                                int f, int activation, int nav_from_product) {               \
    int j = blockIdx.x * blockDim.x + threadIdx.x;                                           \
    unsigned long long s = blockIdx.y;                                                       \
    if (j >= f) return;                                                                      \
    float nas = 0.0f, nav = 0.0f;                                                            \
    for (int r = 0; r < t; ++r) {                                                            \
        float w = weights[s * t + r];                                                        \
        if (w == 0.0f) continue;                                                             \
        const T *row = gate_up + (s * t + r) * 2ull * f;                                     \
        float g = LOAD(row[j]);                                                              \
        float a = ROUND(activate(g, activation));                                            \
        float m = nav_from_product ? ROUND(a * LOAD(row[f + j])) : a;                        \
        nas += g > 0.0f ? w : 0.0f;                                                          \
        nav += w * fabsf(m);                                                                 \
    }                                                                                        \
    out[s * 2ull * f + j] = nas;                                                             \
    out[(s * 2ull + 1ull) * f + j] = nav;                                                    \
}

CAPTURE_POOL(capture_pool_f32, float, load_f32, round_f32)
CAPTURE_POOL(capture_pool_bf16, unsigned short, load_bf16, round_bf16)
CAPTURE_POOL(capture_pool_f16, unsigned short, load_f16, round_f16)

/* The MLP's act(gate)·up from `gate_up` [n, 2·f] into `out` [n, f], in one pass over
   contiguous rows (candle's ops take three, two of them on strided views). The activation is
   rounded to the dtype before the product, as the generic ops store it. Blocks of neurons along
   x; the rows along y, striding past 65535. */
#define GATED_PRODUCT(NAME, T, LOAD, ROUND, STORE)                                           \
extern "C" __global__ void NAME(const T *gate_up, T *out, unsigned long long n, int f,      \
                                int activation) {                                            \
    int j = blockIdx.x * blockDim.x + threadIdx.x;                                           \
    if (j >= f) return;                                                                      \
    for (unsigned long long i = blockIdx.y; i < n; i += gridDim.y) {                         \
        const T *row = gate_up + i * 2ull * f;                                               \
        float a = ROUND(activate(LOAD(row[j]), activation));                                 \
        out[i * (unsigned long long)f + j] = STORE(a * LOAD(row[f + j]));                    \
    }                                                                                        \
}

GATED_PRODUCT(gated_product_f32, float, load_f32, round_f32, store_f32)
GATED_PRODUCT(gated_product_bf16, unsigned short, load_bf16, round_bf16, store_bf16)
GATED_PRODUCT(gated_product_f16, unsigned short, load_f16, round_f16, store_f16)

/* A score as the softmax takes it: scaled, and soft-capped where `softcap` > 0. */
__device__ __forceinline__ float logit(float x, float scale, float softcap) {
    x *= scale;
    return softcap > 0.0f ? tanhf(x / softcap) * softcap : x;
}

/* Attention's softmax over keys, in f32, for `scores` [rows, t] (rows = b·heads·t, the query
   at row % t of head (row / t) % heads) plus the additive `mask` [mask_heads, t, t]
   (mask_heads 1, or one per head for ALiBi); `probs` in the scores' dtype. One thread per row:
   a row is short and stays in the cache across the three passes. */
#define MASKED_SOFTMAX(NAME, T, LOAD, STORE)                                                 \
extern "C" __global__ void NAME(const T *scores, const float *mask, T *probs,               \
                                unsigned long long rows, int t, int heads, int mask_heads,   \
                                float scale, float softcap) {                                \
    unsigned long long row = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;      \
    if (row >= rows) return;                                                                 \
    unsigned long long query = row % t, head = (row / t) % heads;                            \
    const T *x = scores + row * t;                                                           \
    const float *m = mask + ((mask_heads > 1 ? head : 0ull) * t + query) * t;                \
    T *p = probs + row * t;                                                                  \
    float top = -3.0e38f;                                                                    \
    for (int c = 0; c < t; ++c) top = fmaxf(top, logit(LOAD(x[c]), scale, softcap) + m[c]); \
    float sum = 0.0f;                                                                        \
    for (int c = 0; c < t; ++c) sum += expf(logit(LOAD(x[c]), scale, softcap) + m[c] - top);\
    for (int c = 0; c < t; ++c) {                                                            \
        p[c] = STORE(expf(logit(LOAD(x[c]), scale, softcap) + m[c] - top) / sum);            \
    }                                                                                        \
}

MASKED_SOFTMAX(masked_softmax_f32, float, load_f32, store_f32)
MASKED_SOFTMAX(masked_softmax_bf16, unsigned short, load_bf16, store_bf16)
MASKED_SOFTMAX(masked_softmax_f16, unsigned short, load_f16, store_f16)

/* Heads `first .. first + n` of the stacked projection `qkv` [b, t, stacked, d] laid out as
   `out` [b, n, t, d], turned by the rotary tables `cos`, `sin` [t, d/2] where `rotate` (pairs
   (i, i + d/2), or neighbours (2i, 2i + 1) where `interleaved`), in f32 and stored once; else
   copied. One thread per pair of one head; tokens along y, striding past 65535. */
#define HEAD_LAYOUT(NAME, T, LOAD, STORE)                                                    \
extern "C" __global__ void NAME(const T *qkv, const T *cos, const T *sin, T *out,           \
                                unsigned long long tokens, int t, int stacked, int first,    \
                                int n, int d, int rotate, int interleaved) {                 \
    int half = d / 2, k = blockIdx.x * blockDim.x + threadIdx.x;                             \
    if (k >= n * half) return;                                                               \
    int head = k / half, i = k % half;                                                       \
    int i1 = interleaved ? 2 * i : i, i2 = interleaved ? 2 * i + 1 : i + half;               \
    for (unsigned long long token = blockIdx.y; token < tokens; token += gridDim.y) {        \
        unsigned long long sentence = token / t, position = token % t;                       \
        const T *src = qkv + (token * stacked + first + head) * (unsigned long long)d;       \
        T *dst = out + ((sentence * n + head) * t + position) * (unsigned long long)d;       \
        if (rotate) {                                                                        \
            float x1 = LOAD(src[i1]), x2 = LOAD(src[i2]);                                    \
            float c = LOAD(cos[position * half + i]), s = LOAD(sin[position * half + i]);    \
            dst[i1] = STORE(x1 * c - x2 * s);                                                \
            dst[i2] = STORE(x1 * s + x2 * c);                                                \
        } else {                                                                             \
            dst[i1] = src[i1];                                                               \
            dst[i2] = src[i2];                                                               \
        }                                                                                    \
    }                                                                                        \
}

HEAD_LAYOUT(head_layout_f32, float, load_f32, store_f32)
HEAD_LAYOUT(head_layout_bf16, unsigned short, load_bf16, store_bf16)
HEAD_LAYOUT(head_layout_f16, unsigned short, load_f16, store_f16)
"#;

/// Threads per block: a block covers 256 neurons of one sentence.
pub const BLOCK: u32 = 256;

/// The pooled NAS and NAV `[b, 2, d_ff]` (f32) of `gate_up` `[b, t, 2·d_ff]` under the
/// pooling weights `[b, 1, t]` (f32); both contiguous, on a CUDA device.
pub struct CapturePool {
    pub activation: KernelActivation,
    pub nav_source: NavSource,
}

/// The activations the kernel computes: those positive exactly where the gate is, so that
/// NAS reads the gate's sign (not xIELU, which pools with the generic ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelActivation {
    Silu,
    GeluTanh,
    Gelu,
}

impl KernelActivation {
    pub fn of(activation: &LayerActivation) -> Option<Self> {
        match activation {
            LayerActivation::Silu => Some(Self::Silu),
            LayerActivation::GeluTanh => Some(Self::GeluTanh),
            LayerActivation::Gelu => Some(Self::Gelu),
            // Only non-gated MLPs (Jais 2, Nemotron) have these, and they pool generically.
            LayerActivation::Relu2
            | LayerActivation::XIelu(_)
            | LayerActivation::ClampedSwiglu { .. } => None,
        }
    }

    /// The source's activation code.
    pub fn code(self) -> i32 {
        match self {
            Self::Silu => 0,
            Self::GeluTanh => 1,
            Self::Gelu => 2,
        }
    }

    /// The source's `activate`.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Self::Silu => x / (1.0 + (-x).exp()),
            Self::GeluTanh => 0.5 * x * (1.0 + (0.797_884_6 * x * (1.0 + 0.044715 * x * x)).tanh()),
            Self::Gelu => {
                0.5 * x
                    * (1.0 + candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
            }
        }
    }

    pub(super) fn layer(self) -> LayerActivation {
        match self {
            Self::Silu => LayerActivation::Silu,
            Self::GeluTanh => LayerActivation::GeluTanh,
            Self::Gelu => LayerActivation::Gelu,
        }
    }
}

/// A value type the kernels take: how the source reads it as f32 and stores an f32 as it.
pub(super) trait Element: Copy {
    fn load(self) -> f32;
    fn store(x: f32) -> Self;

    /// An f32 stored in this type and read back (the source's `round_*`).
    fn round(x: f32) -> f32 {
        Self::store(x).load()
    }
}

impl Element for f32 {
    fn load(self) -> f32 {
        self
    }
    fn store(x: f32) -> Self {
        x
    }
}

impl Element for half::bf16 {
    fn load(self) -> f32 {
        self.to_f32()
    }
    fn store(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
}

impl Element for half::f16 {
    fn load(self) -> f32 {
        self.to_f32()
    }
    fn store(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}

impl CapturePool {
    pub fn nav_from_product(&self) -> i32 {
        i32::from(self.nav_source == NavSource::ActivationTimesUp)
    }

    /// Every thread `(j, s)` of the kernel in turn.
    fn pool<T: Element>(
        &self,
        gate_up: &[T],
        weights: &[f32],
        (b, t, f): (usize, usize, usize),
    ) -> Vec<f32> {
        let mut out = vec![0f32; b * 2 * f];
        for s in 0..b {
            for j in 0..f {
                let (mut nas, mut nav) = (0f32, 0f32);
                for r in 0..t {
                    let w = weights[s * t + r];
                    if w == 0.0 {
                        continue;
                    }
                    let row = &gate_up[(s * t + r) * 2 * f..][..2 * f];
                    let g = row[j].load();
                    let a = T::round(self.activation.apply(g));
                    let m = match self.nav_source {
                        NavSource::Activation => a,
                        NavSource::ActivationTimesUp => T::round(a * row[f + j].load()),
                    };
                    nas += if g > 0.0 { w } else { 0.0 };
                    nav += w * m.abs();
                }
                out[s * 2 * f + j] = nas;
                out[(s * 2 + 1) * f + j] = nav;
            }
        }
        out
    }
}

/// The sizes of one launch and where its inputs lie, checked once for either device.
struct Operands {
    b: usize,
    t: usize,
    f: usize,
    gate_up: std::ops::Range<usize>,
    weights: std::ops::Range<usize>,
}

impl Operands {
    /// `gate_up` `[b, t, 2·f]` and pooling weights `[b, 1, t]`, both contiguous.
    fn check(gate_up: &Layout, weights: &Layout) -> candle_core::Result<Self> {
        let (b, t, f2) = gate_up.shape().dims3()?;
        if weights.shape().dims() != [b, 1, t] {
            candle_core::bail!(
                "capture kernel: weights {:?} for gate/up {:?}",
                weights.shape(),
                gate_up.shape()
            );
        }
        let (Some((g0, g1)), Some((w0, w1))) =
            (gate_up.contiguous_offsets(), weights.contiguous_offsets())
        else {
            candle_core::bail!("capture kernel: inputs must be contiguous");
        };
        Ok(Self {
            b,
            t,
            f: f2 / 2,
            gate_up: g0..g1,
            weights: w0..w1,
        })
    }
}

impl CustomOp2 for CapturePool {
    fn name(&self) -> &'static str {
        "neuronxa-capture-pool"
    }

    /// The kernel's definition in Rust, thread by thread as the CUDA source does it. The CPU
    /// has its own kernels for extraction; this one is what the tests hold the CUDA source and
    /// the decoder's use of it to.
    fn cpu_fwd(
        &self,
        gate_up: &CpuStorage,
        gate_up_layout: &Layout,
        weights: &CpuStorage,
        weights_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Operands {
            b,
            t,
            f,
            gate_up: g,
            weights: w,
        } = Operands::check(gate_up_layout, weights_layout)?;
        let CpuStorage::F32(weights) = weights else {
            candle_core::bail!("capture kernel: weights must be f32");
        };
        let weights = &weights[w];
        let out = match gate_up {
            CpuStorage::F32(v) => self.pool(&v[g], weights, (b, t, f)),
            CpuStorage::BF16(v) => self.pool(&v[g], weights, (b, t, f)),
            CpuStorage::F16(v) => self.pool(&v[g], weights, (b, t, f)),
            _ => candle_core::bail!("capture kernel: gate/up must be f32, bf16 or f16"),
        };
        Ok((CpuStorage::F32(out), Shape::from((b, 2, f))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        gate_up: &candle_core::CudaStorage,
        gate_up_layout: &Layout,
        weights: &candle_core::CudaStorage,
        weights_layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::forward(self, gate_up, gate_up_layout, weights, weights_layout)
    }
}

/// Runs the kernel and the generic ops on the same random batch (3 sentences of up to 7
/// tokens, padded; 300 neurons, so two blocks, the second partly idle) on `device`, for both
/// NAV sources, and says how they differ if they do. NAS must agree to 1e-5 (the same sign
/// tests, summed in another order); NAV to 1e-4 in f32, and in bf16/f16 to 3% (candle computes
/// GELU in the half type itself, the kernel in f32).
pub fn verify(device: &Device, dtype: DType, activation: Activation) -> Result<(), String> {
    let Some(activation) = LayerActivation::without_parameters(activation)
        .as_ref()
        .and_then(KernelActivation::of)
    else {
        return Err(format!("the kernel has no {activation:?}"));
    };
    let (b, t, f) = (3, 7, 300);
    let compare = || -> super::error::Result<Option<String>> {
        let gate_up = Tensor::randn(0f32, 2.0, (b, t, 2 * f), device)?.to_dtype(dtype)?;
        let mut weights = vec![0f32; b * t];
        for s in 0..b {
            let n = t - 2 * s;
            for r in 0..n {
                weights[s * t + r] = (r + 1) as f32 / (n * (n + 1) / 2) as f32;
            }
        }
        let weights = Tensor::from_vec(weights, (b, 1, t), device)?;
        let gate = gate_up.narrow(2, 0, f)?;
        let act = activation.layer().apply(&gate)?;
        let product = (&act * &gate_up.narrow(2, f, f)?)?;
        let nav_tolerance = if dtype == DType::F32 { 1e-4 } else { 3e-2 };
        for nav_source in [NavSource::Activation, NavSource::ActivationTimesUp] {
            let op = CapturePool {
                activation,
                nav_source,
            };
            let kernel = gate_up.apply_op2_no_bwd(&weights, &op)?;
            let generic = generic_pools(&gate, &act, &product, &weights, nav_source)?;
            let kernel = kernel.flatten_all()?.to_vec1::<f32>()?;
            let generic = generic.flatten_all()?.to_vec1::<f32>()?;
            for (i, (k, g)) in kernel.iter().zip(&generic).enumerate() {
                let nav = (i / f) % 2 == 1;
                let tolerance = if nav { nav_tolerance } else { 1e-5 };
                // Written so that a NaN on either side counts as a difference.
                let close = (k - g).abs() <= tolerance * (1.0 + g.abs());
                if !close {
                    return Ok(Some(format!(
                        "{} of sentence {}, neuron {} ({nav_source:?}, {dtype:?}): kernel {k}, \
                         generic ops {g}",
                        if nav { "NAV" } else { "NAS" },
                        i / (2 * f),
                        i % f
                    )));
                }
            }
        }
        Ok(None)
    };
    verdict(compare(), "the generic ops")
}

/// A load-time check's outcome in words: `Ok` where the kernel agreed with `reference`, else
/// what differed (or why the comparison could not run). The delta-rule kernel's check too.
pub(crate) fn verdict<E: std::fmt::Display>(
    compared: std::result::Result<Option<String>, E>,
    reference: &str,
) -> Result<(), String> {
    match compared {
        Ok(None) => Ok(()),
        Ok(Some(difference)) => Err(format!("it disagrees with {reference}: {difference}")),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(feature = "cuda")]
pub(super) mod cuda {
    use std::sync::OnceLock;

    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CudaDevice, CudaStorage, Layout, Shape};

    use super::{BLOCK, CapturePool, Operands, SOURCE};

    /// The PTX of [`SOURCE`], compiled once per process (NVRTC picks the architecture; the
    /// driver finishes it for the GPU at hand).
    pub(in crate::engine) fn ptx() -> candle_core::Result<&'static str> {
        static PTX: OnceLock<Result<String, String>> = OnceLock::new();
        PTX.get_or_init(|| {
            candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(SOURCE)
                .map(|ptx| ptx.to_src())
                .map_err(|e| format!("compiling the capture kernel with NVRTC: {e:?}"))
        })
        .as_deref()
        .map_err(|e| candle_core::Error::Cuda(e.clone().into()))
    }

    pub(super) fn forward(
        op: &CapturePool,
        gate_up: &CudaStorage,
        gate_up_layout: &Layout,
        weights: &CudaStorage,
        weights_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let Operands {
            b,
            t,
            f,
            gate_up: g,
            weights: w,
        } = Operands::check(gate_up_layout, weights_layout)?;
        let ints = |n: usize| {
            i32::try_from(n)
                .map_err(|_| candle_core::Error::Msg(format!("capture kernel: {n} too large")))
        };
        let (t, f_i32) = (ints(t)?, ints(f)?);
        let grid_y = u32::try_from(b)
            .ok()
            .filter(|&y| y <= 65_535)
            .ok_or_else(|| candle_core::Error::Msg(format!("capture kernel: batch of {b}")))?;
        let cfg = LaunchConfig {
            grid_dim: ((f as u32).div_ceil(BLOCK), grid_y, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let device = &gate_up.device;
        let weights = weights.as_cuda_slice::<f32>()?.slice(w);
        let launch = Launch {
            op,
            device,
            weights: &weights,
            t,
            f: f_i32,
            b,
            cfg,
        };
        let out = match &gate_up.slice {
            CudaStorageSlice::F32(s) => launch.run("capture_pool_f32", &s.slice(g)),
            CudaStorageSlice::BF16(s) => launch.run("capture_pool_bf16", &s.slice(g)),
            CudaStorageSlice::F16(s) => launch.run("capture_pool_f16", &s.slice(g)),
            _ => candle_core::bail!("capture kernel: gate/up must be f32, bf16 or f16"),
        }?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, device.clone()),
            Shape::from((b, 2, f)),
        ))
    }

    /// One launch of a capture kernel, all but the dtype of `gate_up` settled.
    struct Launch<'a> {
        op: &'a CapturePool,
        device: &'a CudaDevice,
        weights: &'a CudaView<'a, f32>,
        t: i32,
        f: i32,
        b: usize,
        cfg: LaunchConfig,
    }

    impl Launch<'_> {
        fn run<T: DeviceRepr>(
            &self,
            name: &str,
            gate_up: &CudaView<'_, T>,
        ) -> candle_core::Result<CudaSlice<f32>> {
            let func = self
                .device
                .get_or_load_custom_func(name, "neuronxa_capture", ptx()?)?;
            // SAFETY: every element is written by the kernel below (one per thread, j < f).
            let out = unsafe { self.device.alloc::<f32>(self.b * 2 * self.f as usize)? };
            let activation = self.op.activation.code();
            let nav_from_product = self.op.nav_from_product();
            let mut builder = func.builder();
            builder.arg(gate_up);
            builder.arg(self.weights);
            builder.arg(&out);
            builder.arg(&self.t);
            builder.arg(&self.f);
            builder.arg(&activation);
            builder.arg(&nav_from_product);
            // SAFETY: the arguments match the kernel's signature in `SOURCE`.
            unsafe { builder.launch(self.cfg) }.w()?;
            Ok(out)
        }
    }
}

#[cfg(all(test, feature = "cuda"))]
mod cuda_tests {
    /// NVRTC needs no GPU: the source compiles to PTX with all three kernels.
    #[test]
    fn nvrtc_compiles_the_source() {
        let ptx = candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(super::SOURCE)
            .unwrap()
            .to_src();
        for name in ["capture_pool_f32", "capture_pool_bf16", "capture_pool_f16"] {
            assert!(ptx.contains(&format!(".entry {name}(")), "{name} missing");
        }
        std::fs::write(std::env::temp_dir().join("neuronxa_capture.ptx"), ptx).unwrap();
    }
}

/// Writes a kernel's `source` (as the file the harness includes) and `harness` into `dir`,
/// compiles them as C++ for the host (`$CXX`, else `c++`) and gives the program's path.
#[cfg(test)]
pub(super) fn build_host_harness(
    dir: &std::path::Path,
    (source_name, source): (&str, &str),
    harness: &str,
) -> std::path::PathBuf {
    std::fs::write(dir.join(source_name), source).unwrap();
    let harness_path = dir.join("harness.cpp");
    std::fs::write(&harness_path, harness).unwrap();
    let binary = dir.join("harness");
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let built = std::process::Command::new(&compiler)
        .args(["-O1", "-o"])
        .arg(&binary)
        .arg(&harness_path)
        .arg("-lm")
        .output()
        .unwrap_or_else(|e| panic!("this test needs a C++ compiler ({compiler}): {e}"));
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    binary
}

/// The kernels compiled as C++ on the host (no GPU here or in CI): every block and thread of a
/// launch run in turn, against a reference written from the definition.
#[cfg(test)]
mod host_emulation_tests {
    use super::*;

    const HARNESS: &str = r#"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define NEURONXA_HOST_EMULATION 1
#define __device__
#define __global__
#define __forceinline__ inline
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, threadIdx, blockDim, gridDim;
static inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int u; memcpy(&u, &f, 4); return u; }
#include "capture.cu"
int main(int argc, char **argv) {
    int dtype = atoi(argv[1]), b = atoi(argv[2]), t = atoi(argv[3]), f = atoi(argv[4]);
    int activation = atoi(argv[5]), from_product = atoi(argv[6]);
    size_t size = dtype == 0 ? 4 : 2, n = (size_t)b * t * 2 * f;
    void *gate_up = malloc(n * size);
    float *weights = (float *)malloc((size_t)b * t * 4), *out = (float *)malloc((size_t)b * 2 * f * 4);
    FILE *in = fopen(argv[7], "rb");
    if (fread(gate_up, size, n, in) != n || fread(weights, 4, (size_t)b * t, in) != (size_t)b * t) return 2;
    fclose(in);
    for (size_t i = 0; i < (size_t)b * 2 * f; ++i) out[i] = -1.0f; /* every entry must be written */
    blockDim.x = BLOCK;
    for (blockIdx.y = 0; blockIdx.y < (unsigned)b; ++blockIdx.y)
        for (blockIdx.x = 0; blockIdx.x < (unsigned)(f + BLOCK - 1) / BLOCK; ++blockIdx.x)
            for (threadIdx.x = 0; threadIdx.x < BLOCK; ++threadIdx.x) {
                if (dtype == 0) capture_pool_f32((const float *)gate_up, weights, out, t, f, activation, from_product);
                if (dtype == 1) capture_pool_bf16((const unsigned short *)gate_up, weights, out, t, f, activation, from_product);
                if (dtype == 2) capture_pool_f16((const unsigned short *)gate_up, weights, out, t, f, activation, from_product);
            }
    FILE *o = fopen(argv[8], "wb");
    fwrite(out, 4, (size_t)b * 2 * f, o);
    fclose(o);
    return 0;
}
"#;

    #[test]
    fn kernels_compiled_for_the_host_pool_as_defined() {
        let dir = tempfile::tempdir().unwrap();
        let binary = build_host_harness(
            dir.path(),
            ("capture.cu", SOURCE),
            &HARNESS.replace("BLOCK", &BLOCK.to_string()),
        );

        // 3 sentences of 9, 6 and 2 tokens, padded to 9; 300 neurons: two blocks, the second
        // partly idle. Values from a fixed generator, some gates exactly 0.
        let (b, t, f) = (3usize, 9usize, 300usize);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
        };
        let raw: Vec<f32> = (0..b * t * 2 * f)
            .map(|i| if i % 97 == 0 { 0.0 } else { next() })
            .collect();
        let lengths = [9, 6, 2];
        let mut weights = vec![0f32; b * t];
        for (s, &n) in lengths.iter().enumerate() {
            for r in 0..n {
                // The first token is skipped, as a special token would be.
                if r > 0 {
                    weights[s * t + r] = r as f32 / (n * (n - 1) / 2) as f32;
                }
            }
        }
        for code in 0u8..3 {
            let mut bytes = Vec::new();
            for &x in &raw {
                match code {
                    0 => bytes.extend(x.to_le_bytes()),
                    1 => bytes.extend(half::bf16::from_f32(x).to_bits().to_le_bytes()),
                    _ => bytes.extend(half::f16::from_f32(x).to_bits().to_le_bytes()),
                }
            }
            for w in &weights {
                bytes.extend(w.to_le_bytes());
            }
            let input = dir.path().join("input.bin");
            std::fs::write(&input, &bytes).unwrap();
            for activation in [
                KernelActivation::Silu,
                KernelActivation::GeluTanh,
                KernelActivation::Gelu,
            ] {
                for nav_source in [NavSource::Activation, NavSource::ActivationTimesUp] {
                    let op = CapturePool {
                        activation,
                        nav_source,
                    };
                    let output = dir.path().join("output.bin");
                    let ran = std::process::Command::new(&binary)
                        .args(
                            [code as usize, b, t, f]
                                .map(|v| v.to_string())
                                .into_iter()
                                .chain([
                                    op.activation.code().to_string(),
                                    op.nav_from_product().to_string(),
                                ]),
                        )
                        .arg(&input)
                        .arg(&output)
                        .status()
                        .unwrap();
                    assert!(ran.success());
                    let out: Vec<f32> = std::fs::read(&output)
                        .unwrap()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    // The definition, in Rust, on the same values in the same dtype.
                    let dtype = [DType::F32, DType::BF16, DType::F16][code as usize];
                    let gate_up = Tensor::from_slice(&raw, (b, t, 2 * f), &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let w = Tensor::from_slice(&weights, (b, 1, t), &Device::Cpu).unwrap();
                    let expected: Vec<f32> = gate_up
                        .apply_op2_no_bwd(&w, &op)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    assert_eq!(out.len(), expected.len());
                    for (i, (k, e)) in out.iter().zip(&expected).enumerate() {
                        let nas = (i / f) % 2 == 0;
                        let what = format!(
                            "{dtype:?} activation {} {nav_source:?}, sentence {}, {} of \
                             neuron {}",
                            op.activation.code(),
                            i / (2 * f),
                            if nas { "NAS" } else { "NAV" },
                            i % f
                        );
                        // NAS sums the same weights in the same order. For NAV, C's and Rust's
                        // exp/tanh may differ in the last bit, which rounding to a half type
                        // can turn into one step of that type.
                        let tolerance = match (nas, code) {
                            (true, _) => 1e-6,
                            (false, 0) => 1e-5,
                            (false, _) => 1e-2,
                        };
                        let close = (k - e).abs() <= tolerance * (1.0 + e.abs());
                        assert!(close, "{what}: kernel {k}, definition {e}");
                    }
                }
            }
        }
    }
}
