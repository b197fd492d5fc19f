//! One CUDA kernel for the gated delta rule of Qwen3.5's linear-attention layers (padded
//! batches on the GPU).
//!
//! With tensor ops the recurrence is a handful of launches per token and layer, each reading
//! and writing every head's whole `key × value` state (a quarter of a GiB per step for a batch
//! of 256 on a 2B model). The kernel keeps each thread's column of the state in registers for
//! the whole sentence: one launch per layer, and only q, k, v, β and the decay read once.
//! Like the capture kernel it is compiled at run time with NVRTC (once per key width, which
//! sizes the column), checked against the tensor ops on the device when the model loads
//! ([`verify`]), and stepped aside with a warning if they disagree.

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor};

use super::delta_net::{delta_rule_generic, delta_rule_steps};

/// The kernel's CUDA C source, without the `KEY_DIM` it is compiled for. Plain C, so that a
/// test compiles it as C++ on the host and checks it against the definition in Rust.
///
/// `qk` is `[b·heads, t, 2·KEY_DIM]` (the scaled query, then the key), `v` `[b·heads, t, dv]`,
/// `beta_decay` `[b·heads, t, 2]` (β, then the decay `exp(g)`), `out` `[b·heads, t, dv]`. One
/// thread per value dimension `j` of one head of one sentence: it carries column `j` of the
/// head's state along the sentence, alone, so threads never wait for one another.
pub const SOURCE: &str = r#"
extern "C" __global__ void delta_rule(const float *qk, const float *v, const float *beta_decay,
                                      float *out, int t, int dv) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long head = blockIdx.y;
    if (j >= dv) return;
    float s[KEY_DIM];
#pragma unroll
    for (int i = 0; i < KEY_DIM; ++i) s[i] = 0.0f;
    for (int r = 0; r < t; ++r) {
        unsigned long long row = head * t + r;
        const float *q = qk + row * 2ull * KEY_DIM;
        const float *k = q + KEY_DIM;
        float beta = beta_decay[row * 2ull], decay = beta_decay[row * 2ull + 1ull];
        float delta = v[row * dv + j];
        /* Unrolled, so that the column stays in registers. */
#pragma unroll
        for (int i = 0; i < KEY_DIM; ++i) {
            s[i] *= decay;
            delta -= k[i] * s[i];
        }
        delta *= beta;
        float read = 0.0f;
#pragma unroll
        for (int i = 0; i < KEY_DIM; ++i) {
            s[i] += k[i] * delta;
            read += q[i] * s[i];
        }
        out[row * dv + j] = read;
    }
}
"#;

/// Threads per block: up to 128 value dimensions of one head.
pub const BLOCK: u32 = 128;

/// The source compiled for keys of `key_dim`.
pub fn source_for(key_dim: usize) -> String {
    format!("#define KEY_DIM {key_dim}\n{SOURCE}")
}

/// The gated delta rule over whole sentences: `qk` `[n, t, 2·dk]` (scaled queries, then keys,
/// both L2-normed), `v` `[n, t, dv]`, `beta_decay` `[n, t, 2]`, all f32 and contiguous, one row
/// `n` per head of each sentence; gives the read-outs `[n, t, dv]`.
pub struct DeltaRule;

/// Sizes of one launch and where its inputs lie.
struct Operands {
    n: usize,
    t: usize,
    dk: usize,
    dv: usize,
    qk: std::ops::Range<usize>,
    v: std::ops::Range<usize>,
    beta_decay: std::ops::Range<usize>,
}

impl Operands {
    fn check(qk: &Layout, v: &Layout, beta_decay: &Layout) -> candle_core::Result<Self> {
        let (n, t, dk2) = qk.shape().dims3()?;
        let (vn, vt, dv) = v.shape().dims3()?;
        if (vn, vt) != (n, t) || beta_decay.shape().dims() != [n, t, 2] || dk2 % 2 != 0 {
            candle_core::bail!(
                "delta rule kernel: q/k {:?}, v {:?}, β/decay {:?}",
                qk.shape(),
                v.shape(),
                beta_decay.shape()
            );
        }
        let (Some((q0, q1)), Some((v0, v1)), Some((b0, b1))) = (
            qk.contiguous_offsets(),
            v.contiguous_offsets(),
            beta_decay.contiguous_offsets(),
        ) else {
            candle_core::bail!("delta rule kernel: inputs must be contiguous");
        };
        Ok(Self {
            n,
            t,
            dk: dk2 / 2,
            dv,
            qk: q0..q1,
            v: v0..v1,
            beta_decay: b0..b1,
        })
    }
}

impl CustomOp3 for DeltaRule {
    fn name(&self) -> &'static str {
        "neuronxa-delta-rule"
    }

    /// The kernel's definition in Rust (the CPU's own path computes the same on packed
    /// sentences): what the tests hold the CUDA source and the decoder's use of it to.
    fn cpu_fwd(
        &self,
        qk: &CpuStorage,
        qk_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
        beta_decay: &CpuStorage,
        beta_decay_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = Operands::check(qk_layout, v_layout, beta_decay_layout)?;
        let (CpuStorage::F32(qk), CpuStorage::F32(v), CpuStorage::F32(beta_decay)) =
            (qk, v, beta_decay)
        else {
            candle_core::bail!("delta rule kernel: inputs must be f32");
        };
        let (qk, v, beta_decay) = (&qk[op.qk], &v[op.v], &beta_decay[op.beta_decay]);
        let (t, dk, dv) = (op.t, op.dk, op.dv);
        let mut out = vec![0f32; op.n * t * dv];
        let mut state = vec![0f32; dk * dv];
        for head in 0..op.n {
            state.fill(0.0);
            for r in 0..t {
                let row = head * t + r;
                let (q, k) = qk[row * 2 * dk..][..2 * dk].split_at(dk);
                delta_rule_steps(
                    &mut state,
                    (q, k, &v[row * dv..][..dv]),
                    (beta_decay[row * 2], beta_decay[row * 2 + 1]),
                    &mut out[row * dv..][..dv],
                );
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((op.n, t, dv))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        qk: &candle_core::CudaStorage,
        qk_layout: &Layout,
        v: &candle_core::CudaStorage,
        v_layout: &Layout,
        beta_decay: &candle_core::CudaStorage,
        beta_decay_layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let op = Operands::check(qk_layout, v_layout, beta_decay_layout)?;
        cuda::forward(&op, qk, v, beta_decay)
    }
}

/// Runs the kernel and the tensor ops on the same random heads (5 rows of 9 tokens; 150 value
/// dimensions, so two blocks, the second partly idle) on `device`, for keys of `key_dim`, and
/// says where they differ if they do (1e-4 relative: the same sums in the same order, but for
/// the device's fused multiply-adds).
pub fn verify(device: &Device, key_dim: usize) -> Result<(), String> {
    let (n, t, dv) = (5, 9, 150);
    let compare = || -> candle_core::Result<Option<String>> {
        let unit = |x: Tensor| -> candle_core::Result<Tensor> {
            x.broadcast_div(&x.sqr()?.sum_keepdim(2)?.sqrt()?)
        };
        let q = unit(Tensor::randn(0f32, 1.0, (n, t, key_dim), device)?)?;
        let k = unit(Tensor::randn(0f32, 1.0, (n, t, key_dim), device)?)?;
        let qk = Tensor::cat(&[&q, &k], 2)?;
        let v = Tensor::randn(0f32, 1.0, (n, t, dv), device)?;
        let beta_decay = Tensor::rand(0f32, 1.0, (n, t, 2), device)?;
        let kernel = qk.apply_op3_no_bwd(&v, &beta_decay, &DeltaRule)?;
        let generic = delta_rule_generic(&qk, &v, &beta_decay)?;
        let kernel = kernel.flatten_all()?.to_vec1::<f32>()?;
        let generic = generic.flatten_all()?.to_vec1::<f32>()?;
        for (i, (k, g)) in kernel.iter().zip(&generic).enumerate() {
            // Written so that a NaN on either side counts as a difference.
            let close = (k - g).abs() <= 1e-4 * (1.0 + g.abs());
            if !close {
                return Ok(Some(format!(
                    "head {}, token {}, value {}: kernel {k}, tensor ops {g}",
                    i / (t * dv),
                    (i / dv) % t,
                    i % dv
                )));
            }
        }
        Ok(None)
    };
    super::cuda_capture::verdict(compare(), "the tensor ops")
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use candle_core::cuda_backend::WrapErr;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::{CudaStorage, Shape};

    use super::{BLOCK, Operands, source_for};

    /// The PTX for keys of `key_dim`, compiled once per process and width.
    fn ptx(key_dim: usize) -> candle_core::Result<String> {
        static PTX: OnceLock<Mutex<HashMap<usize, Result<String, String>>>> = OnceLock::new();
        let cache = PTX.get_or_init(|| Mutex::new(HashMap::new()));
        let mut cache = cache
            .lock()
            .map_err(|_| candle_core::Error::Msg("delta rule kernel: a compile panicked".into()))?;
        cache
            .entry(key_dim)
            .or_insert_with(|| {
                candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(source_for(key_dim))
                    .map(|ptx| ptx.to_src())
                    .map_err(|e| format!("compiling the delta rule kernel with NVRTC: {e:?}"))
            })
            .clone()
            .map_err(|e| candle_core::Error::Cuda(e.into()))
    }

    pub(super) fn forward(
        op: &Operands,
        qk: &CudaStorage,
        v: &CudaStorage,
        beta_decay: &CudaStorage,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let ints = |x: usize| {
            i32::try_from(x)
                .map_err(|_| candle_core::Error::Msg(format!("delta rule kernel: {x} too large")))
        };
        let (t, dv) = (ints(op.t)?, ints(op.dv)?);
        let grid_y = u32::try_from(op.n)
            .ok()
            .filter(|&y| y <= 65_535)
            .ok_or_else(|| {
                candle_core::Error::Msg(format!("delta rule kernel: {} heads in a batch", op.n))
            })?;
        let cfg = LaunchConfig {
            grid_dim: ((op.dv as u32).div_ceil(BLOCK), grid_y, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let device = &qk.device;
        let module = format!("neuronxa_delta_rule_{}", op.dk);
        let func = device.get_or_load_custom_func("delta_rule", &module, &ptx(op.dk)?)?;
        let qk = qk.as_cuda_slice::<f32>()?.slice(op.qk.clone());
        let v = v.as_cuda_slice::<f32>()?.slice(op.v.clone());
        let beta_decay = beta_decay
            .as_cuda_slice::<f32>()?
            .slice(op.beta_decay.clone());
        // SAFETY: every element is written by the kernel below (one per thread and token).
        let out = unsafe { device.alloc::<f32>(op.n * op.t * op.dv)? };
        let mut builder = func.builder();
        builder.arg(&qk);
        builder.arg(&v);
        builder.arg(&beta_decay);
        builder.arg(&out);
        builder.arg(&t);
        builder.arg(&dv);
        // SAFETY: the arguments match the kernel's signature in `SOURCE`.
        unsafe { builder.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, device.clone()),
            Shape::from((op.n, op.t, op.dv)),
        ))
    }
}

#[cfg(all(test, feature = "cuda"))]
mod cuda_tests {
    /// NVRTC needs no GPU: the source compiles to PTX for the key widths of the real models.
    #[test]
    fn nvrtc_compiles_the_source() {
        for key_dim in [8, 128, 256] {
            let ptx =
                candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(super::source_for(key_dim))
                    .unwrap()
                    .to_src();
            assert!(ptx.contains(".entry delta_rule("), "delta_rule missing");
        }
    }
}

/// The kernel compiled as C++ on the host (no GPU here or in CI): every block and thread of a
/// launch in turn, against the definition in Rust.
#[cfg(test)]
mod host_emulation_tests {
    use super::*;

    const HARNESS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#define __global__
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, threadIdx, blockDim;
#include "delta_rule.cu"
int main(int argc, char **argv) {
    int n = atoi(argv[1]), t = atoi(argv[2]), dk = atoi(argv[3]), dv = atoi(argv[4]);
    size_t nqk = (size_t)n * t * 2 * dk, nv = (size_t)n * t * dv, nb = (size_t)n * t * 2;
    float *qk = (float *)malloc(nqk * 4), *v = (float *)malloc(nv * 4);
    float *beta_decay = (float *)malloc(nb * 4), *out = (float *)malloc(nv * 4);
    FILE *in = fopen(argv[5], "rb");
    if (fread(qk, 4, nqk, in) != nqk || fread(v, 4, nv, in) != nv || fread(beta_decay, 4, nb, in) != nb) return 2;
    fclose(in);
    for (size_t i = 0; i < nv; ++i) out[i] = -1.0f; /* every entry must be written */
    blockDim.x = BLOCK;
    for (blockIdx.y = 0; blockIdx.y < (unsigned)n; ++blockIdx.y)
        for (blockIdx.x = 0; blockIdx.x < (unsigned)(dv + BLOCK - 1) / BLOCK; ++blockIdx.x)
            for (threadIdx.x = 0; threadIdx.x < BLOCK; ++threadIdx.x)
                delta_rule(qk, v, beta_decay, out, t, dv);
    FILE *o = fopen(argv[6], "wb");
    fwrite(out, 4, nv, o);
    fclose(o);
    return 0;
}
"#;

    #[test]
    fn kernel_compiled_for_the_host_runs_the_recurrence_as_defined() {
        let (n, t, dk, dv) = (4usize, 7usize, 8usize, 150usize);
        let dir = tempfile::tempdir().unwrap();
        let binary = super::super::cuda_capture::build_host_harness(
            dir.path(),
            ("delta_rule.cu", &source_for(dk)),
            &HARNESS.replace("BLOCK", &BLOCK.to_string()),
        );

        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let qk: Vec<f32> = (0..n * t * 2 * dk).map(|_| next() - 0.5).collect();
        let v: Vec<f32> = (0..n * t * dv).map(|_| 4.0 * next() - 2.0).collect();
        let beta_decay: Vec<f32> = (0..n * t * 2).map(|_| next()).collect();
        let bytes: Vec<u8> = qk
            .iter()
            .chain(&v)
            .chain(&beta_decay)
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let (input, output) = (dir.path().join("input.bin"), dir.path().join("output.bin"));
        std::fs::write(&input, bytes).unwrap();
        let ran = std::process::Command::new(&binary)
            .args([n, t, dk, dv].map(|x| x.to_string()))
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

        let tensor = |data: &[f32], last: usize| {
            Tensor::from_slice(data, (n, t, last), &Device::Cpu).unwrap()
        };
        let (qk, v, beta_decay) = (tensor(&qk, 2 * dk), tensor(&v, dv), tensor(&beta_decay, 2));
        let definition: Vec<f32> = qk
            .apply_op3_no_bwd(&v, &beta_decay, &DeltaRule)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let generic: Vec<f32> = delta_rule_generic(&qk, &v, &beta_decay)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(out.len(), definition.len());
        for (i, ((k, d), g)) in out.iter().zip(&definition).zip(&generic).enumerate() {
            // The same sums in the same order (C may contract a multiply-add).
            assert!(
                (k - d).abs() <= 1e-5 * (1.0 + d.abs()),
                "{i}: kernel {k}, definition {d}"
            );
            // The tensor ops multiply in another order.
            assert!(
                (g - d).abs() <= 1e-4 * (1.0 + d.abs()),
                "{i}: tensor ops {g}, definition {d}"
            );
        }
        assert!(verify(&Device::Cpu, dk).is_ok());
    }
}
