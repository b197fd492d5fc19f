//! `neuronxa bench`: extraction speed against this machine's own matmul throughput.
//!
//! Both numbers come from the same backend in the same process, so the ratio says how close the
//! whole extraction (tokenising, batching, attention, capture, pooling, copies) gets to the
//! matmul roof.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use crate::analysis::corpus;
use crate::analysis::lang::Lang;
use crate::engine::stages::{StageClock, StageTime};
use crate::engine::{DTypeChoice, DeviceChoice, ExtractOptions, Model, ModelSource};

use super::RunError;

pub struct BenchOptions {
    pub model: ModelSource,
    /// A corpus file or folder; `None` = the bundled corpus.
    pub corpus: Option<std::path::PathBuf>,
    /// One sentence per line, extracted as one set (instead of the corpus' languages).
    pub sentences_file: Option<std::path::PathBuf>,
    pub languages: Vec<Lang>,
    pub sentences: usize,
    pub batch_size: usize,
    pub device: DeviceChoice,
    pub dtype: DTypeChoice,
    /// Also time each stage of the forward passes (one more pass over the sentences, the
    /// device synchronised around every stage).
    pub stages: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    pub device: String,
    /// How NAS and NAV were pooled: "CPU kernels", "CUDA capture kernel" or "generic tensor ops".
    pub capture: String,
    /// How linear attention's recurrence ran (Qwen3.5), if the model has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_rule: Option<String>,
    /// Whether the MLP's `act(gate)·up` and attention's softmax ran as the fused CUDA kernels.
    pub fused_kernels: bool,
    /// The largest batch the extraction ran with ("auto" resolved per group; a batch halved
    /// after running out of GPU memory is not counted).
    pub batch_size: usize,
    /// The 2048³ matmul in the model's dtype: the better of one measurement before and one
    /// after extraction (each the best of five products).
    pub matmul_gflops: f64,
    pub sentences: usize,
    pub tokens: usize,
    /// The whole extraction: tokenising, forward passes, copies, per-sentence states.
    pub seconds: f64,
    /// On a GPU: the forward passes with capture alone, synchronised, nothing copied to the host.
    pub forward_seconds: Option<f64>,
    /// On a GPU: the same forward passes without the capture (no pools, no NAS/NAV).
    pub forward_plain_seconds: Option<f64>,
    /// Of `seconds`: the host waiting for batches' states to arrive from the device.
    pub host_waiting_seconds: f64,
    /// Of `seconds`: the host handing states on (checks, copies into the result). On a GPU it
    /// overlaps the next batch's forward pass; longer than the forward passes, it bounds the speed.
    pub host_handing_on_seconds: f64,
    pub load_seconds: f64,
    pub forward_flops: f64,
    pub peak_rss_mb: Option<f64>,
    /// With `stages`: the forward passes with capture, stage by stage (synchronised around
    /// each, so their sum is more than `forward_seconds`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageTime>,
}

impl BenchReport {
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }

    pub fn achieved_gflops(&self) -> f64 {
        self.forward_flops / self.seconds / 1e9
    }

    pub fn ratio(&self) -> f64 {
        self.achieved_gflops() / self.matmul_gflops
    }
}

/// GFLOP/s of an `n × n × n` matmul in `dtype` on `device` (best of several repetitions).
pub fn matmul_gflops(device: &Device, dtype: DType, n: usize) -> Result<f64, RunError> {
    let engine = |e: candle_core::Error| RunError::Engine(e.into());
    let a = Tensor::randn(0f32, 1.0, (n, n), device)
        .map_err(engine)?
        .to_dtype(dtype)
        .map_err(engine)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)
        .map_err(engine)?
        .to_dtype(dtype)
        .map_err(engine)?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        let c = a.matmul(&b).map_err(engine)?;
        device.synchronize().map_err(engine)?;
        drop(c);
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

pub fn bench(options: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<BenchReport, RunError> {
    let groups = sentence_groups(options)?;
    let started = Instant::now();
    let mut model = Model::load(&options.model, options.device, options.dtype)?;
    let load_seconds = started.elapsed().as_secs_f64();
    log(&format!(
        "model {} on {} (loaded in {load_seconds:.2} s; pooling with the {}{})",
        model.info.summary(),
        model.device_label,
        model.decoder.capture_path(),
        if model.decoder.uses_fused_kernels() {
            "; fused activation and softmax kernels"
        } else {
            ""
        }
    ));
    let device = model.decoder.device().clone();
    let dtype = model.decoder.dtype();
    let matmul = matmul_gflops(&device, dtype, 2048)?;
    log(&format!("2048³ matmul: {matmul:.1} GFLOP/s"));

    let cancel = AtomicBool::new(false);
    // Tokenised once, untimed, as a run tokenises each language before its forward passes.
    let tokenised = groups
        .iter()
        .map(|(_, sentences)| model.tokenize_all(sentences))
        .collect::<Result<Vec<_>, _>>()?;
    // Each group resolves "auto" on its own, as a run's languages do; reported is the largest.
    let mut batch_size = 0;
    for group in &tokenised {
        let longest = group.iter().map(|t| t.ids.len()).max().unwrap_or(1);
        batch_size = batch_size.max(model.batch_size_for(longest, options.batch_size)?);
    }
    let extract = ExtractOptions {
        batch_size: options.batch_size,
        ..Default::default()
    };
    log(&format!("batch size {batch_size}"));
    // Warm-up, untimed: a GPU loads its kernels and cuBLAS its handles on first use, and the two
    // page-locked buffers that batches take turns with are allocated (two batches).
    if let Some(group) = tokenised.first() {
        let few = &group[..group.len().min(2 * batch_size)];
        model.extract_tokens(few, &extract, &cancel, &mut |_| {})?;
    }

    // On a GPU, the copy of the pooled states to the host can cost as much as the forward passes,
    // so they are also timed alone (on the CPU there is no copy to speak of).
    let (forward_seconds, forward_plain_seconds) = if device.is_cpu() {
        (None, None)
    } else {
        let (mut with, mut without) = (0f64, 0f64);
        for group in &tokenised {
            with += model.time_forward_only(group, &extract, true)?;
            without += model.time_forward_only(group, &extract, false)?;
        }
        log(&format!(
            "forward passes alone (no copy to the host): {with:.2} s; without the capture: \
             {without:.2} s"
        ));
        (Some(with), Some(without))
    };
    let mut tokens = 0usize;
    let mut flops = 0f64;
    let mut seconds = 0f64;
    let (mut waiting, mut handing_on) = (0f64, 0f64);
    for ((label, _), group) in groups.iter().zip(&tokenised) {
        let t0 = Instant::now();
        let mut last = None;
        model.extract_tokens(group, &extract, &cancel, &mut |p| last = Some(p))?;
        let dt = t0.elapsed().as_secs_f64();
        if let Some(progress) = last {
            waiting += progress.waiting.as_secs_f64();
            handing_on += progress.handing_on.as_secs_f64();
        }
        seconds += dt;
        let lengths = group.iter().map(|t| t.ids.len());
        for t in lengths.clone() {
            // Each token attends to (t+1)/2 positions on average.
            flops += t as f64 * model.config.forward_flops_per_token((t as f64 + 1.0) / 2.0);
        }
        let n_tokens: usize = lengths.sum();
        tokens += n_tokens;
        log(&format!(
            "{label:<24} {n_tokens:>6} tokens {dt:>7.2} s {:>8.0} tok/s",
            n_tokens as f64 / dt
        ));
    }
    let stages = if options.stages {
        let clock = std::sync::Arc::new(StageClock::new(&device));
        model.decoder.set_stage_clock(Some(clock.clone()));
        for group in &tokenised {
            model.time_forward_only(group, &extract, true)?;
        }
        model.decoder.set_stage_clock(None);
        clock.totals()
    } else {
        Vec::new()
    };
    // The machine's own speed drifts over a long run (clocks, neighbours): measured again after
    // the extraction, the ratio is taken against the better of the two.
    let matmul_after = matmul_gflops(&device, dtype, 2048)?;
    log(&format!("2048³ matmul after: {matmul_after:.1} GFLOP/s"));
    let matmul = matmul.max(matmul_after);
    Ok(BenchReport {
        model: model.info.summary(),
        device: model.device_label.clone(),
        capture: model.decoder.capture_path().to_string(),
        fused_kernels: model.decoder.uses_fused_kernels(),
        delta_rule: model.decoder.delta_rule_path().map(str::to_string),
        batch_size,
        matmul_gflops: matmul,
        sentences: groups.iter().map(|(_, s)| s.len()).sum(),
        tokens,
        seconds,
        forward_seconds,
        forward_plain_seconds,
        host_waiting_seconds: waiting,
        host_handing_on_seconds: handing_on,
        load_seconds,
        forward_flops: flops,
        peak_rss_mb: peak_rss_mb(),
        stages,
    })
}

/// What to extract: one group per language of the corpus, or the lines of a sentences file.
fn sentence_groups(options: &BenchOptions) -> Result<Vec<(String, Vec<String>)>, RunError> {
    if let Some(path) = &options.sentences_file {
        let lines = corpus::read_sentence_file(path)?;
        return Ok(vec![(path.display().to_string(), lines)]);
    }
    let corpus = match &options.corpus {
        Some(path) => corpus::load(path)?,
        None => corpus::bundled()?,
    };
    let selected = corpus::select(
        &corpus,
        &options.languages,
        options.sentences,
        corpus::Sample::First,
    )?;
    Ok(options
        .languages
        .iter()
        .filter_map(|lang| {
            selected
                .get(lang)
                .map(|text| (lang.name().to_string(), text.sentences.clone()))
        })
        .collect())
}

/// Peak resident memory of this process (Linux), in MB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
