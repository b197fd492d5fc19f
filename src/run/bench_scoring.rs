//! `neuronxa bench --scoring`: how long the scoring of a run takes for a model's shape, without
//! the model. Each language's states are made up (seeded, with a part shared across languages
//! so that translations are each other's neighbours, as real states are), written to scratch
//! files as a run writes them, and scored language after language exactly as a run scores them.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::analysis::lang::Lang;
use crate::engine::cpu_ops::CaptureLayout;
use crate::engine::states::{StatesFile, StatesWriter};
use crate::engine::{CaptureSettings, ModelSource};

use super::bench::peak_rss_mb;
use super::job::ScratchDir;
use super::{Method, RunError, scoring};

pub struct ScoringBenchOptions {
    pub model: ModelSource,
    pub languages: Vec<Lang>,
    pub sentences: usize,
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScoringBenchReport {
    pub model: String,
    pub layers: usize,
    /// Neurons per layer (NAS and NAV vectors are this long).
    pub neurons: usize,
    pub d_model: usize,
    pub languages: usize,
    pub sentences: usize,
    pub methods: Vec<String>,
    /// Threads the scoring ran on (rayon's pool).
    pub threads: usize,
    /// Making up and writing the states (not part of the scoring).
    pub writing_seconds: f64,
    /// The scoring of all languages, as a run's `scoring` stage.
    pub seconds: f64,
    /// Each language's share of `seconds`, in order: later ones are compared with more.
    pub per_language_seconds: Vec<f64>,
    /// Multiply-adds of the similarity products, ×2.
    pub product_flops: f64,
    /// Per method, the sum of every language's pivot score at every layer: the same states
    /// must give the same sums, whatever the build or machine.
    pub score_sums: std::collections::BTreeMap<String, f64>,
    /// Languages whose normalised rows the scoring kept in memory (instead of reading and
    /// normalising them again for each later language), and their megabytes.
    pub kept_languages: usize,
    pub kept_mb: f64,
    pub peak_rss_mb: Option<f64>,
}

impl ScoringBenchReport {
    pub fn gflops(&self) -> f64 {
        self.product_flops / self.seconds.max(1e-9) / 1e9
    }
}

pub fn bench_scoring(
    options: &ScoringBenchOptions,
    log: &mut dyn FnMut(&str),
) -> Result<ScoringBenchReport, RunError> {
    let config = crate::engine::model::inspect_config(&options.model)?;
    let name = options.model.display_name();
    let layout = CaptureLayout {
        layers: config.num_layers,
        d_ff: config.neurons_per_layer(),
        d_model: config.hidden_size,
    };
    let n = options.sentences;
    if n == 0 || options.languages.is_empty() || options.methods.is_empty() {
        return Err(RunError::Invalid(
            "the scoring benchmark needs sentences, languages and methods".into(),
        ));
    }
    log(&format!(
        "{name}: {} layers × {} neurons, d_model {}; {} languages × {n} sentences",
        layout.layers,
        layout.d_ff,
        layout.d_model,
        options.languages.len()
    ));

    let scratch = ScratchDir::new();
    let writing = Instant::now();
    let mut files = Vec::with_capacity(options.languages.len());
    for (index, lang) in options.languages.iter().enumerate() {
        let path = scratch.path()?.join(format!("{}.safetensors", lang.code()));
        files.push(write_made_up_states(&path, &layout, n, index as u64)?);
    }
    let writing_seconds = writing.elapsed().as_secs_f64();
    log(&format!(
        "states made up and written in {writing_seconds:.1} s"
    ));

    // Multiply-adds of one pair's similarity products at every layer, for every method.
    let per_pair: f64 = options
        .methods
        .iter()
        .map(|method| {
            let kind = method.state_kind();
            let (layers, width) = (files[0].layer_count(kind), files[0].width(kind));
            2.0 * (n * n) as f64 * width as f64 * layers as f64
        })
        .sum();
    let mut scoring =
        scoring::Scoring::new(options.methods.clone(), 0, scoring::keep_budget_from_env());
    let mut per_language_seconds = Vec::new();
    let mut score_sums = std::collections::BTreeMap::new();
    for (index, (lang, states)) in options.languages.iter().zip(files).enumerate() {
        let started = Instant::now();
        let scores = scoring.score(lang.clone(), states)?;
        let seconds = started.elapsed().as_secs_f64();
        for (method, scores) in scores {
            let sum = score_sums.entry(method.key().to_string()).or_insert(0.0);
            *sum += scores.per_layer.iter().sum::<f64>();
        }
        log(&format!(
            "{:<4} against {} languages and itself: {seconds:.2} s",
            lang.code(),
            index
        ));
        per_language_seconds.push(seconds);
    }
    let (kept_bytes, kept_languages) = scoring.kept();
    if kept_languages > 0 {
        log(&format!(
            "normalised rows of {kept_languages} languages kept in memory ({:.0} MB)",
            kept_bytes as f64 / 1e6
        ));
    }
    let seconds = per_language_seconds.iter().sum();

    // Each language against every earlier one and itself: L(L+1)/2 products of n × n, per layer.
    let l = options.languages.len() as f64;
    let pairs = l * (l + 1.0) / 2.0;
    Ok(ScoringBenchReport {
        model: name,
        layers: layout.layers,
        neurons: layout.d_ff,
        d_model: layout.d_model,
        languages: options.languages.len(),
        sentences: n,
        methods: options
            .methods
            .iter()
            .map(|m| m.key().to_string())
            .collect(),
        threads: rayon::current_num_threads(),
        writing_seconds,
        seconds,
        per_language_seconds,
        product_flops: pairs * per_pair,
        score_sums,
        kept_languages,
        kept_mb: kept_bytes as f64 / 1e6,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Writes `sentences` rows of made-up states for language `language`: each value mixes a part
/// shared by every language (the same sentence in translation) with a part of its own, the
/// shared part growing with depth so that the scores range from chance to near 1 across the
/// layers; non-negative where NAS and NAV are.
fn write_made_up_states(
    path: &std::path::Path,
    layout: &CaptureLayout,
    sentences: usize,
    language: u64,
) -> Result<StatesFile, RunError> {
    let mut writer = StatesWriter::create(
        path,
        sentences,
        layout.layers,
        layout.d_ff,
        layout.d_model,
        &CaptureSettings::default(),
    )?;
    let width = layout.width();
    let [neurons, _, hidden, _] = layout.parts();
    let (d_ff, d_model) = (layout.d_ff.max(1), layout.d_model.max(1));
    let depth = |position: usize| -> f32 {
        let layer = if position < 2 * neurons {
            (position % neurons.max(1)) / d_ff
        } else {
            ((position - 2 * neurons) % hidden.max(1)) / d_model
        };
        layer as f32 / layout.layers.max(1) as f32
    };
    // A few sentences at a time keeps the memory of this at a few rows.
    let chunk = 8;
    for first in (0..sentences).step_by(chunk) {
        let batch: Vec<usize> = (first..(first + chunk).min(sentences)).collect();
        let mut rows = vec![0.0f32; batch.len() * width];
        rows.par_chunks_mut(width)
            .zip(&batch)
            .for_each(|(row, &sentence)| {
                // Two seeded streams per sentence: one all languages share, one its own.
                let mut shared = StdRng::seed_from_u64(sentence as u64);
                let mut own = StdRng::seed_from_u64((language + 1) << 32 | sentence as u64);
                for (position, value) in row.iter_mut().enumerate() {
                    let weight = 0.08 + 0.14 * depth(position);
                    let mixed =
                        weight * shared.random::<f32>() + (1.0 - weight) * own.random::<f32>();
                    *value = if position < 2 * neurons {
                        mixed
                    } else {
                        2.0 * mixed - 1.0
                    };
                }
            });
        let token_counts = vec![20u32; batch.len()];
        writer.write_rows(&batch, &rows, &token_counts)?;
    }
    Ok(writer.finish_scratch()?)
}
