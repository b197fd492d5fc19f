//! Model sources: a Hugging Face id resolved in the local cache without network, and what is
//! said when it is not there.

mod common;

use neuronxa::engine::{Architecture, DTypeChoice, DeviceChoice, EngineError, Model, ModelSource};

/// Lays a fixture model out as the Hugging Face hub cache does.
fn fake_hf_cache(root: &std::path::Path, id: &str) {
    let repo = root
        .join("hub")
        .join(format!("models--{}", id.replace('/', "--")));
    let snapshot = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    for entry in std::fs::read_dir(common::tiny_model("qwen2")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), snapshot.join(entry.file_name())).unwrap();
    }
}

#[test]
fn hub_ids_resolve_in_the_local_cache_and_missing_ones_are_explained() {
    let home = tempfile::tempdir().unwrap();
    fake_hf_cache(home.path(), "tiny-org/tiny-qwen2");
    // SAFETY: this test binary has a single test, so nothing else reads the environment now.
    unsafe { std::env::set_var("HF_HOME", home.path()) };

    let source = ModelSource::parse("tiny-org/tiny-qwen2");
    assert_eq!(source, ModelSource::Hub("tiny-org/tiny-qwen2".into()));
    let model = Model::load(&source, DeviceChoice::Cpu, DTypeChoice::F32).unwrap();
    assert_eq!(model.info.layers, 2);
    // The listing says what each cached model is, and which ones this engine cannot run.
    fake_hf_cache(home.path(), "tiny-org/tiny-mamba");
    let mamba_config = home
        .path()
        .join("hub/models--tiny-org--tiny-mamba/snapshots/0123abcd/config.json");
    std::fs::write(&mamba_config, r#"{"model_type": "mamba"}"#).unwrap();
    let listed = neuronxa::engine::hub::cached_models();
    let kinds: Vec<(&str, Result<Architecture, String>)> = listed
        .iter()
        .map(|m| (m.id.as_str(), m.architecture.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                "tiny-org/tiny-mamba",
                Err("unsupported architecture 'mamba'".to_string())
            ),
            ("tiny-org/tiny-qwen2", Ok(Architecture::Qwen2)),
        ]
    );

    let missing = Model::load(
        &ModelSource::Hub("nobody/nothing".into()),
        DeviceChoice::Cpu,
        DTypeChoice::F32,
    )
    .err()
    .expect("not in the cache");
    assert!(
        matches!(missing, EngineError::NotInCache { .. }),
        "{missing}"
    );
    let message = missing.to_string();
    assert!(
        message.contains("nobody/nothing") && message.contains("neuronxa download"),
        "{message}"
    );
}
