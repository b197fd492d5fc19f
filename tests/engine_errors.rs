//! Bad input to the engine: each case is a typed error that names the file and what is wrong.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use neuronxa::engine::{
    DTypeChoice, DeviceChoice, EngineError, ExtractOptions, Model, ModelSource,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny")
        .join(name)
}

/// A private copy of a tiny fixture model that a test may break.
fn copy_model(name: &str) -> tempfile::TempDir {
    copy_folder(&fixture(name))
}

/// A private copy of any fixture folder.
fn copy_folder(source: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// A file cut off half way, as an interrupted download leaves it.
fn truncate_to_half(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

fn load(folder: &Path) -> Result<Model, EngineError> {
    Model::load(
        &ModelSource::Folder(folder.to_path_buf()),
        DeviceChoice::Cpu,
        DTypeChoice::F32,
    )
}

fn load_err(folder: &Path) -> String {
    match load(folder) {
        Ok(_) => panic!("{} loaded although it is broken", folder.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_config_names_the_file() {
    let dir = copy_model("qwen3");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let message = load_err(dir.path());
    assert!(message.contains("config.json"), "{message}");
}

#[test]
fn malformed_config_says_it_is_not_json() {
    let dir = copy_model("qwen3");
    std::fs::write(
        dir.path().join("config.json"),
        "{ \"model_type\": \"qwen3\", ",
    )
    .unwrap();
    let message = load_err(dir.path());
    assert!(
        message.contains("config.json") && message.contains("not valid JSON"),
        "{message}"
    );
}

#[test]
fn config_missing_a_field_names_it() {
    let dir = copy_model("qwen3");
    edit_config(dir.path(), |json| {
        json.as_object_mut().unwrap().remove("hidden_size");
    });
    let message = load_err(dir.path());
    assert!(message.contains("hidden_size"), "{message}");
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    let dir = copy_model("qwen3");
    edit_config(dir.path(), |json| json["model_type"] = "mamba".into());
    let error = load(dir.path()).err().expect("must fail");
    assert!(
        matches!(error, EngineError::UnsupportedArchitecture { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("mamba") && message.contains("llama") && message.contains("gemma2"),
        "{message}"
    );
}

/// A folder with only a SentencePiece model says how to make the `tokenizer.json` it needs.
#[test]
fn a_sentencepiece_model_alone_is_explained_with_the_conversion() {
    let dir = copy_model("llama");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers/sp_llama.model"),
        dir.path().join("tokenizer.model"),
    )
    .unwrap();
    let error = load(dir.path()).err().expect("must fail");
    let message = error.to_string();
    assert!(matches!(error, EngineError::Tokenizer { .. }), "{message}");
    assert!(
        message.contains("tokenizer.model") && message.contains("save_pretrained"),
        "{message}"
    );
    // `inspect` says the same before any weight is read.
    let source = ModelSource::Folder(dir.path().to_path_buf());
    let error = neuronxa::engine::model::inspect(&source).expect_err("must fail");
    assert!(error.to_string().contains("save_pretrained"), "{error}");
}

#[test]
fn missing_tokenizer_is_a_tokenizer_error() {
    let dir = copy_model("qwen3");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let error = load(dir.path()).err().expect("must fail");
    assert!(matches!(error, EngineError::Tokenizer { .. }), "{error}");
    assert!(error.to_string().contains("tokenizer.json"), "{error}");
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = copy_model("qwen3");
    let path = dir.path().join("model.safetensors");
    truncate_to_half(&path);
    let message = load_err(dir.path());
    assert!(
        message.contains("model.safetensors") && message.contains("truncated"),
        "{message}"
    );
}

#[test]
fn truncated_pytorch_checkpoint_names_the_file() {
    let dir =
        copy_folder(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch/gpt2"));
    let path = dir.path().join("pytorch_model.bin");
    truncate_to_half(&path);
    let message = load_err(dir.path());
    assert!(
        message.contains("pytorch_model.bin") && message.contains("truncated"),
        "{message}"
    );
}

#[test]
fn a_folder_without_weights_says_which_files_it_looked_for() {
    let dir = copy_model("qwen3");
    for file in ["model.safetensors", "reference.safetensors"] {
        std::fs::remove_file(dir.path().join(file)).unwrap();
    }
    let message = load_err(dir.path());
    assert!(
        message.contains("no model.safetensors") && message.contains("pytorch_model.bin"),
        "{message}"
    );
}

#[test]
fn weights_that_do_not_match_the_config_name_the_tensor() {
    let dir = copy_model("qwen3");
    let path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["intermediate_size"] = serde_json::json!(256);
    std::fs::write(&path, json.to_string()).unwrap();
    let message = load_err(dir.path());
    assert!(
        message.contains("mlp.gate_proj.weight") && message.contains("256"),
        "{message}"
    );
}

#[test]
fn a_shard_missing_from_the_index_is_named() {
    let dir = copy_model("mistral");
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let shard = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(dir.path().join(&shard)).unwrap();
    let message = load_err(dir.path());
    assert!(
        message.contains(&shard) && message.contains("missing"),
        "{message}"
    );
}

#[test]
fn empty_and_overlong_sentences_are_refused() {
    let model = load(&fixture("qwen3")).unwrap();
    let cancel = AtomicBool::new(false);
    let options = ExtractOptions::default();
    let empty = vec!["A fine sentence.".to_string(), "   ".to_string()];
    let error = model
        .extract(&empty, &options, &cancel, &mut |_| {})
        .expect_err("must fail");
    assert!(
        matches!(error, EngineError::EmptySentence { index: 1 }),
        "{error}"
    );

    let huge = vec!["word ".repeat(100_000)];
    let error = model
        .extract(&huge, &options, &cancel, &mut |_| {})
        .expect_err("must fail");
    assert!(
        matches!(error, EngineError::SentenceTooLong { index: 0, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("max_position_embeddings"),
        "{error}"
    );
}

#[test]
fn cancelling_stops_before_the_next_batch() {
    let model = load(&fixture("qwen3")).unwrap();
    let cancel = AtomicBool::new(true);
    let texts = vec!["One sentence.".to_string(); 4];
    let error = model
        .extract(&texts, &ExtractOptions::default(), &cancel, &mut |_| {})
        .expect_err("must stop");
    assert!(matches!(error, EngineError::Cancelled));
}

#[test]
fn a_missing_model_folder_is_an_error_not_a_panic() {
    let message = load_err(Path::new("/nonexistent/model"));
    assert!(message.contains("/nonexistent/model"), "{message}");
}

#[test]
fn unknown_device_and_dtype_are_explained() {
    let error = DeviceChoice::parse("tpu").err().unwrap().to_string();
    assert!(error.contains("tpu") && error.contains("cuda"), "{error}");
    assert!(DTypeChoice::parse("f8").is_err());
}

/// Rewrites a copied model's `config.json` with `edit`.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, json.to_string()).unwrap();
}

#[test]
fn partial_rotary_that_cannot_be_is_refused_by_name() {
    // Rotary on 12 of 16 dimensions, but LongRoPE factors for all 16.
    let dir = copy_model("phi3");
    edit_config(dir.path(), |json| {
        json["rope_scaling"]["partial_rotary_factor"] = 0.75.into();
    });
    let message = load_err(dir.path());
    assert!(
        message.contains("8 short factors for 12 rotary dimensions"),
        "{message}"
    );
    // A factor outside (0, 1].
    edit_config(dir.path(), |json| {
        json["rope_scaling"]["partial_rotary_factor"] = 1.5.into();
    });
    let message = load_err(dir.path());
    assert!(
        message.contains("partial_rotary_factor") && message.contains("1.5"),
        "{message}"
    );
}

#[test]
fn longrope_limits_sentences_to_the_original_context() {
    let model = load(&fixture("phi3")).unwrap();
    // The fixture: 2048 positions, LongRoPE's original context 512.
    assert_eq!(
        model.config.sentence_token_limit(),
        (512, "original_max_position_embeddings of its LongRoPE")
    );
    let long = vec!["word ".repeat(600)];
    let error = model
        .extract(
            &long,
            &ExtractOptions::default(),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .expect_err("must fail");
    assert!(
        matches!(error, EngineError::SentenceTooLong { limit: 512, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("LongRoPE"), "{error}");
}

#[test]
fn longrope_needs_a_short_factor_per_rotary_pair() {
    let dir = copy_model("phi3");
    edit_config(dir.path(), |json| {
        json["rope_scaling"]["short_factor"] = serde_json::json!([1.0, 2.0]);
    });
    let message = load_err(dir.path());
    assert!(
        message.contains("2 short factors") && message.contains("needs 8"),
        "{message}"
    );
}

#[test]
fn a_malformed_no_rope_list_is_named() {
    let dir = copy_model("smollm3");
    edit_config(dir.path(), |json| {
        json["no_rope_layers"] = serde_json::json!([1, 1, 2, 0]);
    });
    let message = load_err(dir.path());
    assert!(message.contains("no_rope_layers"), "{message}");
    edit_config(dir.path(), |json| {
        json["no_rope_layers"] = serde_json::json!([1, 0]);
    });
    let message = load_err(dir.path());
    assert!(message.contains("2 entries for 4 layers"), "{message}");
}

#[test]
fn command_r_plus_qk_norms_are_refused_by_name() {
    let dir = copy_model("cohere");
    edit_config(dir.path(), |json| {
        json["use_qk_norm"] = true.into();
    });
    let message = load_err(dir.path());
    assert!(message.contains("use_qk_norm"), "{message}");
}

/// Weights that overflow (here one infinite value in layer 1's MLP output) give an error that
/// names the sentence and where, never states with NaN in them: NaN would read as "inactive"
/// in NAS without a trace.
#[test]
fn non_finite_states_are_an_error_naming_the_place() {
    let dir = copy_model("qwen3");
    let path = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let name = "model.layers.1.mlp.down_proj.weight";
    let weight = &tensors[name];
    let mut values: Vec<f32> = weight.flatten_all().unwrap().to_vec1().unwrap();
    values[0] = f32::INFINITY;
    let broken = candle_core::Tensor::from_vec(values, weight.shape(), &candle_core::Device::Cpu)
        .unwrap()
        .to_dtype(weight.dtype())
        .unwrap();
    tensors.insert(name.to_string(), broken);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let model = load(dir.path()).unwrap();
    let sentences = vec!["A fine sentence.".to_string()];
    let error = model
        .extract(
            &sentences,
            &ExtractOptions::default(),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .expect_err("must fail");
    assert!(
        matches!(error, EngineError::NonFinite { index: 0, .. }),
        "{error}"
    );
    // Layer 1's output is the first hidden state to hold it (index 2, after the embeddings
    // and layer 0).
    assert!(error.to_string().contains("hidden state 2"), "{error}");
}
