//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static FETCH: Mutex<()> = Mutex::new(());

/// The demo model, fetched once from PyPI if this machine lacks it (as the README's fetch step
/// would; the tests' other network access is [`llama_cpp_vocab`], also from PyPI).
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

/// llama.cpp's tokenizer test vocabularies (`models/ggml-vocab-*.gguf`, each with the texts of
/// its `.inp` file and the ids the model's original Hugging Face tokenizer gives them in its
/// `.out` file), from the llama-cpp-python 0.3.36 source package on PyPI, fetched once into the
/// cache (`$NEURONXA_LLAMA_VOCAB` names a folder that has them instead, e.g. a llama.cpp
/// checkout's `models/`).
pub fn llama_cpp_vocab() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEURONXA_LLAMA_VOCAB") {
        return PathBuf::from(dir);
    }
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let target = neuronxa::engine::hub::cache_dir()
        .join("test-data")
        .join("llama-cpp-python-0.3.36-vocab");
    if target.join("ggml-vocab-llama-bpe.gguf.out").is_file() {
        return target;
    }
    const URL: &str = "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz";
    const SHA256: &str = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
    // Download, check, and take the vocabularies out into a staging folder renamed into place.
    let script = format!(
        "import hashlib,os,sys,tarfile,tempfile,urllib.request\n\
         target=sys.argv[1]\n\
         parent=os.path.dirname(target); os.makedirs(parent,exist_ok=True)\n\
         staging=tempfile.mkdtemp(dir=parent,prefix='.fetch-')\n\
         archive=os.path.join(staging,'sdist.tar.gz')\n\
         urllib.request.urlretrieve('{URL}',archive)\n\
         digest=hashlib.sha256(open(archive,'rb').read()).hexdigest()\n\
         assert digest=='{SHA256}', 'checksum mismatch: '+digest\n\
         out=os.path.join(staging,'models'); os.makedirs(out)\n\
         with tarfile.open(archive) as t:\n\
         \x20   for m in t.getmembers():\n\
         \x20       name=os.path.basename(m.name)\n\
         \x20       if m.isfile() and '/vendor/llama.cpp/models/' in m.name and name.startswith('ggml-vocab-'):\n\
         \x20           open(os.path.join(out,name),'wb').write(t.extractfile(m).read())\n\
         os.rename(out,target)\n\
         os.remove(archive); os.rmdir(staging)\n"
    );
    eprintln!(
        "fetching llama.cpp's tokenizer test vocabularies (llama-cpp-python 0.3.36 from PyPI, 77 MB)"
    );
    let python = neuronxa::engine::hub::python_command();
    let status = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&target)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        status.success(),
        "fetching llama.cpp's test vocabularies failed ({status})"
    );
    target
}
