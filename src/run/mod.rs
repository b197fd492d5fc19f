//! A run: settings + provenance + scores, serializable, cached on disk, produced by a job on a
//! worker thread and consumed by the CLI, the GUI, plots and exports alike.

pub mod bench;
pub mod bench_scoring;
pub mod cache;
pub mod correlate;
pub mod export;
pub mod job;
pub mod scoring;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::corpus::Sample;
use crate::analysis::lang::Lang;
use crate::engine::{CaptureSettings, DTypeChoice, DeviceChoice, ModelInfo, ModelSource};

/// Version of the on-disk run format; older caches are recomputed, never mixed.
pub const RUN_FORMAT_VERSION: u32 = 1;

/// What a score is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Method {
    /// NeuronXA on binary neuron activation states (NASCA, the headline variant).
    Nas,
    /// NeuronXA on neuron activation values (NAVCA).
    Nav,
    /// MEXA baseline: hidden states, pooled like the neurons (position-weighted by default).
    MexaPooled,
    /// MEXA baseline: hidden states at the last token.
    MexaLast,
}

impl Method {
    pub const ALL: [Method; 4] = [Self::Nas, Self::Nav, Self::MexaPooled, Self::MexaLast];

    /// Stable key used in CSV files and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Self::Nas => "nas",
            Self::Nav => "nav",
            Self::MexaPooled => "mexa",
            Self::MexaLast => "mexa_last",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Nas => "NeuronXA (NAS)",
            Self::Nav => "NeuronXA (NAV)",
            Self::MexaPooled => "MEXA (pooled hidden)",
            Self::MexaLast => "MEXA (last token)",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.key().eq_ignore_ascii_case(text.trim()))
    }

    pub fn state_kind(self) -> crate::engine::states::StateKind {
        use crate::engine::states::StateKind;
        match self {
            Self::Nas => StateKind::Nas,
            Self::Nav => StateKind::Nav,
            Self::MexaPooled => StateKind::HiddenPooled,
            Self::MexaLast => StateKind::HiddenLast,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Which parallel corpus to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum CorpusChoice {
    /// The project's own 200-sentence corpus in `data/`.
    #[default]
    Bundled,
    /// A file or folder in any supported format.
    Path(PathBuf),
}

impl CorpusChoice {
    pub fn label(&self) -> String {
        match self {
            Self::Bundled => "bundled".into(),
            Self::Path(p) => p.display().to_string(),
        }
    }
}

/// Everything a user chooses before pressing Run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub model: ModelSource,
    pub corpus: CorpusChoice,
    /// The languages to score, pivot included.
    pub languages: Vec<Lang>,
    pub pivot: Lang,
    /// Parallel sentences per language (the paper: 100).
    pub sentences: usize,
    pub sample: Sample,
    pub capture: CaptureSettings,
    pub methods: Vec<Method>,
    pub device: DeviceChoice,
    pub dtype: DTypeChoice,
    /// Sentences per forward pass; 0 = auto (fits the GPU's free memory; 16 on the CPU).
    pub batch_size: usize,
    /// Seed of the shuffled-pairs chance baseline.
    pub chance_seed: u64,
    /// Held-out sentences per language for the bits-per-byte proxy (0 = off).
    pub proxy_sentences: usize,
}

impl RunSettings {
    /// The built-in default: demo model, bundled corpus, ten languages, pivot English, 100
    /// sentences, every method.
    pub fn default_for(model: ModelSource) -> Self {
        let languages = Lang::defaults();
        let pivot = Lang::english();
        Self {
            model,
            corpus: CorpusChoice::Bundled,
            languages,
            pivot,
            sentences: 100,
            sample: Sample::First,
            capture: CaptureSettings::default(),
            methods: Method::ALL.to_vec(),
            device: DeviceChoice::Auto,
            dtype: DTypeChoice::Auto,
            batch_size: 0,
            chance_seed: 0,
            proxy_sentences: 0,
        }
    }
}

/// Where a run's numbers came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub model: ModelInfo,
    pub corpus_name: String,
    /// sha256 of the selected sentences of every language.
    pub corpus_hash: String,
    pub program_version: String,
    pub device: String,
    pub dtype: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_at: u64,
    /// Wall-clock seconds of the whole run (cached languages take ~0).
    pub seconds: f64,
    pub tokens: usize,
    /// Languages whose states came from the cache rather than the model.
    pub cached_languages: Vec<Lang>,
    /// Where the wall-clock time went (runs saved before it was kept read all zeros).
    #[serde(default)]
    pub timings: Timings,
}

/// Wall-clock seconds of a run's stages; languages from the cache cost none of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Loading the model (onto the device).
    pub loading: f64,
    pub tokenising: f64,
    /// The forward passes with their capture, the pooled states handed into their files.
    pub extracting: f64,
    /// Putting the states files in their place on disk, and copying them out (`--out`).
    pub saving: f64,
    /// Pivot scores and language × language matrices.
    pub scoring: f64,
    /// Of `scoring`, the seconds that ran alongside the extraction of later languages (on a
    /// GPU the scorer works on the host's cores meanwhile), so not added to the run's time.
    #[serde(default)]
    pub scoring_alongside: f64,
}

impl Timings {
    /// "loading 2.7 s, extracting 5.1 s, …" for the stages that took any time.
    pub fn describe(&self) -> String {
        let scoring = if self.scoring_alongside >= 0.05 {
            format!(
                "scoring {:.1} s, of which {:.1} s alongside the extraction",
                self.scoring, self.scoring_alongside
            )
        } else {
            format!("scoring {:.1} s", self.scoring)
        };
        [
            (self.loading, format!("loading {:.1} s", self.loading)),
            (
                self.tokenising,
                format!("tokenising {:.1} s", self.tokenising),
            ),
            (
                self.extracting,
                format!("extracting {:.1} s", self.extracting),
            ),
            (self.saving, format!("saving states {:.1} s", self.saving)),
            (self.scoring, scoring),
        ]
        .into_iter()
        .filter(|(seconds, _)| *seconds >= 0.05)
        .map(|(_, stage)| stage)
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// One method's scores of one language against the pivot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodScores {
    /// μ_l for every layer (METHOD.md §4).
    pub per_layer: Vec<f64>,
    /// The same with the pairs shuffled (seeded): what chance gives.
    pub chance_per_layer: Vec<f64>,
    /// Retrieval P@1 pivot → language and language → pivot, per layer.
    pub p_at_1_forward: Vec<f64>,
    pub p_at_1_backward: Vec<f64>,
    /// Sentences whose pooled vector is all zeros (cosine taken as 0), pivot + language.
    pub zero_vectors: usize,
    /// Per layer, per sentence: was the pair a strict mutual nearest neighbour?
    pub matched: Vec<Vec<bool>>,
    /// Per layer, per pivot sentence: the index of the language sentence nearest to it.
    pub nearest: Vec<Vec<u32>>,
}

impl MethodScores {
    /// NeuronXA(X, P): the mean over layers (the headline number).
    pub fn mean(&self) -> f64 {
        mean(&self.per_layer)
    }

    pub fn max(&self) -> f64 {
        self.per_layer.iter().copied().fold(f64::NAN, f64::max)
    }

    /// The layer with the highest score (the first one on ties).
    pub fn best_layer(&self) -> usize {
        let max = self.max();
        self.per_layer.iter().position(|&v| v == max).unwrap_or(0)
    }

    pub fn chance_mean(&self) -> f64 {
        mean(&self.chance_per_layer)
    }
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// The language × language matrix of one method (METHOD.md §6), symmetric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairMatrix {
    pub languages: Vec<Lang>,
    /// `[layer][i][j]`.
    pub per_layer: Vec<Vec<Vec<f64>>>,
}

impl PairMatrix {
    /// `[i][j]` averaged over layers.
    pub fn mean_over_layers(&self) -> Vec<Vec<f64>> {
        let n = self.languages.len();
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| mean(&self.per_layer.iter().map(|m| m[i][j]).collect::<Vec<_>>()))
                    .collect()
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub format_version: u32,
    pub settings: RunSettings,
    pub provenance: Provenance,
    /// Languages with results, in the order they were computed (pivot first).
    pub languages: Vec<Lang>,
    /// Scores of each language against the pivot, per method.
    pub pivot_scores: BTreeMap<Lang, BTreeMap<Method, MethodScores>>,
    /// Language × language matrices, per method.
    pub matrices: BTreeMap<Method, PairMatrix>,
    /// Bits per byte on held-out sentences (the capability proxy), per language.
    pub proxy_bits_per_byte: BTreeMap<Lang, f64>,
    /// The sentences that were aligned, per language, for the sentence view.
    pub sentences: BTreeMap<Lang, Vec<String>>,
    pub warnings: Vec<String>,
    /// False for a run that was cancelled or failed part-way: it holds the finished languages.
    pub complete: bool,
}

impl Run {
    /// Display name of the model.
    pub fn model_name(&self) -> &str {
        &self.provenance.model.name
    }

    /// Number of layers a method's scores have.
    pub fn layer_count(&self, method: Method) -> usize {
        self.pivot_scores
            .values()
            .find_map(|m| m.get(&method))
            .map_or(0, |s| s.per_layer.len())
    }

    pub fn scores(&self, lang: &Lang, method: Method) -> Option<&MethodScores> {
        self.pivot_scores.get(lang)?.get(&method)
    }

    /// The languages other than the pivot in the order chosen for the run (then any others it
    /// has scores for). A language's place here is its colour, in the window and in exported
    /// plots alike.
    pub fn non_pivot_languages(&self) -> Vec<Lang> {
        let mut order: Vec<Lang> = Vec::new();
        let all = self
            .settings
            .languages
            .iter()
            .chain(&self.languages)
            .chain(self.pivot_scores.keys());
        for lang in all {
            if *lang != self.settings.pivot && !order.contains(lang) {
                order.push(lang.clone());
            }
        }
        order
    }

    /// μ per layer averaged over the languages other than the pivot.
    pub fn mean_curve(&self, method: Method) -> Vec<f64> {
        self.mean_over_languages(method, |s| &s.per_layer)
    }

    /// The shuffled-pairs (chance) score per layer averaged over the languages other than the
    /// pivot (the pivot against itself is no baseline for the others).
    pub fn chance_curve(&self, method: Method) -> Vec<f64> {
        self.mean_over_languages(method, |s| &s.chance_per_layer)
    }

    /// Per layer, the mean of `pick(scores)` over the non-pivot languages with finite values
    /// there (NaN where none has one).
    fn mean_over_languages(
        &self,
        method: Method,
        pick: impl Fn(&MethodScores) -> &[f64],
    ) -> Vec<f64> {
        let series: Vec<&[f64]> = self
            .pivot_scores
            .iter()
            .filter(|(lang, _)| **lang != self.settings.pivot)
            .filter_map(|(_, by_method)| by_method.get(&method).map(&pick))
            .collect();
        (0..self.layer_count(method))
            .map(|l| {
                let values: Vec<f64> = series
                    .iter()
                    .filter_map(|s| s.get(l).copied())
                    .filter(|v| v.is_finite())
                    .collect();
                mean(&values)
            })
            .collect()
    }

    /// Methods present in this run, in the canonical order.
    pub fn methods(&self) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|m| self.pivot_scores.values().any(|s| s.contains_key(m)))
            .collect()
    }

    pub fn save_json(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        atomic_write(path, &json)
    }

    pub fn load_json(path: &Path) -> Result<Self, RunError> {
        let bytes = std::fs::read(path).map_err(|e| RunError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let version: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| RunError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let found = version.get("format_version").and_then(|v| v.as_u64());
        if found != Some(RUN_FORMAT_VERSION as u64) {
            return Err(RunError::OldFormat {
                path: path.to_path_buf(),
                found: found.unwrap_or(0) as u32,
            });
        }
        serde_json::from_value(version).map_err(|e| RunError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid run: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{path} was written by an older version (format {found}, this program reads {RUN_FORMAT_VERSION})"
    )]
    OldFormat { path: PathBuf, found: u32 },
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Analysis(#[from] crate::analysis::error::AnalysisError),
    #[error(
        "the states in {path} are damaged ({source}): delete the file and run again to \
         compute them anew"
    )]
    DamagedStates {
        path: PathBuf,
        source: crate::analysis::error::AnalysisError,
    },
    #[error(
        "the pooled states of this run need {} in {path}, which has {} free: use fewer \
         sentences or languages, or point NEURONXA_CACHE at a larger disk",
        crate::engine::memory::gib(*needed),
        crate::engine::memory::gib(*free)
    )]
    DiskSpace {
        path: PathBuf,
        needed: u64,
        free: u64,
    },
    #[error("{0}")]
    Invalid(String),
}

pub use crate::io::atomic_write;

#[cfg(test)]
mod tests {
    use super::Timings;

    #[test]
    fn timings_name_the_stages_that_took_any_time() {
        let timings = Timings {
            loading: 2.34,
            tokenising: 0.01,
            extracting: 7.0,
            saving: 0.0,
            scoring: 12.96,
            scoring_alongside: 0.0,
        };
        assert_eq!(
            timings.describe(),
            "loading 2.3 s, extracting 7.0 s, scoring 13.0 s"
        );
        let overlapped = Timings {
            scoring_alongside: 6.04,
            ..timings
        };
        assert_eq!(
            overlapped.describe(),
            "loading 2.3 s, extracting 7.0 s, scoring 13.0 s, of which 6.0 s alongside the extraction"
        );
        assert_eq!(Timings::default().describe(), "");
    }
}
