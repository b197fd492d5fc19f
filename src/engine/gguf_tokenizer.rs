//! A tokenizer rebuilt, without network, from the vocabulary a GGUF file keeps in its metadata.
//!
//! It gives the ids the model's original Hugging Face tokenizer gives, as llama.cpp does (whose
//! test vocabularies `tests/gguf_vocab.rs` checks it against), and is otherwise built the way
//! transformers (v5, `integrations/gguf/gguf_tokenizer_mapping.py`) builds one for
//! `AutoTokenizer.from_pretrained(..., gguf_file=...)`:
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE from the file's tokens and merges, the
//!   text split first by the regexes llama.cpp has for the `tokenizer.ggml.pre` it names
//!   (`engine::gguf_pretokenize`; GPT-2's where it names none; refused where llama.cpp has none),
//!   a piece that is a whole token taken as it is where llama.cpp does (`ignore_merges`);
//! - `"llama"`: SentencePiece as BPE with byte fallback, merges recovered from the scores
//!   (Gemma: from the token order), `▁` in front of the text and for every space;
//! - `"gemma4"`: BPE on raw UTF-8 with the file's merges and byte fallback, every space a `▁`,
//!   the text split at newlines;
//! - control tokens (type 3) and the tokens named BOS / EOS / UNK / PAD become special added
//!   tokens, user-defined ones (type 4) plain added tokens matched as written; BOS / EOS are
//!   added to each text per `tokenizer.ggml.add_bos_token` / `add_eos_token` (BOS by default
//!   for SentencePiece only).
//!
//! Where transformers' GGUF loader departs from the original tokenizers, the original is
//! followed: it gives every pre-tokenizer outside its short table GPT-2's split (BLOOM's,
//! Falcon's, Command-R's, DeepSeek's, SmolLM's digits…), takes no whole-token shortcut (Llama 3
//! reads "Cửa Việt" in three tokens, not five), drops the `▁` before a leading space, and misses
//! GPT-NeoX's whitespace tokens, and Qwen2's composition to NFC (which llama.cpp leaves out too).
//! None of these shows on the fixture sentences, whose references are transformers loading the
//! same file.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::gguf_file::GgufHeader;
use super::gguf_pretokenize::{PreTokenizer, composes_to_nfc, known_count, pre_tokenizer};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{NFC, Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer,
};

use super::error::{EngineError, Result};
use super::gguf::Metadata;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// SentencePiece's word-boundary mark.
const SPIECE_SPACE: &str = "\u{2581}";

/// Architectures whose SentencePiece vocabulary needs Gemma's treatment.
const GEMMA_ARCHITECTURES: &[&str] = &["gemma", "gemma2", "gemma3"];

/// Whether [`from_gguf`] can build the file's tokenizer, from two keys and without reading the
/// vocabulary (for `inspect`, so that a refusal shows before a run).
pub fn check(content: &GgufHeader, path: &Path) -> Result<()> {
    let meta = Metadata::new(content, path);
    let model = meta.string("tokenizer.ggml.model")?;
    let pre = meta.opt_string("tokenizer.ggml.pre")?;
    splitting(&meta, model, pre).map(|_| ())
}

/// How a vocabulary's text is split before its merges.
enum Splitting {
    /// Byte-level BPE, split by this pre-tokenizer's regexes.
    ByteLevel(&'static PreTokenizer),
    /// SentencePiece.
    SentencePiece,
    /// Gemma 4's BPE on raw UTF-8 (spaces as `▁`), split at newlines only.
    Gemma4,
}

/// The split of a vocabulary, or the refusal of a tokenizer model or pre-tokenizer this engine
/// cannot follow.
fn splitting(meta: &Metadata, model: &str, pre: Option<&str>) -> Result<Splitting> {
    match model {
        "gpt2" => pre_tokenizer(pre).map(Splitting::ByteLevel).ok_or_else(|| {
            meta.error(format!(
                "the pre-tokenizer \"{}\" (tokenizer.ggml.pre) is not one of the {} whose \
                 splits this version knows (llama.cpp's, as of llama-cpp-python 0.3.36), so the \
                 text cannot be split as the model was trained to read it; the model's original \
                 folder, whose tokenizer.json says how, can be used instead",
                pre.unwrap_or_default(),
                known_count()
            ))
        }),
        "llama" => Ok(Splitting::SentencePiece),
        "gemma4" => Ok(Splitting::Gemma4),
        other => Err(meta.error(format!(
            "tokenizer model \"{other}\" (tokenizer.ggml.model) is not supported; supported: \
             \"gpt2\" (byte-level BPE), \"llama\" (SentencePiece) and \"gemma4\""
        ))),
    }
}

/// The tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
pub fn from_gguf(content: &GgufHeader, path: &Path) -> Result<Tokenizer> {
    let meta = Metadata::new(content, path);
    let vocab = GgufVocab::read(&meta)?;
    let architecture = meta.opt_string("general.architecture")?.unwrap_or_default();
    let mut tokenizer = match splitting(&meta, vocab.model, vocab.pre)? {
        Splitting::ByteLevel(pre) => byte_level_bpe(&vocab, pre, path)?,
        Splitting::SentencePiece if GEMMA_ARCHITECTURES.contains(&architecture) => {
            gemma_sentencepiece(&vocab, path)?
        }
        Splitting::SentencePiece => sentencepiece(&vocab, path)?,
        Splitting::Gemma4 => gemma4_bpe(&vocab, path)?,
    };
    add_marked_tokens(&mut tokenizer, &vocab, path)?;
    set_post_processor(&mut tokenizer, &vocab, &meta)?;
    Ok(tokenizer)
}

/// The `tokenizer.ggml.*` metadata.
struct GgufVocab<'a> {
    model: &'a str,
    pre: Option<&'a str>,
    tokens: Vec<&'a str>,
    scores: Option<Vec<f32>>,
    token_types: Option<Vec<i64>>,
    merges: Option<Vec<&'a str>>,
    bos_id: Option<usize>,
    eos_id: Option<usize>,
    unk_id: Option<usize>,
    pad_id: Option<usize>,
    add_bos: bool,
    add_eos: bool,
    /// SentencePiece: a `▁` before the text (`tokenizer.ggml.add_space_prefix`, on unless the
    /// file says otherwise, as in llama.cpp).
    add_space_prefix: bool,
}

impl<'a> GgufVocab<'a> {
    fn read(meta: &Metadata<'a>) -> Result<Self> {
        let model = meta.string("tokenizer.ggml.model")?;
        let tokens = meta.string_array("tokenizer.ggml.tokens")?;
        let scores = meta.opt_f32_array("tokenizer.ggml.scores")?;
        let token_types = meta.opt_i64_array("tokenizer.ggml.token_type")?;
        for (key, len) in [
            ("tokenizer.ggml.scores", scores.as_ref().map(Vec::len)),
            (
                "tokenizer.ggml.token_type",
                token_types.as_ref().map(Vec::len),
            ),
        ] {
            if let Some(len) = len.filter(|&n| n != tokens.len()) {
                return Err(meta.error(format!(
                    "\"{key}\" has {len} entries for {} tokens",
                    tokens.len()
                )));
            }
        }
        // An id outside the vocabulary (some files write -1 for "none") is ignored, as llama.cpp
        // does.
        let token_id = |key: &str| -> Result<Option<usize>> {
            let id = meta.opt_i64(key)?;
            let valid = id
                .and_then(|id| usize::try_from(id).ok())
                .filter(|&id| id < tokens.len());
            if let (Some(id), None) = (id, valid) {
                tracing::warn!(
                    "{}: \"{key}\" is {id}, outside the {} tokens; ignored",
                    meta.path().display(),
                    tokens.len()
                );
            }
            Ok(valid)
        };
        // llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise, and
        // always to Gemma 4's.
        let default_add_bos = model == "llama";
        Ok(Self {
            model,
            pre: meta.opt_string("tokenizer.ggml.pre")?,
            merges: meta.opt_string_array("tokenizer.ggml.merges")?,
            bos_id: token_id("tokenizer.ggml.bos_token_id")?,
            eos_id: token_id("tokenizer.ggml.eos_token_id")?,
            unk_id: token_id("tokenizer.ggml.unknown_token_id")?,
            pad_id: token_id("tokenizer.ggml.padding_token_id")?,
            add_bos: model == "gemma4"
                || meta
                    .opt_bool("tokenizer.ggml.add_bos_token")?
                    .unwrap_or(default_add_bos),
            add_eos: meta
                .opt_bool("tokenizer.ggml.add_eos_token")?
                .unwrap_or(false),
            add_space_prefix: meta
                .opt_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true),
            tokens,
            scores,
            token_types,
        })
    }

    /// Tokens of the given llama.cpp type.
    fn tokens_of_type(&self, token_type: i64) -> impl Iterator<Item = &'a str> + '_ {
        self.tokens
            .iter()
            .zip(self.token_types.iter().flatten())
            .filter(move |(_, t)| **t == token_type)
            .map(|(token, _)| *token)
    }
}

fn build_error(path: &Path, what: &str, error: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer {
        path: path.to_path_buf(),
        message: format!("cannot build the {what} from the GGUF vocabulary: {error}"),
    }
}

/// GPT-2's map from bytes to printable characters, in which byte-level vocabularies are spelled.
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| {
        (u32::from('!')..=u32::from('~')).contains(&b)
            || (u32::from('¡')..=u32::from('¬')).contains(&b)
            || (u32::from('®')..=u32::from('ÿ')).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut next_unprintable = 256u32;
    for (byte, slot) in table.iter_mut().enumerate() {
        let byte = byte as u32;
        let code = if printable(byte) {
            byte
        } else {
            next_unprintable += 1;
            next_unprintable - 1
        };
        *slot = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    table
}

/// Byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM…), as transformers' `GPT2Tokenizer`.
fn byte_level_bpe(vocab: &GgufVocab, pre: &PreTokenizer, path: &Path) -> Result<Tokenizer> {
    let spelling = bytes_to_unicode();
    let alphabet: HashSet<char> = spelling.iter().copied().collect();
    // A token spelled outside the byte alphabet is respelled byte by byte, as transformers does.
    let mut ids: Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(id, token)| {
            let key = if token.chars().all(|c| alphabet.contains(&c)) {
                (*token).to_string()
            } else {
                token.bytes().map(|b| spelling[usize::from(b)]).collect()
            };
            (key, id as u32)
        })
        .collect();
    // A user-defined token is matched in the text as it is written (GPT-NeoX's runs of spaces,
    // stored as real spaces): its own spelling must lead to its id too, for `add_marked_tokens`.
    for (id, (token, kind)) in vocab
        .tokens
        .iter()
        .zip(vocab.token_types.iter().flatten())
        .enumerate()
    {
        if *kind == TOKEN_TYPE_USER_DEFINED {
            ids.entry((*token).to_string()).or_insert(id as u32);
        }
    }
    let merges = match &vocab.merges {
        Some(merges) => file_merges(merges, path)?,
        None => merges_from_scores(&vocab.tokens, &score_ranking(vocab)),
    };
    let model = BPE::builder()
        .vocab_and_merges(ids, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| build_error(path, "byte-level BPE", e))?;
    let mut tokenizer = Tokenizer::new(model);
    if composes_to_nfc(vocab.pre) {
        tokenizer
            .with_normalizer(Some(NFC))
            .map_err(|e| build_error(path, "normalizer", e))?;
    }
    tokenizer.with_pre_tokenizer(Some(split_into_bytes(pre, path)?));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// SentencePiece as transformers' `LlamaTokenizer` has it: BPE with byte fallback, `▁` prepended
/// to the text and standing for spaces.
fn sentencepiece(vocab: &GgufVocab, path: &Path) -> Result<Tokenizer> {
    let ids = vocab_ids(vocab.tokens.iter().copied());
    let merges = match &vocab.merges {
        Some(merges) => file_merges(merges, path)?,
        None => merges_from_scores(&vocab.tokens, &score_ranking(vocab)),
    };
    let model = BPE::builder()
        .vocab_and_merges(ids, merges)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| build_error(path, "SentencePiece BPE", e))?;
    let mut tokenizer = Tokenizer::new(model);
    // SentencePiece's own order, as llama.cpp and Llama 2's `tokenizer.json` have it: a `▁` in
    // front of the text whatever it starts with (" Hello" is `▁▁Hello`), then every space a `▁`.
    // (transformers' GGUF loader adds none before a leading space.)
    let spaces = spaces_as_spiece(path)?;
    let normalizer: NormalizerWrapper = if vocab.add_space_prefix {
        NormalizerSequence::new(vec![
            Prepend::new(SPIECE_SPACE.to_string()).into(),
            spaces.into(),
        ])
        .into()
    } else {
        spaces.into()
    };
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| build_error(path, "normalizer", e))?;
    // The `▁` prepended to the text is not the text's.
    tokenizer.with_decoder(Some(spiece_decoder(path, vocab.add_space_prefix)?));
    Ok(tokenizer)
}

/// Gemma's SentencePiece, as transformers' GGUF loader builds it: tokens of only spaces are
/// stored as real spaces in the file and respelled with `▁`, and merges follow the token order
/// (Gemma's scores do not follow its merge order).
fn gemma_sentencepiece(vocab: &GgufVocab, path: &Path) -> Result<Tokenizer> {
    let respelled: Vec<String> = vocab
        .tokens
        .iter()
        .map(|token| {
            if token.contains(' ') && token.chars().all(is_python_space) {
                SPIECE_SPACE.repeat(token.chars().count())
            } else {
                (*token).to_string()
            }
        })
        .collect();
    let respelled_refs: Vec<&str> = respelled.iter().map(String::as_str).collect();
    let ranking = unique_in_order(
        respelled_refs
            .iter()
            .enumerate()
            .map(|(index, token)| (*token, -(index as f64))),
    );
    let merges = match &vocab.merges {
        Some(merges) => file_merges(merges, path)?,
        None => merges_from_scores(&respelled_refs, &ranking),
    };
    let ids = vocab_ids(respelled.iter().map(String::as_str));
    let model = BPE::builder()
        .vocab_and_merges(ids, merges)
        .fuse_unk(true)
        .unk_token("<unk>".into())
        .byte_fallback(true)
        .build()
        .map_err(|e| build_error(path, "Gemma SentencePiece BPE", e))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(spaces_as_spiece(path)?))
        .map_err(|e| build_error(path, "normalizer", e))?;
    let split = Split::new(" ", SplitDelimiterBehavior::MergedWithPrevious, false)
        .map_err(|e| build_error(path, "pre-tokenizer", e))?;
    tokenizer.with_pre_tokenizer(Some(split));
    tokenizer.with_decoder(Some(spiece_decoder(path, false)?));
    Ok(tokenizer)
}

/// Gemma 4's tokenizer as llama.cpp runs it: every space a `▁`, the text split into runs of
/// newlines and the lines between them, each piece merged by the file's BPE merges on raw
/// UTF-8 (`<0xXX>` tokens for bytes outside the vocabulary). llama.cpp also takes a run of
/// newlines that is a whole token as it is; here the merges build it (the vocabulary's merges
/// do, and llama.cpp's test texts, with runs of up to three, agree either way).
fn gemma4_bpe(vocab: &GgufVocab, path: &Path) -> Result<Tokenizer> {
    let merges = vocab.merges.as_ref().ok_or_else(|| {
        EngineError::gguf(
            path,
            "a \"gemma4\" tokenizer without \"tokenizer.ggml.merges\"",
        )
    })?;
    let model = BPE::builder()
        .vocab_and_merges(
            vocab_ids(vocab.tokens.iter().copied()),
            file_merges(merges, path)?,
        )
        .byte_fallback(true)
        .build()
        .map_err(|e| build_error(path, "Gemma 4 BPE", e))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(spaces_as_spiece(path)?))
        .map_err(|e| build_error(path, "normalizer", e))?;
    let lines = Split::new(
        SplitPattern::Regex("[^\\n]+|\\n+".into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| build_error(path, "pre-tokenizer", e))?;
    tokenizer.with_pre_tokenizer(Some(lines));
    tokenizer.with_decoder(Some(spiece_decoder(path, false)?));
    Ok(tokenizer)
}

/// Each token's id, its place in the file's list.
fn vocab_ids<'t>(tokens: impl Iterator<Item = &'t str>) -> Vocab {
    tokens
        .enumerate()
        .map(|(id, token)| (token.to_string(), id as u32))
        .collect()
}

/// The SentencePiece vocabularies' normalizer: every space a `▁`.
fn spaces_as_spiece(path: &Path) -> Result<Replace> {
    Replace::new(" ", SPIECE_SPACE).map_err(|e| build_error(path, "normalizer", e))
}

/// The SentencePiece vocabularies' decoder: `▁` back to a space, `<0xXX>` tokens to their
/// bytes, the pieces joined; with `strip_prepended`, less the one space prepended to the text.
fn spiece_decoder(path: &Path, strip_prepended: bool) -> Result<DecoderWrapper> {
    let spaces = Replace::new(SPIECE_SPACE, " ").map_err(|e| build_error(path, "decoder", e))?;
    let mut steps = vec![
        DecoderWrapper::from(spaces),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if strip_prepended {
        steps.push(Strip::new(' ', 1, 0).into());
    }
    Ok(DecoderSequence::new(steps).into())
}

/// Python's `str.isspace`, which Gemma's respelling rule uses (it counts the ASCII separators
/// U+001C..U+001F that Rust's `char::is_whitespace` does not).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Merges as the file lists them, `"left right"` each.
fn file_merges(merges: &[&str], path: &Path) -> Result<Vec<(String, String)>> {
    merges
        .iter()
        .map(|merge| {
            let mut parts = merge.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(left), Some(right), None) => Ok((left.to_string(), right.to_string())),
                _ => Err(EngineError::gguf(
                    path,
                    format!("merge {merge:?} in \"tokenizer.ggml.merges\" is not two tokens separated by one space"),
                )),
            }
        })
        .collect()
}

/// Each distinct token with its score, in order of first appearance, the last score winning (a
/// Python dict built from the token list).
fn score_ranking<'a>(vocab: &GgufVocab<'a>) -> Vec<(&'a str, f64)> {
    let scores = vocab.scores.as_deref().unwrap_or_default();
    unique_in_order(
        vocab
            .tokens
            .iter()
            .enumerate()
            .map(|(i, token)| (*token, scores.get(i).copied().map_or(0.0, f64::from))),
    )
}

fn unique_in_order<'a>(entries: impl Iterator<Item = (&'a str, f64)>) -> Vec<(&'a str, f64)> {
    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut ranking: Vec<(&str, f64)> = Vec::new();
    for (token, score) in entries {
        match position.get(token) {
            Some(&at) => ranking[at].1 = score,
            None => {
                position.insert(token, ranking.len());
                ranking.push((token, score));
            }
        }
    }
    ranking
}

/// BPE merges implied by a vocabulary without any (transformers' `generate_merges`): every way
/// to cut a token into two tokens, best-scored tokens first.
fn merges_from_scores(tokens: &[&str], ranking: &[(&str, f64)]) -> Vec<(String, String)> {
    // Token → id, the last occurrence winning, as in `{token: index for ...}`.
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for &(token, score) in ranking {
        let mut cuts: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(left, right)| ids.contains_key(left) && ids.contains_key(right))
            .map(|(left, right)| (left, right, score))
            .collect();
        cuts.sort_by_key(|(left, right, _)| (ids[left], ids[right]));
        merges.extend(cuts);
    }
    let chars = |s: &str| s.chars().count();
    // Stable, descending: ties keep their order, as Python's `sorted(..., reverse=True)`.
    merges.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then(chars(b.0).cmp(&chars(a.0)))
            .then(chars(b.1).cmp(&chars(a.1)))
    });
    merges
        .into_iter()
        .map(|(left, right, _)| (left.to_string(), right.to_string()))
        .collect()
}

/// Control tokens become special added tokens and user-defined ones plain added tokens, so
/// they are matched whole in text. In a byte-level vocabulary a "control" token spelled outside
/// the byte alphabet is a llama.cpp mislabel and is skipped, as transformers does.
fn add_marked_tokens(tokenizer: &mut Tokenizer, vocab: &GgufVocab, path: &Path) -> Result<()> {
    let alphabet: Option<HashSet<char>> =
        (vocab.model == "gpt2").then(|| bytes_to_unicode().into_iter().collect());
    let control: Vec<AddedToken> = vocab
        .tokens_of_type(TOKEN_TYPE_CONTROL)
        .filter(|token| {
            alphabet
                .as_ref()
                .is_none_or(|a| token.chars().all(|c| a.contains(&c)))
        })
        .map(|token| AddedToken::from(token, true).normalized(false))
        .collect();
    // transformers also registers the tokens the file names BOS, EOS, UNK and PAD as special,
    // whatever their type (SentencePiece's `<unk>` is type 2, "unknown").
    let named = [vocab.bos_id, vocab.eos_id, vocab.unk_id, vocab.pad_id]
        .into_iter()
        .flatten()
        .map(|id| AddedToken::from(vocab.tokens[id], true).normalized(false));
    let special: Vec<AddedToken> = control.into_iter().chain(named).collect();
    if !special.is_empty() {
        tokenizer
            .add_special_tokens(special)
            .map_err(|e| build_error(path, "special tokens", e))?;
    }
    let known = tokenizer.get_vocab(true);
    let user_defined: Vec<AddedToken> = vocab
        .tokens_of_type(TOKEN_TYPE_USER_DEFINED)
        .filter(|token| known.contains_key(*token))
        .map(|token| AddedToken::from(token, false).normalized(false))
        .collect();
    if !user_defined.is_empty() {
        tokenizer
            .add_tokens(user_defined)
            .map_err(|e| build_error(path, "added tokens", e))?;
    }
    Ok(())
}

/// The pieces BPE sees: the text cut by each of the pre-tokenizer's splits in turn, then its
/// bytes spelled as GPT-2's characters.
fn split_into_bytes(pre: &PreTokenizer, path: &Path) -> Result<PreTokenizerSequence> {
    let mut steps: Vec<PreTokenizerWrapper> = pre
        .splits
        .iter()
        .map(|regex| {
            Split::new(
                SplitPattern::Regex((*regex).to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(PreTokenizerWrapper::from)
            .map_err(|e| build_error(path, "pre-tokenizer", e))
        })
        .collect::<Result<_>>()?;
    steps.push(tokenizers::pre_tokenizers::byte_level::ByteLevel::new(false, true, false).into());
    Ok(PreTokenizerSequence::new(steps))
}

/// BOS / EOS around each text, as transformers' `update_post_processor` writes them.
fn set_post_processor(tokenizer: &mut Tokenizer, vocab: &GgufVocab, meta: &Metadata) -> Result<()> {
    let bos = vocab.bos_id.filter(|_| vocab.add_bos);
    let eos = vocab.eos_id.filter(|_| vocab.add_eos);
    let mut single = Vec::new();
    let mut special_tokens = Vec::new();
    if let Some(id) = bos {
        single.push(format!("{}:0", vocab.tokens[id]));
        special_tokens.push((vocab.tokens[id].to_string(), id as u32));
    }
    single.push("$A:0".to_string());
    if let Some(id) = eos {
        single.push(format!("{}:0", vocab.tokens[id]));
        special_tokens.push((vocab.tokens[id].to_string(), id as u32));
    }
    let mut pair = single.clone();
    if let Some(id) = bos {
        pair.push(format!("{}:1", vocab.tokens[id]));
    }
    pair.push("$B:1".to_string());
    if let Some(id) = eos {
        pair.push(format!("{}:1", vocab.tokens[id]));
    }
    let processor = TemplateProcessing::builder()
        .try_single(single.join(" "))
        .and_then(|b| b.try_pair(pair.join(" ")))
        .map_err(|e| build_error(meta.path(), "post-processor", e))?
        .special_tokens(special_tokens)
        .build()
        .map_err(|e| build_error(meta.path(), "post-processor", e))?;
    tokenizer.with_post_processor(Some(processor));
    Ok(())
}
