//! Three steps of the GPU's forward pass done in one CUDA kernel each where candle takes
//! several passes over memory, some through its slow path for strided views: the MLP's
//! `act(gate)·up`, attention's heads taken out of the stacked projection and turned by the
//! rotary tables, and attention's scaled, masked softmax. Measured on an H200 (Llama-3.1-8B
//! shape, batch 256, `bench --stages`): the activation and product took 0.63 s of a 2.17 s
//! forward, more than the gate/up projection, where PyTorch spends 0.05 s; with the kernels the
//! forward takes 1.52 s (BENCHMARKS.md, session eighteen).
//!
//! The kernels live in the capture kernel's CUDA source (one NVRTC module, the same f16/bf16
//! helpers and activations). Each op's `cpu_fwd` is its definition in Rust, element by element
//! as the source computes it: tests run the decoder with it on the CPU, and compile the source
//! as C++ against it. At load the decoder checks the kernels against the generic ops on the
//! device ([`verify`]) and keeps to the generic ops, with a warning, if they disagree.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor};

use super::config::Activation;
use super::cuda_capture::{Element, KernelActivation, verdict};
use super::decoder::attention_probs;

/// Threads per block for the three kernels.
pub const BLOCK: u32 = 256;

/// `act(gate)·up` `[.., f]` from the stacked gate/up projection `[.., 2·f]` (contiguous).
pub struct GatedProduct {
    pub activation: KernelActivation,
}

/// Softmax over the last axis of attention scores `[b, heads, t, t]` (contiguous) of
/// `scale·x` (soft-capped where set) plus an additive f32 mask `[t, t]` or `[heads, t, t]`,
/// in f32, returned in the scores' dtype.
pub struct MaskedSoftmax {
    pub scale: f32,
    pub softcap: Option<f32>,
}

impl MaskedSoftmax {
    /// The source's `logit`.
    fn logit(&self, x: f32) -> f32 {
        let (x, cap) = (x * self.scale, self.softcap_arg());
        if cap > 0.0 { (x / cap).tanh() * cap } else { x }
    }

    /// The source's softcap argument (0: none).
    fn softcap_arg(&self) -> f32 {
        self.softcap.unwrap_or(0.0)
    }
}

/// Heads `first .. first + heads` of the stacked projection `[b, t, stacked, d]` (contiguous)
/// as `[b, heads, t, d]`, turned by the rotary tables `cos`, `sin` `[t, d/2]` (in the
/// projection's dtype) where `rotate`: pairs `(i, i + d/2)`, or neighbours `(2i, 2i + 1)` where
/// `interleaved`. Computed in f32 and stored once (candle's rotary rounds each step in a half
/// type).
pub struct HeadLayout {
    pub first: usize,
    pub heads: usize,
    pub rotate: bool,
    pub interleaved: bool,
}

/// The sizes of a head layout and where its inputs lie.
struct HeadOperands {
    b: usize,
    t: usize,
    stacked: usize,
    d: usize,
    qkv: std::ops::Range<usize>,
    cos: std::ops::Range<usize>,
    sin: std::ops::Range<usize>,
}

impl HeadOperands {
    fn check(
        op: &HeadLayout,
        qkv: &Layout,
        cos: &Layout,
        sin: &Layout,
    ) -> candle_core::Result<Self> {
        let (b, t, stacked, d) = qkv.shape().dims4()?;
        if op.first + op.heads > stacked || d % 2 != 0 {
            candle_core::bail!(
                "head layout: heads {}..{} of {:?}",
                op.first,
                op.first + op.heads,
                qkv.shape()
            );
        }
        for table in [cos, sin] {
            if table.shape().dims() != [t, d / 2] {
                candle_core::bail!(
                    "head layout: rotary table {:?} for {:?}",
                    table.shape(),
                    qkv.shape()
                );
            }
        }
        let (Some((q0, q1)), Some((c0, c1)), Some((s0, s1))) = (
            qkv.contiguous_offsets(),
            cos.contiguous_offsets(),
            sin.contiguous_offsets(),
        ) else {
            candle_core::bail!("head layout: inputs must be contiguous");
        };
        Ok(Self {
            b,
            t,
            stacked,
            d,
            qkv: q0..q1,
            cos: c0..c1,
            sin: s0..s1,
        })
    }

    fn out_shape(&self, op: &HeadLayout) -> Shape {
        Shape::from((self.b, op.heads, self.t, self.d))
    }
}

impl HeadLayout {
    fn run<T: Element>(&self, qkv: &[T], cos: &[T], sin: &[T], o: &HeadOperands) -> Vec<T> {
        let (t, d, half) = (o.t, o.d, o.d / 2);
        let mut out = vec![T::store(0.0); o.b * self.heads * t * d];
        for token in 0..o.b * t {
            let (sentence, position) = (token / t, token % t);
            for head in 0..self.heads {
                let src = &qkv[(token * o.stacked + self.first + head) * d..][..d];
                let dst = &mut out[((sentence * self.heads + head) * t + position) * d..][..d];
                for i in 0..half {
                    let (i1, i2) = if self.interleaved {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    if self.rotate {
                        let (x1, x2) = (src[i1].load(), src[i2].load());
                        let (c, s) = (
                            cos[position * half + i].load(),
                            sin[position * half + i].load(),
                        );
                        dst[i1] = T::store(x1 * c - x2 * s);
                        dst[i2] = T::store(x1 * s + x2 * c);
                    } else {
                        dst[i1] = src[i1];
                        dst[i2] = src[i2];
                    }
                }
            }
        }
        out
    }
}

impl candle_core::CustomOp3 for HeadLayout {
    fn name(&self) -> &'static str {
        "neuronxa-head-layout"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
        cos: &CpuStorage,
        cos_layout: &Layout,
        sin: &CpuStorage,
        sin_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let o = HeadOperands::check(self, qkv_layout, cos_layout, sin_layout)?;
        let out = match (qkv, cos, sin) {
            (CpuStorage::F32(q), CpuStorage::F32(c), CpuStorage::F32(s)) => CpuStorage::F32(
                self.run(&q[o.qkv.clone()], &c[o.cos.clone()], &s[o.sin.clone()], &o),
            ),
            (CpuStorage::BF16(q), CpuStorage::BF16(c), CpuStorage::BF16(s)) => CpuStorage::BF16(
                self.run(&q[o.qkv.clone()], &c[o.cos.clone()], &s[o.sin.clone()], &o),
            ),
            (CpuStorage::F16(q), CpuStorage::F16(c), CpuStorage::F16(s)) => CpuStorage::F16(
                self.run(&q[o.qkv.clone()], &c[o.cos.clone()], &s[o.sin.clone()], &o),
            ),
            _ => candle_core::bail!("head layout: f32, bf16 or f16, the tables in the same dtype"),
        };
        Ok((out, o.out_shape(self)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        qkv: &candle_core::CudaStorage,
        qkv_layout: &Layout,
        cos: &candle_core::CudaStorage,
        cos_layout: &Layout,
        sin: &candle_core::CudaStorage,
        sin_layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::head_layout(
            self,
            (qkv, qkv_layout),
            (cos, cos_layout),
            (sin, sin_layout),
        )
    }
}

impl GatedProduct {
    fn run<T: Element>(&self, gate_up: &[T], f: usize) -> Vec<T> {
        gate_up
            .chunks_exact(2 * f)
            .flat_map(|row| {
                let (gate, up) = row.split_at(f);
                gate.iter().zip(up).map(move |(&g, &u)| {
                    let a = T::round(self.activation.apply(g.load()));
                    T::store(a * u.load())
                })
            })
            .collect()
    }
}

/// The sizes of a masked softmax and where its inputs lie.
struct SoftmaxOperands {
    rows: usize,
    t: usize,
    heads: usize,
    mask_heads: usize,
    scores: std::ops::Range<usize>,
    mask: std::ops::Range<usize>,
}

impl SoftmaxOperands {
    fn check(scores: &Layout, mask: &Layout) -> candle_core::Result<Self> {
        let (b, heads, t, keys) = scores.shape().dims4()?;
        let mask_heads = match mask.shape().dims() {
            [q, k] if (*q, *k) == (t, t) => 1,
            [h, q, k] if (*h, *q, *k) == (heads, t, t) => heads,
            _ => candle_core::bail!(
                "masked softmax: mask {:?} for scores {:?}",
                mask.shape(),
                scores.shape()
            ),
        };
        if keys != t {
            candle_core::bail!("masked softmax: scores {:?} not square", scores.shape());
        }
        let (Some((s0, s1)), Some((m0, m1))) =
            (scores.contiguous_offsets(), mask.contiguous_offsets())
        else {
            candle_core::bail!("masked softmax: inputs must be contiguous");
        };
        Ok(Self {
            rows: b * heads * t,
            t,
            heads,
            mask_heads,
            scores: s0..s1,
            mask: m0..m1,
        })
    }
}

impl MaskedSoftmax {
    fn run<T: Element>(&self, scores: &[T], mask: &[f32], o: &SoftmaxOperands) -> Vec<T> {
        let t = o.t;
        let mut probs = Vec::with_capacity(o.rows * t);
        for (row, x) in scores.chunks_exact(t).enumerate() {
            let (query, head) = (row % t, (row / t) % o.heads);
            let head = if o.mask_heads > 1 { head } else { 0 };
            let m = &mask[(head * t + query) * t..][..t];
            let logits: Vec<f32> = x
                .iter()
                .zip(m)
                .map(|(&x, &m)| self.logit(x.load()) + m)
                .collect();
            let top = logits.iter().fold(-3.0e38f32, |a, &b| a.max(b));
            let sum: f32 = logits.iter().map(|&l| (l - top).exp()).sum();
            probs.extend(logits.iter().map(|&l| T::store((l - top).exp() / sum)));
        }
        probs
    }
}

impl CustomOp1 for GatedProduct {
    fn name(&self) -> &'static str {
        "neuronxa-gated-product"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (range, f, shape) = gated_operands(layout)?;
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.run(&v[range], f)),
            CpuStorage::BF16(v) => CpuStorage::BF16(self.run(&v[range], f)),
            CpuStorage::F16(v) => CpuStorage::F16(self.run(&v[range], f)),
            _ => candle_core::bail!("gated product: gate/up must be f32, bf16 or f16"),
        };
        Ok((out, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::gated_product(self, storage, layout)
    }
}

/// Where `gate_up` `[.., 2·f]` lies, `f`, and the product's shape `[.., f]`.
fn gated_operands(layout: &Layout) -> candle_core::Result<(std::ops::Range<usize>, usize, Shape)> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("gated product: gate/up must be contiguous");
    };
    let mut dims = layout.shape().dims().to_vec();
    let Some(last) = dims.last_mut().filter(|last| **last % 2 == 0 && **last > 0) else {
        candle_core::bail!("gated product: gate/up {:?}", layout.shape());
    };
    *last /= 2;
    let f = *last;
    Ok((start..end, f, Shape::from(dims)))
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "neuronxa-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        scores: &CpuStorage,
        scores_layout: &Layout,
        mask: &CpuStorage,
        mask_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let o = SoftmaxOperands::check(scores_layout, mask_layout)?;
        let CpuStorage::F32(mask) = mask else {
            candle_core::bail!("masked softmax: the mask must be f32");
        };
        let mask = &mask[o.mask.clone()];
        let out = match scores {
            CpuStorage::F32(v) => CpuStorage::F32(self.run(&v[o.scores.clone()], mask, &o)),
            CpuStorage::BF16(v) => CpuStorage::BF16(self.run(&v[o.scores.clone()], mask, &o)),
            CpuStorage::F16(v) => CpuStorage::F16(self.run(&v[o.scores.clone()], mask, &o)),
            _ => candle_core::bail!("masked softmax: scores must be f32, bf16 or f16"),
        };
        Ok((out, scores_layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        scores: &candle_core::CudaStorage,
        scores_layout: &Layout,
        mask: &candle_core::CudaStorage,
        mask_layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::masked_softmax(self, scores, scores_layout, mask, mask_layout)
    }
}

/// Runs the kernels and the generic ops on the same random inputs on `device` and says how
/// they differ if they do: the product for `activation` where the kernel has it (2 × 5 tokens,
/// 300 neurons: two blocks, the second partly idle), the head layout with and without rotary
/// (pairs of halves and of neighbours), and the softmax with a causal and windowed mask, with
/// an ALiBi-like mask per head, and soft-capped. In f32 they agree to 1e-5; in bf16/f16 the
/// kernels compute in f32 and round once where candle rounds each step, so to 3%.
pub fn verify(device: &Device, dtype: DType, activation: Activation) -> Result<(), String> {
    // Models whose activation the product kernel lacks still use the softmax.
    let activation = super::activation::LayerActivation::without_parameters(activation)
        .as_ref()
        .and_then(KernelActivation::of);
    let tolerance = if dtype == DType::F32 { 1e-5 } else { 3e-2 };
    let first_difference = |what: &str, kernel: &Tensor, generic: &Tensor| {
        let kernel = kernel
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let generic = generic
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok::<_, candle_core::Error>(kernel.iter().zip(&generic).enumerate().find_map(
            |(i, (k, g))| {
                // Written so that a NaN on either side counts as a difference.
                let close = (k - g).abs() <= tolerance * (1.0 + g.abs());
                (!close).then(|| {
                    format!("{what}, element {i} ({dtype:?}): kernel {k}, generic ops {g}")
                })
            },
        ))
    };
    let compare = || -> candle_core::Result<Option<String>> {
        if let Some(activation) = activation {
            let f = 300;
            let gate_up = Tensor::randn(0f32, 2.0, (2, 5, 2 * f), device)?.to_dtype(dtype)?;
            let kernel = gate_up.apply_op1_no_bwd(&GatedProduct { activation })?;
            let generic = activation
                .layer()
                .apply(&gate_up.narrow(2, 0, f)?)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?
                .mul(&gate_up.narrow(2, f, f)?)?;
            if let Some(difference) = first_difference("act(gate)·up", &kernel, &generic)? {
                return Ok(Some(difference));
            }
        }
        let (b, heads, t) = (2, 3, 7);
        let scores = Tensor::randn(0f32, 3.0, (b, heads, t, t), device)?.to_dtype(dtype)?;
        let window = |i: usize, j: usize| j <= i && i - j < 4;
        let causal: Vec<f32> = (0..t * t)
            .map(|k| {
                if window(k / t, k % t) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        let alibi: Vec<f32> = (0..heads * t * t)
            .map(|k| {
                let (h, i, j) = (k / (t * t), (k / t) % t, k % t);
                if j <= i {
                    -0.5 * (h + 1) as f32 * (i - j) as f32
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        let masks = [
            Tensor::from_vec(causal, (t, t), device)?,
            Tensor::from_vec(alibi, (heads, t, t), device)?,
        ];
        let (t_heads, stacked, d) = (5, 6, 8);
        let qkv = Tensor::randn(0f32, 1.0, (b, t_heads, stacked, d), device)?.to_dtype(dtype)?;
        let angles = Tensor::rand(0f32, 6.0, (t_heads, d / 2), device)?;
        let (cos, sin) = (
            angles.cos()?.to_dtype(dtype)?,
            angles.sin()?.to_dtype(dtype)?,
        );
        for (rotate, interleaved) in [(true, false), (true, true), (false, false)] {
            let op = HeadLayout {
                first: 1,
                heads: 3,
                rotate,
                interleaved,
            };
            let kernel = qkv.apply_op3_no_bwd(&cos, &sin, &op)?;
            let heads = qkv.narrow(2, 1, 3)?.transpose(1, 2)?.contiguous()?;
            let generic = match (rotate, interleaved) {
                (false, _) => heads,
                (true, false) => candle_nn::rotary_emb::rope(&heads, &cos, &sin)?,
                (true, true) => candle_nn::rotary_emb::rope_i(&heads, &cos, &sin)?,
            };
            let what = format!("head layout (rotate {rotate}, interleaved {interleaved})");
            if let Some(difference) = first_difference(&what, &kernel, &generic)? {
                return Ok(Some(difference));
            }
        }
        for mask in &masks {
            for softcap in [None, Some(5.0f32)] {
                let op = MaskedSoftmax {
                    scale: 0.35,
                    softcap,
                };
                let kernel = scores.apply_op2_no_bwd(mask, &op)?;
                let generic = attention_probs(&scores, mask, 0.35, softcap.map(f64::from), None)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                let what = format!("softmax (mask {:?}, softcap {softcap:?})", mask.shape());
                if let Some(difference) = first_difference(&what, &kernel, &generic)? {
                    return Ok(Some(difference));
                }
            }
        }
        Ok(None)
    };
    verdict(compare(), "the generic ops")
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CudaDevice, CudaStorage, Layout, Shape};

    use super::super::cuda_capture::cuda::ptx;
    use super::{
        BLOCK, GatedProduct, HeadLayout, HeadOperands, MaskedSoftmax, SoftmaxOperands,
        gated_operands,
    };

    fn int(what: &str, n: usize) -> candle_core::Result<i32> {
        i32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("{what}: {n} too large")))
    }

    /// An output of `n` elements, written whole by the kernel about to run.
    fn output<T: DeviceRepr>(device: &CudaDevice, n: usize) -> candle_core::Result<CudaSlice<T>> {
        // SAFETY: each kernel below writes every element of its output.
        Ok(unsafe { device.alloc::<T>(n)? })
    }

    pub(super) fn gated_product(
        op: &GatedProduct,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (range, f, shape) = gated_operands(layout)?;
        let n = shape.elem_count() / f.max(1);
        let device = &storage.device;
        let cfg = LaunchConfig {
            grid_dim: ((f as u32).div_ceil(BLOCK), n.clamp(1, 65_535) as u32, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let (f_arg, rows, activation) = (int("gated product", f)?, n as u64, op.activation.code());
        macro_rules! launch {
            ($slice:expr, $ty:ty, $name:literal) => {{
                let input = $slice.slice(range.clone());
                let out = output::<$ty>(device, n * f)?;
                let func = device.get_or_load_custom_func($name, "neuronxa_capture", ptx()?)?;
                let mut builder = func.builder();
                builder.arg(&input);
                builder.arg(&out);
                builder.arg(&rows);
                builder.arg(&f_arg);
                builder.arg(&activation);
                // SAFETY: the arguments match the kernel's signature in the source.
                unsafe { builder.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match &storage.slice {
            CudaStorageSlice::F32(s) => launch!(s, f32, "gated_product_f32"),
            CudaStorageSlice::BF16(s) => launch!(s, half::bf16, "gated_product_bf16"),
            CudaStorageSlice::F16(s) => launch!(s, half::f16, "gated_product_f16"),
            _ => candle_core::bail!("gated product: gate/up must be f32, bf16 or f16"),
        };
        Ok((out, shape))
    }

    pub(super) fn head_layout(
        op: &HeadLayout,
        (qkv, qkv_layout): (&CudaStorage, &Layout),
        (cos, cos_layout): (&CudaStorage, &Layout),
        (sin, sin_layout): (&CudaStorage, &Layout),
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let o = HeadOperands::check(op, qkv_layout, cos_layout, sin_layout)?;
        let device = &qkv.device;
        let tokens = o.b * o.t;
        let pairs = op.heads * o.d / 2;
        let cfg = LaunchConfig {
            grid_dim: (
                (pairs as u32).div_ceil(BLOCK).max(1),
                tokens.clamp(1, 65_535) as u32,
                1,
            ),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = (
            tokens as u64,
            int("head layout", o.t)?,
            int("head layout", o.stacked)?,
            int("head layout", op.first)?,
            int("head layout", op.heads)?,
            int("head layout", o.d)?,
            i32::from(op.rotate),
            i32::from(op.interleaved),
        );
        macro_rules! launch {
            ($q:expr, $ty:ty, $name:literal) => {{
                let input = $q.slice(o.qkv.clone());
                let cos = cos.as_cuda_slice::<$ty>()?.slice(o.cos.clone());
                let sin = sin.as_cuda_slice::<$ty>()?.slice(o.sin.clone());
                let out = output::<$ty>(device, o.b * op.heads * o.t * o.d)?;
                let func = device.get_or_load_custom_func($name, "neuronxa_capture", ptx()?)?;
                let mut builder = func.builder();
                builder.arg(&input);
                builder.arg(&cos);
                builder.arg(&sin);
                builder.arg(&out);
                builder.arg(&args.0);
                builder.arg(&args.1);
                builder.arg(&args.2);
                builder.arg(&args.3);
                builder.arg(&args.4);
                builder.arg(&args.5);
                builder.arg(&args.6);
                builder.arg(&args.7);
                // SAFETY: the arguments match the kernel's signature in the source.
                unsafe { builder.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match &qkv.slice {
            CudaStorageSlice::F32(s) => launch!(s, f32, "head_layout_f32"),
            CudaStorageSlice::BF16(s) => launch!(s, half::bf16, "head_layout_bf16"),
            CudaStorageSlice::F16(s) => launch!(s, half::f16, "head_layout_f16"),
            _ => candle_core::bail!("head layout: f32, bf16 or f16"),
        };
        Ok((out, o.out_shape(op)))
    }

    pub(super) fn masked_softmax(
        op: &MaskedSoftmax,
        scores: &CudaStorage,
        scores_layout: &Layout,
        mask: &CudaStorage,
        mask_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let o = SoftmaxOperands::check(scores_layout, mask_layout)?;
        let device = &scores.device;
        let blocks = u32::try_from(o.rows.div_ceil(BLOCK as usize))
            .map_err(|_| candle_core::Error::Msg(format!("masked softmax: {} rows", o.rows)))?;
        let cfg = LaunchConfig {
            grid_dim: (blocks.max(1), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mask_view = mask.as_cuda_slice::<f32>()?.slice(o.mask.clone());
        let (rows, t, heads, mask_heads) = (
            o.rows as u64,
            int("masked softmax", o.t)?,
            int("masked softmax", o.heads)?,
            int("masked softmax", o.mask_heads)?,
        );
        let (scale, softcap) = (op.scale, op.softcap_arg());
        macro_rules! launch {
            ($slice:expr, $ty:ty, $name:literal) => {{
                let input = $slice.slice(o.scores.clone());
                let out = output::<$ty>(device, o.rows * o.t)?;
                let func = device.get_or_load_custom_func($name, "neuronxa_capture", ptx()?)?;
                let mut builder = func.builder();
                builder.arg(&input);
                builder.arg(&mask_view);
                builder.arg(&out);
                builder.arg(&rows);
                builder.arg(&t);
                builder.arg(&heads);
                builder.arg(&mask_heads);
                builder.arg(&scale);
                builder.arg(&softcap);
                // SAFETY: the arguments match the kernel's signature in the source.
                unsafe { builder.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match &scores.slice {
            CudaStorageSlice::F32(s) => launch!(s, f32, "masked_softmax_f32"),
            CudaStorageSlice::BF16(s) => launch!(s, half::bf16, "masked_softmax_bf16"),
            CudaStorageSlice::F16(s) => launch!(s, half::f16, "masked_softmax_f16"),
            _ => candle_core::bail!("masked softmax: scores must be f32, bf16 or f16"),
        };
        Ok((out, scores_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::Activation;

    /// The ops' definitions (what runs on the CPU in the kernels' place) against candle's ops,
    /// by the same check the decoder makes on a GPU at load.
    #[test]
    fn definitions_agree_with_the_generic_ops() {
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for activation in [Activation::Silu, Activation::GeluTanh, Activation::Gelu] {
                if let Err(why) = verify(&Device::Cpu, dtype, activation) {
                    panic!("{dtype:?} {activation:?}: {why}");
                }
            }
        }
        // Without a product kernel for the activation, the softmax alone is checked.
        assert!(verify(&Device::Cpu, DType::BF16, Activation::Relu2).is_ok());
    }

    /// Hand-computed: act = SiLU; softmax of a causal row.
    #[test]
    fn small_cases_by_hand() {
        let gate_up = Tensor::new(&[[0.0f32, 2.0, 3.0, -1.0]], &Device::Cpu).unwrap();
        let op = GatedProduct {
            activation: KernelActivation::Silu,
        };
        let out: Vec<Vec<f32>> = gate_up.apply_op1_no_bwd(&op).unwrap().to_vec2().unwrap();
        let silu2 = 2.0 / (1.0 + (-2f32).exp());
        assert_eq!(out[0][0], 0.0);
        assert!((out[0][1] - (-silu2)).abs() < 1e-6);

        // One head, two queries: the first sees only itself; the second both keys, scaled.
        let scores = Tensor::new(&[[[[1.0f32, 5.0], [0.0, 2.0]]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[0.0f32, f32::NEG_INFINITY], [0.0, 0.0]], &Device::Cpu).unwrap();
        let op = MaskedSoftmax {
            scale: 0.5,
            softcap: None,
        };
        let probs = scores.apply_op2_no_bwd(&mask, &op).unwrap();
        let probs: Vec<f32> = probs.flatten_all().unwrap().to_vec1().unwrap();
        let e = 1f32.exp(); // exp(0.5·2 − 0.5·0)
        assert_eq!(probs[..2], [1.0, 0.0]);
        assert!((probs[2] - 1.0 / (1.0 + e)).abs() < 1e-6);
        assert!((probs[3] - e / (1.0 + e)).abs() < 1e-6);
    }

    /// The kernels compiled as C++ on the host: every block and thread of a launch in turn,
    /// against the definitions, in each dtype; outputs poisoned first, so every element must
    /// be written.
    #[test]
    fn kernels_compiled_for_the_host_compute_as_defined() {
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
/* argv: kernel, dtype (0 f32, 1 bf16, 2 f16), input, output, input elements, output
   elements, then the kernel's sizes:
   0 product: rows, f, activation, grid rows (gridDim.y, so that rows stride);
   1 softmax: rows, t, heads, mask heads, softcap (scale 0.3; the mask, f32, after the scores);
   2 head layout: tokens, t, stacked, first, n, d, rotate, interleaved, grid tokens (the cos
     and sin tables, [t, d/2] in the dtype, after the projection). */
int main(int argc, char **argv) {
    int kernel = atoi(argv[1]), dtype = atoi(argv[2]);
    size_t in_n = atoll(argv[5]), out_n = atoll(argv[6]), size = dtype == 0 ? 4 : 2;
    long long a[9];
    for (int i = 0; i < 9; ++i) a[i] = 7 + i < argc ? atoll(argv[7 + i]) : 0;
    void *in = malloc(in_n * size + 4), *out = malloc(out_n * size);
    FILE *f = fopen(argv[3], "rb");
    fseek(f, 0, SEEK_END);
    size_t bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    in = realloc(in, bytes);
    if (fread(in, 1, bytes, f) != bytes) return 2;
    fclose(f);
    memset(out, 0xff, out_n * size); /* NaN in every dtype: each element must be written */
    blockDim.x = BLOCK;
    if (kernel == 0) {
        gridDim.y = a[3];
        for (blockIdx.y = 0; blockIdx.y < gridDim.y; ++blockIdx.y)
            for (blockIdx.x = 0; blockIdx.x < (a[1] + BLOCK - 1) / BLOCK; ++blockIdx.x)
                for (threadIdx.x = 0; threadIdx.x < BLOCK; ++threadIdx.x) {
                    if (dtype == 0) gated_product_f32((const float *)in, (float *)out, a[0], a[1], a[2]);
                    if (dtype == 1) gated_product_bf16((const unsigned short *)in, (unsigned short *)out, a[0], a[1], a[2]);
                    if (dtype == 2) gated_product_f16((const unsigned short *)in, (unsigned short *)out, a[0], a[1], a[2]);
                }
    } else if (kernel == 1) {
        const float *mask = (const float *)((char *)in + in_n * size);
        float softcap = atof(argv[11]);
        for (blockIdx.x = 0; blockIdx.x < (a[0] + BLOCK - 1) / BLOCK; ++blockIdx.x)
            for (threadIdx.x = 0; threadIdx.x < BLOCK; ++threadIdx.x) {
                if (dtype == 0) masked_softmax_f32((const float *)in, mask, (float *)out, a[0], a[1], a[2], a[3], 0.3f, softcap);
                if (dtype == 1) masked_softmax_bf16((const unsigned short *)in, mask, (unsigned short *)out, a[0], a[1], a[2], a[3], 0.3f, softcap);
                if (dtype == 2) masked_softmax_f16((const unsigned short *)in, mask, (unsigned short *)out, a[0], a[1], a[2], a[3], 0.3f, softcap);
            }
    } else {
        size_t table = (size_t)a[1] * (a[5] / 2);
        const char *cos = (const char *)in + in_n * size, *sin = cos + table * size;
        gridDim.y = a[8];
        for (blockIdx.y = 0; blockIdx.y < gridDim.y; ++blockIdx.y)
            for (blockIdx.x = 0; blockIdx.x < (a[4] * (a[5] / 2) + BLOCK - 1) / BLOCK; ++blockIdx.x)
                for (threadIdx.x = 0; threadIdx.x < BLOCK; ++threadIdx.x) {
                    if (dtype == 0) head_layout_f32((const float *)in, (const float *)cos, (const float *)sin, (float *)out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
                    if (dtype == 1) head_layout_bf16((const unsigned short *)in, (const unsigned short *)cos, (const unsigned short *)sin, (unsigned short *)out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
                    if (dtype == 2) head_layout_f16((const unsigned short *)in, (const unsigned short *)cos, (const unsigned short *)sin, (unsigned short *)out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
                }
    }
    f = fopen(argv[4], "wb");
    fwrite(out, size, out_n, f);
    fclose(f);
    return 0;
}
"#;
        let dir = tempfile::tempdir().unwrap();
        let binary = crate::engine::cuda_capture::build_host_harness(
            dir.path(),
            ("capture.cu", crate::engine::cuda_capture::SOURCE),
            &HARNESS.replace("BLOCK", &BLOCK.to_string()),
        );
        let bytes_of = |t: &Tensor| -> Vec<u8> {
            let flat = t.flatten_all().unwrap();
            match t.dtype() {
                DType::F32 => flat
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                DType::BF16 => flat
                    .to_vec1::<half::bf16>()
                    .unwrap()
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                _ => flat
                    .to_vec1::<half::f16>()
                    .unwrap()
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            }
        };
        // Runs `kernel` on `inputs` (the first one's elements counted as the input) and
        // compares its output with `defined`, element by element.
        let check = |what: String,
                     kernel: usize,
                     inputs: &[&Tensor],
                     sizes: &[String],
                     defined: &Tensor| {
            let dtype = inputs[0].dtype();
            let code = [DType::F32, DType::BF16, DType::F16]
                .iter()
                .position(|d| *d == dtype)
                .unwrap();
            let input: Vec<u8> = inputs.iter().flat_map(|t| bytes_of(t)).collect();
            let (input_path, output_path) = (dir.path().join("in.bin"), dir.path().join("out.bin"));
            std::fs::write(&input_path, input).unwrap();
            let ran = std::process::Command::new(&binary)
                .args([kernel.to_string(), code.to_string()])
                .arg(&input_path)
                .arg(&output_path)
                .args([
                    inputs[0].elem_count().to_string(),
                    defined.elem_count().to_string(),
                ])
                .args(sizes)
                .status()
                .unwrap();
            assert!(ran.success(), "{what}");
            let bytes = std::fs::read(&output_path).unwrap();
            let out: Vec<f32> = match dtype {
                DType::F32 => bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                DType::BF16 => bytes
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                _ => bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            };
            let defined: Vec<f32> = defined
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(out.len(), defined.len(), "{what}");
            // C's and Rust's exp/tanh may differ in the last bit, which rounding to a half
            // type can turn into one step of that type.
            let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
            for (i, (k, e)) in out.iter().zip(&defined).enumerate() {
                assert!(
                    (k - e).abs() <= tolerance * (1.0 + e.abs()),
                    "{what}, element {i}: kernel {k}, definition {e}"
                );
            }
        };
        let numbers = |values: &[usize]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let cpu = &Device::Cpu;
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            // 7 rows of 300 neurons: two blocks, the second partly idle; 3 rows per grid
            // column, so the rows stride.
            let (rows, f) = (7usize, 300usize);
            let gate_up = Tensor::randn(0f32, 2.0, (rows, 2 * f), cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            for activation in [
                KernelActivation::Silu,
                KernelActivation::GeluTanh,
                KernelActivation::Gelu,
            ] {
                let defined = gate_up
                    .apply_op1_no_bwd(&GatedProduct { activation })
                    .unwrap();
                let sizes = numbers(&[rows, f, activation.code() as usize, 3]);
                check(
                    format!("{dtype:?} product, activation {}", activation.code()),
                    0,
                    &[&gate_up],
                    &sizes,
                    &defined,
                );
            }
            // 2 sentences × 3 heads × 9 queries = 54 rows (one block, partly idle).
            let (b, heads, t) = (2usize, 3usize, 9usize);
            let scores = Tensor::randn(0f32, 3.0, (b, heads, t, t), cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            for mask_heads in [1usize, heads] {
                let mask: Vec<f32> = (0..mask_heads * t * t)
                    .map(|k| {
                        let (h, i, j) = (k / (t * t), (k / t) % t, k % t);
                        if j <= i && i - j < 5 {
                            -0.25 * h as f32 * (i - j) as f32
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect();
                let shape: Vec<usize> = if mask_heads == 1 {
                    vec![t, t]
                } else {
                    vec![heads, t, t]
                };
                let mask = Tensor::from_vec(mask, shape, cpu).unwrap();
                for softcap in [None, Some(4.0f32)] {
                    let defined = scores
                        .apply_op2_no_bwd(
                            &mask,
                            &MaskedSoftmax {
                                scale: 0.3,
                                softcap,
                            },
                        )
                        .unwrap();
                    let mut sizes = numbers(&[b * heads * t, t, heads, mask_heads]);
                    sizes.push(softcap.unwrap_or(0.0).to_string());
                    let what =
                        format!("{dtype:?} softmax, mask heads {mask_heads}, softcap {softcap:?}");
                    check(what, 1, &[&scores, &mask], &sizes, &defined);
                }
            }
            // 2 sentences of 5 tokens, 6 stacked heads of 8, heads 2..5 taken; 3 tokens per
            // grid row, so the tokens stride.
            let (b, t, stacked, d) = (2usize, 5usize, 6usize, 8usize);
            let qkv = Tensor::randn(0f32, 1.0, (b, t, stacked, d), cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let angles = Tensor::rand(0f32, 6.0, (t, d / 2), cpu).unwrap();
            let (cos, sin) = (
                angles.cos().unwrap().to_dtype(dtype).unwrap(),
                angles.sin().unwrap().to_dtype(dtype).unwrap(),
            );
            for (rotate, interleaved) in [(true, false), (true, true), (false, false)] {
                let op = HeadLayout {
                    first: 2,
                    heads: 3,
                    rotate,
                    interleaved,
                };
                let defined = qkv.apply_op3_no_bwd(&cos, &sin, &op).unwrap();
                let sizes = numbers(&[
                    b * t,
                    t,
                    stacked,
                    2,
                    3,
                    d,
                    rotate as usize,
                    interleaved as usize,
                    3,
                ]);
                let what =
                    format!("{dtype:?} head layout, rotate {rotate}, interleaved {interleaved}");
                check(what, 2, &[&qkv, &cos, &sin], &sizes, &defined);
            }
        }
    }
}
