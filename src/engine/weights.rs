//! Where the decoder's tensors come from: safetensors files (single or sharded) or GGUF.
//!
//! Every tensor is asked for by its Hugging Face name with the shape the config implies, so a
//! mismatched checkpoint is an error naming the tensor and the file, not a wrong answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::config::ModelConfig;
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
                // gpt-oss' experts: MXFP4 blocks and scales, stored as bytes.
                let mxfp4 = name.ends_with("_blocks") || name.ends_with("_scales");
                dtypes.insert(if mxfp4 && view.dtype() == safetensors::Dtype::U8 {
                    "mxfp4".to_string()
                } else {
                    format!("{:?}", view.dtype()).to_lowercase()
                });
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

/// The shard file names an index (`*.index.json`) lists, each once, in a stable order.
pub fn shard_names(index_path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| EngineError::io(index_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::weights(index_path, format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| EngineError::weights(index_path, "no \"weight_map\" object"))?;
    let mut names: Vec<String> = map
        .values()
        .filter_map(serde_json::Value::as_str)
        .map(String::from)
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// The shard files an index names, in a stable order, each checked to exist.
fn shard_files(index_path: &Path) -> Result<Vec<PathBuf>> {
    let folder = index_path.parent().unwrap_or(Path::new("."));
    let files: Vec<PathBuf> = shard_names(index_path)?
        .iter()
        .map(|n| folder.join(n))
        .collect();
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

/// The weights of a model folder: safetensors where there are any, else PyTorch's own
/// `pytorch_model.bin` (or its shards), as older checkpoints have only that.
pub enum FolderWeights {
    Safetensors(SafetensorsSource),
    Pytorch(PytorchSource),
}

impl FolderWeights {
    pub fn open(folder: &Path) -> Result<Self> {
        let pytorch = folder.join("pytorch_model.bin");
        let pytorch_index = folder.join("pytorch_model.bin.index.json");
        let has_safetensors = std::fs::read_dir(folder)
            .map_err(|e| EngineError::io(folder, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .any(|p| {
                p.extension().is_some_and(|x| x == "safetensors")
                    || p.file_name()
                        .is_some_and(|n| n == "model.safetensors.index.json")
            });
        if !has_safetensors && (pytorch.exists() || pytorch_index.exists()) {
            return Ok(Self::Pytorch(PytorchSource::open_folder(folder)?));
        }
        SafetensorsSource::open_folder(folder)
            .map(Self::Safetensors)
            .map_err(|e| match e {
                EngineError::Weights { path, .. } if path == folder => EngineError::weights(
                    folder,
                    "no model.safetensors (or its shards and index), and no pytorch_model.bin",
                ),
                other => other,
            })
    }

    pub fn files(&self) -> &[PathBuf] {
        match self {
            Self::Safetensors(s) => s.files(),
            Self::Pytorch(p) => &p.files,
        }
    }

    fn source(&self) -> &dyn TensorSource {
        match self {
            Self::Safetensors(s) => s,
            Self::Pytorch(p) => p,
        }
    }
}

impl TensorSource for FolderWeights {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        self.source().load(name, shape, dtype, device)
    }

    fn contains(&self, name: &str) -> bool {
        self.source().contains(name)
    }

    fn origin(&self) -> &Path {
        self.source().origin()
    }

    fn storage_dtype(&self) -> String {
        self.source().storage_dtype()
    }
}

/// PyTorch checkpoints (`torch.save` zip archives), read by candle's data-only unpickler (no
/// code in the file runs); each tensor is read from its archive when asked for.
pub struct PytorchSource {
    folder: PathBuf,
    files: Vec<PathBuf>,
    shards: Vec<candle_core::pickle::PthTensors>,
    /// tensor name → index into `shards`
    index: HashMap<String, usize>,
    storage_dtype: String,
}

impl PytorchSource {
    /// Opens `pytorch_model.bin`, or every shard of `pytorch_model.bin.index.json`, in `folder`.
    pub fn open_folder(folder: &Path) -> Result<Self> {
        let index_path = folder.join("pytorch_model.bin.index.json");
        let files = if index_path.exists() {
            shard_files(&index_path)?
        } else {
            vec![folder.join("pytorch_model.bin")]
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        let mut dtypes = std::collections::BTreeSet::new();
        for (i, file) in files.iter().enumerate() {
            let shard = candle_core::pickle::PthTensors::new(file, None).map_err(|e| {
                EngineError::weights(
                    file,
                    format!(
                        "not a PyTorch checkpoint this program can read ({}); is it truncated, \
                         or saved before PyTorch 1.6?",
                        candle_message(&e)
                    ),
                )
            })?;
            for (name, info) in shard.tensor_infos() {
                dtypes.insert(format!("{:?}", info.dtype).to_lowercase());
                index.insert(name.clone(), i);
            }
            shards.push(shard);
        }
        Ok(Self {
            folder: folder.to_path_buf(),
            files,
            shards,
            index,
            storage_dtype: dtypes.into_iter().collect::<Vec<_>>().join("+"),
        })
    }
}

impl TensorSource for PytorchSource {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let Some(&file) = self.index.get(name) else {
            return Err(EngineError::weights(
                &self.folder,
                format!("tensor \"{name}\" is missing"),
            ));
        };
        let path = &self.files[file];
        let unreadable =
            |message: String| EngineError::weights(path, format!("tensor \"{name}\": {message}"));
        let tensor = self.shards[file]
            .get(name)
            .map_err(|e| unreadable(candle_message(&e)))?
            .ok_or_else(|| unreadable("listed but not readable".into()))?;
        check_shape(name, tensor.dims(), shape, path)?;
        Ok(tensor.to_dtype(dtype)?.to_device(device)?)
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
    /// Weights transposed (GPT-2's `Conv1D`, `[in, out]`); biases as asked.
    Conv1D,
    /// q, k and v rows grouped per key/value head — the group's query heads, then its key,
    /// then its value — where the decoder stacks all q, then all k, then all v rows. BLOOM's
    /// and GPT-NeoX's fused `query_key_value` (one query head per group: `[heads, 3, d]`) and
    /// Falcon's (`[kv_heads, heads/kv_heads + 2, d]`), weight and bias.
    Grouped,
}

/// The names a family's checkpoints give the decoder's tensors (GPT-2, BLOOM, XGLM, GPT-NeoX
/// name theirs their own way; the decoder asks in Llama's).
pub struct NameTable {
    pub family: &'static str,
    /// What full-model checkpoints put before every name but the output head's
    /// (`transformer.`); bare-model checkpoints have nothing there.
    pub prefix: &'static str,
    /// Decoder name → stored name, after the prefix. The token embeddings come first: their
    /// presence under the prefix tells which kind of checkpoint it is.
    pub fixed: &'static [(&'static str, &'static str)],
    /// The output head's stored name (no prefix).
    pub lm_head: &'static str,
    /// Where the layers are, after the prefix (`h`, `layers`).
    pub layers: &'static str,
    /// A layer's norms: decoder part → stored part.
    pub norms: &'static [(&'static str, &'static str)],
    /// A layer's projections: decoder part → stored part and how it is stored.
    pub parts: &'static [(&'static str, &'static str, Stored)],
}

/// A checkpoint whose tensors have other names, and some other layouts, than the decoder's
/// Llama-style ones, served under the decoder's names.
pub struct RenamedWeights<S> {
    inner: S,
    table: &'static NameTable,
    /// The table's prefix, or nothing for a bare-model checkpoint.
    prefix: &'static str,
    /// For each row of the decoder's stacked q/k/v, the stored row ([`Stored::Grouped`]).
    grouped_rows: Vec<u32>,
}

impl<S: TensorSource> RenamedWeights<S> {
    /// The config's heads place [`Stored::Grouped`] rows.
    pub fn new(inner: S, table: &'static NameTable, config: &ModelConfig) -> Self {
        let embeddings = table.fixed.first().map_or("", |(_, stored)| *stored);
        let prefix = if inner.contains(&format!("{}{embeddings}", table.prefix)) {
            table.prefix
        } else {
            ""
        };
        Self {
            inner,
            table,
            prefix,
            grouped_rows: grouped_qkv_rows(config.num_heads, config.num_kv_heads, config.head_dim),
        }
    }

    /// The stored name and layout of a decoder tensor.
    fn stored(&self, name: &str) -> Option<(String, Stored)> {
        let p = self.prefix;
        if name == "lm_head.weight" {
            return Some((self.table.lm_head.to_string(), Stored::AsAsked));
        }
        if let Some((_, stored)) = self.table.fixed.iter().find(|(asked, _)| *asked == name) {
            return Some((format!("{p}{stored}"), Stored::AsAsked));
        }
        let (layer, part, kind) = layer_tensor_parts(name)?;
        let norm = self.table.norms.iter().find(|(asked, _)| *asked == part);
        let &(_, stored, layout) = match norm {
            Some(&(asked, stored)) => &(asked, stored, Stored::AsAsked),
            None => self.table.parts.iter().find(|(asked, ..)| *asked == part)?,
        };
        let layout = match layout {
            Stored::Conv1D if kind != "weight" => Stored::AsAsked,
            other => other,
        };
        let layers = self.table.layers;
        Some((format!("{p}{layers}.{layer}.{stored}.{kind}"), layout))
    }
}

impl<S: TensorSource> TensorSource for RenamedWeights<S> {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let (stored, layout) = self.stored(name).ok_or_else(|| {
            EngineError::weights(
                self.origin(),
                format!("{} has no tensor for {name}", self.table.family),
            )
        })?;
        match (layout, shape) {
            (Stored::Conv1D, &[rows, cols]) => Ok(self
                .inner
                .load(&stored, &[cols, rows], dtype, device)?
                .t()?
                .contiguous()?),
            (Stored::Grouped, _) => {
                let tensor = self.inner.load(&stored, shape, dtype, device)?;
                if shape.first() != Some(&self.grouped_rows.len()) {
                    return Err(EngineError::weights(
                        self.origin(),
                        format!(
                            "tensor \"{stored}\" has {shape:?}; q, k and v need {} rows",
                            self.grouped_rows.len()
                        ),
                    ));
                }
                let rows = Tensor::from_slice(&self.grouped_rows, self.grouped_rows.len(), device)?;
                Ok(tensor.index_select(&rows, 0)?)
            }
            _ => self.inner.load(&stored, shape, dtype, device),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.stored(name)
            .is_some_and(|(stored, _)| self.inner.contains(&stored))
    }

    fn origin(&self) -> &Path {
        self.inner.origin()
    }

    fn storage_dtype(&self) -> String {
        self.inner.storage_dtype()
    }
}

/// For each row of the decoder's q/k/v stack (all query heads, then all keys, then all values),
/// its row in a [`Stored::Grouped`] tensor.
fn grouped_qkv_rows(heads: usize, kv_heads: usize, head_dim: usize) -> Vec<u32> {
    let group = heads / kv_heads.max(1);
    let block = |kv: usize, slot: usize| (kv * (group + 2) + slot) * head_dim;
    let queries = (0..heads).map(|h| block(h / group.max(1), h % group.max(1)));
    let keys = (0..kv_heads).map(|kv| block(kv, group));
    let values = (0..kv_heads).map(|kv| block(kv, group + 1));
    queries
        .chain(keys)
        .chain(values)
        .flat_map(|start| (start..start + head_dim).map(|row| row as u32))
        .collect()
}

/// `model.layers.{layer}.{part}.{kind}` as `(layer, part, kind)`.
pub fn layer_tensor_parts(name: &str) -> Option<(&str, &str, &str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    Some((layer, part, kind))
}

/// Partial rotary (Phi-4-mini) seen by rotary code that turns whole heads: within each query
/// and key head, the `rotary` turned dimensions are moved to the front of each half (pairs
/// `(i, i + rotary/2)` become `(i, i + head_dim/2)`) and the others to the back, where the
/// decoder gives them frequency 0. Queries and keys move alike, so every attention score is
/// what it was; values and the output projection are untouched.
pub struct PartialRotaryWeights<'a> {
    inner: &'a dyn TensorSource,
    /// For each position of a reordered head, the stored dimension it takes.
    head_order: Vec<u32>,
    num_heads: usize,
    num_kv_heads: usize,
}

impl<'a> PartialRotaryWeights<'a> {
    pub fn new(inner: &'a dyn TensorSource, config: &ModelConfig, rotary: usize) -> Self {
        Self {
            inner,
            head_order: partial_rotary_order(config.head_dim, rotary, config.rope_interleaved),
            num_heads: config.num_heads,
            num_kv_heads: config.num_kv_heads,
        }
    }

    /// The stored row of each row the decoder asks for, for the tensors that hold query or
    /// key heads along their first axis (`None`: untouched).
    fn row_order(&self, name: &str, rows: usize) -> Option<Vec<u32>> {
        let d = self.head_order.len();
        let part = name.rsplit_once('.').map_or(name, |(part, _)| part);
        let (heads, kv_heads) = (self.num_heads, self.num_kv_heads);
        // (first head row, heads) blocks to reorder; the rows after them stay.
        let blocks: Vec<(usize, usize)> = if part.ends_with("self_attn.q_proj") {
            vec![(0, heads)]
        } else if part.ends_with("self_attn.k_proj") {
            vec![(0, kv_heads)]
        } else if part.ends_with("self_attn.qkv_proj") {
            vec![(0, heads), (heads * d, kv_heads)]
        } else if part.ends_with("self_attn.q_norm") || part.ends_with("self_attn.k_norm") {
            // One head's norm (Qwen3 style) or all heads' (OLMo 2 style).
            vec![(0, rows / d)]
        } else {
            return None;
        };
        let mut order: Vec<u32> = (0..rows as u32).collect();
        for (start, count) in blocks {
            for head in 0..count {
                let base = start + head * d;
                for (position, &stored) in self.head_order.iter().enumerate() {
                    if let Some(slot) = order.get_mut(base + position) {
                        *slot = (base as u32) + stored;
                    }
                }
            }
        }
        Some(order)
    }
}

/// Within one head: the stored dimension at each position after the reordering
/// [`PartialRotaryWeights`] describes. With `interleaved` (GLM) the stored pairs are
/// neighbours, `(2i, 2i + 1)`, and come out as halves like the others: the decoder then turns
/// them as it turns any head.
pub fn partial_rotary_order(head_dim: usize, rotary: usize, interleaved: bool) -> Vec<u32> {
    let (half, turned_half, still_half) = (head_dim / 2, rotary / 2, (head_dim - rotary) / 2);
    (0..head_dim)
        .map(|position| {
            let (side, i) = if position < half {
                (0, position)
            } else {
                (1, position - half)
            };
            let stored = if i < turned_half {
                if interleaved {
                    2 * i + side
                } else {
                    side * turned_half + i
                }
            } else {
                rotary + side * still_half + (i - turned_half)
            };
            stored as u32
        })
        .collect()
}

impl TensorSource for PartialRotaryWeights<'_> {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let tensor = self.inner.load(name, shape, dtype, device)?;
        match shape.first().and_then(|&rows| self.row_order(name, rows)) {
            Some(order) => {
                let rows = order.len();
                let index = Tensor::from_vec(order, rows, device)?;
                Ok(tensor.index_select(&index, 0)?)
            }
            None => Ok(tensor),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }

    fn origin(&self) -> &Path {
        self.inner.origin()
    }

    fn storage_dtype(&self) -> String {
        self.inner.storage_dtype()
    }
}

/// Checkpoints that may store some of a layer's tensors under other names than the decoder
/// asks for: a name not found is asked again with each `(asked, stored)` part replaced.
pub struct AliasedWeights<S> {
    inner: S,
    aliases: &'static [(&'static str, &'static str)],
}

impl<S: TensorSource> AliasedWeights<S> {
    pub fn new(inner: S, aliases: &'static [(&'static str, &'static str)]) -> Self {
        Self { inner, aliases }
    }

    /// `name`, or the first alias of it the checkpoint has.
    fn stored(&self, name: &str) -> String {
        if self.inner.contains(name) {
            return name.to_string();
        }
        self.aliases
            .iter()
            .filter(|(asked, _)| name.contains(&format!(".{asked}.")))
            .map(|(asked, stored)| name.replace(&format!(".{asked}."), &format!(".{stored}.")))
            .find(|alias| self.inner.contains(alias))
            .unwrap_or_else(|| name.to_string())
    }
}

impl<S: TensorSource> TensorSource for AliasedWeights<S> {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        self.inner.load(&self.stored(name), shape, dtype, device)
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(&self.stored(name))
    }

    fn origin(&self) -> &Path {
        self.inner.origin()
    }

    fn storage_dtype(&self) -> String {
        self.inner.storage_dtype()
    }
}

/// Qwen3.5's gated attention seen as attention with one more projection: its stored
/// `self_attn.q_proj` holds each head's queries and then that head's output gate. The decoder
/// asks for `self_attn.q_proj` (the queries alone) and `self_attn.q_gate` (the gates alone),
/// each `[heads·head_dim, …]` in head order.
pub struct QueryGateSplit<'a> {
    inner: &'a dyn TensorSource,
    head_dim: usize,
}

/// The name the decoder asks for a gated `q_proj`'s gates by.
pub const QUERY_GATE: &str = "self_attn.q_gate";

impl<'a> QueryGateSplit<'a> {
    pub fn new(inner: &'a dyn TensorSource, config: &ModelConfig) -> Self {
        Self {
            inner,
            head_dim: config.head_dim,
        }
    }

    /// The stored `q_proj` tensor behind `name`, and whether `name` asks for the gates.
    fn stored(name: &str) -> Option<(String, bool)> {
        let (part, kind) = name.rsplit_once('.')?;
        if let Some(prefix) = part.strip_suffix(QUERY_GATE) {
            return Some((format!("{prefix}self_attn.q_proj.{kind}"), true));
        }
        part.ends_with("self_attn.q_proj")
            .then(|| (name.to_string(), false))
    }
}

/// The rows of one half of each head's `2·head_dim` stored rows (`gate`: the second half).
pub fn query_gate_rows(heads: usize, head_dim: usize, gate: bool) -> Vec<u32> {
    let skip = if gate { head_dim } else { 0 };
    (0..heads)
        .flat_map(|head| {
            let first = head * 2 * head_dim + skip;
            (first..first + head_dim).map(|row| row as u32)
        })
        .collect()
}

impl TensorSource for QueryGateSplit<'_> {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let (Some((stored, gate)), Some(&rows)) = (Self::stored(name), shape.first()) else {
            return self.inner.load(name, shape, dtype, device);
        };
        let mut stored_shape = shape.to_vec();
        stored_shape[0] = 2 * rows;
        let tensor = self.inner.load(&stored, &stored_shape, dtype, device)?;
        let order = query_gate_rows(rows / self.head_dim.max(1), self.head_dim, gate);
        let index = Tensor::from_vec(order, rows, device)?;
        Ok(tensor.index_select(&index, 0)?)
    }

    fn contains(&self, name: &str) -> bool {
        match Self::stored(name) {
            Some((stored, _)) => self.inner.contains(&stored),
            None => self.inner.contains(name),
        }
    }

    fn origin(&self) -> &Path {
        self.inner.origin()
    }

    fn storage_dtype(&self) -> String {
        self.inner.storage_dtype()
    }
}

#[cfg(test)]
mod tests {
    use super::partial_rotary_order;

    #[test]
    fn gated_queries_are_the_first_half_of_each_head() {
        // Two heads of 2: stored [q0 q0 g0 g0 q1 q1 g1 g1].
        assert_eq!(super::query_gate_rows(2, 2, false), vec![0, 1, 4, 5]);
        assert_eq!(super::query_gate_rows(2, 2, true), vec![2, 3, 6, 7]);
    }

    #[test]
    fn grouped_qkv_rows_are_stacked_q_then_k_then_v() {
        // One query head per key/value head (BLOOM): [h0 q k v, h1 q k v], head_dim 1.
        assert_eq!(super::grouped_qkv_rows(2, 2, 1), vec![0, 3, 1, 4, 2, 5]);
        // Falcon's groups: 4 query heads on 2 key/value heads, [q q k v, q q k v].
        assert_eq!(
            super::grouped_qkv_rows(4, 2, 1),
            vec![0, 1, 4, 5, 2, 6, 3, 7]
        );
        // One key/value head (multi-query): q all, k, v as stored.
        assert_eq!(
            super::grouped_qkv_rows(3, 1, 2),
            (0..10).collect::<Vec<u32>>()
        );
    }

    #[test]
    fn partial_rotary_moves_turned_pairs_to_the_front_of_each_half() {
        // head_dim 8, 4 turned: pairs (0, 2) and (1, 3) become (0, 4) and (1, 5); 4..8 stay
        // as the pairs (2, 6) and (3, 7) that the decoder does not turn.
        assert_eq!(
            partial_rotary_order(8, 4, false),
            vec![0, 1, 4, 5, 2, 3, 6, 7]
        );
        // Everything turned: nothing moves.
        assert_eq!(
            partial_rotary_order(8, 8, false),
            (0..8).collect::<Vec<u32>>()
        );
        // GLM's neighbouring pairs (0, 1) and (2, 3) become (0, 4) and (1, 5).
        assert_eq!(
            partial_rotary_order(8, 4, true),
            vec![0, 2, 4, 5, 1, 3, 6, 7]
        );
        assert_eq!(partial_rotary_order(4, 4, true), vec![0, 2, 1, 3]);
    }
}
