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

    /// The tokenizer of a model folder: its `tokenizer.json`, else GPT-2's `vocab.json` and
    /// `merges.txt` (older repositories, such as mGPT's, ship only those), built as
    /// transformers' `GPT2Tokenizer` builds it from them.
    pub fn from_folder(folder: &Path) -> Result<Self> {
        let json = folder.join("tokenizer.json");
        if json.exists() {
            return Self::from_file(&json);
        }
        let (vocab, merges) = (folder.join("vocab.json"), folder.join("merges.txt"));
        if vocab.exists() && merges.exists() {
            return gpt2_files(folder, &vocab, &merges);
        }
        Err(EngineError::Tokenizer {
            path: json,
            message: missing_message(folder),
        })
    }

    /// Whether [`Self::from_folder`] finds a tokenizer in `folder`, without reading it.
    pub fn check_folder(folder: &Path) -> Result<()> {
        let json = folder.join("tokenizer.json");
        if json.exists()
            || (folder.join("vocab.json").exists() && folder.join("merges.txt").exists())
        {
            return Ok(());
        }
        Err(EngineError::Tokenizer {
            path: json,
            message: missing_message(folder),
        })
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

/// What to say when a folder has no tokenizer this program reads: SentencePiece models need
/// transformers to write their `tokenizer.json` once.
fn missing_message(folder: &Path) -> String {
    let sentencepiece = ["tokenizer.model", "sentencepiece.bpe.model", "spiece.model"]
        .into_iter()
        .find(|name| folder.join(name).exists());
    match sentencepiece {
        Some(name) => format!(
            "tokenizer.json is missing; the folder has only a SentencePiece model ({name}), \
             which transformers converts once: python3 -c \"from transformers import \
             AutoTokenizer as T; T.from_pretrained('{dir}').save_pretrained('{dir}')\"",
            dir = folder.display()
        ),
        None => {
            "tokenizer.json is missing (nor are there GPT-2's vocab.json and merges.txt)".into()
        }
    }
}

/// GPT-2's byte-level BPE from `vocab.json` and `merges.txt`: the byte-level pre-tokenizer and
/// decoder, `tokenizer_config.json`'s special tokens (those in the vocabulary) and
/// `add_prefix_space` / `add_bos_token`.
fn gpt2_files(folder: &Path, vocab: &Path, merges: &Path) -> Result<TextTokenizer> {
    use tokenizers::AddedToken;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::processors::template::TemplateProcessing;

    let fail = |path: &Path, message: String| EngineError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    let config_path = folder.join("tokenizer_config.json");
    let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| fail(&config_path, format!("cannot parse: {e}")))?,
        Err(_) => serde_json::Value::Null,
    };
    let flag = |key: &str| config.get(key).and_then(serde_json::Value::as_bool) == Some(true);
    // A special token is a string or `{"content": …}`.
    let token = |key: &str| -> Option<String> {
        let value = config.get(key)?;
        value
            .as_str()
            .or_else(|| value.get("content")?.as_str())
            .map(str::to_string)
    };
    let (Some(vocab_str), Some(merges_str)) = (vocab.to_str(), merges.to_str()) else {
        return Err(fail(vocab, "the path is not valid UTF-8".into()));
    };
    let model = BPE::from_file(vocab_str, merges_str).build().map_err(|e| {
        fail(
            vocab,
            format!("cannot read GPT-2's vocab.json and merges.txt: {e}"),
        )
    })?;
    let mut inner = tokenizers::Tokenizer::new(model);
    inner.with_pre_tokenizer(Some(
        ByteLevel::default().add_prefix_space(flag("add_prefix_space")),
    ));
    inner.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<String> = ["bos_token", "eos_token", "unk_token", "pad_token"]
        .into_iter()
        .filter_map(token)
        .filter(|t| inner.token_to_id(t).is_some())
        .collect();
    let added: Vec<AddedToken> = specials
        .iter()
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    inner
        .add_special_tokens(added)
        .map_err(|e| fail(&config_path, format!("cannot add the special tokens: {e}")))?;
    if flag("add_bos_token")
        && let Some(bos) = token("bos_token")
        && let Some(id) = inner.token_to_id(&bos)
    {
        let template = TemplateProcessing::builder()
            .try_single(format!("{bos}:0 $A:0"))
            .and_then(|b| b.try_pair(format!("{bos}:0 $A:0 {bos}:1 $B:1")))
            .map_err(|e| fail(&config_path, format!("cannot add {bos}: {e}")))?
            .special_tokens(vec![(bos.clone(), id)])
            .build()
            .map_err(|e| fail(&config_path, format!("cannot add {bos}: {e}")))?;
        inner.with_post_processor(Some(template));
    }
    Ok(TextTokenizer { inner })
}
