//! Text → token ids, keeping track of which ids are special (BOS, …) so pooling can skip them.

use std::path::Path;

use super::error::{EngineError, Result};

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

/// One tokenized sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// `true` where the tokenizer inserted a special token.
    pub special: Vec<bool>,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::Tokenizer {
                path: path.to_path_buf(),
                message: "tokenizer.json is missing".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| EngineError::Tokenizer {
            path: path.to_path_buf(),
            message: format!("cannot parse tokenizer.json: {e}"),
        })?;
        Ok(Self { inner })
    }

    pub fn from_tokenizer(inner: tokenizers::Tokenizer) -> Self {
        Self { inner }
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes with the tokenizer's default special tokens (as `tokenizer(text)` in Python).
    pub fn encode(&self, text: &str) -> Result<Tokens> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| EngineError::Tokenizer {
                path: Default::default(),
                message: format!("cannot encode text: {e}"),
            })?;
        Ok(Tokens {
            ids: encoding.get_ids().to_vec(),
            special: encoding
                .get_special_tokens_mask()
                .iter()
                .map(|&m| m != 0)
                .collect(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
