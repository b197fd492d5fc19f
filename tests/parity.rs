//! Parity with Hugging Face transformers, the ground truth for our own forward pass.
//!
//! The fixtures are written by `scripts/make_fixtures.py` (transformers + torch on CPU, f32,
//! eager attention): tiny random-weight models of every architecture and the reference pooled
//! states of a handful of sentences in ten languages (see tests/fixtures/README.md).
//!
//! Tolerances, in f32: token ids identical; NAV, hidden-state pools and log-probabilities within
//! 1e-4 absolute; NAS pools identical except where a token's gate pre-activation is within 1e-5
//! of zero (there the sign is float noise), where they may differ by that token's weight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use neuronxa::engine::capture::{CaptureSettings, ExpertPooling, NavSource, Pooling};
use neuronxa::engine::stages::StageClock;
use neuronxa::engine::{
    DTypeChoice, DeviceChoice, ExtractOptions, LanguageStates, Model, ModelSource,
};

const TOLERANCE: f32 = 1e-4;
const NEAR_ZERO_GATE: f32 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(serde::Deserialize)]
struct Sentence {
    lang: String,
    text: String,
}

fn sentences(path: &Path) -> Vec<Sentence> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

struct Reference {
    tensors: HashMap<String, Tensor>,
}

impl Reference {
    fn load(path: &Path) -> Self {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { tensors }
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn f32(&self, name: &str) -> Vec<f32> {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("reference has no tensor {name}"))
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// For each neuron of sentence `k`, how close its activation came to changing sign over
    /// the sentence: `min_t |gate|`, and for xIELU (which turns positive again below 0) also
    /// `min_t |act|`. NAS entries below [`NEAR_ZERO_GATE`] are not comparable.
    fn sign_margin(&self, k: usize) -> Vec<f32> {
        let mut margin = self.f32(&format!("s{k}.gate_min_abs"));
        let act = format!("s{k}.act_min_abs");
        if self.has(&act) {
            for (m, a) in margin.iter_mut().zip(self.f32(&act)) {
                *m = m.min(a);
            }
        }
        margin
    }

    fn ids(&self, name: &str) -> Vec<u32> {
        self.tensors[name]
            .to_dtype(candle_core::DType::I64)
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }
}

fn load(folder: &Path) -> Model {
    Model::load(
        &ModelSource::Folder(folder.to_path_buf()),
        DeviceChoice::Cpu,
        DTypeChoice::F32,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
}

fn extract(
    model: &Model,
    texts: &[String],
    capture: CaptureSettings,
    batch_size: usize,
) -> LanguageStates {
    model
        .extract(
            texts,
            &ExtractOptions {
                capture,
                batch_size,
            },
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap()
}

fn assert_close(what: &str, ours: &[f32], reference: &[f32]) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let (worst, at) = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0f32, 0),
            |(w, at), (i, d)| if d > w { (d, i) } else { (w, at) },
        );
    assert!(
        worst <= TOLERANCE,
        "{what}: max |ours - transformers| = {worst:e} at {at} (ours {}, reference {})",
        ours[at],
        reference[at]
    );
}

/// NAS pools must match exactly unless the gate was within 1e-5 of zero for some token.
fn assert_nas(what: &str, ours: &[f32], reference: &[f32], gate_min_abs: &[f32]) {
    let mut skipped = 0;
    for (i, ((a, b), g)) in ours.iter().zip(reference).zip(gate_min_abs).enumerate() {
        if *g < NEAR_ZERO_GATE {
            skipped += 1;
            continue;
        }
        // Pools of indicators are sums of the same weights: equal up to f32 summation order.
        assert!(
            (a - b).abs() <= 1e-6,
            "{what}: NAS differs at {i}: ours {a}, reference {b}"
        );
    }
    assert!(
        skipped * 10 < ours.len().max(10),
        "{what}: too many near-zero gates ({skipped})"
    );
}

fn check_tiny(name: &str) {
    let folder = fixtures().join("tiny").join(name);
    check_against_reference(name, name, &load(&folder));
}

/// The tiny model `name` as llama.cpp's converter writes it (F32): the GGUF reader must give
/// the numbers transformers gives for the original checkpoint.
fn check_converted(name: &str) {
    let path = fixtures().join("gguf").join(format!("{name}.gguf"));
    let mut model = Model::load(
        &ModelSource::Gguf(path.clone()),
        DeviceChoice::Cpu,
        DTypeChoice::F32,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // llama.cpp's converter and transformers' GGUF loader treat a Gemma vocabulary as Gemma's
    // own (no dummy prefix, merges in token order). The tiny Gemmas share the llama-style
    // SentencePiece model instead, so their GGUF tokenizer is not what their tokenizer.json
    // says: weights and config are checked here with the original tokenizer.
    if name.starts_with("gemma") {
        let original = fixtures().join("tiny").join(name).join("tokenizer.json");
        model.tokenizer = neuronxa::engine::tokenizer::TextTokenizer::from_file(&original).unwrap();
    }
    check_against_reference(name, &format!("{name}.gguf"), &model);
}

/// Token ids, pooled states and log-probabilities of `model` against the transformers
/// reference of the tiny model `tiny`; failures say `name`.
fn check_against_reference(tiny: &str, name: &str, model: &Model) {
    let folder = fixtures().join("tiny").join(tiny);
    let reference = Reference::load(&folder.join("reference.safetensors"));
    let sentences = sentences(&fixtures().join("sentences.json"));
    let texts: Vec<String> = sentences.iter().map(|s| s.text.clone()).collect();

    for (k, sentence) in sentences.iter().enumerate() {
        let ours = model.tokenizer.encode(&sentence.text).unwrap().ids;
        assert_eq!(
            ours,
            reference.ids(&format!("s{k}.input_ids")),
            "{name}: token ids of sentence {k} ({})",
            sentence.lang
        );
    }

    let variants = [
        (Pooling::Weighted, false, NavSource::Activation, "weighted"),
        (Pooling::Mean, false, NavSource::Activation, "mean"),
        (Pooling::Last, false, NavSource::Activation, "last"),
    ];
    for (pooling, skip, nav_source, suffix) in variants {
        let capture = CaptureSettings {
            pooling,
            skip_special_tokens: skip,
            nav_source,
            ..Default::default()
        };
        let states = extract(model, &texts, capture, 1);
        for k in 0..texts.len() {
            let what = format!("{name} s{k} {suffix}");
            let sentence = states.sentence(k);
            let (nas, nav, hidden, last) = (
                sentence.nas,
                sentence.nav,
                sentence.hidden_pooled,
                sentence.hidden_last,
            );
            let gate = reference.sign_margin(k);
            assert_nas(
                &what,
                nas,
                &reference.f32(&format!("s{k}.nas_{suffix}")),
                &gate,
            );
            assert_close(
                &format!("{what} nav"),
                nav,
                &reference.f32(&format!("s{k}.nav_{suffix}")),
            );
            let hidden_name = format!("s{k}.hidden_{suffix}");
            if reference.has(&hidden_name) && suffix != "last" {
                assert_close(
                    &format!("{what} hidden"),
                    hidden,
                    &reference.f32(&hidden_name),
                );
            }
            if suffix == "weighted" {
                assert_close(
                    &format!("{what} hidden_last"),
                    last,
                    &reference.f32(&format!("s{k}.hidden_last")),
                );
            }
        }
    }

    // A mixture's other reading: each expert pooled over the tokens routed to it.
    if reference.has("s0.nas_weighted_routed") {
        for (pooling, suffix) in [(Pooling::Weighted, "weighted"), (Pooling::Mean, "mean")] {
            let capture = CaptureSettings {
                pooling,
                expert_pooling: ExpertPooling::RoutedTokens,
                ..Default::default()
            };
            let states = extract(model, &texts, capture, 1);
            for k in 0..texts.len() {
                let what = format!("{name} s{k} {suffix} over routed tokens");
                let sentence = states.sentence(k);
                let gate = reference.sign_margin(k);
                assert_nas(
                    &what,
                    sentence.nas,
                    &reference.f32(&format!("s{k}.nas_{suffix}_routed")),
                    &gate,
                );
                assert_close(
                    &format!("{what} nav"),
                    sentence.nav,
                    &reference.f32(&format!("s{k}.nav_{suffix}_routed")),
                );
            }
        }
    }

    // NAV on act(gate)·up, the input of down_proj.
    let capture = CaptureSettings {
        nav_source: NavSource::ActivationTimesUp,
        ..Default::default()
    };
    let states = extract(model, &texts, capture, 1);
    for k in 0..texts.len() {
        let nav = states.sentence(k).nav;
        assert_close(
            &format!("{name} s{k} navup"),
            nav,
            &reference.f32(&format!("s{k}.navup_weighted")),
        );
    }

    // Special tokens dropped before pooling.
    let capture = CaptureSettings {
        skip_special_tokens: true,
        ..Default::default()
    };
    let states = extract(model, &texts, capture, 1);
    for k in 0..texts.len() {
        let key = format!("s{k}.nav_weighted_nospecial");
        if reference.has(&key) {
            let (nas, nav) = (states.sentence(k).nas, states.sentence(k).nav);
            assert_close(
                &format!("{name} s{k} nospecial nav"),
                nav,
                &reference.f32(&key),
            );
            let gate = reference.sign_margin(k);
            assert_nas(
                &format!("{name} s{k} nospecial"),
                nas,
                &reference.f32(&format!("s{k}.nas_weighted_nospecial")),
                &gate,
            );
        }
    }

    // Next-token log-probabilities (the bits-per-byte proxy).
    for k in 0..texts.len() {
        let key = format!("s{k}.logprob_sum");
        if !reference.has(&key) {
            continue;
        }
        let ids = reference.ids(&format!("s{k}.input_ids"));
        let t = ids.len();
        let ids = Tensor::from_vec(ids, (1, t), &Device::Cpu).unwrap();
        let ours: f32 = model
            .decoder
            .next_token_logprobs(&ids)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        let expected = reference.f32(&key)[0];
        assert!(
            (ours - expected).abs() <= 1e-3_f32.max(expected.abs() * 1e-5),
            "{name} s{k}: log-prob sum {ours} vs {expected}"
        );
    }
}

/// The largest absolute difference between two equally long arrays.
fn worst_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Batching must not change what a sentence gets (right padding under the causal mask).
fn check_batch_invariance(name: &str) {
    let folder = fixtures().join("tiny").join(name);
    let model = load(&folder);
    let texts: Vec<String> = sentences(&fixtures().join("sentences.json"))
        .into_iter()
        .map(|s| s.text)
        .collect();
    let one = extract(&model, &texts, CaptureSettings::default(), 1);
    let many = extract(&model, &texts, CaptureSettings::default(), 32);
    for (what, a, b) in [
        ("nav", &one.nav, &many.nav),
        ("nas", &one.nas, &many.nas),
        ("hidden", &one.hidden_pooled, &many.hidden_pooled),
        ("hidden_last", &one.hidden_last, &many.hidden_last),
    ] {
        // Within 1e-5 of the largest value (or of 1): batches of other sizes sum the same
        // products in another order (other GEMM kernels; with experts, other expert batches).
        let worst = worst_difference(a, b);
        let scale = a.iter().fold(1f32, |largest, x| largest.max(x.abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{name} {what}: batch 1 vs 32 differ by {worst:e}, values up to {scale}"
        );
    }
}

/// The CPU kernels (packed batches) against the generic tensor ops the GPUs run (padded
/// batches), both on the CPU in f32: NAV and hidden states within 1e-4 (the fixtures'
/// tolerance); NAS may differ only where a gate sits at zero within rounding, so at least
/// 99.9% of its entries are equal.
/// Timing the forward's stages (`bench --stages`) synchronises the device around each and
/// changes nothing else: the same states, bit for bit, and every stage timed at least once.
fn assert_same_with_stage_clock(
    name: &str,
    model: &mut Model,
    texts: &[String],
    untimed: &LanguageStates,
) {
    let clock = std::sync::Arc::new(StageClock::new(model.decoder.device()));
    model.decoder.set_stage_clock(Some(clock.clone()));
    let timed = extract(model, texts, CaptureSettings::default(), 8);
    model.decoder.set_stage_clock(None);
    assert!(
        timed.nas == untimed.nas
            && timed.nav == untimed.nav
            && timed.hidden_pooled == untimed.hidden_pooled
            && timed.hidden_last == untimed.hidden_last,
        "{name}: the stage clock changed the states"
    );
    let stages = clock.totals();
    assert!(
        stages.iter().any(|stage| stage.stage == "embeddings")
            && stages.iter().any(|stage| stage.stage.starts_with("MLP"))
            && stages.iter().all(|stage| stage.calls > 0),
        "{name}: {stages:?}"
    );
}

/// `a` (computed by `how`) against the generic ops' `b`: NAV within `nav_tolerance`, the hidden
/// states within 1e-4, and NAS equal in 99.9% of entries. The same weights summed in another
/// order (a mixture's pools are one product over the whole batch's tokens, padded or packed) may
/// differ in the last bits; a flipped neuron moves an entry by at least one token's weight,
/// 1/(T(T+1)/2) ≥ 2e-4 here.
fn assert_same_but_for_order(
    name: &str,
    how: &str,
    a: &LanguageStates,
    b: &LanguageStates,
    nav_tolerance: f32,
) {
    for (what, x, y, tolerance) in [
        ("nav", &a.nav, &b.nav, nav_tolerance),
        ("hidden", &a.hidden_pooled, &b.hidden_pooled, 1e-4),
        ("hidden_last", &a.hidden_last, &b.hidden_last, 1e-4),
    ] {
        assert_eq!(x.len(), y.len());
        let worst = worst_difference(x, y);
        assert!(
            worst <= tolerance,
            "{name} {what}: {how} vs generic ops differ by {worst:e}"
        );
    }
    let equal = a
        .nas
        .iter()
        .zip(b.nas.iter())
        .filter(|(x, y)| (*x - *y).abs() <= 1e-6)
        .count();
    assert!(
        equal as f64 >= 0.999 * a.nas.len() as f64,
        "{name} nas with the {how}: {equal} of {} entries equal",
        a.nas.len()
    );
}

fn check_generic_ops(name: &str) {
    let folder = fixtures().join("tiny").join(name);
    let texts: Vec<String> = sentences(&fixtures().join("sentences.json"))
        .into_iter()
        .map(|s| s.text)
        .collect();
    let mut model = load(&folder);
    let kernels = extract(&model, &texts, CaptureSettings::default(), 8);
    assert_same_with_stage_clock(name, &mut model, &texts, &kernels);
    model.decoder.set_cpu_kernels(false);
    let generic = extract(&model, &texts, CaptureSettings::default(), 8);
    assert_same_with_stage_clock(name, &mut model, &texts, &generic);
    // The benchmark's timed passes (with and without capture) run on the generic ops too.
    let options = ExtractOptions {
        batch_size: 8,
        ..Default::default()
    };
    let tokens = model.tokenize_all(&texts).unwrap();
    for capture in [true, false] {
        if let Err(error) = model.time_forward_only(&tokens, &options, capture) {
            panic!("{name}: timed forward passes (capture {capture}) failed: {error}");
        }
    }
    // The CUDA capture kernel's definition (what runs on the CPU in its place) in the generic
    // path gives the generic ops' pools: NAS exactly but for summation order, NAV to 1e-5.
    model.decoder.set_capture_kernel(true);
    assert_eq!(model.decoder.capture_path(), "CUDA capture kernel");
    let with_kernel = extract(&model, &texts, CaptureSettings::default(), 8);
    model.decoder.set_capture_kernel(false);
    for (what, a, b, tolerance) in [
        ("nas", &with_kernel.nas, &generic.nas, 1e-6),
        ("nav", &with_kernel.nav, &generic.nav, 1e-5),
    ] {
        let worst = worst_difference(a, b);
        assert!(
            worst <= tolerance,
            "{name} {what}: capture kernel vs generic ops differ by {worst:e}"
        );
    }
    assert_same_but_for_order(name, "CPU kernels", &kernels, &generic, 1e-4);
    // The fused kernels' definitions (the MLP's act(gate)·up, attention's head layout and its
    // softmax, what runs on the CPU in their place) give the generic ops' states but for the
    // order of sums: NAV within 1e-5, the hidden states (which carry it through every layer)
    // within 1e-4 (1.3e-5 on the last token of gemma2 and smollm3).
    model.decoder.set_fused_kernels(true);
    let fused = extract(&model, &texts, CaptureSettings::default(), 8);
    model.decoder.set_fused_kernels(false);
    assert_same_but_for_order(name, "fused kernels", &fused, &generic, 1e-5);
    // Linear attention's recurrence by the CUDA kernel's definition (what runs on the CPU in
    // its place) gives the tensor ops' states but for summation order.
    if model.config.linear_attention.is_some() {
        model.decoder.set_delta_rule_kernel(true);
        let with_kernel = extract(&model, &texts, CaptureSettings::default(), 8);
        model.decoder.set_delta_rule_kernel(false);
        for (what, a, b) in [
            ("nav", &with_kernel.nav, &generic.nav),
            ("hidden", &with_kernel.hidden_pooled, &generic.hidden_pooled),
        ] {
            let worst = worst_difference(a, b);
            assert!(
                worst <= 1e-5,
                "{name} {what}: delta rule kernel vs tensor ops differ by {worst:e}"
            );
        }
    }
    // A mixture's routed-tokens reading: the generic ops (the GPU's path) renormalize the
    // weights as the kernels do.
    if model.config.experts.is_some() {
        let routed = CaptureSettings {
            expert_pooling: ExpertPooling::RoutedTokens,
            ..Default::default()
        };
        let generic = extract(&model, &texts, routed, 8);
        model.decoder.set_cpu_kernels(true);
        let kernels = extract(&model, &texts, routed, 8);
        for (what, a, b) in [
            ("nas", &kernels.nas, &generic.nas),
            ("nav", &kernels.nav, &generic.nav),
        ] {
            let worst = worst_difference(a, b);
            assert!(
                worst <= 1e-4,
                "{name} {what} over routed tokens: kernels vs generic ops differ by {worst:e}"
            );
        }
    }
}

macro_rules! parity_tests {
    ($($arch:ident),*) => {
        mod tiny {
            $(
                #[test]
                fn $arch() {
                    super::check_tiny(stringify!($arch));
                    super::check_batch_invariance(stringify!($arch));
                    super::check_generic_ops(stringify!($arch));
                }
            )*
        }
    };
}

parity_tests!(
    llama,
    mistral,
    qwen2,
    qwen3,
    gemma,
    gemma2,
    gemma3,
    gemma4,
    gemma4_moe,
    olmo,
    olmo2,
    phi3,
    phi4_mini,
    stablelm,
    smollm3,
    granite,
    cohere,
    gpt2,
    bloom,
    gpt_neox,
    falcon,
    falcon_7b,
    cohere2,
    olmo3,
    xglm,
    apertus,
    llama_bias,
    jais2,
    nemotron,
    olmoe,
    qwen3_moe,
    mixtral,
    glm,
    glm4,
    qwen2_moe,
    exaone4,
    helium,
    arcee,
    ministral3,
    mistral3,
    gpt_oss,
    gpt_oss_mxfp4,
    granitemoe,
    qwen3_5,
    qwen3_5_moe,
    apertus1p5,
    granite_swa,
    lfm2,
    lfm3,
    olmo_hybrid
);

/// The same tiny models saved in PyTorch's own format (`pytorch_model.bin`, one file for
/// GPT-2, two shards and an index for XGLM): the same numbers as from safetensors.
#[test]
fn pytorch_checkpoints_give_the_safetensors_numbers() {
    for name in ["gpt2", "xglm"] {
        let folder = fixtures().join("pytorch").join(name);
        let model = load(&folder);
        assert!(
            model.info.storage_dtype.contains("f32"),
            "{}",
            model.info.storage_dtype
        );
        check_against_reference(name, &format!("{name} (pytorch_model.bin)"), &model);
    }
}

/// A mixture saved with its experts stacked, as transformers 5 keeps them in memory
/// (`mlp.experts.gate_up_proj` `[experts, 2·d_ff, d_model]`, `mlp.experts.down_proj`
/// `[experts, d_model, d_ff]`): the tiny OLMoE restacked gives its own numbers.
#[test]
fn stacked_experts_give_the_per_expert_numbers() {
    let source = fixtures().join("tiny").join("olmoe");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let mut tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let experts = (0..)
        .take_while(|e| {
            tensors.contains_key(&format!("model.layers.0.mlp.experts.{e}.up_proj.weight"))
        })
        .count();
    assert_eq!(experts, 8);
    for layer in 0..2 {
        let mut take = |e: usize, part: &str| {
            tensors
                .remove(&format!(
                    "model.layers.{layer}.mlp.experts.{e}.{part}.weight"
                ))
                .unwrap()
        };
        let (mut gate_up, mut down) = (Vec::new(), Vec::new());
        for e in 0..experts {
            gate_up.push(Tensor::cat(&[take(e, "gate_proj"), take(e, "up_proj")], 0).unwrap());
            down.push(take(e, "down_proj"));
        }
        let prefix = format!("model.layers.{layer}.mlp.experts.");
        tensors.insert(
            format!("{prefix}gate_up_proj"),
            Tensor::stack(&gate_up, 0).unwrap(),
        );
        tensors.insert(
            format!("{prefix}down_proj"),
            Tensor::stack(&down, 0).unwrap(),
        );
    }
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let model = load(dir.path());
    check_against_reference("olmoe", "olmoe (stacked experts)", &model);
}

/// The tiny model `tiny` as a multimodal release stores its language model: its config as
/// the `text_config` of a `wrapper` (the text model's type renamed to `text_type` where given),
/// its tensors under `model.language_model.`, a vision tower's tensor beside them. Loaded from
/// a temporary folder.
fn wrapped(tiny: &str, wrapper: &str, text_type: Option<&str>) -> (tempfile::TempDir, Model) {
    let source = fixtures().join("tiny").join(tiny);
    let dir = tempfile::tempdir().unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let mut text: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap())
            .unwrap();
    if let Some(text_type) = text_type {
        text["model_type"] = text_type.into();
    }
    let config = serde_json::json!({
        "model_type": wrapper,
        "text_config": text,
        "vision_config": { "model_type": format!("{wrapper}_vision"), "hidden_size": 4 },
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let tensors = candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(name, tensor)| match name.strip_prefix("model.") {
            Some(rest) => (format!("model.language_model.{rest}"), tensor),
            None => (name, tensor),
        })
        .chain([(
            "model.visual.patch_embed.proj.weight".to_string(),
            Tensor::ones((4, 3, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
        )])
        .collect::<HashMap<_, _>>();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let model = load(dir.path());
    (dir, model)
}

/// Apertus 1.5 as released: its language model inside the image-and-audio wrapper
/// (`apertus1p5`) gives the tiny `apertus1p5`'s numbers, pruned head and all.
#[test]
fn apertus_1p5_inside_its_wrapper_gives_the_language_models_numbers() {
    let (_dir, model) = wrapped("apertus1p5", "apertus1p5", None);
    assert_eq!(model.config.output_vocab_size, Some(768));
    check_against_reference("apertus1p5", "apertus1p5 (wrapper)", &model);
    // An id past the pruned head (a multimodal code) has no probability to read.
    let ids = Tensor::new(&[[3u32, 790, 5]], &Device::Cpu).unwrap();
    let error = model.decoder.next_token_logprobs(&ids).unwrap_err();
    assert!(error.to_string().contains("token id 790"), "{error}");
}

/// EXAONE 4.5: EXAONE 4.0's language model inside a vision wrapper (`exaone4_5`), its text
/// type `exaone4` or, in the first releases, `exaone4_5_text`.
#[test]
fn exaone_4_5_inside_its_wrapper_gives_the_language_models_numbers() {
    for text_type in [None, Some("exaone4_5_text")] {
        let (_dir, model) = wrapped("exaone4", "exaone4_5", text_type);
        check_against_reference("exaone4", "exaone4 (EXAONE 4.5 wrapper)", &model);
    }
}

/// Gemma 4 as released (`Gemma4ForConditionalGeneration`): its language model as the
/// `text_config` of a `gemma4` wrapper, its tensors under `model.language_model.`.
#[test]
fn gemma_4_inside_its_wrapper_gives_the_language_models_numbers() {
    let (_dir, model) = wrapped("gemma4", "gemma4", None);
    assert_eq!(model.config.architecture.name(), "Gemma 4");
    check_against_reference("gemma4", "gemma4 (wrapper)", &model);
}

/// A GGUF whose linear weights are stored in the types candle lacks, one type per weight (the
/// i-quants, TQ1_0/TQ2_0, MXFP4, NVFP4): read by our own dequantization, against transformers
/// loading the same file through gguf-py.
#[test]
fn gguf_in_i_quants_ternary_and_fp4_gives_transformers_numbers() {
    let path = fixtures().join("tiny/llama_iquants/model.gguf");
    let model = Model::load(
        &ModelSource::Gguf(path.clone()),
        DeviceChoice::Cpu,
        DTypeChoice::F32,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let storage = &model.info.storage_dtype;
    for name in [
        "IQ1_M", "IQ2_XXS", "IQ3_S", "IQ4_XS", "TQ1_0", "MXFP4", "NVFP4",
    ] {
        assert!(storage.contains(name), "{storage}");
    }
    check_against_reference("llama_iquants", "llama_iquants.gguf", &model);
}

macro_rules! converted_gguf_tests {
    ($($arch:ident),*) => {
        mod converted_gguf {
            $(
                #[test]
                fn $arch() {
                    super::check_converted(stringify!($arch));
                }
            )*
        }
    };
}

// Every tiny model but Mistral (llama.cpp writes it as `llama` without its sliding window) and
// Gemma 3 (GGUF cannot carry its unusual query scale); see scripts/make_fixtures.py.
converted_gguf_tests!(
    llama,
    qwen2,
    qwen3,
    gemma,
    gemma2,
    olmo,
    olmo2,
    phi3,
    phi4_mini,
    stablelm,
    smollm3,
    granite,
    cohere,
    gpt2,
    bloom,
    gpt_neox,
    falcon,
    cohere2,
    olmo3,
    apertus,
    llama_bias,
    jais2,
    nemotron,
    olmoe,
    qwen3_moe,
    mixtral,
    qwen2_moe,
    exaone4,
    arcee,
    granitemoe,
    lfm2,
    qwen3_5,
    qwen3_5_moe,
    ministral3,
    mistral3,
    gpt_oss_mxfp4,
    glm,
    glm4,
    gemma4,
    gemma4_moe
);

/// The generic capture path (GPUs, bf16) against the fused f32 CPU path, on the CPU in bf16:
/// NAS decisions agree on almost every entry and NAV stays close. (bf16 keeps 8 bits of mantissa,
/// so this checks the plumbing of the generic path, not bit-level parity.)
#[test]
fn bf16_generic_capture_path_agrees_with_f32() {
    let folder = fixtures().join("tiny").join("qwen3");
    let texts: Vec<String> = sentences(&fixtures().join("sentences.json"))
        .into_iter()
        .map(|s| s.text)
        .collect();
    let f32_model = load(&folder);
    let bf16_model = Model::load(
        &ModelSource::Folder(folder),
        DeviceChoice::Cpu,
        DTypeChoice::Bf16,
    )
    .unwrap();
    let exact = extract(&f32_model, &texts, CaptureSettings::default(), 8);
    let half = extract(&bf16_model, &texts, CaptureSettings::default(), 8);
    let close = exact
        .nas
        .iter()
        .zip(&half.nas)
        .filter(|(a, b)| (*a - *b).abs() < 0.05)
        .count();
    assert!(
        close as f64 >= 0.95 * exact.nas.len() as f64,
        "{close} of {}",
        exact.nas.len()
    );
    let scale = exact.nav.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = exact
        .nav
        .iter()
        .zip(&half.nav)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 0.1 * scale,
        "NAV differs by {worst} (scale {scale})"
    );
}

/// The bf16 goal on the CPU: one neuron's on/off decision at the last token of a
/// sentence, bf16 against f32, agrees on ≥ 99.5% of entries for each tiny architecture. (With
/// the residual stream rounded to bf16 at every add, as before, llama, mistral and qwen2 were
/// at 99.45–99.47%; with it in f32 the lowest of those is llama at 99.56%.) One misses the
/// goal: the 4-layer smollm3 at 99.29% (not a wiring fault: its f32 parity with transformers
/// holds); it is held to 99.0% so that a change for the worse still shows. (phi3 was at 99.47%
/// while LongRoPE's attention factor was folded into the attention scale; multiplied into cos
/// and sin, as transformers does, it is at 99.54%.) The mixtures of experts decide in blocks:
/// a token routed to another expert in bf16 turns that expert's 16 (or 32) neurons off and
/// another's on at once, 6–12% of the sentence's 256 entries at its last token; olmoe meets
/// one or two such flips among its 30 sentences (99.1–99.4%, with the router in f32 or in
/// bf16) and granitemoe a few more (98.85%), so the mixtures are held to 98.5%. glm misses the
/// goal by a hair (99.49%, 39 entries of 7,680 where 38 would do; its f32 parity holds, and
/// glm4, the same attention and MLP, is at 99.66%): held to 99.0% like smollm3. So is
/// olmo_hybrid (99.35%): transformers' own bf16 run of it agrees with its f32 run on 99.28% of
/// the decisions on the bundled corpus' 1,000 sentences (`scripts/transformers_bf16_agreement.py`;
/// qwen3_5, the same linear attention with β in [0, 1] rather than [0, 2], is at 99.31% there
/// and 99.63% here), and gemma4 (99.41%; transformers' own bf16 run 99.37% on the bundled
/// corpus: its unscaled scores make the tiny model's softmax sharp).
#[test]
fn bf16_nas_decisions_agree_with_f32() {
    let texts: Vec<String> = sentences(&fixtures().join("sentences.json"))
        .into_iter()
        .map(|s| s.text)
        .collect();
    let last = CaptureSettings {
        pooling: Pooling::Last,
        ..CaptureSettings::default()
    };
    let mut report = Vec::new();
    let mut below = Vec::new();
    for name in [
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma4",
        "gemma4_moe",
        "olmo",
        "olmo2",
        "phi3",
        "phi4_mini",
        "stablelm",
        "smollm3",
        "granite",
        "cohere",
        "gpt2",
        "bloom",
        "gpt_neox",
        "falcon",
        "falcon_7b",
        "cohere2",
        "olmo3",
        "xglm",
        "apertus",
        "llama_bias",
        "jais2",
        "nemotron",
        "olmoe",
        "qwen3_moe",
        "mixtral",
        "glm",
        "glm4",
        "qwen2_moe",
        "exaone4",
        "helium",
        "arcee",
        "ministral3",
        "mistral3",
        "gpt_oss",
        "granitemoe",
        "qwen3_5",
        "qwen3_5_moe",
        "apertus1p5",
        "granite_swa",
        "lfm2",
        "lfm3",
        "olmo_hybrid",
    ] {
        let folder = fixtures().join("tiny").join(name);
        let exact = extract(&load(&folder), &texts, last, 8);
        let bf16 = Model::load(
            &ModelSource::Folder(folder),
            DeviceChoice::Cpu,
            DTypeChoice::Bf16,
        )
        .unwrap();
        let half = extract(&bf16, &texts, last, 8);
        let equal = exact
            .nas
            .iter()
            .zip(&half.nas)
            .filter(|(a, b)| (**a > 0.5) == (**b > 0.5))
            .count();
        let agreement = equal as f64 / exact.nas.len() as f64;
        report.push(format!("{name} {:.3}%", 100.0 * agreement));
        let goal = match name {
            "smollm3" | "glm" | "olmo_hybrid" | "gemma4" => 0.990,
            "olmoe" | "qwen3_moe" | "mixtral" | "qwen2_moe" | "gpt_oss" | "granitemoe"
            | "qwen3_5_moe" | "gemma4_moe" => 0.985,
            _ => 0.995,
        };
        if agreement < goal {
            below.push(name);
        }
    }
    eprintln!("bf16 NAS agreement: {}", report.join(", "));
    assert!(below.is_empty(), "below the goal: {below:?} ({report:?})");
}

/// The parameter count the explorer and `inspect` show is the checkpoint's: every tiny model's
/// weights, counted from its safetensors files (biases, norms, positions and all).
#[test]
fn parameter_counts_are_the_checkpoints() {
    for entry in std::fs::read_dir(fixtures().join("tiny")).unwrap() {
        let folder = entry.unwrap().path();
        let config_path = folder.join("config.json");
        if !config_path.exists() {
            continue; // the GGUF model
        }
        let config = neuronxa::engine::ModelConfig::from_hf_file(&config_path).unwrap();
        let files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "safetensors")
                    && p.file_name().is_some_and(|n| n != "reference.safetensors")
            })
            .collect();
        // SAFETY: fixture files nobody changes while the test runs.
        let weights =
            unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }.unwrap();
        // A vision wrapper's tower and projector are not the language model's (Mistral 3, Qwen3.5).
        // MXFP4 blocks hold two parameters a byte; their scales are not parameters.
        let stored: u64 = weights
            .tensors()
            .iter()
            .filter(|(name, _)| {
                !name.starts_with("vision_tower.")
                    && !name.starts_with("multi_modal_projector.")
                    && !name.starts_with("model.visual.")
                    && !name.starts_with("model.vision_tokenizer.")
                    && !name.ends_with("_scales")
            })
            .map(|(name, view)| {
                let per_element = if name.ends_with("_blocks") { 2 } else { 1 };
                per_element * view.shape().iter().product::<usize>() as u64
            })
            .sum();
        assert_eq!(config.parameter_count(), stored, "{}", folder.display());
    }
}

/// GPT-2-era repositories (mGPT's, for one) ship `vocab.json` and `merges.txt` without a
/// `tokenizer.json`: the tokenizer built from them gives transformers' `GPT2Tokenizer` ids on
/// every fixture sentence (`tokenizers/gpt2_files`, written by scripts/make_fixtures.py).
#[test]
fn gpt2_vocab_and_merges_tokenize_as_transformers() {
    let folder = fixtures().join("tokenizers").join("gpt2_files");
    assert!(!folder.join("tokenizer.json").exists());
    let tokenizer = neuronxa::engine::tokenizer::TextTokenizer::from_folder(&folder).unwrap();
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(folder.join("expected_ids.json")).unwrap())
            .unwrap();
    assert_eq!(expected.len(), 30);
    for sentence in expected {
        let text = sentence["text"].as_str().unwrap();
        let ids: Vec<u32> = sentence["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tokenizer.encode(text).unwrap().ids, ids, "{text}");
    }
}

/// An older checkpoint as such repositories come: `pytorch_model.bin`, `vocab.json` and
/// `merges.txt`, no safetensors and no `tokenizer.json`. It loads, and runs the fixture
/// sentences with the files' tokenizer.
#[test]
fn an_older_checkpoint_with_gpt2_tokenizer_files_runs() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = fixtures().join("pytorch").join("gpt2");
    for file in ["config.json", "pytorch_model.bin"] {
        std::fs::copy(checkpoint.join(file), dir.path().join(file)).unwrap();
    }
    let tokenizer = fixtures().join("tokenizers").join("gpt2_files");
    for file in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
        std::fs::copy(tokenizer.join(file), dir.path().join(file)).unwrap();
    }
    let source = ModelSource::Folder(dir.path().to_path_buf());
    neuronxa::engine::model::inspect(&source).unwrap();
    let model = load(dir.path());
    let text = "The cat sleeps on the warm windowsill.";
    let expected: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(tokenizer.join("expected_ids.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<u32> = expected.iter().find(|s| s["text"] == text).unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(model.tokenizer.encode(text).unwrap().ids, ids);
    let states = extract(&model, &[text.to_string()], CaptureSettings::default(), 1);
    assert!(states.nas.iter().any(|&v| v > 0.0) && states.nav.iter().all(|v| v.is_finite()));
}
