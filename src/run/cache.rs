//! The on-disk cache: pooled states per language (keyed by model + sentences + capture
//! settings + dtype) and finished runs (keyed by everything). Reopening a run is instant, adding
//! a language computes only that language, and a cancelled run keeps every finished language.
//! A corrupt or old entry is recomputed with a warning, never trusted.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::analysis::lang::Lang;
use crate::engine::CaptureSettings;
use crate::engine::model::hex;
use crate::engine::states::StatesFile;

use super::{RUN_FORMAT_VERSION, Run, RunSettings};

/// The cache folder: `<cache>/states/…` and `<cache>/runs/…`.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// `$NEURONXA_CACHE` or the platform cache folder.
    pub fn default_location() -> Self {
        Self::new(crate::engine::hub::cache_dir())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn states_path(&self, key: &str) -> PathBuf {
        self.root.join("states").join(format!("{key}.safetensors"))
    }

    pub fn run_path(&self, key: &str) -> PathBuf {
        self.root.join("runs").join(key).join("run.json")
    }

    /// Where the job caches a finished run (the key is recomputed from the run's provenance,
    /// exactly as the job computed it before running).
    pub fn run_path_of(&self, run: &Run) -> PathBuf {
        self.run_path(&run_key(
            &run.provenance.model.fingerprint,
            &run.provenance.corpus_hash,
            &run.settings,
            &run.provenance.dtype,
        ))
    }

    /// Cached states, or `Ok(None)` when absent. A broken file is an `Err` the caller reports
    /// as a warning before recomputing.
    pub fn load_states(&self, key: &str) -> Result<Option<StatesFile>, String> {
        let path = self.states_path(key);
        if !path.exists() {
            return Ok(None);
        }
        StatesFile::open(&path)
            .map(Some)
            .map_err(|e| format!("ignoring a damaged cache entry ({e}); recomputing"))
    }

    pub fn load_run(&self, key: &str) -> Result<Option<Run>, String> {
        let path = self.run_path(key);
        if !path.exists() {
            return Ok(None);
        }
        Run::load_json(&path)
            .map(Some)
            .map_err(|e| format!("ignoring a cached run ({e}); recomputing"))
    }

    /// Finished runs in the cache, newest first.
    pub fn recent_runs(&self) -> Vec<(PathBuf, Run)> {
        let Ok(entries) = std::fs::read_dir(self.root.join("runs")) else {
            return Vec::new();
        };
        let mut runs: Vec<(PathBuf, Run)> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("run.json"))
            .filter_map(|p| Run::load_json(&p).ok().map(|r| (p, r)))
            .collect();
        runs.sort_by_key(|(_, r)| std::cmp::Reverse(r.provenance.started_at));
        runs
    }
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

/// Raised when a fix changes the numbers a model gives, so that states and runs cached before
/// it are computed again rather than reopened (2: the CPU attention kernel's ALiBi overflow,
/// which left NaN in BLOOM's states past ~100 tokens; 3: GGUF tokenizers splitting text as the
/// models' own tokenizers do, which changed the tokens of BLOOM, Falcon, Command-R, StarCoder,
/// DeepSeek, StableLM 2, Llama 3 and other GGUF files on some texts).
const NUMERICS_REVISION: u32 = 3;

/// Key of one language's pooled states.
pub fn states_key(
    model_fingerprint: &str,
    lang: &Lang,
    sentences: &[String],
    capture: &CaptureSettings,
    dtype: &str,
) -> String {
    let sentences = sentences.join("\n");
    let capture = serde_json::to_string(capture).unwrap_or_default();
    sha256_hex(&[
        b"states",
        &RUN_FORMAT_VERSION.to_le_bytes(),
        &NUMERICS_REVISION.to_le_bytes(),
        model_fingerprint.as_bytes(),
        lang.code().as_bytes(),
        sentences.as_bytes(),
        capture.as_bytes(),
        dtype.as_bytes(),
    ])
}

/// Key of a whole run: the model, the selected corpus and every setting that changes a number.
pub fn run_key(
    model_fingerprint: &str,
    corpus_hash: &str,
    settings: &RunSettings,
    dtype: &str,
) -> String {
    // Device and batch size do not change the scores beyond float noise; they stay out of the
    // key so that a run computed on a GPU reopens on a laptop.
    let mut keyed = settings.clone();
    keyed.device = Default::default();
    keyed.batch_size = 0;
    let settings = serde_json::to_string(&keyed).unwrap_or_default();
    sha256_hex(&[
        b"run",
        &RUN_FORMAT_VERSION.to_le_bytes(),
        &NUMERICS_REVISION.to_le_bytes(),
        model_fingerprint.as_bytes(),
        corpus_hash.as_bytes(),
        settings.as_bytes(),
        dtype.as_bytes(),
    ])
}
