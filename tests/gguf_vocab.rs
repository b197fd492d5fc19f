//! GGUF tokenizers against the models' original Hugging Face tokenizers: llama.cpp's own test
//! vocabularies, each with texts and the ids the original tokenizer gives them (whitespace
//! runs, digits, emoji, Khmer, Chinese, Cyrillic, contractions…).

mod common;

use neuronxa::engine::gguf;

/// Every vocabulary of llama.cpp's tests whose tokenizer this engine reads (byte-level BPE
/// with its pre-tokenizer, SentencePiece, and Gemma 4's BPE), with the `tokenizer.ggml.pre`
/// it names.
const VOCABULARIES: &[(&str, &str)] = &[
    ("command-r", "command-r"),
    ("deepseek-coder", "deepseek-coder"),
    ("deepseek-llm", "deepseek-llm"),
    ("falcon", "falcon"),
    ("gemma-4", "(Gemma 4)"),
    ("gpt-2", "gpt-2"),
    ("llama-bpe", "llama-bpe"),
    ("llama-spm", "(SentencePiece)"),
    ("mpt", "mpt"),
    ("phi-3", "(SentencePiece)"),
    ("qwen2", "qwen2"),
    ("qwen35", "qwen35"),
    ("refact", "refact"),
    ("starcoder", "starcoder"),
];

#[test]
fn gguf_tokenizers_give_the_original_tokenizers_ids() {
    let dir = common::llama_cpp_vocab();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, pre) in VOCABULARIES {
        let path = dir.join(format!("ggml-vocab-{name}.gguf"));
        let tokenizer = gguf::tokenizer(&path).unwrap_or_else(|e| panic!("{name} ({pre}): {e}"));
        let read = |ext: &str| {
            let file = dir.join(format!("ggml-vocab-{name}.gguf.{ext}"));
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        };
        let inputs = read("inp");
        let outputs = read("out");
        // Each text ends with the separator, as llama.cpp's test reads them.
        const SEPARATOR: &str = "\n__ggml_vocab_test__\n";
        let texts: Vec<&str> = inputs
            .strip_suffix(SEPARATOR)
            .unwrap_or(&inputs)
            .split(SEPARATOR)
            .collect();
        let expected: Vec<&str> = outputs.lines().collect();
        assert_eq!(texts.len(), expected.len(), "{name}: inputs and outputs");
        assert!(texts.len() >= 40, "{name}: {} texts", texts.len());
        for (text, expected) in texts.iter().zip(&expected) {
            let expected: Vec<u32> = expected
                .split_whitespace()
                .map(|id| id.parse().unwrap())
                .collect();
            // As llama.cpp's test encodes them: no BOS or EOS added.
            let ours = tokenizer.inner().encode(*text, false).unwrap();
            if ours.get_ids() != expected.as_slice() {
                failures.push(format!(
                    "{name} ({pre}) {text:?}: ours {:?}, original {expected:?}",
                    ours.get_ids()
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(checked >= 14 * 46, "{checked} texts");
}
