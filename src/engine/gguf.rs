//! GGUF loading (being written on the `gguf` branch).

use std::path::Path;

use super::config::ModelConfig;
use super::error::{EngineError, Result};
use super::tokenizer::TextTokenizer;
use super::weights::TensorSource;

pub struct GgufModel {
    pub config: ModelConfig,
    pub weights: GgufSource,
    pub tokenizer: TextTokenizer,
}

pub struct GgufSource;

impl TensorSource for GgufSource {
    fn load(
        &self,
        name: &str,
        _shape: &[usize],
        _dtype: candle_core::DType,
        _device: &candle_core::Device,
    ) -> Result<candle_core::Tensor> {
        Err(EngineError::gguf(name, "GGUF support is not built yet"))
    }

    fn contains(&self, _name: &str) -> bool {
        false
    }

    fn origin(&self) -> &Path {
        Path::new("")
    }

    fn storage_dtype(&self) -> String {
        String::new()
    }
}

pub fn open(path: &Path) -> Result<GgufModel> {
    Err(EngineError::gguf(path, "GGUF support is not built yet"))
}

pub fn inspect(path: &Path) -> Result<(ModelConfig, String)> {
    Err(EngineError::gguf(path, "GGUF support is not built yet"))
}
