//! How a GGUF file's byte-level vocabulary splits text before BPE: the regexes llama.cpp applies
//! for each `tokenizer.ggml.pre` name (`src/llama-vocab.cpp`, llama.cpp as vendored by
//! llama-cpp-python 0.3.36), one after the other, each match and each stretch between matches
//! a piece of its own — tokenizers' `Split` with `Isolated`, in sequence.
//!
//! llama.cpp's own tests hold these splits to the original Hugging Face tokenizers
//! (`models/ggml-vocab-*.gguf.out`); `tests/gguf_vocab.rs` holds ours to the same files.
//! transformers' GGUF loader knows a handful of names and gives every other one GPT-2's split,
//! which is not how BLOOM, Falcon, StarCoder, Command-R, DeepSeek and the rest were trained to
//! read; here each name gets llama.cpp's, and a name it does not list is refused.
//!
//! Left out, and refused with the rest: `afmoe` (a digit class of llama.cpp's own),
//! `superbpe` (an empty-width split) and the vocabularies that are not byte-level
//! (`gemma4`, `sarvam-moe`, `whitespace`).

/// One `tokenizer.ggml.pre` family.
pub(super) struct PreTokenizer {
    pub names: &'static [&'static str],
    /// Applied in order; empty: GPT-2's split, as tokenizers' `ByteLevel` does it itself.
    pub splits: &'static [&'static str],
    /// A piece that is a token of the vocabulary is taken whole, merges or not (llama.cpp's
    /// `ignore_merges`, as Llama 3's `tokenizer.json` has it).
    pub ignore_merges: bool,
}

/// A file without `tokenizer.ggml.pre`, or with `default`: GPT-2's split, as transformers reads
/// it (llama.cpp warns that such a file is to be converted again, and guesses another split).
pub(super) const GPT2_DEFAULT: PreTokenizer = PreTokenizer {
    names: &["default"],
    splits: &[],
    ignore_merges: false,
};

/// The split of a `tokenizer.ggml.pre` name; `None` when llama.cpp has none for it here.
pub(super) fn pre_tokenizer(name: Option<&str>) -> Option<&'static PreTokenizer> {
    match name {
        None | Some("default") => Some(&GPT2_DEFAULT),
        Some(name) => PRE_TOKENIZERS.iter().find(|p| p.names.contains(&name)),
    }
}

/// The pre-tokenizers of vocabularies whose `tokenizer.json` composes the text to NFC first
/// (Qwen2's and Qwen2.5's, as transformers' own Qwen2 converter writes it), which neither
/// llama.cpp nor transformers' GGUF loader does: text in decomposed form ("e" + U+0301) would
/// otherwise meet other tokens than the model was trained on. Not Qwen3.5's: llama.cpp's test
/// ids for it keep decomposed marks apart.
pub(super) fn composes_to_nfc(name: Option<&str>) -> bool {
    matches!(name, Some("qwen2" | "deepseek-r1-qwen"))
}

/// How many names have a split.
pub(super) fn known_count() -> usize {
    PRE_TOKENIZERS.iter().map(|p| p.names.len()).sum()
}

// Tekken's and GPT-4o's splits as their `tokenizer.json` files write them (transformers'
// `GGUF_PRE_TOKENIZER_SPLITS`); llama.cpp respells their case classes with lookaheads.
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

// Copied from llama.cpp's `llm_tokenizer_bpe` (its C escapes undone) by a script; names grouped
// where llama.cpp gives them the same splits.
static PRE_TOKENIZERS: &[PreTokenizer] = &[
    PreTokenizer {
        names: &["tekken"],
        splits: &[TEKKEN_SPLIT],
        ignore_merges: true,
    },
    PreTokenizer {
        names: &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        splits: &[GPT4O_SPLIT],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
            "glm4",
            "glm5",
        ],
        splits: &[
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: true,
    },
    PreTokenizer {
        names: &["dbrx", "smaug-bpe", "chatglm-bpe"],
        splits: &[
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["jais-2"],
        splits: &[
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["deepseek-llm"],
        splits: &[
            r##"[\r\n]"##,
            r##"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"##,
            r##"\s?[!-/:-~！-／：-～‘-‟　-。]+"##,
            r##"\s+$"##,
            r##"[一-龥ࠀ-一가-퟿]+"##,
            r##"\p{N}+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"],
        splits: &[
            r##"\p{N}{1,3}"##,
            r##"[一-龥぀-ゟ゠-ヿ]+"##,
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["spark2_5"],
        splits: &[
            r##"\p{N}{1,3}"##,
            r##"[一-龥぀-ゟ゠-ヿ]+"##,
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##,
            r##"\p{N}"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["youtu"],
        splits: &[
            r##"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+"##,
            r##"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: true,
    },
    PreTokenizer {
        names: &["deepseek-coder"],
        splits: &[
            r##"[\r\n]"##,
            r##"\s?\p{L}+"##,
            r##"\s?\p{P}+"##,
            r##"[一-龥ࠀ-一가-퟿]+"##,
            r##"\p{N}"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["falcon"],
        splits: &[
            r##"[\p{P}\$\+<=>\^~\|`]+"##,
            r##"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"##,
            r##"[0-9][0-9][0-9]"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        splits: &[
            r##"\p{N}"##,
            r##"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "jina-v1-en",
            "jina-v2-code",
            "roberta-bpe",
            "exaone4",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
        ],
        splits: &[r##"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"##],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &[
            "qwen2",
            "deepseek-r1-qwen",
            "kormo",
            "f2llmv2",
            "megrez",
            "stablelm2",
            "hunyuan",
            "solar-open",
            "grok-2",
        ],
        splits: &[
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["qwen35"],
        splits: &[
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["bloom", "poro-chat", "gpt3-finnish"],
        splits: &[r##" ?[^(\s|.,!?…。，、।۔،)]+"##],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["viking"],
        splits: &[r##" ?[^(\s|.,!?…。，、।۔،)]+"##, r##"\p{N}"##],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["chameleon"],
        splits: &[
            r##"<sentinel:[0-9]+>"##,
            r##"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"##,
            r##"([\t\n]|    |  )"##,
            r##"\p{N}"##,
            r##"[\p{P}!-/:-@\[-`{-~]"##,
            r##"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["tiny_aya", "cohere2moe"],
        splits: &[
            r##"\d{1,3}(?=(?:\d{3})*\b)"##,
            r##"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["kimi-k2"],
        splits: &[r##"\p{Han}+"##],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["bailingmoe", "bailingmoe2", "llada-moe"],
        splits: &[
            r##"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["seed-coder"],
        splits: &[
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["ufakzeka"],
        splits: &[
            r##"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["laguna"],
        splits: &[
            r##"[^\n]+|[\n]+"##,
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["exaone-moe"],
        splits: &[
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["minicpm5"],
        splits: &[
            r##"\p{N}{1,3}"##,
            r##"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: true,
    },
    PreTokenizer {
        names: &["granite-embed-multi-97m"],
        splits: &[
            r##"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: true,
    },
];
