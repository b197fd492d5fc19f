//! Pooled neuron and hidden states of one language's sentences, and their safetensors form
//! (tensors `nas`, `nav` `[n, layers, d_ff]`, `hidden_weighted`, `hidden_last`
//! `[n, layers + 1, d_model]`, f32), readable from Python with `safetensors.torch.load_file`.

use std::collections::HashMap;
use std::path::Path;

use super::capture::CaptureSettings;
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

/// Which pooled state a score is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Nas,
    Nav,
    HiddenPooled,
    HiddenLast,
}

impl LanguageStates {
    pub fn empty(layers: usize, d_ff: usize, d_model: usize) -> Self {
        Self {
            sentences: 0,
            layers,
            d_ff,
            d_model,
            nas: Vec::new(),
            nav: Vec::new(),
            hidden_pooled: Vec::new(),
            hidden_last: Vec::new(),
            token_counts: Vec::new(),
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

    /// Appends a batch of pooled states (already on the CPU, in f32).
    pub fn extend(&mut self, other: LanguageStates) {
        self.sentences += other.sentences;
        self.nas.extend(other.nas);
        self.nav.extend(other.nav);
        self.hidden_pooled.extend(other.hidden_pooled);
        self.hidden_last.extend(other.hidden_last);
        self.token_counts.extend(other.token_counts);
    }

    /// Writes the states as safetensors (write to a temporary file, then rename).
    pub fn save(&self, path: &Path, capture: &CaptureSettings) -> Result<()> {
        let n = self.sentences;
        let (l, f, h) = (self.layers, self.d_ff, self.d_model);
        let tensors = [
            ("nas", RawTensor::f32(&self.nas, vec![n, l, f])),
            ("nav", RawTensor::f32(&self.nav, vec![n, l, f])),
            (
                "hidden_weighted",
                RawTensor::f32(&self.hidden_pooled, vec![n, l + 1, h]),
            ),
            (
                "hidden_last",
                RawTensor::f32(&self.hidden_last, vec![n, l + 1, h]),
            ),
            ("token_counts", RawTensor::u32(&self.token_counts)),
        ];
        let metadata: HashMap<String, String> = [
            ("pooling".to_string(), format!("{:?}", capture.pooling)),
            (
                "skip_special_tokens".to_string(),
                capture.skip_special_tokens.to_string(),
            ),
            (
                "nav_source".to_string(),
                format!("{:?}", capture.nav_source),
            ),
        ]
        .into_iter()
        .collect();
        let data = safetensors::serialize(
            tensors.iter().map(|(name, tensor)| (*name, tensor)),
            Some(metadata),
        )
        .map_err(|e| EngineError::weights(path, format!("cannot serialize states: {e}")))?;
        crate::io::atomic_write(path, &data).map_err(|e| EngineError::io(path, e))
    }

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

/// A little-endian tensor ready for `safetensors::serialize`.
struct RawTensor {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl RawTensor {
    fn f32(values: &[f32], shape: Vec<usize>) -> Self {
        Self {
            dtype: safetensors::Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    fn u32(values: &[u32]) -> Self {
        Self {
            dtype: safetensors::Dtype::U32,
            shape: vec![values.len()],
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl safetensors::View for &RawTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}
