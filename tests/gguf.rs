//! GGUF loading: the demo model, the tiny llama GGUF fixture, small GGUF files written here, and
//! broken files. Token ids are checked against transformers' (fixtures made by
//! `scripts/make_fixtures.py`).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, IndexOp, Tensor};
use neuronxa::engine::config::{
    Activation, Architecture, LayerMixer, NormLayout, QkNorm, RopeScaling,
};
use neuronxa::engine::gguf::{self, GgufModel};
use neuronxa::engine::weights::TensorSource;
use neuronxa::engine::{
    DTypeChoice, DeviceChoice, EngineError, ExtractOptions, Model, ModelConfig, ModelSource,
};
use std::sync::atomic::AtomicBool;

// ---------------------------------------------------------------- helpers

/// The demo model (SmolLM2-135M-Instruct, Q4_1), fetched once if missing.
fn demo_model_path() -> PathBuf {
    common::demo_model()
}

fn demo() -> &'static GgufModel {
    static DEMO: OnceLock<GgufModel> = OnceLock::new();
    DEMO.get_or_init(|| gguf::open(&demo_model_path()).expect("the demo model opens"))
}

fn fixture(relative: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative);
    assert!(
        path.exists(),
        "fixture {} is missing: run scripts/make_fixtures.py",
        path.display()
    );
    path
}

fn tiny_llama_gguf() -> &'static GgufModel {
    static TINY: OnceLock<GgufModel> = OnceLock::new();
    TINY.get_or_init(|| {
        gguf::open(&fixture("tiny/llama_gguf/model.gguf")).expect("the tiny GGUF opens")
    })
}

/// The message of an error `result` must be, checked to name `path`.
fn error_naming<T>(result: Result<T, EngineError>, path: &Path) -> EngineError {
    let Err(error) = result else {
        panic!("{} was accepted", path.display());
    };
    let message = error.to_string();
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(
        message.contains(name.as_ref()),
        "message does not name the file: {message}"
    );
    assert!(
        !message.contains("stack backtrace") && !message.contains(" at /"),
        "{message}"
    );
    error
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite())
}

/// Every tensor the shared decoder asks for, with the Hugging Face shape the config implies.
fn decoder_tensors(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, f, q, kv) = (
        c.hidden_size,
        c.intermediate_size,
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
    );
    let mut list = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![c.vocab_size, h],
        ),
        ("model.norm.weight".to_string(), vec![h]),
    ];
    if !c.tie_word_embeddings {
        list.push(("lm_head.weight".into(), vec![c.vocab_size, h]));
    }
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}.");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![q, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, q]),
            ("mlp.gate_proj.weight", vec![f, h]),
            ("mlp.up_proj.weight", vec![f, h]),
            ("mlp.down_proj.weight", vec![h, f]),
        ] {
            list.push((format!("{p}{name}"), shape));
        }
        let norms: &[&str] = match c.norm_layout {
            NormLayout::Pre | NormLayout::ParallelTwoNorms => {
                &["input_layernorm", "post_attention_layernorm"]
            }
            NormLayout::Sandwich => &[
                "input_layernorm",
                "post_attention_layernorm",
                "pre_feedforward_layernorm",
                "post_feedforward_layernorm",
            ],
            NormLayout::Post => &["post_attention_layernorm", "post_feedforward_layernorm"],
            NormLayout::Parallel => &["input_layernorm"],
        };
        for name in norms {
            list.push((format!("{p}{name}.weight"), vec![h]));
        }
        if c.qkv_bias {
            list.push((format!("{p}self_attn.q_proj.bias"), vec![q]));
            list.push((format!("{p}self_attn.k_proj.bias"), vec![kv]));
            list.push((format!("{p}self_attn.v_proj.bias"), vec![kv]));
        }
        let qk_norm_sizes = match c.qk_norm {
            QkNorm::Off => None,
            QkNorm::PerHead => Some((c.head_dim, c.head_dim)),
            QkNorm::AllHeads => Some((q, kv)),
        };
        if let Some((q_size, k_size)) = qk_norm_sizes {
            list.push((format!("{p}self_attn.q_norm.weight"), vec![q_size]));
            list.push((format!("{p}self_attn.k_norm.weight"), vec![k_size]));
        }
    }
    list
}

/// `s{k}.input_ids` of a reference file made by transformers.
fn reference_ids(path: &Path) -> HashMap<String, Vec<u32>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".input_ids"))
        .map(|(name, t)| {
            let ids = t
                .to_vec1::<i64>()
                .unwrap()
                .into_iter()
                .map(|i| i as u32)
                .collect();
            (name, ids)
        })
        .collect()
}

fn sentences(path: &Path) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect()
}

fn assert_ids_match_reference(model: &GgufModel, sentences_file: &str, reference_file: &str) {
    let texts = sentences(&fixture(sentences_file));
    let reference = reference_ids(&fixture(reference_file));
    let mut compared = 0;
    for (k, text) in texts.iter().enumerate() {
        let Some(expected) = reference.get(&format!("s{k}.input_ids")) else {
            continue;
        };
        let ours = model.tokenizer.encode(text).unwrap().ids;
        assert_eq!(&ours, expected, "sentence {k} {text:?}");
        compared += 1;
    }
    assert_eq!(compared, texts.len(), "every sentence has reference ids");
}

/// Short texts in many scripts; decoding their ids must give them back.
const SAMPLES: &[&str] = &[
    "The cat sleeps on the warm windowsill.",
    "Le café coûte 3,50 € à Montréal.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐が怠惰な犬を飛び越える。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Быстрая коричневая лиса.",
    "emoji 😀👍🏽👨‍👩‍👧 and flags 🇫🇷",
    "digits 1234567890 and 3.14159, 2024-11-26",
    "multiple   spaces\tand\ttabs\nand  newlines\n\n",
    "  leading and trailing  ",
];

// ---------------------------------------------------------------- the demo model

#[test]
fn demo_inspect_gives_the_config() {
    let (config, storage) = gguf::inspect(&demo_model_path()).unwrap();
    assert_eq!(config.architecture, Architecture::Llama);
    assert_eq!(config.num_layers, 30);
    assert_eq!(config.hidden_size, 576);
    assert_eq!(config.intermediate_size, 1536);
    assert_eq!(config.num_heads, 9);
    assert_eq!(config.num_kv_heads, 3);
    assert_eq!(config.head_dim, 64);
    assert_eq!(config.vocab_size, 49152);
    assert!(config.tie_word_embeddings);
    assert!(!config.qkv_bias && !config.norm_plus_one);
    assert_eq!(config.qk_norm, QkNorm::Off);
    assert_eq!(config.norm_layout, NormLayout::Pre);
    assert_eq!(config.activation, Activation::Silu);
    assert_eq!(config.max_position_embeddings, 8192);
    assert!((config.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert_eq!(config.bos_token_id, Some(1));
    for layer in &config.layers {
        assert_eq!(layer.sliding_window, None);
        assert_eq!(layer.rope.theta, 100_000.0);
        assert_eq!(layer.rope.scaling, RopeScaling::None);
    }
    assert_eq!(storage, "Q4_1+F32+Q8_0");
}

#[test]
fn demo_open_matches_inspect() {
    let (config, storage) = gguf::inspect(&demo_model_path()).unwrap();
    let model = demo();
    assert_eq!(model.config, config);
    assert_eq!(model.weights.storage_dtype(), storage);
    assert_eq!(model.weights.origin(), demo_model_path());
    assert_eq!(model.tokenizer.vocab_size(), 49152);
}

#[test]
fn demo_every_decoder_tensor_loads_with_its_hf_shape() {
    let model = demo();
    assert!(
        !model.weights.contains("lm_head.weight"),
        "tied: no lm_head"
    );
    let expected = decoder_tensors(&model.config);
    assert_eq!(expected.len(), 2 + 30 * 9);
    for (name, shape) in &expected {
        assert!(model.weights.contains(name), "{name} missing");
        let t = model
            .weights
            .load(name, shape, DType::F32, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.dims(), shape.as_slice(), "{name}");
        assert!(all_finite(&t), "{name} has non-finite values");
    }
    assert_eq!(
        model.weights.names().count(),
        expected.len(),
        "no tensor left over"
    );
    // A Q4_1 matrix really has varied values, not a constant.
    let up = model
        .weights
        .load(
            "model.layers.3.mlp.up_proj.weight",
            &[1536, 576],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
    let std = up
        .flatten_all()
        .unwrap()
        .var(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .sqrt();
    assert!(std > 1e-3, "std {std}");
    assert_eq!(
        model.weights.gguf_name("model.layers.3.mlp.up_proj.weight"),
        Some("blk.3.ffn_up.weight")
    );
}

#[test]
fn demo_converts_to_the_asked_dtype() {
    let model = demo();
    let t = model
        .weights
        .load("model.norm.weight", &[576], DType::BF16, &Device::Cpu)
        .unwrap();
    assert_eq!(t.dtype(), DType::BF16);
}

#[test]
fn demo_wrong_shape_is_an_error_naming_the_tensor() {
    let model = demo();
    let err = model
        .weights
        .load(
            "model.layers.0.mlp.up_proj.weight",
            &[576, 1536],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers.0.mlp.up_proj.weight") && err.contains("[1536, 576]"),
        "{err}"
    );
    let err = model
        .weights
        .load(
            "model.layers.99.mlp.up_proj.weight",
            &[1536, 576],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers.99.mlp.up_proj.weight") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn demo_token_ids_match_transformers() {
    assert_ids_match_reference(demo(), "demo/sentences.json", "demo/reference.safetensors");
}

#[test]
fn demo_tokenizer_round_trips_many_scripts() {
    let tokenizer = &demo().tokenizer;
    for text in SAMPLES {
        let tokens = tokenizer.encode(text).unwrap();
        // This GGUF says add_bos_token = false: nothing is added.
        assert!(tokens.special.iter().all(|s| !s), "{text:?}: {tokens:?}");
        assert!(
            tokens.ids.iter().all(|&id| id > 16 && id < 49152),
            "{text:?}: {:?}",
            tokens.ids
        );
        let decoded = tokenizer.inner().decode(&tokens.ids, false).unwrap();
        assert_eq!(&decoded, text);
    }
    // Known ids (transformers 5.24 on this file).
    assert_eq!(tokenizer.encode("Hello world").unwrap().ids, [19556, 905]);
    assert_eq!(
        tokenizer.encode("2024 numbers 12345").unwrap().ids,
        [34, 32, 34, 36, 2966, 216, 33, 34, 35, 36, 37]
    );
    // Control tokens in the text are matched whole.
    assert_eq!(tokenizer.encode("<|im_start|>user").unwrap().ids, [1, 4093]);
}

// ---------------------------------------------------------------- the tiny llama GGUF fixture

#[test]
fn tiny_llama_gguf_token_ids_match_transformers() {
    assert_ids_match_reference(
        tiny_llama_gguf(),
        "sentences.json",
        "tiny/llama_gguf/reference.safetensors",
    );
}

#[test]
fn tiny_llama_gguf_sentencepiece_adds_bos_and_round_trips() {
    let tokenizer = &tiny_llama_gguf().tokenizer;
    for text in SAMPLES {
        let tokens = tokenizer.encode(text).unwrap();
        assert_eq!(tokens.ids[0], 1, "BOS first: {text:?}");
        assert!(tokens.special[0] && tokens.special[1..].iter().all(|s| !s));
        assert!(
            !tokens.ids[1..].contains(&0),
            "byte fallback, never <unk>: {text:?}"
        );
        // As with Llama's own tokenizer, the `▁` put in front of the text is the one the decoder
        // strips, so even leading spaces come back.
        let decoded = tokenizer.inner().decode(&tokens.ids, true).unwrap();
        assert_eq!(decoded, *text);
    }
}

/// A SentencePiece vocabulary without the prepended `▁` (`add_space_prefix` false, as Gemma
/// 3's files say): nothing is stripped when decoding, so a leading space comes back too.
#[test]
fn sentencepiece_without_space_prefix_round_trips_leading_spaces() {
    let dir = tempfile::tempdir().unwrap();
    for prefix in [true, false] {
        let mut s = Synthetic::new("llama", 1);
        s.set("tokenizer.ggml.add_space_prefix", Value::Bool(prefix));
        let path = s.write(dir.path(), &format!("prefix_{prefix}.gguf"));
        let tokenizer = gguf::tokenizer(&path).unwrap();
        for text in [" ab", "ab b", "  a"] {
            let ids = tokenizer.encode(text).unwrap().ids;
            let decoded = tokenizer.inner().decode(&ids, true).unwrap();
            assert_eq!(decoded, text, "add_space_prefix {prefix}");
        }
    }
}

/// The GGUF was written from the same weights as `tiny/llama` (f32 there, bf16 here), with Q and K
/// permuted by llama.cpp's rule and the FFN in Q8_0: what we load must be the HF weights again.
#[test]
fn tiny_llama_gguf_weights_are_the_hf_weights() {
    let model = tiny_llama_gguf();
    let c = &model.config;
    assert_eq!(
        (
            c.architecture,
            c.num_layers,
            c.hidden_size,
            c.intermediate_size
        ),
        (Architecture::Llama, 3, 64, 128)
    );
    assert_eq!(
        (c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size),
        (4, 2, 16, 1000)
    );
    assert_eq!(c.layers[0].rope.theta, 500_000.0);
    assert_eq!(model.weights.storage_dtype(), "F32+Q8_0");
    let hf = candle_core::safetensors::load(fixture("tiny/llama/model.safetensors"), &Device::Cpu)
        .unwrap();
    for (name, shape) in decoder_tensors(c) {
        let expected = hf[&name].to_dtype(DType::F32).unwrap();
        let ours = model
            .weights
            .load(&name, &shape, DType::F32, &Device::Cpu)
            .unwrap();
        let scale = expected
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // bf16 rounding (2^-8) on one side, Q8_0 (2^-7) on the FFN.
        let diff = max_abs_diff(&ours, &expected);
        assert!(
            diff <= scale / 64.0,
            "{name}: max |diff| {diff}, max |w| {scale}"
        );
    }
}

// ---------------------------------------------------------------- GGUF files written here

/// A small model of any architecture, written with candle's GGUF writer.
struct Synthetic {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Tensor, GgmlDType)>,
}

const HIDDEN: usize = 32;
const FFN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 8;

impl Synthetic {
    fn new(arch: &str, layers: usize) -> Self {
        let mut s = Self {
            metadata: Vec::new(),
            tensors: Vec::new(),
        };
        let post_norms = matches!(arch, "gemma2" | "gemma3" | "olmo2");
        let pre_norms = arch != "olmo2";
        s.set("general.architecture", Value::String(arch.into()));
        for (key, value) in [
            ("block_count", layers),
            ("embedding_length", HIDDEN),
            ("feed_forward_length", FFN),
            ("attention.head_count", HEADS),
            ("attention.head_count_kv", KV_HEADS),
            ("attention.key_length", HEAD_DIM),
            ("context_length", 256),
        ] {
            s.set(&format!("{arch}.{key}"), Value::U32(value as u32));
        }
        s.set(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-6),
        );
        s.set(&format!("{arch}.rope.freq_base"), Value::F32(10_000.0));
        // A SentencePiece vocabulary: specials, the 256 byte tokens, a few pieces.
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        let mut types = vec![2i32, 3, 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        for piece in ["▁", "a", "b", "▁a", "▁b", "ab", "▁ab"] {
            tokens.push(piece.into());
            types.push(1);
        }
        let scores: Vec<Value> = (0..tokens.len()).map(|i| Value::F32(-(i as f32))).collect();
        let vocab = tokens.len();
        s.set("tokenizer.ggml.model", Value::String("llama".into()));
        s.set(
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        );
        s.set("tokenizer.ggml.scores", Value::Array(scores));
        s.set(
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        );
        s.set("tokenizer.ggml.bos_token_id", Value::U32(1));
        s.set("tokenizer.ggml.eos_token_id", Value::U32(2));

        let q = HEADS * HEAD_DIM;
        let kv = KV_HEADS * HEAD_DIM;
        s.tensor("token_embd.weight", random(&[vocab, HIDDEN], 1));
        s.tensor("output_norm.weight", random(&[HIDDEN], 2));
        for l in 0..layers {
            let seed = 100 * (l as u64 + 1);
            let b = format!("blk.{l}.");
            if pre_norms {
                s.tensor(&format!("{b}attn_norm.weight"), random(&[HIDDEN], seed));
                s.tensor(&format!("{b}ffn_norm.weight"), random(&[HIDDEN], seed + 5));
            }
            s.tensor(&format!("{b}attn_q.weight"), random(&[q, HIDDEN], seed + 1));
            s.tensor(
                &format!("{b}attn_k.weight"),
                random(&[kv, HIDDEN], seed + 2),
            );
            s.tensor(
                &format!("{b}attn_v.weight"),
                random(&[kv, HIDDEN], seed + 3),
            );
            s.tensor(
                &format!("{b}attn_output.weight"),
                random(&[HIDDEN, q], seed + 4),
            );
            s.tensor(
                &format!("{b}ffn_gate.weight"),
                random(&[FFN, HIDDEN], seed + 6),
            );
            s.tensor(
                &format!("{b}ffn_up.weight"),
                random(&[FFN, HIDDEN], seed + 7),
            );
            s.tensor(
                &format!("{b}ffn_down.weight"),
                random(&[HIDDEN, FFN], seed + 8),
            );
            if arch == "qwen2" {
                s.tensor(&format!("{b}attn_q.bias"), random(&[q], seed + 9));
                s.tensor(&format!("{b}attn_k.bias"), random(&[kv], seed + 10));
                s.tensor(&format!("{b}attn_v.bias"), random(&[kv], seed + 11));
            }
            if arch == "qwen3" || arch == "gemma3" {
                s.tensor(
                    &format!("{b}attn_q_norm.weight"),
                    random(&[HEAD_DIM], seed + 12),
                );
                s.tensor(
                    &format!("{b}attn_k_norm.weight"),
                    random(&[HEAD_DIM], seed + 13),
                );
            }
            if arch == "olmo2" {
                s.tensor(&format!("{b}attn_q_norm.weight"), random(&[q], seed + 12));
                s.tensor(&format!("{b}attn_k_norm.weight"), random(&[kv], seed + 13));
            }
            if post_norms {
                s.tensor(
                    &format!("{b}post_attention_norm.weight"),
                    random(&[HIDDEN], seed + 14),
                );
                s.tensor(
                    &format!("{b}post_ffw_norm.weight"),
                    random(&[HIDDEN], seed + 15),
                );
            }
        }
        s
    }

    /// Every key and tensor of a GGUF file, to be changed and written again.
    fn read(path: &Path) -> Self {
        let mut file = std::fs::File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let mut tensors: Vec<(String, Tensor, GgmlDType)> = content
            .tensor_infos
            .iter()
            .map(|(name, info)| {
                let values = info
                    .read(&mut file, content.tensor_data_offset, &Device::Cpu)
                    .unwrap()
                    .dequantize(&Device::Cpu)
                    .unwrap();
                (name.clone(), values, GgmlDType::F32)
            })
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            metadata: content.metadata.into_iter().collect(),
            tensors,
        }
    }

    fn set(&mut self, key: &str, value: Value) {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.into(), value));
    }

    fn remove(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }

    fn tensor(&mut self, name: &str, values: Tensor) {
        self.tensor_as(name, values, GgmlDType::F32);
    }

    fn tensor_as(&mut self, name: &str, values: Tensor, dtype: GgmlDType) {
        self.tensors.retain(|(n, _, _)| n != name);
        self.tensors.push((name.into(), values, dtype));
    }

    fn get(&self, name: &str) -> &Tensor {
        &self.tensors.iter().find(|(n, _, _)| n == name).unwrap().1
    }

    fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        let quantized: Vec<(String, QTensor)> = self
            .tensors
            .iter()
            .map(|(n, t, dtype)| (n.clone(), QTensor::quantize(t, *dtype).unwrap()))
            .collect();
        let metadata: Vec<(&str, &Value)> =
            self.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> =
            quantized.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut out = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut out, &metadata, &tensors).unwrap();
        path
    }
}

/// Deterministic values in about [-1, 1].
fn random(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py), written independently of the loader.
fn llama_cpp_permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, rows / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

fn load(model: &GgufModel, name: &str) -> Tensor {
    let shape = decoder_tensors(&model.config)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("{name} is not a decoder tensor"));
    model
        .weights
        .load(name, &shape, DType::F32, &Device::Cpu)
        .unwrap()
}

#[test]
fn llama_q_and_k_rows_are_put_back_in_hf_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("llama", 1);
    let hf_q = random(&[HEADS * HEAD_DIM, HIDDEN], 7);
    let hf_k = random(&[KV_HEADS * HEAD_DIM, HIDDEN], 8);
    s.tensor("blk.0.attn_q.weight", llama_cpp_permute(&hf_q, HEADS));
    s.tensor("blk.0.attn_k.weight", llama_cpp_permute(&hf_k, KV_HEADS));
    let model = gguf::open(&s.write(dir.path(), "llama.gguf")).unwrap();
    assert_eq!(
        max_abs_diff(
            &load(&model, "model.layers.0.self_attn.q_proj.weight"),
            &hf_q
        ),
        0.0
    );
    assert_eq!(
        max_abs_diff(
            &load(&model, "model.layers.0.self_attn.k_proj.weight"),
            &hf_k
        ),
        0.0
    );
    // Nothing else is touched.
    let v = load(&model, "model.layers.0.self_attn.v_proj.weight");
    assert_eq!(max_abs_diff(&v, s.get("blk.0.attn_v.weight")), 0.0);
}

#[test]
fn qwen2_is_not_permuted_and_has_qkv_biases() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("qwen2", 2);
    s.tensor("output.weight", random(&[266, HIDDEN], 9));
    let model = gguf::open(&s.write(dir.path(), "qwen2.gguf")).unwrap();
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Qwen2);
    assert!(c.qkv_bias && !c.tie_word_embeddings);
    assert_eq!(c.qk_norm, QkNorm::Off);
    for (hf, gguf_name) in [
        (
            "model.layers.1.self_attn.q_proj.weight",
            "blk.1.attn_q.weight",
        ),
        (
            "model.layers.1.self_attn.k_proj.weight",
            "blk.1.attn_k.weight",
        ),
        ("model.layers.1.self_attn.q_proj.bias", "blk.1.attn_q.bias"),
        (
            "model.layers.1.post_attention_layernorm.weight",
            "blk.1.ffn_norm.weight",
        ),
        ("lm_head.weight", "output.weight"),
    ] {
        assert_eq!(
            max_abs_diff(&load(&model, hf), s.get(gguf_name)),
            0.0,
            "{hf}"
        );
    }
}

#[test]
fn qwen3_has_qk_norms() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synthetic::new("qwen3", 1);
    let model = gguf::open(&s.write(dir.path(), "qwen3.gguf")).unwrap();
    assert_eq!(model.config.qk_norm, QkNorm::PerHead);
    assert!(!model.config.qkv_bias);
    assert_eq!(model.config.head_dim, HEAD_DIM);
    let q_norm = load(&model, "model.layers.0.self_attn.q_norm.weight");
    assert_eq!(
        max_abs_diff(&q_norm, s.get("blk.0.attn_q_norm.weight")),
        0.0
    );
}

#[test]
fn gemma3_config_and_norms_follow_hf() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("gemma3", 6);
    s.set("gemma3.attention.sliding_window", Value::U32(16));
    s.set("gemma3.rope.freq_base", Value::F32(1_000_000.0));
    s.set("gemma3.rope.scaling.type", Value::String("linear".into()));
    s.set("gemma3.rope.scaling.factor", Value::F32(8.0));
    let model = gguf::open(&s.write(dir.path(), "gemma3.gguf")).unwrap();
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Gemma3);
    assert!(c.norm_plus_one && !c.qkv_bias && c.tie_word_embeddings);
    assert_eq!(c.norm_layout, NormLayout::Sandwich);
    assert_eq!(c.qk_norm, QkNorm::PerHead);
    assert_eq!(c.activation, Activation::GeluTanh);
    assert_eq!(c.embedding_scale, Some((HIDDEN as f64).sqrt()));
    assert!((c.attention_scale - 1.0 / (HEAD_DIM as f64).sqrt()).abs() < 1e-12);
    assert_eq!(
        (c.attn_logit_softcapping, c.final_logit_softcapping),
        (None, None)
    );
    // Five local layers, then a global one.
    for (i, layer) in c.layers.iter().enumerate() {
        if i == 5 {
            assert_eq!(layer.sliding_window, None);
            assert_eq!(layer.rope.theta, 1_000_000.0);
            assert_eq!(layer.rope.scaling, RopeScaling::Linear { factor: 8.0 });
        } else {
            assert_eq!(layer.sliding_window, Some(16), "layer {i}");
            assert_eq!(layer.rope.theta, 10_000.0);
            assert_eq!(layer.rope.scaling, RopeScaling::None);
        }
    }
    // llama.cpp stores Gemma's norms as 1 + w; the HF convention is w.
    for (hf, gguf_name) in [
        (
            "model.layers.2.input_layernorm.weight",
            "blk.2.attn_norm.weight",
        ),
        (
            "model.layers.2.post_attention_layernorm.weight",
            "blk.2.post_attention_norm.weight",
        ),
        (
            "model.layers.2.pre_feedforward_layernorm.weight",
            "blk.2.ffn_norm.weight",
        ),
        (
            "model.layers.2.post_feedforward_layernorm.weight",
            "blk.2.post_ffw_norm.weight",
        ),
        (
            "model.layers.2.self_attn.q_norm.weight",
            "blk.2.attn_q_norm.weight",
        ),
        (
            "model.layers.2.self_attn.k_norm.weight",
            "blk.2.attn_k_norm.weight",
        ),
        ("model.norm.weight", "output_norm.weight"),
    ] {
        let stored = (s.get(gguf_name) - 1.0).unwrap();
        assert!(max_abs_diff(&load(&model, hf), &stored) < 1e-6, "{hf}");
    }
    // Not norms: unchanged, and not permuted.
    let q = load(&model, "model.layers.2.self_attn.q_proj.weight");
    assert_eq!(max_abs_diff(&q, s.get("blk.2.attn_q.weight")), 0.0);
}

#[test]
fn gemma2_alternates_local_and_global_layers_and_soft_caps() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("gemma2", 4);
    s.set("gemma2.attention.sliding_window", Value::U32(4096));
    s.set("gemma2.attn_logit_softcapping", Value::F32(50.0));
    s.set("gemma2.final_logit_softcapping", Value::F32(30.0));
    let model = gguf::open(&s.write(dir.path(), "gemma2.gguf")).unwrap();
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Gemma2);
    assert!(c.norm_plus_one);
    assert_eq!(c.norm_layout, NormLayout::Sandwich);
    assert_eq!(c.qk_norm, QkNorm::Off);
    assert_eq!(
        (c.attn_logit_softcapping, c.final_logit_softcapping),
        (Some(50.0), Some(30.0))
    );
    let windows: Vec<_> = c.layers.iter().map(|l| l.sliding_window).collect();
    assert_eq!(windows, [Some(4096), None, Some(4096), None]);
    assert!(c.layers.iter().all(|l| l.rope.theta == 10_000.0));
}

#[test]
fn gemma_has_gemma_norms_in_llama_places() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synthetic::new("gemma", 2);
    let model = gguf::open(&s.write(dir.path(), "gemma.gguf")).unwrap();
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Gemma);
    assert!(c.norm_plus_one && c.tie_word_embeddings);
    assert_eq!(c.norm_layout, NormLayout::Pre);
    assert_eq!(c.qk_norm, QkNorm::Off);
    assert_eq!(c.activation, Activation::GeluTanh);
    assert_eq!(c.embedding_scale, Some((HIDDEN as f64).sqrt()));
    assert!(c.layers.iter().all(|l| l.sliding_window.is_none()));
    for (hf, gguf_name) in [
        (
            "model.layers.1.input_layernorm.weight",
            "blk.1.attn_norm.weight",
        ),
        (
            "model.layers.1.post_attention_layernorm.weight",
            "blk.1.ffn_norm.weight",
        ),
        ("model.norm.weight", "output_norm.weight"),
    ] {
        let stored = (s.get(gguf_name) - 1.0).unwrap();
        assert!(max_abs_diff(&load(&model, hf), &stored) < 1e-6, "{hf}");
    }
}

#[test]
fn olmo2_has_only_output_norms_and_whole_qk_norms() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synthetic::new("olmo2", 2);
    let model = gguf::open(&s.write(dir.path(), "olmo2.gguf")).unwrap();
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Olmo2);
    assert_eq!(c.norm_layout, NormLayout::Post);
    assert_eq!(c.qk_norm, QkNorm::AllHeads);
    assert!(!c.norm_plus_one && !c.qkv_bias);
    for (hf, gguf_name) in [
        (
            "model.layers.1.post_attention_layernorm.weight",
            "blk.1.post_attention_norm.weight",
        ),
        (
            "model.layers.1.post_feedforward_layernorm.weight",
            "blk.1.post_ffw_norm.weight",
        ),
        (
            "model.layers.1.self_attn.q_norm.weight",
            "blk.1.attn_q_norm.weight",
        ),
        (
            "model.layers.1.self_attn.k_norm.weight",
            "blk.1.attn_k_norm.weight",
        ),
        // Rotary as in Hugging Face's layout: not permuted.
        (
            "model.layers.1.self_attn.q_proj.weight",
            "blk.1.attn_q.weight",
        ),
    ] {
        assert_eq!(
            max_abs_diff(&load(&model, hf), s.get(gguf_name)),
            0.0,
            "{hf}"
        );
    }
    // And the whole model runs, with finite states.
    let path = dir.path().join("olmo2.gguf");
    let model = Model::load(
        &ModelSource::Gguf(path),
        DeviceChoice::Cpu,
        DTypeChoice::F32,
    )
    .unwrap();
    let states = model
        .extract(
            &["ab ab".to_string(), "b a ab".to_string()],
            &ExtractOptions::default(),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
    let sentence = states.sentence(1);
    assert!(sentence.nav.iter().all(|v| v.is_finite()));
    assert!(sentence.nas.iter().any(|&v| v > 0.0));
}

#[test]
fn rope_freqs_tables_divide_the_frequencies() {
    // What convert_hf_to_gguf.py writes for Llama 3.1 (factor 8, low 1, high 4, original 8192).
    let (theta, head_dim, factor, low, high, original) =
        (500_000.0f64, 64usize, 8.0f64, 1.0f64, 4.0f64, 8192.0f64);
    let divisors: Vec<f32> = (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let divisor = if wavelen < original / high {
                1.0
            } else if wavelen > original / low {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            divisor as f32
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("llama", 1);
    s.set("llama.attention.head_count", Value::U32(1));
    s.set("llama.attention.head_count_kv", Value::U32(1));
    s.set("llama.attention.key_length", Value::U32(head_dim as u32));
    s.set("llama.rope.freq_base", Value::F32(theta as f32));
    s.tensor("blk.0.attn_q.weight", random(&[head_dim, HIDDEN], 3));
    s.tensor("blk.0.attn_k.weight", random(&[head_dim, HIDDEN], 4));
    s.tensor("blk.0.attn_v.weight", random(&[head_dim, HIDDEN], 5));
    s.tensor("blk.0.attn_output.weight", random(&[HIDDEN, head_dim], 6));
    s.tensor(
        "rope_freqs.weight",
        Tensor::new(divisors.as_slice(), &Device::Cpu).unwrap(),
    );
    let path = s.write(dir.path(), "llama31.gguf");
    let (config, _) = gguf::inspect(&path).unwrap();
    let expected: Vec<f64> = divisors.iter().map(|&d| f64::from(d)).collect();
    assert_eq!(
        config.layers[0].rope.scaling,
        RopeScaling::FrequencyDivisors { divisors: expected }
    );
    // `rope_freqs` is configuration, not a weight: the file opens.
    assert!(gguf::open(&path).is_ok());

    // A table of ones is no scaling; a zero divisor is refused by name.
    s.tensor(
        "rope_freqs.weight",
        Tensor::ones(head_dim / 2, DType::F32, &Device::Cpu).unwrap(),
    );
    let path = s.write(dir.path(), "ones.gguf");
    let (config, _) = gguf::inspect(&path).unwrap();
    assert_eq!(config.layers[0].rope.scaling, RopeScaling::None);
    // Ones, then pairs divided by 1e30 (llama.cpp's spelling of proportional rotary): the first
    // quarter of the pairs turn.
    let mut still = vec![1.0f32; head_dim / 2];
    still[head_dim / 8..].fill(1e30);
    s.tensor(
        "rope_freqs.weight",
        Tensor::new(still.as_slice(), &Device::Cpu).unwrap(),
    );
    let path = s.write(dir.path(), "still.gguf");
    let (config, _) = gguf::inspect(&path).unwrap();
    assert_eq!(
        config.layers[0].rope.scaling,
        RopeScaling::Proportional {
            fraction: 0.25,
            factor: 1.0
        }
    );
    let mut zero = divisors.clone();
    zero[20] = 0.0;
    s.tensor(
        "rope_freqs.weight",
        Tensor::new(zero.as_slice(), &Device::Cpu).unwrap(),
    );
    let path = s.write(dir.path(), "zero_rope.gguf");
    let err = error_naming(gguf::inspect(&path), &path).to_string();
    assert!(err.contains("rope_freqs"), "{err}");
}

#[test]
fn every_storage_type_candle_reads_dequantizes() {
    // [rows, 256] so every block size divides a row; tolerance relative to the value range.
    let types = [
        (GgmlDType::F32, 0.0),
        (GgmlDType::F16, 1e-3),
        (GgmlDType::BF16, 1e-2),
        (GgmlDType::Q4_0, 0.15),
        (GgmlDType::Q4_1, 0.15),
        (GgmlDType::Q5_0, 0.08),
        (GgmlDType::Q5_1, 0.08),
        (GgmlDType::Q8_0, 0.01),
        (GgmlDType::Q2K, 0.6),
        (GgmlDType::Q3K, 0.3),
        (GgmlDType::Q4K, 0.15),
        (GgmlDType::Q5K, 0.08),
        (GgmlDType::Q6K, 0.04),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("llama", 1);
    // d_ff = 256 so that a row of down_proj ([hidden, d_ff]) fills whole blocks of every type.
    s.set("llama.feed_forward_length", Value::U32(256));
    s.tensor("blk.0.ffn_gate.weight", random(&[256, HIDDEN], 11));
    s.tensor("blk.0.ffn_up.weight", random(&[256, HIDDEN], 12));
    for (dtype, tolerance) in types {
        s.tensor_as("blk.0.ffn_down.weight", random(&[HIDDEN, 256], 10), dtype);
        let path = s.write(dir.path(), &format!("{dtype:?}.gguf"));
        let model = gguf::open(&path).unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        let loaded = load(&model, "model.layers.0.mlp.down_proj.weight");
        let diff = max_abs_diff(&loaded, s.get("blk.0.ffn_down.weight"));
        assert!(diff <= tolerance, "{dtype:?}: max |diff| {diff}");
        assert!(all_finite(&loaded));
    }
}

/// The storage types candle lacks (i-quants, ternary, FP4, F64), read by our own code: the same
/// bits as gguf-py (the code transformers' GGUF loader runs; but for the sign of zero, which
/// the FP4 types' shared E2M1 table keeps) on random blocks of every type,
/// and the same i-quant grids.
#[test]
fn storage_types_candle_lacks_dequantize_as_gguf_py_does() {
    use neuronxa::engine::quants::QuantType;
    let bytes = std::fs::read(fixture("quants/blocks.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> Vec<f32> {
        let data = file.tensor(name).unwrap();
        assert_eq!(data.dtype(), safetensors::Dtype::F32, "{name}");
        data.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    for kind in QuantType::ALL {
        let name = kind.name();
        let blocks = file.tensor(&format!("{name}.blocks")).unwrap();
        let ours = kind.dequantize(blocks.data()).unwrap();
        let reference = f32s(&format!("{name}.values"));
        assert_eq!(ours.len(), reference.len(), "{name}");
        assert!(
            reference.len() >= 24 * kind.block_size().min(64),
            "{name}: too few values"
        );
        if let Some(at) = (0..ours.len()).find(|&i| ours[i] != reference[i] || ours[i].is_nan()) {
            panic!(
                "{name}: value {at} (block {}) is {}, gguf-py says {}",
                at / kind.block_size(),
                ours[at],
                reference[at]
            );
        }
        if let Some((grid, _)) = kind.grid()
            && kind != QuantType::Iq1M
        {
            let stored = file.tensor(&format!("{name}.grid")).unwrap();
            let reference: Vec<f32> = stored.data().iter().map(|&b| f32::from(b as i8)).collect();
            assert_eq!(grid, reference.as_slice(), "{name}: grid");
        }
    }
}

#[test]
fn gguf_metadata_types_other_than_u32_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("llama", 2);
    s.set("llama.block_count", Value::U64(2));
    s.set("llama.embedding_length", Value::I32(HIDDEN as i32));
    s.set("llama.attention.layer_norm_rms_epsilon", Value::F64(1e-5));
    // A per-layer list with one value for every layer is the same as that value.
    s.set(
        "llama.feed_forward_length",
        Value::Array(vec![Value::U32(FFN as u32); 2]),
    );
    // Some files write -1 for "no such token": ignored, as llama.cpp does.
    s.set("tokenizer.ggml.padding_token_id", Value::I32(-1));
    let path = s.write(dir.path(), "types.gguf");
    assert!(gguf::open(&path).is_ok());
    let (config, _) = gguf::inspect(&path).unwrap();
    assert_eq!(
        (
            config.num_layers,
            config.hidden_size,
            config.intermediate_size
        ),
        (2, HIDDEN, FFN)
    );
    assert_eq!(config.rms_norm_eps, 1e-5);
}

// ---------------------------------------------------------------- broken files

#[test]
fn wrong_magic_is_a_gguf_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not_a_model.gguf");
    std::fs::write(
        &path,
        b"PK\x03\x04 this is a zip file, not a GGUF file at all",
    )
    .unwrap();
    let err = error_naming(gguf::open(&path), &path);
    assert!(matches!(err, EngineError::Gguf { .. }), "{err:?}");
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let err = error_naming(gguf::inspect(&empty), &empty);
    assert!(matches!(err, EngineError::Gguf { .. }), "{err:?}");
}

#[test]
fn truncated_header_is_a_gguf_error_naming_the_file() {
    // The first megabyte of the demo model: its metadata (the vocabulary) is cut.
    let mut bytes = std::fs::read(demo_model_path()).unwrap();
    bytes.truncate(1 << 20);
    let path = std::env::temp_dir().join(format!("neuronxa-truncated-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let opened = gguf::open(&path);
    let inspected = gguf::inspect(&path);
    let _ = std::fs::remove_file(&path);
    for result in [opened.map(|_| ()), inspected.map(|_| ())] {
        let err = error_naming(result, &path);
        assert!(matches!(err, EngineError::Gguf { .. }), "{err:?}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn truncated_tensor_data_is_a_gguf_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = Synthetic::new("llama", 2).write(dir.path(), "cut.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = error_naming(gguf::inspect(&path), &path);
    assert!(matches!(err, EngineError::Gguf { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn unsupported_architecture_names_it_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("mamba", 1);
    s.set("general.architecture", Value::String("mamba".into()));
    let path = s.write(dir.path(), "mamba.gguf");
    let err = error_naming(gguf::open(&path), &path);
    assert!(
        matches!(&err, EngineError::UnsupportedArchitecture { found, .. } if found == "mamba"),
        "{err:?}"
    );
    // It lists GGUF's names for what is supported, not config.json's.
    let message = err.to_string();
    assert!(message.contains("command-r"), "{message}");
    assert!(!message.contains("gemma3_text"), "{message}");
}

#[test]
fn unreadable_storage_type_names_the_tensor_and_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = Synthetic::new("llama", 1).write(dir.path(), "repacked.gguf");
    // Rewrite the type of blk.0.ffn_up.weight (2 dims) to 31, Q4_0_4_4 (an in-memory layout
    // of old llama.cpp versions that a few files were saved in).
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"blk.0.ffn_up.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 2);
    let type_at = at + 4 + 2 * 8;
    bytes[type_at..type_at + 4].copy_from_slice(&31u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = error_naming(gguf::open(&path), &path);
    assert!(matches!(err, EngineError::Gguf { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("blk.0.ffn_up.weight")
            && message.contains("Q4_0_4_4")
            && message.contains("IQ4_XS"),
        "{message}"
    );
}

#[test]
fn types_candle_parses_but_cannot_read_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, name) in [(GgmlDType::Q8_1, "Q8_1"), (GgmlDType::Q8K, "Q8_K")] {
        let mut s = Synthetic::new("llama", 1);
        s.set("llama.feed_forward_length", Value::U32(256));
        s.tensor("blk.0.ffn_gate.weight", random(&[256, HIDDEN], 11));
        s.tensor("blk.0.ffn_up.weight", random(&[256, HIDDEN], 12));
        s.tensor_as("blk.0.ffn_down.weight", random(&[HIDDEN, 256], 10), dtype);
        let path = s.write(dir.path(), &format!("{name}.gguf"));
        let message = error_naming(gguf::inspect(&path), &path).to_string();
        assert!(
            message.contains("blk.0.ffn_down.weight") && message.contains(name),
            "{message}"
        );
    }
}

#[test]
fn missing_metadata_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("llama", 1);
    s.remove("llama.block_count");
    let path = s.write(dir.path(), "no_layers.gguf");
    let err = error_naming(gguf::inspect(&path), &path);
    assert!(matches!(err, EngineError::Gguf { .. }), "{err:?}");
    assert!(err.to_string().contains("llama.block_count"), "{err}");
}

#[test]
fn unsupported_tokenizer_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("llama", 1);
    s.set("tokenizer.ggml.model", Value::String("bert".into()));
    let path = s.write(dir.path(), "bert_vocab.gguf");
    let err = error_naming(gguf::open(&path), &path);
    assert!(matches!(err, EngineError::Gguf { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("\"bert\"") && message.contains("gpt2") && message.contains("llama"),
        "{message}"
    );
}

#[test]
fn tensors_the_decoder_cannot_place_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("llama", 1);
    s.tensor("blk.0.ffn_up.bias", random(&[FFN], 3));
    let path = s.write(dir.path(), "mlp_bias.gguf");
    let err = error_naming(gguf::open(&path), &path);
    assert!(err.to_string().contains("blk.0.ffn_up.bias"), "{err}");
}

/// Gemma 4 with double-wide MLPs on the layers that reuse keys and values: the converter writes
/// one width per layer, and layers of two widths are refused in words.
#[test]
fn gemma4_mlps_of_two_widths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("gemma4", 4);
    s.set(
        "gemma4.attention.key_length_swa",
        Value::U32(HEAD_DIM as u32),
    );
    let widths = [FFN, FFN, 2 * FFN, 2 * FFN].map(|w| Value::U32(w as u32));
    s.set("gemma4.feed_forward_length", Value::Array(widths.to_vec()));
    s.set("gemma4.attention.shared_kv_layers", Value::U32(2));
    let path = s.write(dir.path(), "double_wide.gguf");
    let err = error_naming(gguf::open(&path), &path);
    assert!(err.to_string().contains("double-wide"), "{err}");
}

#[test]
fn embedding_rows_keep_their_order() {
    // A row of the embedding table is the row asked for (layout is [vocab, hidden]).
    let dir = tempfile::tempdir().unwrap();
    let s = Synthetic::new("llama", 1);
    let model = gguf::open(&s.write(dir.path(), "rows.gguf")).unwrap();
    let embeddings = load(&model, "model.embed_tokens.weight");
    let row = embeddings.i(100).unwrap();
    let expected = s.get("token_embd.weight").i(100).unwrap();
    assert_eq!(max_abs_diff(&row, &expected), 0.0);
}

/// Two JSON values equal up to f32 rounding of their numbers (GGUF stores floats as f32);
/// the paths where they differ otherwise.
fn json_differences(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() > 1e-6 * x.abs().max(y.abs()) {
                out.push(format!("{path}: {x} vs {y}"));
            }
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                json_differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (J::Object(x), J::Object(y)) if x.len() == y.len() => {
            for (key, x) in x {
                match y.get(key) {
                    Some(y) => json_differences(&format!("{path}.{key}"), x, y, out),
                    None => out.push(format!("{path}.{key}: missing")),
                }
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} vs {b}")),
    }
}

/// What the GGUF reader makes of each model llama.cpp's converter wrote is what the
/// `config.json` reader makes of the original checkpoint.
#[test]
fn converted_models_read_as_their_config_json() {
    let gguf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&gguf_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let (from_gguf, _) = gguf::inspect(&path).unwrap();
        let hf = fixture(&format!("tiny/{name}/config.json"));
        let from_hf = neuronxa::engine::ModelConfig::from_hf_file(&hf).unwrap();
        let mut differences = Vec::new();
        json_differences(
            &name,
            &serde_json::to_value(&from_gguf).unwrap(),
            &serde_json::to_value(&from_hf).unwrap(),
            &mut differences,
        );
        if name == "llama" || name == "apertus" {
            // Llama 3's scaling arrives as llama.cpp's table of divisors, not its parameters
            // (the same frequencies: `rope_freqs_tables_divide_the_frequencies`).
            differences.retain(|d| !d.contains(".rope.scaling.FrequencyDivisors: missing"));
        }
        if name == "falcon" {
            // The converter writes 2048 positions for every Falcon ("not in config.json").
            differences.retain(|d| d != "falcon.max_position_embeddings: 2048 vs 512");
        }
        assert!(differences.is_empty(), "{differences:#?}");
        checked += 1;
    }
    assert_eq!(
        checked,
        40,
        "the converted fixtures in {}",
        gguf_dir.display()
    );
}

/// Qwen3.5's GGUF metadata: which layers are recurrent (listed, or every fourth one attends),
/// and linear-attention sizes that do not divide refused in words.
#[test]
fn qwen35_layers_come_from_the_list_or_the_interval_and_ragged_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::read(&fixture("gguf/qwen3_5.gguf"));
    let (listed, _) = gguf::inspect(&fixture("gguf/qwen3_5.gguf")).unwrap();
    let mixers = |config: &ModelConfig| -> Vec<LayerMixer> {
        config.layers.iter().map(|layer| layer.mixer).collect()
    };
    assert_eq!(
        mixers(&listed),
        [
            LayerMixer::LinearAttention,
            LayerMixer::Attention,
            LayerMixer::LinearAttention,
            LayerMixer::Attention
        ]
    );

    s.remove("qwen35.attention.recurrent_layers");
    s.set("qwen35.full_attention_interval", Value::U32(2));
    let path = s.write(dir.path(), "interval.gguf");
    let (from_interval, _) = gguf::inspect(&path).unwrap();
    assert_eq!(mixers(&from_interval), mixers(&listed));

    s.set(
        "qwen35.attention.recurrent_layers",
        Value::Array(vec![Value::Bool(true); 3]),
    );
    let path = s.write(dir.path(), "short.gguf");
    let err = error_naming(gguf::inspect(&path), &path).to_string();
    assert!(err.contains("one true/false per layer (4)"), "{err}");

    s.remove("qwen35.attention.recurrent_layers");
    s.set("qwen35.ssm.inner_size", Value::U32(50));
    let path = s.write(dir.path(), "ragged.gguf");
    let err = error_naming(gguf::inspect(&path), &path).to_string();
    assert!(
        err.contains("qwen35.ssm.inner_size") && err.contains("qwen35.ssm.time_step_rank"),
        "{err}"
    );
}

/// A Qwen3.5 file with a multi-token prediction block (what llama.cpp's converter writes by
/// default for the released models): the block is counted in `block_count` but is no layer of
/// the model, which reads and computes as the file without it.
#[test]
fn qwen35_prediction_blocks_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture("gguf/qwen3_5.gguf");
    let mut s = Synthetic::read(&original);
    let last_layer: Vec<(String, Tensor)> = s
        .tensors
        .iter()
        .filter_map(|(name, values, _)| {
            let rest = name.strip_prefix("blk.3.")?;
            Some((format!("blk.4.{rest}"), values.clone()))
        })
        .collect();
    for (name, values) in last_layer {
        s.tensor(&name, values);
    }
    s.tensor("blk.4.nextn.eh_proj.weight", random(&[64, 128], 7));
    s.tensor("blk.4.nextn.enorm.weight", random(&[64], 8));
    s.tensor("blk.4.nextn.hnorm.weight", random(&[64], 9));
    s.tensor("blk.4.nextn.shared_head_norm.weight", random(&[64], 10));
    s.set("qwen35.block_count", Value::U32(5));
    s.set("qwen35.nextn_predict_layers", Value::U32(1));
    let recurrent = [true, false, true, false, false].map(Value::Bool);
    s.set(
        "qwen35.attention.recurrent_layers",
        Value::Array(recurrent.to_vec()),
    );
    let path = s.write(dir.path(), "with_mtp.gguf");
    let (with_mtp, _) = gguf::inspect(&path).unwrap();
    let (without, _) = gguf::inspect(&original).unwrap();
    assert_eq!(with_mtp, without);

    let sentences = ["The cat sleeps.".to_string(), "Le chat dort.".to_string()];
    let states = |path: &Path| {
        let model = Model::load(
            &ModelSource::Gguf(path.to_path_buf()),
            DeviceChoice::Cpu,
            DTypeChoice::F32,
        )
        .unwrap();
        let states = model
            .extract(
                &sentences,
                &ExtractOptions::default(),
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap();
        (0..sentences.len())
            .map(|k| states.sentence(k).nas.to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(states(&path), states(&original));

    // More prediction blocks than blocks: said, not underflowed.
    s.set("qwen35.nextn_predict_layers", Value::U32(5));
    let path = s.write(dir.path(), "all_mtp.gguf");
    let err = error_naming(gguf::inspect(&path), &path).to_string();
    assert!(err.contains("qwen35.nextn_predict_layers"), "{err}");
}

#[test]
fn rotary_on_part_of_each_head_is_read_and_an_odd_part_refused() {
    // Phi-4-mini's converter output: rotary on 3/4 of each head.
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::new("phi3", 1);
    s.set("phi3.rope.dimension_count", Value::U32(6));
    let path = s.write(dir.path(), "phi4_mini.gguf");
    let (config, _) = gguf::inspect(&path).unwrap();
    assert_eq!(
        (config.head_dim, config.partial_rotary),
        (HEAD_DIM, Some(6))
    );

    s.set("phi3.rope.dimension_count", Value::U32(5));
    let path = s.write(dir.path(), "odd.gguf");
    let err = error_naming(gguf::inspect(&path), &path).to_string();
    assert!(err.contains("rotary on 5"), "{err}");
}

/// A `tokenizer.ggml.pre` llama.cpp does not know is refused in words (it would split the
/// text otherwise than the model was trained to read), and a known one is taken: BLOOM's split
/// keeps "don't-stop" whole where GPT-2's cuts it in four.
#[test]
fn an_unknown_pre_tokenizer_is_refused_and_a_known_one_splits_its_own_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::read(&fixture("gguf/qwen2.gguf"));
    s.set(
        "tokenizer.ggml.pre",
        Value::String("no-such-pre-tokenizer".into()),
    );
    let unknown = s.write(dir.path(), "unknown_pre.gguf");
    let Err(err) = gguf::tokenizer(&unknown) else {
        panic!("an unknown pre-tokenizer was accepted");
    };
    let err = err.to_string();
    // Already when the model is inspected (the explorer's model panel, `neuronxa inspect`).
    assert_eq!(gguf::inspect(&unknown).unwrap_err().to_string(), err);
    assert!(
        err.contains("\"no-such-pre-tokenizer\" (tokenizer.ggml.pre) is not one of the")
            && err.contains("original folder"),
        "{err}"
    );

    let mut pieces = |pre: &str| {
        s.set("tokenizer.ggml.pre", Value::String(pre.into()));
        let path = s.write(dir.path(), &format!("{pre}.gguf"));
        let tokenizer = gguf::tokenizer(&path).unwrap();
        let pre_tokenizer = tokenizer.inner().get_pre_tokenizer().unwrap();
        let mut text = tokenizers::PreTokenizedString::from("say don't-stop 2024");
        tokenizers::PreTokenizer::pre_tokenize(pre_tokenizer, &mut text).unwrap();
        text.get_splits(
            tokenizers::OffsetReferential::Original,
            tokenizers::OffsetType::Char,
        )
        .into_iter()
        .map(|(piece, _, _)| piece.to_string())
        .collect::<Vec<_>>()
    };
    // GPT-2's split, and Qwen2's, which takes a sign with the letters after it and digits one
    // by one.
    assert_eq!(pieces("gpt-2"), ["say", "Ġdon", "'t", "-", "stop", "Ġ2024"]);
    assert_eq!(
        pieces("qwen2"),
        ["say", "Ġdon", "'t", "-stop", "Ġ", "2", "0", "2", "4"]
    );
    // BLOOM's: anything but spaces and a few stops, with the space in front.
    assert_eq!(pieces("bloom"), ["say", "Ġdon't-stop", "Ġ2024"]);
}

/// GLM from GGUF: the "-hf" layout (q, k and v apart) is read (`tests/parity.rs` runs it);
/// ChatGLM's original fused `query_key_value` is refused by name.
#[test]
fn chatglm_with_fused_qkv_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synthetic::read(&fixture("gguf/glm.gguf"));
    let q = s.get("blk.0.attn_q.weight").clone();
    let k = s.get("blk.0.attn_k.weight").clone();
    let v = s.get("blk.0.attn_v.weight").clone();
    s.tensor("blk.0.attn_qkv.weight", Tensor::cat(&[q, k, v], 0).unwrap());
    for part in ["attn_q", "attn_k", "attn_v"] {
        s.tensors
            .retain(|(n, _, _)| n != &format!("blk.0.{part}.weight"));
    }
    let err = gguf::inspect(&s.write(dir.path(), "chatglm_fused.gguf"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`attn_qkv`") && err.contains("-hf"), "{err}");
}

/// Qwen2's tokenizer composes the text to NFC before splitting it; the GGUF tokenizer of a
/// `qwen2` vocabulary does the same (llama.cpp and transformers' GGUF loader do not), so
/// decomposed text ("Vie\u{302}\u{323}t") gets the ids of the composed one, as from the tiny
/// qwen2's `tokenizer.json` (which the fixture script makes like Qwen2's, NFC included).
#[test]
fn a_qwen_gguf_composes_decomposed_text_as_its_tokenizer_json_does() {
    let original = neuronxa::engine::tokenizer::TextTokenizer::from_file(&fixture(
        "tiny/qwen2/tokenizer.json",
    ))
    .unwrap();
    let from_gguf = gguf::tokenizer(&fixture("gguf/qwen2.gguf")).unwrap();
    let decomposed = "Vie\u{302}\u{323}t Nam, cafe\u{301}, \u{1100}\u{1161}\u{11a8}";
    let composed = "Việt Nam, café, 각";
    let ids = |tokenizer: &neuronxa::engine::tokenizer::TextTokenizer, text: &str| {
        tokenizer.encode(text).unwrap().ids
    };
    assert_eq!(ids(&original, decomposed), ids(&original, composed));
    assert_eq!(ids(&from_gguf, decomposed), ids(&original, decomposed));
}
