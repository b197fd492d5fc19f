//! Where the decoder's tensors come from: safetensors files (single or sharded) or GGUF.
//!
//! Every tensor is asked for by its Hugging Face name with the shape the config implies, so a
//! mismatched checkpoint is an error naming the tensor and the file, not a wrong answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::error::{EngineError, Result, candle_message};

/// A provider of named weight tensors.
pub trait TensorSource: Send + Sync {
    /// The tensor `name`, checked against `shape`, converted to `dtype` on `device`.
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor>;

    fn contains(&self, name: &str) -> bool;

    /// The file or folder these tensors come from, for messages.
    fn origin(&self) -> &Path;

    /// The storage dtype of the weights, for display ("bf16", "Q4_1", …).
    fn storage_dtype(&self) -> String;
}

/// Safetensors weights, memory-mapped; one file or the shards listed in an index.
pub struct SafetensorsSource {
    folder: PathBuf,
    files: Vec<PathBuf>,
    mmaps: Vec<MmapedSafetensors>,
    /// tensor name → index into `files`
    index: HashMap<String, usize>,
    storage_dtype: String,
}

impl SafetensorsSource {
    /// Opens `model.safetensors`, or every shard of `model.safetensors.index.json`, in `folder`.
    pub fn open_folder(folder: &Path) -> Result<Self> {
        let single = folder.join("model.safetensors");
        let index_path = folder.join("model.safetensors.index.json");
        let files = if index_path.exists() {
            shard_files(&index_path)?
        } else if single.exists() {
            vec![single]
        } else {
            // Some repositories name their single file differently.
            let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
                .map_err(|e| EngineError::io(folder, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(EngineError::weights(
                    folder,
                    "no model.safetensors, model.safetensors.index.json or other .safetensors file",
                ));
            }
            found
        };
        Self::open_files(folder, files)
    }

    fn open_files(folder: &Path, files: Vec<PathBuf>) -> Result<Self> {
        let mut mmaps = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        let mut dtypes = std::collections::BTreeSet::new();
        for (i, file) in files.iter().enumerate() {
            if !file.exists() {
                return Err(EngineError::weights(
                    file,
                    "shard listed in model.safetensors.index.json is missing",
                ));
            }
            // SAFETY: the file is mapped read-only; as with every mmap, another process
            // truncating it while we run is outside what we can defend against.
            let mmap = unsafe { MmapedSafetensors::new(file) }.map_err(|e| {
                EngineError::weights(
                    file,
                    format!(
                        "not a valid safetensors file ({e}); is it truncated or still downloading?"
                    ),
                )
            })?;
            for (name, view) in mmap.tensors() {
                dtypes.insert(format!("{:?}", view.dtype()).to_lowercase());
                index.insert(name, i);
            }
            mmaps.push(mmap);
        }
        Ok(Self {
            folder: folder.to_path_buf(),
            files,
            mmaps,
            index,
            storage_dtype: dtypes.into_iter().collect::<Vec<_>>().join("+"),
        })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// The shard files an index names, in a stable order, each checked to exist.
fn shard_files(index_path: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| EngineError::io(index_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::weights(index_path, format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| EngineError::weights(index_path, "no \"weight_map\" object"))?;
    let folder = index_path.parent().unwrap_or(Path::new("."));
    let mut names: Vec<&str> = map.values().filter_map(serde_json::Value::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let files: Vec<PathBuf> = names.iter().map(|n| folder.join(n)).collect();
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        return Err(EngineError::weights(
            missing,
            format!(
                "shard listed in {} is missing",
                index_path.file_name().unwrap_or_default().to_string_lossy()
            ),
        ));
    }
    Ok(files)
}

impl TensorSource for SafetensorsSource {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let Some(&file) = self.index.get(name) else {
            return Err(EngineError::weights(
                &self.folder,
                format!("tensor \"{name}\" is missing"),
            ));
        };
        let path = &self.files[file];
        let unreadable = |e: candle_core::Error| {
            EngineError::weights(path, format!("tensor \"{name}\": {}", candle_message(&e)))
        };
        let view = self.mmaps[file].get(name).map_err(unreadable)?;
        check_shape(name, view.shape(), shape, path)?;
        // Straight from the mapped file to the device, then converted there: no host copy, and
        // a GPU converts far faster than one CPU thread.
        let tensor = self.mmaps[file].load(name, device).map_err(unreadable)?;
        Ok(tensor.to_dtype(dtype)?)
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn origin(&self) -> &Path {
        &self.folder
    }

    fn storage_dtype(&self) -> String {
        self.storage_dtype.clone()
    }
}

/// Errors unless a loaded tensor has the shape the config implies.
pub fn check_shape(name: &str, found: &[usize], expected: &[usize], path: &Path) -> Result<()> {
    if found != expected {
        return Err(EngineError::weights(
            path,
            format!("tensor \"{name}\" has shape {found:?}, the config implies {expected:?}"),
        ));
    }
    Ok(())
}

/// How a checkpoint stores a tensor that the decoder asks for by its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    AsAsked,
    /// Transposed: GPT-2's `Conv1D` weights are `[in, out]`.
    Transposed,
    /// Rows grouped `[heads, 3, head_dim]` where the decoder stacks all q, then all k, then all
    /// v rows (BLOOM's fused `query_key_value`).
    GroupedByHead {
        heads: usize,
        head_dim: usize,
    },
}

/// A checkpoint whose tensors have other names, and some other layouts, than the decoder's
/// Llama-style ones (GPT-2, BLOOM): `rename` gives the stored name and layout of a decoder name.
pub struct RenamedWeights<S> {
    inner: S,
    family: &'static str,
    rename: Box<Rename>,
}

/// A decoder tensor name → the checkpoint's name and layout for it.
type Rename = dyn Fn(&str) -> Option<(String, Stored)> + Send + Sync;

impl<S: TensorSource> RenamedWeights<S> {
    pub fn new(
        inner: S,
        family: &'static str,
        rename: impl Fn(&str) -> Option<(String, Stored)> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            family,
            rename: Box::new(rename),
        }
    }
}

impl<S: TensorSource> TensorSource for RenamedWeights<S> {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let (stored, layout) = (self.rename)(name).ok_or_else(|| {
            EngineError::weights(
                self.origin(),
                format!("{} has no tensor for {name}", self.family),
            )
        })?;
        match (layout, shape) {
            (Stored::Transposed, &[rows, cols]) => Ok(self
                .inner
                .load(&stored, &[cols, rows], dtype, device)?
                .t()?
                .contiguous()?),
            (Stored::GroupedByHead { heads, head_dim }, _) => {
                let tensor = self.inner.load(&stored, shape, dtype, device)?;
                let mut grouped = vec![heads, 3, head_dim];
                grouped.extend(&shape[1..]);
                Ok(tensor
                    .reshape(grouped)?
                    .transpose(0, 1)?
                    .contiguous()?
                    .reshape(shape)?)
            }
            _ => self.inner.load(&stored, shape, dtype, device),
        }
    }

    fn contains(&self, name: &str) -> bool {
        (self.rename)(name).is_some_and(|(stored, _)| self.inner.contains(&stored))
    }

    fn origin(&self) -> &Path {
        self.inner.origin()
    }

    fn storage_dtype(&self) -> String {
        self.inner.storage_dtype()
    }
}

/// `model.layers.{layer}.{part}.{kind}` as `(layer, part, kind)`.
pub fn layer_tensor_parts(name: &str) -> Option<(&str, &str, &str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    Some((layer, part, kind))
}
