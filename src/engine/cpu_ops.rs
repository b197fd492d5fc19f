//! CPU kernels of the f32 forward pass: everything between the matmuls, fused and parallel.
//!
//! On the CPU a batch is packed: the tokens of all its sentences lie back to back on one axis
//! (no padding), each sentence a [`Span`] of it. The projections and the MLP work token by
//! token, so only attention and pooling need the spans. Each kernel is one pass over its data,
//! sentences spread over the cores with rayon — the same pool gemm uses for the matmuls, so
//! no second pool of threads spins against it (on two cores that cost more than the work).
//! The generic tensor ops in `decoder.rs` (used on GPUs) compute the same numbers up to f32
//! rounding; the tests below and tests/parity.rs hold the two together.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, bail};
use rayon::prelude::*;

use super::activation::LayerActivation;
use super::capture::NavSource;

/// A sentence's tokens on a batch's flattened token axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

/// Where the sentences of a batch are and how each token counts in their pools.
#[derive(Debug)]
pub struct HostPooling {
    /// Ascending, non-overlapping.
    pub spans: Arc<[Span]>,
    /// Per token (flattened axis): its weight in the pooled states (zero outside spans).
    pub weights: Vec<f32>,
    /// Per token: its weight in the "last token" hidden state (one-hot per sentence).
    pub last: Vec<f32>,
}

/// Where pooled states sit in a sentence's row of a batch's capture: `nas [layers·d_ff] |
/// nav [layers·d_ff] | hidden_pooled [(layers+1)·d_model] | hidden_last [(layers+1)·d_model]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureLayout {
    pub layers: usize,
    pub d_ff: usize,
    pub d_model: usize,
}

impl CaptureLayout {
    pub fn width(&self) -> usize {
        2 * self.layers * self.d_ff + 2 * (self.layers + 1) * self.d_model
    }

    /// How long each part of a row is: NAS, NAV, pooled hidden states, last token's.
    pub fn parts(&self) -> [usize; 4] {
        let (neurons, hidden) = (self.layers * self.d_ff, (self.layers + 1) * self.d_model);
        [neurons, neurons, hidden, hidden]
    }

    /// A row cut into `(nas, nav, hidden_pooled, hidden_last)`.
    pub fn split<'a>(&self, row: &'a [f32]) -> (&'a [f32], &'a [f32], &'a [f32], &'a [f32]) {
        let [neurons, _, hidden, _] = self.parts();
        let (nas, rest) = row.split_at(neurons);
        let (nav, rest) = rest.split_at(neurons);
        let (hidden_pooled, rest) = rest.split_at(hidden);
        (nas, nav, hidden_pooled, &rest[..hidden])
    }

    fn nas(&self, layer: usize) -> usize {
        layer * self.d_ff
    }

    fn nav(&self, layer: usize) -> usize {
        (self.layers + layer) * self.d_ff
    }

    /// `slot` 0 is the embeddings, `l + 1` the output of layer `l`.
    fn hidden(&self, slot: usize) -> usize {
        2 * self.layers * self.d_ff + slot * self.d_model
    }

    fn last(&self, slot: usize) -> usize {
        self.hidden(self.layers + 1 + slot)
    }
}

/// A batch's pooled states, one row per sentence ([`CaptureLayout`]), written by the kernels
/// in place as each layer finishes: nothing pooled lives in tensors of its own.
#[derive(Debug)]
pub struct PoolSink {
    pub layout: CaptureLayout,
    pub rows: Mutex<Vec<f32>>,
}

impl PoolSink {
    pub fn new(layout: CaptureLayout, sentences: usize) -> Self {
        Self {
            layout,
            rows: Mutex::new(vec![0f32; sentences * layout.width()]),
        }
    }

    /// The rows, one per span, for a kernel to fill.
    fn lock(&self) -> candle_core::Result<std::sync::MutexGuard<'_, Vec<f32>>> {
        match self.rows.lock() {
            Ok(rows) => Ok(rows),
            Err(_) => bail!("a kernel panicked while writing pooled states"),
        }
    }
}

/// cos and sin of the rotary angles, `[positions, head_dim / 2]` each.
#[derive(Debug)]
pub struct RopeTable {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub half: usize,
    /// Pairs are neighbouring dimensions (Cohere), not the two halves of a head.
    pub interleaved: bool,
}

/// `buf` viewed as rows of `width`, cut into one mutable chunk per span (gaps skipped).
fn span_chunks<'a>(
    mut buf: &'a mut [f32],
    spans: &[Span],
    width: usize,
) -> candle_core::Result<Vec<&'a mut [f32]>> {
    let mut chunks = Vec::with_capacity(spans.len());
    let mut at = 0;
    for span in spans {
        if span.start < at || (span.start + span.len) * width > at * width + buf.len() {
            bail!("token spans overlap or run past the batch");
        }
        let rest = std::mem::take(&mut buf);
        let (_, rest) = rest.split_at_mut((span.start - at) * width);
        let (chunk, rest) = rest.split_at_mut(span.len * width);
        chunks.push(chunk);
        buf = rest;
        at = span.start + span.len;
    }
    Ok(chunks)
}

/// The f32 data of a 2-D input whose rows may be strided (a column range of a wider tensor)
/// but whose elements are contiguous within a row: `(data from the first element, row stride)`.
fn rows<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    width: usize,
    what: &str,
) -> candle_core::Result<Rows<'a>> {
    let CpuStorage::F32(data) = storage else {
        bail!("{what}: expected f32");
    };
    let (n, w) = layout.shape().dims2()?;
    let stride = layout.stride();
    if w != width || (w > 1 && stride[1] != 1) {
        bail!("{what}: expected rows of {width} contiguous values");
    }
    let row_stride = stride[0];
    let needed = if n == 0 { 0 } else { (n - 1) * row_stride + w };
    let data = &data[layout.start_offset()..];
    if data.len() < needed {
        bail!("{what}: storage too small");
    }
    Ok(Rows {
        data,
        stride: row_stride,
    })
}

/// Rows of a 2-D input: row `i` starts at `data[i * stride]`.
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f32],
    stride: usize,
}

impl<'a> Rows<'a> {
    #[inline(always)]
    fn row(&self, i: usize, offset: usize, width: usize) -> &'a [f32] {
        &self.data[i * self.stride + offset..][..width]
    }
}

/// Whether this CPU has AVX2 and FMA, for which the per-sentence work of each kernel is
/// compiled a second time (eight lanes instead of SSE2's four). Rust never fuses `a * b + c`
/// on its own, so both versions give the same numbers.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn wide_simd() -> bool {
    #[cfg(test)]
    if tests::NARROW.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `2^(i/32)` as f64 bits, less `i << 47`, so that adding `k << 47` for `k ≡ i (mod 32)`
/// makes `2^(k/32)` (see [`exp`]).
const EXP2_TABLE: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

/// `e^x` in f32 by the method of glibc's `expf` (Arm's optimized-routines: `x·32/ln 2 = k + r`,
/// `2^(k/32)` from a table, a cubic in `r`, all in f64), written so that a loop of it
/// vectorises where the library call does not. Over every f32 in [-103.9, 88.7] it returns
/// glibc's bits for all but 2 of 2.2·10⁹ inputs (1 ulp there; glibc's FMA build rounds its
/// intermediate steps differently): an earlier polynomial `exp` within 2 ulp moved the
/// demo model's NAS decisions, this one cannot in practice. Below -104 it gives 0, above
/// 89 infinity, as `expf` does.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const N: f64 = 32.0;
    let inv_ln2_n = f64::from_bits(0x3ff71547652b82fe) * N;
    let shift = f64::from_bits(0x4338000000000000); // 1.5·2^52: adding it rounds to an integer
    let c0 = f64::from_bits(0x3fac6af84b912394) / (N * N * N);
    let c1 = f64::from_bits(0x3fcebfce50fac4f3) / (N * N);
    let c2 = f64::from_bits(0x3fe62e42ff0c52d6) / N;
    let z = inv_ln2_n * f64::from(x.clamp(-104.0, 89.0));
    let shifted = z + shift;
    let k = shifted.to_bits();
    let r = z - (shifted - shift);
    let scale = f64::from_bits(EXP2_TABLE[(k % 32) as usize].wrapping_add(k << 47));
    let y = (c0 * r + c1) * (r * r) + (c2 * r + 1.0);
    (y * scale) as f32
}

/// Dot product in eight lanes, so that it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_body, a_tail) = a.split_at(a.len() / 8 * 8);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (x, y) in a_body.chunks_exact(8).zip(b_body.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Rotary embedding of one head vector at `position` (transformers' `rotate_half` layout, or
/// neighbouring pairs where the table says so).
#[inline(always)]
fn rotate(x: &[f32], position: usize, table: &RopeTable, out: &mut [f32]) {
    let half = table.half;
    let cos = &table.cos[position * half..][..half];
    let sin = &table.sin[position * half..][..half];
    if table.interleaved {
        for (i, (o, x)) in out.chunks_exact_mut(2).zip(x.chunks_exact(2)).enumerate() {
            o[0] = x[0] * cos[i] - x[1] * sin[i];
            o[1] = x[1] * cos[i] + x[0] * sin[i];
        }
        return;
    }
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    for i in 0..half {
        o1[i] = x1[i] * cos[i] - x2[i] * sin[i];
        o2[i] = x2[i] * cos[i] + x1[i] * sin[i];
    }
}

/// Causal self-attention within each span, rotary embedding included: q `[n, heads·d]`,
/// k and v `[n, kv_heads·d]` (rows may be strided) → `[n, heads·d]`, zero outside spans.
pub struct Attention {
    pub spans: Arc<[Span]>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
    pub window: Option<usize>,
    pub rope: Arc<RopeTable>,
    /// BLOOM's ALiBi: per head, `slope · j` added to the score of key `j` (its place in the
    /// sentence; softmax does not see the shift from transformers' absolute positions).
    pub alibi: Option<Arc<[f32]>>,
    /// gpt-oss' sink logits, one per head: each joins its head's softmax as a key with no
    /// value.
    pub sinks: Option<Arc<[f32]>>,
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "cpu-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = self.head_dim;
        let (n, _) = q_layout.shape().dims2()?;
        let q = rows(q, q_layout, self.heads * d, "attention q")?;
        let k = rows(k, k_layout, self.kv_heads * d, "attention k")?;
        let v = rows(v, v_layout, self.kv_heads * d, "attention v")?;
        if k_layout.shape().dims()[0] != n || v_layout.shape().dims()[0] != n {
            bail!("attention: q, k and v have different numbers of tokens");
        }
        let longest = self.spans.iter().map(|s| s.len).max().unwrap_or(0);
        if self.rope.cos.len() < longest * self.rope.half || self.rope.half * 2 != d {
            bail!("attention: rotary table too short");
        }
        if self.alibi.as_ref().is_some_and(|s| s.len() != self.heads) {
            bail!("attention: one ALiBi slope per head expected");
        }
        if self.sinks.as_ref().is_some_and(|s| s.len() != self.heads) {
            bail!("attention: one sink logit per head expected");
        }
        let width = self.heads * d;
        let mut out = vec![0f32; n * width];
        let chunks = span_chunks(&mut out, &self.spans, width)?;
        chunks
            .into_par_iter()
            .zip(self.spans.par_iter())
            .for_each(|(out, &span)| {
                #[cfg(target_arch = "x86_64")]
                if wide_simd() {
                    // SAFETY: `wide_simd` checked the CPU for the features.
                    unsafe { attend_wide(self, span, out, q, k, v) };
                    return;
                }
                self.attend(span, out, q, k, v);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, width))))
    }
}

impl Attention {
    /// One sentence: every head, every token, into `out` (its rows of the output).
    #[inline(always)]
    fn attend(&self, span: Span, out: &mut [f32], q: Rows<'_>, k: Rows<'_>, v: Rows<'_>) {
        let d = self.head_dim;
        let width = self.heads * d;
        let group = self.heads / self.kv_heads;
        let len = span.len;
        let mut keys = vec![0f32; len * d];
        let mut query = vec![0f32; d];
        let mut scores = vec![0f32; len];
        for kv in 0..self.kv_heads {
            for (i, key) in keys.chunks_exact_mut(d).enumerate() {
                rotate(k.row(span.start + i, kv * d, d), i, &self.rope, key);
            }
            for head in kv * group..(kv + 1) * group {
                let slope = self.alibi.as_ref().map_or(0.0, |slopes| slopes[head]);
                let sink = self.sinks.as_ref().map(|sinks| sinks[head]);
                for i in 0..len {
                    rotate(
                        q.row(span.start + i, head * d, d),
                        i,
                        &self.rope,
                        &mut query,
                    );
                    let first = self.window.map_or(0, |w| (i + 1).saturating_sub(w));
                    let visible = &mut scores[first..=i];
                    let mut max = f32::NEG_INFINITY;
                    for (j, score) in (first..=i).zip(visible.iter_mut()) {
                        let mut s = dot(&query, &keys[j * d..(j + 1) * d]) * self.scale;
                        if let Some(cap) = self.softcap {
                            s = (s / cap).tanh() * cap;
                        }
                        *score = s + slope * j as f32;
                        max = max.max(*score);
                    }
                    if let Some(sink) = sink {
                        max = max.max(sink);
                    }
                    let mut sum = sink.map_or(0.0, |sink| (sink - max).exp());
                    for score in visible.iter_mut() {
                        *score = (*score - max).exp();
                        sum += *score;
                    }
                    let o = &mut out[i * width + head * d..][..d];
                    for (j, &e) in (first..=i).zip(visible.iter()) {
                        let p = e / sum;
                        for (o, &x) in o.iter_mut().zip(v.row(span.start + j, kv * d, d)) {
                            *o += p * x;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn attend_wide(op: &Attention, span: Span, out: &mut [f32], q: Rows, k: Rows, v: Rows) {
    op.attend(span, out, q, k, v);
}

/// RMSNorm weights on the host (for Gemma already `1 + w`).
#[derive(Debug)]
pub struct HostNorm {
    pub weight: Vec<f32>,
    pub eps: f32,
    /// Subtract the row's mean first (a LayerNorm: Cohere's, GPT-2's).
    pub centered: bool,
    /// Added after the scaling (GPT-2's and BLOOM's LayerNorms).
    pub bias: Option<Vec<f32>>,
}

/// One step of the residual stream: `h + delta` (or `h` alone), optionally its RMSNorm for
/// the next block, and optionally its pools (weighted and last token) written to hidden-state
/// `slot` of the sink. Output (flat): the new `h` `[n·d]`, then the normed rows `[n·d]` if
/// asked.
pub struct Residual {
    pub add: bool,
    pub norm: Option<Arc<HostNorm>>,
    pub pool: Option<(Arc<HostPooling>, Arc<PoolSink>, usize)>,
    pub spans: Arc<[Span]>,
}

impl Residual {
    /// One sentence: `summed = h + delta`, its norm, its pools into its `row` of the sink.
    #[inline(always)]
    fn sentence(
        &self,
        span: Span,
        h: &[f32],
        delta: Option<&[f32]>,
        summed: &mut [f32],
        normed: Option<&mut [f32]>,
        row: Option<&mut [f32]>,
    ) {
        match delta {
            Some(delta) => {
                for ((o, &x), &y) in summed.iter_mut().zip(h).zip(delta) {
                    *o = x + y;
                }
            }
            None => summed.copy_from_slice(h),
        }
        if let (Some(norm), Some(normed)) = (&self.norm, normed) {
            let d = norm.weight.len();
            for (x, normed) in summed.chunks_exact(d).zip(normed.chunks_exact_mut(d)) {
                if norm.centered {
                    let mean = x.iter().sum::<f32>() / d as f32;
                    for (n, &x) in normed.iter_mut().zip(x) {
                        *n = x - mean;
                    }
                    let variance = dot(normed, normed) / d as f32;
                    let scale = 1.0 / (variance + norm.eps).sqrt();
                    for (n, &w) in normed.iter_mut().zip(&norm.weight) {
                        *n *= scale * w;
                    }
                } else {
                    let mean_square = dot(x, x) / d as f32;
                    let scale = 1.0 / (mean_square + norm.eps).sqrt();
                    for ((n, &x), &w) in normed.iter_mut().zip(x).zip(&norm.weight) {
                        *n = x * scale * w;
                    }
                }
                if let Some(bias) = &norm.bias {
                    for (n, &b) in normed.iter_mut().zip(bias) {
                        *n += b;
                    }
                }
            }
        }
        if let (Some((pool, sink, slot)), Some(row)) = (&self.pool, row) {
            let layout = sink.layout;
            let d = layout.d_model;
            let (before, last) = row.split_at_mut(layout.last(*slot));
            let mean = &mut before[layout.hidden(*slot)..][..d];
            let last = &mut last[..d];
            for (i, x) in summed.chunks_exact(d).enumerate() {
                let token = span.start + i;
                let (w, l) = (pool.weights[token], pool.last[token]);
                if w != 0.0 {
                    for (p, &x) in mean.iter_mut().zip(x) {
                        *p += w * x;
                    }
                }
                if l != 0.0 {
                    for (p, &x) in last.iter_mut().zip(x) {
                        *p += l * x;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn residual_wide(
    op: &Residual,
    span: Span,
    h: &[f32],
    delta: Option<&[f32]>,
    summed: &mut [f32],
    normed: Option<&mut [f32]>,
    row: Option<&mut [f32]>,
) {
    op.sentence(span, h, delta, summed, normed, row);
}

impl CustomOp2 for Residual {
    fn name(&self) -> &'static str {
        "cpu-residual"
    }

    fn cpu_fwd(
        &self,
        h: &CpuStorage,
        h_layout: &Layout,
        delta: &CpuStorage,
        delta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, d) = h_layout.shape().dims2()?;
        let (
            Rows {
                data: h,
                stride: h_stride,
            },
            Rows {
                data: delta,
                stride: delta_stride,
            },
        ) = (
            rows(h, h_layout, d, "residual h")?,
            rows(delta, delta_layout, d, "residual delta")?,
        );
        if h_stride != d || delta_stride != d || delta_layout.shape().dims()[0] != n {
            bail!("residual: expected two contiguous [{n}, {d}] tensors");
        }
        if self
            .norm
            .as_ref()
            .is_some_and(|norm| norm.weight.len() != d)
        {
            bail!("residual: norm weight does not match d_model {d}");
        }
        if let Some((pool, sink, _)) = &self.pool
            && (sink.layout.d_model != d || pool.weights.len() < n || pool.last.len() < n)
        {
            bail!("residual: the sink or the pooling weights do not match [{n}, {d}]");
        }
        let norm_len = if self.norm.is_some() { n * d } else { 0 };
        let mut out = vec![0f32; n * d + norm_len];
        let (summed, normed) = out.split_at_mut(n * d);
        let summed = span_chunks(summed, &self.spans, d)?;
        let normed = if self.norm.is_some() {
            span_chunks(normed, &self.spans, d)?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            (0..self.spans.len()).map(|_| None).collect::<Vec<_>>()
        };
        let mut sink_rows = match &self.pool {
            Some((_, sink, _)) => Some(sink.lock()?),
            None => None,
        };
        let rows: Vec<Option<&mut [f32]>> = match (&self.pool, sink_rows.as_deref_mut()) {
            (Some((_, sink, _)), Some(rows)) => rows
                .chunks_exact_mut(sink.layout.width())
                .map(Some)
                .collect(),
            _ => (0..self.spans.len()).map(|_| None).collect(),
        };
        if rows.len() != self.spans.len() {
            bail!("residual: the sink has no row for every sentence");
        }
        summed
            .into_par_iter()
            .zip(normed)
            .zip(rows)
            .zip(self.spans.par_iter())
            .for_each(|(((summed, normed), row), &span)| {
                let range = span.start * d..(span.start + span.len) * d;
                let h = &h[range.clone()];
                let delta = self.add.then(|| &delta[range]);
                #[cfg(target_arch = "x86_64")]
                if wide_simd() {
                    // SAFETY: `wide_simd` checked the CPU for the features.
                    unsafe { residual_wide(self, span, h, delta, summed, normed, row) };
                    return;
                }
                self.sentence(span, h, delta, summed, normed, row);
            });
        Ok((CpuStorage::F32(out), Shape::from(n * d + norm_len)))
    }
}

/// The residual step without `delta` (the embeddings), as a one-input op.
pub struct ResidualStart(pub Residual);

impl CustomOp1 for ResidualStart {
    fn name(&self) -> &'static str {
        "cpu-residual-start"
    }

    fn cpu_fwd(&self, h: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        if self.0.add {
            bail!("residual start adds nothing");
        }
        self.0.cpu_fwd(h, layout, h, layout)
    }
}

/// `act(gate)·up` for the down projection and, per span, the NAS and NAV pools of `layer`
/// written to the sink, all in one pass: gate and up `[n, f]` (rows may be strided) →
/// `[n, f]` products (zero outside spans).
pub struct FusedMlp {
    /// `act(gate)·up`; otherwise (GPT-2, BLOOM) `act(gate)` alone, `gate` being the MLP's
    /// one input projection, and both NAV sources are `|act|` (METHOD §1).
    pub gated: bool,
    pub activation: LayerActivation,
    pub nav_source: NavSource,
    pub pool: Arc<HostPooling>,
    pub sink: Arc<PoolSink>,
    pub layer: usize,
    /// Where these neurons start in the layer's block of a sink row: 0, or an expert's first
    /// neuron in a mixture of experts (whose rows are then that expert's tokens).
    pub neuron_offset: usize,
}

impl FusedMlp {
    /// `act` over a row, written to `out`: the same formulas as candle's `silu`, `gelu` and
    /// `gelu_erf`, so both paths agree (SiLU's `exp` is [`exp`], which vectorises).
    #[inline(always)]
    fn act_row(&self, gate: &[f32], out: &mut [f32]) {
        match self.activation {
            LayerActivation::Silu => {
                for (o, &x) in out.iter_mut().zip(gate) {
                    *o = x / (1.0 + exp(-x));
                }
            }
            LayerActivation::GeluTanh => {
                const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
                // tanh(u) = 1 − 2 / (e^{2u} + 1) with the vectorising [`exp`]: within a few
                // ulp of the library's tanh, which is a scalar call per value.
                for (o, &x) in out.iter_mut().zip(gate) {
                    let u = SQRT_TWO_OVER_PI * x * (1.0 + 0.044715 * x * x);
                    let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
                    *o = 0.5 * x * (1.0 + tanh);
                }
            }
            LayerActivation::Gelu => {
                for (o, &x) in out.iter_mut().zip(gate) {
                    *o = (candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2)
                        + 1.0)
                        * 0.5
                        * x;
                }
            }
            LayerActivation::Relu2 => {
                for (o, &x) in out.iter_mut().zip(gate) {
                    let r = x.max(0.0);
                    *o = r * r;
                }
            }
            LayerActivation::XIelu(p) => {
                for (o, &x) in out.iter_mut().zip(gate) {
                    *o = p.apply(x);
                }
            }
            LayerActivation::ClampedSwiglu { alpha, limit } => {
                for (o, &x) in out.iter_mut().zip(gate) {
                    let g = x.min(limit);
                    *o = g / (1.0 + exp(-alpha * g));
                }
            }
        }
    }

    /// `product *= up`, or with the clamped SwiGLU `product *= clamp(up, ±limit) + 1`.
    #[inline(always)]
    fn times_up(&self, product: &mut [f32], up: &[f32]) {
        match self.activation {
            LayerActivation::ClampedSwiglu { limit, .. } => {
                for (p, &x) in product.iter_mut().zip(up) {
                    *p *= x.clamp(-limit, limit) + 1.0;
                }
            }
            _ => {
                for (p, &x) in product.iter_mut().zip(up) {
                    *p *= x;
                }
            }
        }
    }
}

impl FusedMlp {
    /// One sentence: its products, and its NAS and NAV pools into its `row` of the sink.
    #[inline(always)]
    fn sentence(
        &self,
        span: Span,
        gate: Rows<'_>,
        up: Rows<'_>,
        products: &mut [f32],
        row: &mut [f32],
        f: usize,
    ) {
        let layout = self.sink.layout;
        let offset = self.neuron_offset;
        let (nas, nav) = row.split_at_mut(layout.nav(self.layer));
        let nas = &mut nas[layout.nas(self.layer) + offset..][..f];
        let nav = &mut nav[offset..][..f];
        for (i, product) in products.chunks_exact_mut(f).enumerate() {
            let token = span.start + i;
            let (g, u) = (gate.row(token, 0, f), up.row(token, 0, f));
            let w = self.pool.weights[token];
            // One simple loop per step, so that each vectorises.
            self.act_row(g, product);
            let pool = w != 0.0;
            if pool {
                // The sign NAS reads: the gate's, or the activation's (xIELU), which is
                // `product` until it is multiplied by up below.
                let sign = if self.activation.positive_with_input() {
                    g
                } else {
                    &*product
                };
                for (n, &x) in nas.iter_mut().zip(sign) {
                    *n += if x > 0.0 { w } else { 0.0 };
                }
                if self.nav_source == NavSource::Activation || !self.gated {
                    for (v, &a) in nav.iter_mut().zip(product.iter()) {
                        *v += w * a.abs();
                    }
                }
            }
            if !self.gated {
                continue;
            }
            self.times_up(product, u);
            if pool && self.nav_source == NavSource::ActivationTimesUp {
                for (v, &p) in nav.iter_mut().zip(product.iter()) {
                    *v += w * p.abs();
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mlp_wide(
    op: &FusedMlp,
    span: Span,
    gate: Rows,
    up: Rows,
    products: &mut [f32],
    row: &mut [f32],
    f: usize,
) {
    op.sentence(span, gate, up, products, row, f);
}

impl CustomOp2 for FusedMlp {
    fn name(&self) -> &'static str {
        "cpu-fused-mlp"
    }

    fn cpu_fwd(
        &self,
        gate: &CpuStorage,
        gate_layout: &Layout,
        up: &CpuStorage,
        up_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, f) = gate_layout.shape().dims2()?;
        let gate = rows(gate, gate_layout, f, "mlp gate")?;
        let up = rows(up, up_layout, f, "mlp up")?;
        let spans = &self.pool.spans;
        if up_layout.shape().dims()[0] != n || self.pool.weights.len() < n {
            bail!("fused mlp: gate, up and pooling weights do not match");
        }
        let layout = self.sink.layout;
        if self.neuron_offset + f > layout.d_ff || self.layer >= layout.layers {
            bail!("fused mlp: the sink's layout does not match");
        }
        let mut out = vec![0f32; n * f];
        let products = span_chunks(&mut out, spans, f)?;
        let mut rows = self.sink.lock()?;
        let rows: Vec<&mut [f32]> = rows.chunks_exact_mut(layout.width()).collect();
        if rows.len() != spans.len() {
            bail!("fused mlp: the sink has no row for every sentence");
        }
        products
            .into_par_iter()
            .zip(rows)
            .zip(spans.par_iter())
            .for_each(|((products, row), &span)| {
                #[cfg(target_arch = "x86_64")]
                if wide_simd() {
                    // SAFETY: `wide_simd` checked the CPU for the features.
                    unsafe { mlp_wide(self, span, gate, up, products, row, f) };
                    return;
                }
                self.sentence(span, gate, up, products, row, f);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, f))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::engine::activation::XIelu;

    /// Set: the kernels take their SSE2 versions even where AVX2 is there.
    pub(super) static NARROW: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    /// Both compiled versions of each kernel give the same bits.
    #[test]
    fn wide_and_narrow_versions_agree_exactly() {
        let device = Device::Cpu;
        let run = || {
            let n = 7;
            let q = Tensor::arange(0f32, (n * 32) as f32, &device)
                .unwrap()
                .reshape((n, 32))
                .unwrap()
                .sin()
                .unwrap();
            let pooling = Arc::new(HostPooling {
                spans: vec![Span { start: 0, len: 3 }, Span { start: 3, len: 4 }].into(),
                weights: vec![0.2, 0.3, 0.5, 0.1, 0.2, 0.3, 0.4],
                last: vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            });
            let spans = pooling.spans.clone();
            let rope = Arc::new(RopeTable {
                cos: (0..4 * 4).map(|i| (i as f32).cos()).collect(),
                sin: (0..4 * 4).map(|i| (i as f32).sin()).collect(),
                half: 4,
                interleaved: false,
            });
            let attention = Attention {
                spans: spans.clone(),
                heads: 2,
                kv_heads: 1,
                head_dim: 8,
                scale: 0.3,
                softcap: Some(5.0),
                window: Some(3),
                rope,
                alibi: None,
                sinks: None,
            };
            let (qs, kv) = (q.narrow(1, 0, 16).unwrap(), q.narrow(1, 16, 8).unwrap());
            let contiguous = qs.contiguous().unwrap();
            let attended = qs.apply_op3_no_bwd(&kv, &kv, &attention).unwrap();
            let layout = CaptureLayout {
                layers: 1,
                d_ff: 16,
                d_model: 16,
            };
            let sink = Arc::new(PoolSink::new(layout, 2));
            let residual = Residual {
                add: true,
                norm: Some(Arc::new(HostNorm {
                    weight: vec![0.5; 16],
                    eps: 1e-6,
                    centered: false,
                    bias: None,
                })),
                pool: Some((pooling.clone(), sink.clone(), 1)),
                spans,
            };
            let summed = attended.apply_op2_no_bwd(&contiguous, &residual).unwrap();
            let mlp = FusedMlp {
                gated: true,
                activation: LayerActivation::Silu,
                nav_source: NavSource::Activation,
                pool: pooling,
                sink: sink.clone(),
                layer: 0,
                neuron_offset: 0,
            };
            let products = qs.apply_op2_no_bwd(&attended, &mlp).unwrap();
            let mut all: Vec<f32> = summed.to_vec1().unwrap();
            all.extend(products.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            all.extend(sink.rows.lock().unwrap().iter());
            all
        };
        NARROW.store(true, std::sync::atomic::Ordering::Relaxed);
        let narrow = run();
        NARROW.store(false, std::sync::atomic::Ordering::Relaxed);
        let wide = run();
        assert_eq!(narrow, wide);
        assert!(narrow.iter().all(|x| x.is_finite()) && narrow.iter().any(|&x| x != 0.0));
    }

    /// [`exp`] gives the C library's bits on a spread of 2·10⁷ inputs over its whole range,
    /// and its limits.
    #[test]
    fn exp_matches_the_c_library() {
        let (low, high) = ((-103.9f32).to_bits(), 88.7f32.to_bits());
        let mut differ = 0;
        let mut checked = 0;
        // Negative floats: bit patterns from 0x8000_0000 (-0) up to `low`; positive: 0 to `high`.
        for (from, to) in [(0x8000_0000u32, low), (0, high)] {
            for bits in (from..=to).step_by(211) {
                let x = f32::from_bits(bits);
                let (ours, theirs) = (exp(x), x.exp());
                checked += 1;
                if ours.to_bits() != theirs.to_bits() {
                    differ += 1;
                    assert!(
                        ours.to_bits().abs_diff(theirs.to_bits()) <= 1,
                        "exp({x:e}): {ours:e} vs {theirs:e}"
                    );
                }
            }
        }
        assert!(
            checked > 10_000_000 && differ <= 2,
            "{differ} of {checked} differ"
        );
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(1.0), std::f32::consts::E);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(-f32::INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    fn spans(list: &[(usize, usize)]) -> Arc<[Span]> {
        list.iter()
            .map(|&(start, len)| Span { start, len })
            .collect::<Vec<_>>()
            .into()
    }

    fn close(ours: &[f32], expected: &[f32], tolerance: f32) {
        assert_eq!(ours.len(), expected.len());
        for (i, (a, b)) in ours.iter().zip(expected).enumerate() {
            assert!((a - b).abs() <= tolerance, "at {i}: {a} vs {b}");
        }
    }

    /// One head of width 2; positions 0 and 1 rotate by 0° and 90°. Row 0 is a gap. `adjust`
    /// sets the options under test.
    fn attention(adjust: impl FnOnce(&mut Attention)) -> Vec<f32> {
        let device = Device::Cpu;
        let q = Tensor::new(&[[9f32, 9.], [1., 0.], [0., 1.]], &device).unwrap();
        let k = Tensor::new(&[[9f32, 9.], [1., 0.], [0., 1.]], &device).unwrap();
        let v = Tensor::new(&[[9f32, 9.], [1., 2.], [3., 4.]], &device).unwrap();
        let mut op = Attention {
            spans: spans(&[(1, 2)]),
            heads: 1,
            kv_heads: 1,
            head_dim: 2,
            scale: 1.0,
            softcap: None,
            window: None,
            rope: Arc::new(RopeTable {
                cos: vec![1.0, 0.0],
                sin: vec![0.0, 1.0],
                half: 1,
                interleaved: false,
            }),
            alibi: None,
            sinks: None,
        };
        adjust(&mut op);
        let out = q.apply_op3_no_bwd(&k, &v, &op).unwrap();
        out.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn attention_by_hand() {
        // Rotated, q1 = k1 = [-1, 0] and k0 = [1, 0]: token 1 scores -1 (token 0) and 1
        // (itself), softmax [0.1192, 0.8808], output 0.1192·[1, 2] + 0.8808·[3, 4].
        close(&attention(|_| ()), &[0., 0., 1., 2., 2.7616, 3.7616], 1e-4);
        // A window of one: each token sees itself only.
        close(
            &attention(|op| op.window = Some(1)),
            &[0., 0., 1., 2., 3., 4.],
            1e-6,
        );
        // Soft-capping at 0.5: scores ±0.5·tanh(2) = ±0.4820, weights [0.2760, 0.7240].
        close(
            &attention(|op| op.softcap = Some(0.5)),
            &[0., 0., 1., 2., 2.448, 3.448],
            1e-3,
        );
        // A sink logit of 1: token 0 scores 1 against the sink's 1, weight 1/2 on its value;
        // token 1's e^-1, e^1 and the sink's e^1 give 0.0634 and 0.4683 on its two values.
        close(
            &attention(|op| op.sinks = Some(vec![1.0].into())),
            &[0., 0., 0.5, 1., 1.4683, 2.0],
            1e-4,
        );
        // ALiBi with a steep slope (100 per position): token 1's scores -1 and 1 + 100 put
        // all its weight on itself. The shift before `exp` must include the slope's part,
        // or e^100 overflows f32 and the row turns NaN (as long BLOOM sentences once did).
        close(
            &attention(|op| op.alibi = Some(vec![100.0].into())),
            &[0., 0., 1., 2., 3., 4.],
            1e-6,
        );
    }

    #[test]
    fn grouped_heads_share_keys_and_strided_rows_are_read() {
        // Two query heads on one key/value head, q and k taken as column ranges of one tensor.
        let device = Device::Cpu;
        let qkv = Tensor::randn(0f32, 1.0, (3, 8), &device).unwrap();
        let op = |heads, kv_heads| Attention {
            spans: spans(&[(0, 3)]),
            heads,
            kv_heads,
            head_dim: 2,
            scale: 0.7,
            softcap: None,
            window: None,
            rope: Arc::new(RopeTable {
                cos: vec![1.0, 0.6, 0.0],
                sin: vec![0.0, 0.8, 1.0],
                half: 1,
                interleaved: false,
            }),
            alibi: None,
            sinks: None,
        };
        let q = qkv.narrow(1, 0, 4).unwrap();
        let k = qkv.narrow(1, 4, 2).unwrap();
        let v = qkv.narrow(1, 6, 2).unwrap();
        let grouped = q.apply_op3_no_bwd(&k, &v, &op(2, 1)).unwrap();
        // The same as each query head on its own copy of the key/value head.
        for head in 0..2 {
            let q = q.narrow(1, head * 2, 2).unwrap().contiguous().unwrap();
            let alone = q
                .apply_op3_no_bwd(
                    &k.contiguous().unwrap(),
                    &v.contiguous().unwrap(),
                    &op(1, 1),
                )
                .unwrap();
            let ours = grouped.narrow(1, head * 2, 2).unwrap();
            close(
                &ours.flatten_all().unwrap().to_vec1().unwrap(),
                &alone.flatten_all().unwrap().to_vec1().unwrap(),
                1e-6,
            );
        }
    }

    #[test]
    fn residual_adds_norms_and_pools_by_hand() {
        let device = Device::Cpu;
        let h = Tensor::new(&[[1f32, 2.], [0., 0.], [2., 2.], [3., 4.]], &device).unwrap();
        let delta = Tensor::new(&[[1f32, 2.], [5., 5.], [0., 1.], [0., 0.]], &device).unwrap();
        // Sentences at rows 0 and 2..4; row 1 is a gap.
        let pooling = HostPooling {
            spans: vec![Span { start: 0, len: 1 }, Span { start: 2, len: 2 }].into(),
            weights: vec![1.0, 0.0, 0.25, 0.75],
            last: vec![1.0, 0.0, 0.0, 1.0],
        };
        // One layer, d_ff 1: a row is nas | nav | 2 hidden | 2 last, each hidden of width 2.
        let layout = CaptureLayout {
            layers: 1,
            d_ff: 1,
            d_model: 2,
        };
        let sink = Arc::new(PoolSink::new(layout, 2));
        let op = Residual {
            add: true,
            norm: Some(Arc::new(HostNorm {
                weight: vec![1.0, 2.0],
                eps: 0.0,
                centered: false,
                bias: None,
            })),
            spans: pooling.spans.clone(),
            pool: Some((Arc::new(pooling), sink.clone(), 1)),
        };
        let out: Vec<f32> = h.apply_op2_no_bwd(&delta, &op).unwrap().to_vec1().unwrap();
        let (summed, normed) = out.split_at(8);
        let rows = sink.rows.lock().unwrap().clone();
        let pooled: Vec<f32> = rows
            .chunks_exact(layout.width())
            .flat_map(|row| [&row[4..6], &row[8..10]].concat())
            .collect();
        close(summed, &[2., 4., 0., 0., 2., 3., 3., 4.], 0.0);
        // [2, 4]: rms √10 → [0.6325, 1.2649·2]; [2, 3]: rms √6.5; [3, 4]: rms √12.5.
        let expected_normed = [0.6325, 2.5298, 0., 0., 0.7845, 2.3534, 0.8485, 2.2627];
        close(normed, &expected_normed, 1e-4);
        // Sentence 0: pooled = last = [2, 4]. Sentence 1: 0.25·[2, 3] + 0.75·[3, 4], last [3, 4].
        close(&pooled, &[2., 4., 2., 4., 2.75, 3.75, 3., 4.], 1e-6);
        // Slot 0 and the neuron columns are untouched.
        assert!(
            rows.chunks_exact(layout.width())
                .all(|row| row[..4] == [0.0; 4])
        );
    }

    /// The fused kernel gives what candle's ops (the generic path) give.
    #[test]
    fn fused_mlp_matches_candle_ops() {
        let device = Device::Cpu;
        let (n, f) = (5, 6);
        // Wide enough that xIELU meets its second positive region (below about −1.5 here).
        let mut gate: Vec<f32> = Tensor::randn(0f32, 2.0, n * f, &device)
            .unwrap()
            .to_vec1()
            .unwrap();
        gate[..3].copy_from_slice(&[-4.0, -0.5, 1.5]);
        let gate = Tensor::from_vec(gate, (n, f), &device).unwrap();
        let up = Tensor::randn(0f32, 1.0, (n, f), &device).unwrap();
        // Sentences at rows 0..2 and 3..5.
        let weights = vec![0.5f32, 0.5, 0.0, 0.2, 0.8];
        let pooling = Arc::new(HostPooling {
            spans: vec![Span { start: 0, len: 2 }, Span { start: 3, len: 2 }].into(),
            weights: weights.clone(),
            last: vec![0.0, 1.0, 0.0, 0.0, 1.0],
        });
        // [2, n] pooling matrix of the two sentences.
        let mut matrix = vec![0f32; 2 * n];
        matrix[..2].copy_from_slice(&weights[..2]);
        matrix[n + 3..2 * n].copy_from_slice(&weights[3..]);
        let matrix = Tensor::from_vec(matrix, (2, n), &device).unwrap();
        let xielu = LayerActivation::XIelu(XIelu::from_stored(0.0, 0.0, 0.5, -1e-6));
        assert!(
            xielu
                .apply(&Tensor::new(&[-4f32], &device).unwrap())
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0]
                > 0.0
        );
        for activation in [
            LayerActivation::Silu,
            LayerActivation::GeluTanh,
            LayerActivation::Gelu,
            LayerActivation::Relu2,
            xielu,
        ] {
            for nav_source in [NavSource::Activation, NavSource::ActivationTimesUp] {
                // Three layers; this is layer 1: a row is nas [3·f] | nav [3·f] | hidden [4·1] ×2.
                let layout = CaptureLayout {
                    layers: 3,
                    d_ff: f,
                    d_model: 1,
                };
                let sink = Arc::new(PoolSink::new(layout, 2));
                let op = FusedMlp {
                    gated: true,
                    activation,
                    nav_source,
                    pool: pooling.clone(),
                    sink: sink.clone(),
                    layer: 1,
                    neuron_offset: 0,
                };
                let mut out: Vec<f32> = gate
                    .apply_op2_no_bwd(&up, &op)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                for row in sink.rows.lock().unwrap().chunks_exact(layout.width()) {
                    out.extend(&row[f..2 * f]);
                    out.extend(&row[4 * f..5 * f]);
                }
                let act = activation.apply(&gate).unwrap();
                let product = (&act * &up).unwrap();
                let magnitude = match nav_source {
                    NavSource::Activation => act.abs().unwrap(),
                    NavSource::ActivationTimesUp => product.abs().unwrap(),
                };
                let sign = if activation.positive_with_input() {
                    &gate
                } else {
                    &act
                };
                let active = sign.gt(0f64).unwrap().to_dtype(DType::F32).unwrap();
                let nas = matrix.matmul(&active).unwrap();
                let nav = matrix.matmul(&magnitude).unwrap();
                let mut expected: Vec<f32> = product.flatten_all().unwrap().to_vec1().unwrap();
                expected[2 * f..3 * f].fill(0.0); // the gap row
                for s in 0..2 {
                    expected.extend(nas.get(s).unwrap().to_vec1::<f32>().unwrap());
                    expected.extend(nav.get(s).unwrap().to_vec1::<f32>().unwrap());
                }
                close(&out, &expected, 1e-5);
            }
        }
    }

    #[test]
    fn overlapping_spans_are_an_error() {
        let device = Device::Cpu;
        let h = Tensor::zeros((3, 2), DType::F32, &device).unwrap();
        let op = Residual {
            add: true,
            norm: None,
            pool: None,
            spans: spans(&[(0, 2), (1, 2)]),
        };
        assert!(h.apply_op2_no_bwd(&h, &op).is_err());
    }
}
