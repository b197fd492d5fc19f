//! Pooled neuron and hidden states of one language's sentences, and their safetensors form
//! (tensors `nas`, `nav` `[n, layers, d_ff]`, `hidden_weighted`, `hidden_last`
//! `[n, layers + 1, d_model]`, f32), readable from Python with `safetensors.torch.load_file`.

use std::borrow::Cow;
use std::path::Path;

use super::capture::CaptureSettings;
use super::cpu_ops::CaptureLayout;
use super::error::{EngineError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct LanguageStates {
    pub sentences: usize,
    pub layers: usize,
    pub d_ff: usize,
    pub d_model: usize,
    /// `[n, layers, d_ff]`, row-major.
    pub nas: Vec<f32>,
    /// `[n, layers, d_ff]`.
    pub nav: Vec<f32>,
    /// `[n, layers + 1, d_model]`, pooled as the capture settings say.
    pub hidden_pooled: Vec<f32>,
    /// `[n, layers + 1, d_model]` at the last token.
    pub hidden_last: Vec<f32>,
    /// Tokens per sentence (special tokens included).
    pub token_counts: Vec<u32>,
}

/// One sentence's pooled states, borrowed from the host copy of its batch (no allocation per
/// sentence: for an 8B model each sentence carries 3.7 MB of states).
#[derive(Debug, Clone, Copy)]
pub struct SentenceStates<'a> {
    /// `[layers, d_ff]`.
    pub nas: &'a [f32],
    /// `[layers, d_ff]`.
    pub nav: &'a [f32],
    /// `[layers + 1, d_model]`.
    pub hidden_pooled: &'a [f32],
    /// `[layers + 1, d_model]`.
    pub hidden_last: &'a [f32],
    pub token_count: u32,
}

impl<'a> SentenceStates<'a> {
    /// One sentence's row of a batch, as the decoder lays it out ([`CaptureLayout`]).
    pub fn from_row(layout: &CaptureLayout, row: &'a [f32], token_count: u32) -> Self {
        let (nas, nav, hidden_pooled, hidden_last) = layout.split(row);
        Self {
            nas,
            nav,
            hidden_pooled,
            hidden_last,
            token_count,
        }
    }
}

/// Which pooled state a score is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Nas,
    Nav,
    HiddenPooled,
    HiddenLast,
}

impl StateKind {
    /// Every kind, in the states file's order.
    pub const ALL: [StateKind; 4] = [
        StateKind::Nas,
        StateKind::Nav,
        StateKind::HiddenPooled,
        StateKind::HiddenLast,
    ];
}

impl LanguageStates {
    /// Where each pooled state sits in a sentence's row of a batch's capture.
    pub fn capture_layout(&self) -> CaptureLayout {
        CaptureLayout {
            layers: self.layers,
            d_ff: self.d_ff,
            d_model: self.d_model,
        }
    }

    /// Number of layers of a state kind (hidden states include the embeddings).
    pub fn layer_count(&self, kind: StateKind) -> usize {
        match kind {
            StateKind::Nas | StateKind::Nav => self.layers,
            StateKind::HiddenPooled | StateKind::HiddenLast => self.layers + 1,
        }
    }

    pub fn width(&self, kind: StateKind) -> usize {
        match kind {
            StateKind::Nas | StateKind::Nav => self.d_ff,
            StateKind::HiddenPooled | StateKind::HiddenLast => self.d_model,
        }
    }

    fn data(&self, kind: StateKind) -> &[f32] {
        match kind {
            StateKind::Nas => &self.nas,
            StateKind::Nav => &self.nav,
            StateKind::HiddenPooled => &self.hidden_pooled,
            StateKind::HiddenLast => &self.hidden_last,
        }
    }

    /// The `[n, width]` matrix of one layer (copied out of the `[n, layers, width]` layout).
    pub fn layer_matrix(&self, kind: StateKind, layer: usize) -> Vec<f32> {
        let (layers, width) = (self.layer_count(kind), self.width(kind));
        let data = self.data(kind);
        let mut out = Vec::with_capacity(self.sentences * width);
        for s in 0..self.sentences {
            let start = (s * layers + layer) * width;
            out.extend_from_slice(&data[start..start + width]);
        }
        out
    }

    /// The state vector of one sentence at one layer.
    pub fn vector(&self, kind: StateKind, sentence: usize, layer: usize) -> &[f32] {
        let (layers, width) = (self.layer_count(kind), self.width(kind));
        let start = (sentence * layers + layer) * width;
        &self.data(kind)[start..start + width]
    }

    /// `sentences` sentences of zeros, to be filled with [`Self::set_sentence`].
    pub fn zeroed(layers: usize, d_ff: usize, d_model: usize, sentences: usize) -> Self {
        Self {
            sentences,
            layers,
            d_ff,
            d_model,
            nas: vec![0.0; sentences * layers * d_ff],
            nav: vec![0.0; sentences * layers * d_ff],
            hidden_pooled: vec![0.0; sentences * (layers + 1) * d_model],
            hidden_last: vec![0.0; sentences * (layers + 1) * d_model],
            token_counts: vec![0; sentences],
        }
    }

    /// Puts one sentence's states at `index` (large copies run on all cores: on a GPU machine
    /// this copy, not the forward pass, is what bounds the speed of big models).
    pub fn set_sentence(&mut self, index: usize, states: &SentenceStates<'_>) {
        let neurons = self.layers * self.d_ff;
        let hidden = (self.layers + 1) * self.d_model;
        parallel_copy(&mut self.nas[index * neurons..][..neurons], states.nas);
        parallel_copy(&mut self.nav[index * neurons..][..neurons], states.nav);
        parallel_copy(
            &mut self.hidden_pooled[index * hidden..][..hidden],
            states.hidden_pooled,
        );
        parallel_copy(
            &mut self.hidden_last[index * hidden..][..hidden],
            states.hidden_last,
        );
        self.token_counts[index] = states.token_count;
    }

    /// Puts a batch's pooled rows (`[batch.len(), width]`: NAS, NAV, pooled hidden states,
    /// last token's hidden states, as the decoder lays them out) at the sentences `batch`
    /// names, every sentence at once on all cores (on a GPU machine, one sentence at a time,
    /// this copy into fresh memory took longer than the forward passes of big models).
    pub fn set_rows(&mut self, batch: &[usize], rows: &[f32], token_counts: &[u32]) -> Result<()> {
        let layout = self.capture_layout();
        check_batch(&layout, batch, rows, token_counts)?;
        scatter_rows(
            [
                &mut self.nas,
                &mut self.nav,
                &mut self.hidden_pooled,
                &mut self.hidden_last,
            ],
            layout.parts(),
            batch,
            rows,
        )?;
        for (&index, &count) in batch.iter().zip(token_counts) {
            if let Some(slot) = self.token_counts.get_mut(index) {
                *slot = count;
            }
        }
        Ok(())
    }

    /// The states of sentence `index`, borrowed.
    pub fn sentence(&self, index: usize) -> SentenceStates<'_> {
        let neurons = self.layers * self.d_ff;
        let hidden = (self.layers + 1) * self.d_model;
        SentenceStates {
            nas: &self.nas[index * neurons..][..neurons],
            nav: &self.nav[index * neurons..][..neurons],
            hidden_pooled: &self.hidden_pooled[index * hidden..][..hidden],
            hidden_last: &self.hidden_last[index * hidden..][..hidden],
            token_count: self.token_counts[index],
        }
    }

    /// Reads a whole states file into memory (see [`StatesFile`] to read it layer by layer).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        let file = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| EngineError::weights(path, format!("not a states file: {e}")))?;
        let read = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let view = file
                .tensor(name)
                .map_err(|e| EngineError::weights(path, format!("tensor \"{name}\": {e}")))?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(EngineError::weights(
                    path,
                    format!("tensor \"{name}\" is not f32"),
                ));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((view.shape().to_vec(), values))
        };
        let (nas_shape, nas) = read("nas")?;
        let (hidden_shape, hidden_pooled) = read("hidden_weighted")?;
        let (_, nav) = read("nav")?;
        let (_, hidden_last) = read("hidden_last")?;
        let counts = file
            .tensor("token_counts")
            .map_err(|e| EngineError::weights(path, format!("tensor \"token_counts\": {e}")))?;
        let token_counts = counts
            .data()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let [n, layers, d_ff] = nas_shape[..] else {
            return Err(EngineError::weights(
                path,
                "tensor \"nas\" is not 3-dimensional",
            ));
        };
        let d_model = hidden_shape.get(2).copied().unwrap_or(0);
        let states = Self {
            sentences: n,
            layers,
            d_ff,
            d_model,
            nas,
            nav,
            hidden_pooled,
            hidden_last,
            token_counts,
        };
        states.check(path)?;
        Ok(states)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let (n, l, f, h) = (self.sentences, self.layers, self.d_ff, self.d_model);
        let ok = self.nas.len() == n * l * f
            && self.nav.len() == n * l * f
            && self.hidden_pooled.len() == n * (l + 1) * h
            && self.hidden_last.len() == n * (l + 1) * h
            && self.token_counts.len() == n;
        if ok {
            Ok(())
        } else {
            Err(EngineError::weights(
                path,
                "states tensors have inconsistent shapes",
            ))
        }
    }
}

/// The byte layout of a states file: where each tensor's data starts.
#[derive(Debug, Clone, Copy)]
struct StatesLayout {
    sentences: usize,
    layers: usize,
    d_ff: usize,
    d_model: usize,
    /// File offsets of `nas`, `nav`, `hidden_weighted`, `hidden_last`, `token_counts`.
    starts: [u64; 5],
}

impl StatesLayout {
    /// Where each pooled state sits in a sentence's row of a batch's capture.
    fn capture(&self) -> CaptureLayout {
        CaptureLayout {
            layers: self.layers,
            d_ff: self.d_ff,
            d_model: self.d_model,
        }
    }

    fn start(&self, kind: StateKind) -> u64 {
        match kind {
            StateKind::Nas => self.starts[0],
            StateKind::Nav => self.starts[1],
            StateKind::HiddenPooled => self.starts[2],
            StateKind::HiddenLast => self.starts[3],
        }
    }

    fn layer_count(&self, kind: StateKind) -> usize {
        match kind {
            StateKind::Nas | StateKind::Nav => self.layers,
            StateKind::HiddenPooled | StateKind::HiddenLast => self.layers + 1,
        }
    }

    fn width(&self, kind: StateKind) -> usize {
        match kind {
            StateKind::Nas | StateKind::Nav => self.d_ff,
            StateKind::HiddenPooled | StateKind::HiddenLast => self.d_model,
        }
    }

    /// Byte offset of one sentence's vector at one layer.
    fn offset(&self, kind: StateKind, sentence: usize, layer: usize) -> u64 {
        let (layers, width) = (self.layer_count(kind), self.width(kind));
        self.start(kind) + (((sentence * layers + layer) * width) * 4) as u64
    }
}

/// The bytes of a states file's neuron tensors (`nas`, `nav`: each) and hidden-state tensors
/// (`hidden_weighted`, `hidden_last`: each), f32.
fn tensor_bytes(sentences: usize, layers: usize, d_ff: usize, d_model: usize) -> [u64; 2] {
    let (n, l) = (sentences as u64, layers as u64);
    [n * l * d_ff as u64 * 4, n * (l + 1) * d_model as u64 * 4]
}

/// What a states file of `sentences` takes on disk (its data; the header is small).
pub fn file_bytes(sentences: usize, layers: usize, d_ff: usize, d_model: usize) -> u64 {
    let [neurons, hidden] = tensor_bytes(sentences, layers, d_ff, d_model);
    2 * neurons + 2 * hidden + 4 * sentences as u64
}

/// Writes a states file sentence by sentence, so that a language's pooled states never need
/// to be in memory at once. The file is a regular safetensors file (readable with
/// [`LanguageStates::load`] or from Python), written beside its final path and renamed into place by
/// [`StatesWriter::finish`].
pub struct StatesWriter {
    /// The file mapped for writing, where its blocks could be reserved first (Linux): a batch's
    /// rows are then copied in on all cores, instead of one `pwrite` after another.
    map: Option<memmap2::MmapMut>,
    file: std::fs::File,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    layout: StatesLayout,
    written: Vec<bool>,
}

impl StatesWriter {
    pub fn create(
        path: &Path,
        sentences: usize,
        layers: usize,
        d_ff: usize,
        d_model: usize,
        capture: &CaptureSettings,
    ) -> Result<Self> {
        let io = |e| EngineError::io(path, e);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let [neuron_bytes, hidden_bytes] = tensor_bytes(sentences, layers, d_ff, d_model);
        let sizes = [
            neuron_bytes,
            neuron_bytes,
            hidden_bytes,
            hidden_bytes,
            (sentences * 4) as u64,
        ];
        let names = [
            "nas",
            "nav",
            "hidden_weighted",
            "hidden_last",
            "token_counts",
        ];
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".into(),
            serde_json::json!({
                "pooling": format!("{:?}", capture.pooling),
                "skip_special_tokens": capture.skip_special_tokens.to_string(),
                "nav_source": format!("{:?}", capture.nav_source),
            }),
        );
        let mut offset = 0u64;
        let mut relative_starts = [0u64; 5];
        for (i, name) in names.iter().enumerate() {
            let shape = match i {
                0 | 1 => vec![sentences, layers, d_ff],
                2 | 3 => vec![sentences, layers + 1, d_model],
                _ => vec![sentences],
            };
            let dtype = if i == 4 { "U32" } else { "F32" };
            header.insert(
                (*name).into(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + sizes[i]]}),
            );
            relative_starts[i] = offset;
            offset += sizes[i];
        }
        let mut header = serde_json::to_string(&header)
            .map_err(|e| EngineError::weights(path, e.to_string()))?;
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        let data_start = 8 + header.len() as u64;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
        // Read as well as write: a mapping for writing needs both.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io)?;
        use std::os::unix::fs::FileExt;
        file.write_all_at(&(header.len() as u64).to_le_bytes(), 0)
            .map_err(io)?;
        file.write_all_at(header.as_bytes(), 8).map_err(io)?;
        file.set_len(data_start + offset).map_err(io)?;
        Ok(Self {
            map: map_for_writing(&file, data_start + offset),
            file,
            tmp,
            path: path.to_path_buf(),
            layout: StatesLayout {
                sentences,
                layers,
                d_ff,
                d_model,
                starts: relative_starts.map(|s| s + data_start),
            },
            written: vec![false; sentences],
        })
    }

    /// Writes sentence `index` (one sentence of a [`LanguageStates`]).
    pub fn write_sentence(&mut self, index: usize, states: &SentenceStates<'_>) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let io = |e| EngineError::io(&self.tmp, e);
        let l = &self.layout;
        for (kind, data) in [
            (StateKind::Nas, states.nas),
            (StateKind::Nav, states.nav),
            (StateKind::HiddenPooled, states.hidden_pooled),
            (StateKind::HiddenLast, states.hidden_last),
        ] {
            self.file
                .write_all_at(&le_bytes(data), l.offset(kind, index, 0))
                .map_err(io)?;
        }
        let count = states.token_count;
        self.file
            .write_all_at(&count.to_le_bytes(), l.starts[4] + (index * 4) as u64)
            .map_err(io)?;
        self.written[index] = true;
        Ok(())
    }

    /// Writes a batch's rows (see [`StatesSink::put_rows`]): through the file's mapping, all
    /// sentences at once on all cores, or else one sentence after another.
    pub fn write_rows(
        &mut self,
        batch: &[usize],
        rows: &[f32],
        token_counts: &[u32],
    ) -> Result<()> {
        let l = &self.layout;
        let layout = l.capture();
        check_batch(&layout, batch, rows, token_counts)?;
        let [neurons, _, hidden, _] = layout.parts();
        let Some(map) = self.map.as_mut() else {
            let rows = rows.chunks_exact(layout.width());
            for ((&index, row), &count) in batch.iter().zip(rows).zip(token_counts) {
                self.write_sentence(index, &SentenceStates::from_row(&layout, row, count))?;
            }
            return Ok(());
        };
        let sentences = l.sentences;
        let tensors = (l.starts[0] as usize)..(l.starts[4] as usize + 4 * sentences);
        let misplaced = || {
            EngineError::Device("a states file's tensors are not where its header puts them".into())
        };
        let data = map.get_mut(tensors).ok_or_else(misplaced)?;
        let (values, counts) = data.split_at_mut(data.len() - 4 * sentences);
        let values: &mut [f32] = bytemuck::try_cast_slice_mut(values).map_err(|_| misplaced())?;
        let (nas, rest) = values.split_at_mut(sentences * neurons);
        let (nav, rest) = rest.split_at_mut(sentences * neurons);
        let (pooled, last) = rest.split_at_mut(sentences * hidden);
        scatter_rows([nas, nav, pooled, last], layout.parts(), batch, rows)?;
        for (&index, &count) in batch.iter().zip(token_counts) {
            counts[index * 4..][..4].copy_from_slice(&count.to_le_bytes());
            self.written[index] = true;
        }
        Ok(())
    }

    /// Syncs and renames the file into place; every sentence must have been written.
    pub fn finish(self) -> Result<StatesFile> {
        self.finish_with(true)
    }

    /// [`StatesWriter::finish`] for a file that is not kept (a scratch folder): renamed into
    /// place without waiting for the disk (an 8B model's states are 370 MB per language).
    pub fn finish_scratch(self) -> Result<StatesFile> {
        self.finish_with(false)
    }

    fn finish_with(mut self, sync: bool) -> Result<StatesFile> {
        if let Some(missing) = self.written.iter().position(|w| !w) {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(EngineError::weights(
                &self.path,
                format!("sentence {missing} was never written"),
            ));
        }
        if let Some(map) = self.map.take()
            && sync
        {
            map.flush().map_err(|e| EngineError::io(&self.tmp, e))?;
        }
        if sync {
            self.file
                .sync_all()
                .map_err(|e| EngineError::io(&self.tmp, e))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| EngineError::io(&self.path, e))?;
        StatesFile::open(&self.path)
    }
}

/// The fresh states file `file` (`len` bytes) mapped for writing, where its blocks can be
/// reserved first: writing through a mapping into a sparse file on a full disk would be a
/// SIGBUS, not an error. Elsewhere (no `fallocate`, a file system without it, a big-endian
/// machine), `None`, and the writer falls back to `pwrite`.
#[cfg(target_os = "linux")]
fn map_for_writing(file: &std::fs::File, len: u64) -> Option<memmap2::MmapMut> {
    use std::os::fd::AsRawFd;
    if cfg!(target_endian = "big") || len == 0 {
        return None;
    }
    let len = libc::off_t::try_from(len).ok()?;
    // SAFETY: a plain system call on an open descriptor.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
        return None;
    }
    // SAFETY: the file is this writer's own temporary file, which nothing else truncates or
    // writes while it is mapped.
    unsafe { memmap2::MmapMut::map_mut(file) }.ok()
}

#[cfg(not(target_os = "linux"))]
fn map_for_writing(_file: &std::fs::File, _len: u64) -> Option<memmap2::MmapMut> {
    None
}

impl Drop for StatesWriter {
    fn drop(&mut self) {
        // A writer dropped before `finish` (cancelled, failed) leaves nothing behind.
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A states file on disk, read one layer at a time so memory does not grow with the corpus.
#[derive(Debug)]
pub struct StatesFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    layout: StatesLayout,
    pub token_counts: Vec<u32>,
}

impl StatesFile {
    /// Opens and validates a states file (its header, shapes and size).
    pub fn open(path: &Path) -> Result<Self> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let size = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let bad = |m: String| EngineError::weights(path, format!("not a states file: {m}"));
        let mut len_bytes = [0u8; 8];
        (&file)
            .read_exact(&mut len_bytes)
            .map_err(|e| bad(e.to_string()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > size.saturating_sub(8) || header_len > 1 << 24 {
            return Err(bad("header length out of range".into()));
        }
        let mut header = vec![0u8; header_len as usize];
        (&file)
            .read_exact(&mut header)
            .map_err(|e| bad(e.to_string()))?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
        let data_start = 8 + header_len;
        let entry = |name: &str| -> Result<(Vec<usize>, u64, u64)> {
            let t = header
                .get(name)
                .ok_or_else(|| bad(format!("no tensor \"{name}\"")))?;
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_u64().map(|v| v as usize))
                        .collect()
                })
                .unwrap_or_default();
            let offsets = t["data_offsets"].as_array().cloned().unwrap_or_default();
            let (Some(begin), Some(end)) = (
                offsets.first().and_then(|v| v.as_u64()),
                offsets.get(1).and_then(|v| v.as_u64()),
            ) else {
                return Err(bad(format!("tensor \"{name}\" has no data offsets")));
            };
            if data_start + end > size || end < begin {
                return Err(bad(format!(
                    "tensor \"{name}\" lies outside the file (truncated?)"
                )));
            }
            let elements: usize = shape.iter().product();
            if (end - begin) as usize != elements * 4 {
                return Err(bad(format!(
                    "tensor \"{name}\" has the wrong size for its shape"
                )));
            }
            Ok((shape, data_start + begin, data_start + end))
        };
        let (nas, nas_start, _) = entry("nas")?;
        let (_, nav_start, _) = entry("nav")?;
        let (hidden, hidden_start, _) = entry("hidden_weighted")?;
        let (_, last_start, _) = entry("hidden_last")?;
        let (counts, counts_start, counts_end) = entry("token_counts")?;
        let (&[n, layers, d_ff], &[_, _, d_model]) = (&nas[..], &hidden[..]) else {
            return Err(bad(
                "tensors \"nas\" and \"hidden_weighted\" must be 3-dimensional".into(),
            ));
        };
        if counts != [n] || hidden[..2] != [n, layers + 1] {
            return Err(bad("tensor shapes disagree".into()));
        }
        let layout = StatesLayout {
            sentences: n,
            layers,
            d_ff,
            d_model,
            starts: [nas_start, nav_start, hidden_start, last_start, counts_start],
        };
        let mut bytes = vec![0u8; (counts_end - counts_start) as usize];
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut bytes, counts_start)
            .map_err(|e| bad(e.to_string()))?;
        let token_counts = bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            layout,
            token_counts,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sentences(&self) -> usize {
        self.layout.sentences
    }

    pub fn layer_count(&self, kind: StateKind) -> usize {
        self.layout.layer_count(kind)
    }

    pub fn width(&self, kind: StateKind) -> usize {
        self.layout.width(kind)
    }

    /// The `[n, width]` matrix of one layer, read from disk straight into its place, one
    /// sentence's row at a time. (Not through a mapping: the mapped pages of every finished
    /// language would count in the process's resident memory.)
    pub fn layer_matrix(&self, kind: StateKind, layer: usize) -> Result<Vec<f32>> {
        use std::os::unix::fs::FileExt;
        let width = self.width(kind);
        let mut out = vec![0.0f32; self.sentences() * width];
        for (sentence, row) in out.chunks_exact_mut(width.max(1)).enumerate() {
            self.file
                .read_exact_at(
                    bytemuck::cast_slice_mut(row),
                    self.layout.offset(kind, sentence, layer),
                )
                .map_err(|e| EngineError::io(&self.path, e))?;
        }
        if cfg!(target_endian = "big") {
            for value in &mut out {
                *value = f32::from_bits(u32::from_le(value.to_bits()));
            }
        }
        Ok(out)
    }
}

/// Where a batch's pooled rows go: a language's states in memory ([`LanguageStates`]) or a
/// states file ([`StatesWriter`]).
pub trait StatesSink {
    /// Puts rows `[batch.len(), width]` (NAS | NAV | pooled hidden states | last token's hidden
    /// states) at the sentences `batch` names, with their token counts.
    fn put_rows(&mut self, batch: &[usize], rows: &[f32], token_counts: &[u32]) -> Result<()>;
}

impl StatesSink for LanguageStates {
    fn put_rows(&mut self, batch: &[usize], rows: &[f32], token_counts: &[u32]) -> Result<()> {
        self.set_rows(batch, rows, token_counts)
    }
}

impl StatesSink for StatesWriter {
    fn put_rows(&mut self, batch: &[usize], rows: &[f32], token_counts: &[u32]) -> Result<()> {
        self.write_rows(batch, rows, token_counts)
    }
}

/// A batch's rows and token counts: one of each per sentence `batch` names.
fn check_batch(
    layout: &CaptureLayout,
    batch: &[usize],
    rows: &[f32],
    token_counts: &[u32],
) -> Result<()> {
    let width = layout.width();
    if rows.len() != batch.len() * width || token_counts.len() != batch.len() {
        return Err(EngineError::Device(format!(
            "a batch of {} sentences came with {} values for rows of {width} and {} token counts",
            batch.len(),
            rows.len(),
            token_counts.len()
        )));
    }
    Ok(())
}

/// Copies each row of `rows` (its parts `widths` long, one part per region) into the regions'
/// places for the sentence `batch` names, all sentences at once on all cores. Each region holds
/// its part for every sentence, one after another. A sentence out of range or named twice is
/// an error, not a race.
fn scatter_rows(
    regions: [&mut [f32]; 4],
    widths: [usize; 4],
    batch: &[usize],
    rows: &[f32],
) -> Result<()> {
    use rayon::prelude::*;
    let width: usize = widths.iter().sum();
    if widths.contains(&0) {
        return Err(EngineError::Device("a state of width 0".into()));
    }
    let sentences = regions[0].len() / widths[0];
    // One mutable slice per sentence and region; the batch's sentences take theirs.
    let mut places: Vec<Vec<Option<&mut [f32]>>> = regions
        .into_iter()
        .zip(widths)
        .map(|(region, part)| region.chunks_exact_mut(part).map(Some).collect())
        .collect();
    let mut jobs = Vec::with_capacity(batch.len());
    for (&index, row) in batch.iter().zip(rows.chunks_exact(width)) {
        let taken: Option<Vec<&mut [f32]>> = places
            .iter_mut()
            .map(|region| region.get_mut(index).and_then(Option::take))
            .collect();
        let destination = taken.ok_or_else(|| {
            EngineError::Device(format!(
                "sentence {index} is outside the {sentences} sentences or named twice in a batch"
            ))
        })?;
        jobs.push((destination, row));
    }
    jobs.into_par_iter().for_each(|(destination, row)| {
        let mut rest = row;
        for (place, part) in destination.into_iter().zip(widths) {
            let (values, tail) = rest.split_at(part);
            place.copy_from_slice(values);
            rest = tail;
        }
    });
    Ok(())
}

/// f32s as little-endian bytes (safetensors' byte order): a plain view on little-endian
/// machines, a conversion elsewhere.
fn le_bytes(values: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        Cow::Owned(values.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

/// `dst.copy_from_slice(src)`, split over the rayon pool when it is large enough to pay.
fn parallel_copy(dst: &mut [f32], src: &[f32]) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    if src.len() < 4 * CHUNK {
        dst.copy_from_slice(src);
        return;
    }
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_land_at_their_index_and_read_back() {
        // d_ff large enough that the copy is split over threads.
        let (layers, d_ff, d_model) = (2, 200_000, 3);
        let mut states = LanguageStates::zeroed(layers, d_ff, d_model, 3);
        let nas: Vec<f32> = (0..layers * d_ff).map(|i| i as f32).collect();
        let nav: Vec<f32> = nas.iter().map(|v| -v).collect();
        let hidden: Vec<f32> = (0..(layers + 1) * d_model)
            .map(|i| i as f32 * 0.5)
            .collect();
        let sentence = SentenceStates {
            nas: &nas,
            nav: &nav,
            hidden_pooled: &hidden,
            hidden_last: &hidden,
            token_count: 7,
        };
        states.set_sentence(1, &sentence);
        let back = states.sentence(1);
        assert_eq!(back.nas, &nas[..]);
        assert_eq!(back.nav, &nav[..]);
        assert_eq!(back.hidden_last, &hidden[..]);
        assert_eq!(back.token_count, 7);
        // The neighbours are untouched.
        assert!(states.sentence(0).nas.iter().all(|&v| v == 0.0));
        assert!(states.sentence(2).nav.iter().all(|&v| v == 0.0));
        assert_eq!(states.token_counts, [0, 7, 0]);
    }

    #[test]
    fn a_batch_of_rows_lands_at_its_sentences() {
        // 2 layers of 3 neurons, d_model 2: a row is NAS 6 | NAV 6 | pooled 6 | last 6.
        let (layers, d_ff, d_model) = (2, 3, 2);
        let mut states = LanguageStates::zeroed(layers, d_ff, d_model, 4);
        let row = |base: f32| (0..24).map(|i| base + i as f32).collect::<Vec<f32>>();
        let rows = [row(100.0), row(200.0)].concat();
        // A batch runs longest first, so its sentences come in any order.
        states.set_rows(&[3, 1], &rows, &[9, 5]).unwrap();
        let third = states.sentence(3);
        assert_eq!(third.nas, &row(100.0)[..6]);
        assert_eq!(third.nav, &row(100.0)[6..12]);
        assert_eq!(third.hidden_pooled, &row(100.0)[12..18]);
        assert_eq!(third.hidden_last, &row(100.0)[18..]);
        assert_eq!(states.sentence(1).hidden_last, &row(200.0)[18..]);
        assert_eq!(states.token_counts, [0, 5, 0, 9]);
        assert!(states.sentence(0).nas.iter().all(|&v| v == 0.0));
        assert!(states.sentence(2).hidden_pooled.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_batch_that_does_not_fit_is_an_error_not_a_race() {
        let mut states = LanguageStates::zeroed(2, 3, 2, 4);
        let two_rows = vec![1.0; 48];
        let twice = states.set_rows(&[2, 2], &two_rows, &[1, 1]).unwrap_err();
        assert!(twice.to_string().contains("named twice"), "{twice}");
        let outside = states.set_rows(&[0, 4], &two_rows, &[1, 1]).unwrap_err();
        assert!(outside.to_string().contains("sentence 4"), "{outside}");
        let short = states.set_rows(&[0, 1], &two_rows[..40], &[1, 1]);
        assert!(short.is_err());
    }

    /// A batch written through the file's mapping and one written with `pwrite` (the
    /// fallback) read back the same, and the same as in memory.
    #[test]
    fn a_batch_of_rows_is_written_to_a_states_file_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let (layers, d_ff, d_model) = (2, 3, 2);
        let row = |base: f32| (0..24).map(|i| base + i as f32).collect::<Vec<f32>>();
        let mut in_memory = LanguageStates::zeroed(layers, d_ff, d_model, 3);
        in_memory
            .set_rows(&[2, 0], &[row(10.0), row(50.0)].concat(), &[4, 6])
            .unwrap();
        in_memory.set_rows(&[1], &row(90.0), &[8]).unwrap();
        for mapped in [true, false] {
            let path = dir.path().join(format!("mapped_{mapped}.safetensors"));
            let capture = CaptureSettings::default();
            let mut writer =
                StatesWriter::create(&path, 3, layers, d_ff, d_model, &capture).unwrap();
            if mapped {
                #[cfg(target_os = "linux")]
                assert!(
                    writer.map.is_some(),
                    "the temporary directory takes fallocate and mmap"
                );
            } else {
                writer.map = None;
            }
            writer
                .write_rows(&[2, 0], &[row(10.0), row(50.0)].concat(), &[4, 6])
                .unwrap();
            // Not every sentence written yet.
            writer.write_rows(&[1], &row(90.0), &[8]).unwrap();
            // Synced or not, the file reads the same.
            let file = match mapped {
                true => writer.finish().unwrap(),
                false => writer.finish_scratch().unwrap(),
            };
            assert_eq!(
                LanguageStates::load(file.path()).unwrap(),
                in_memory,
                "mapped: {mapped}"
            );
            // And each layer read back is that layer of the states.
            for kind in StateKind::ALL {
                for layer in 0..file.layer_count(kind) {
                    assert_eq!(
                        file.layer_matrix(kind, layer).unwrap(),
                        in_memory.layer_matrix(kind, layer),
                        "{kind:?} layer {layer}"
                    );
                }
            }
        }
        // A sentence never written is an error at the end, and leaves no file behind.
        let path = dir.path().join("short.safetensors");
        let mut writer =
            StatesWriter::create(&path, 3, layers, d_ff, d_model, &CaptureSettings::default())
                .unwrap();
        writer.write_rows(&[0], &row(1.0), &[1]).unwrap();
        assert!(
            writer
                .finish()
                .unwrap_err()
                .to_string()
                .contains("sentence 1")
        );
        assert!(!path.exists());
    }

    #[test]
    fn bytes_are_little_endian() {
        assert_eq!(&*le_bytes(&[1.0f32]), &1.0f32.to_le_bytes());
    }
}
