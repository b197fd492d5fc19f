//! The headless command line, end to end, on the demo model and real files.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

fn neuronxa(cache: &Path, args: &[&str]) -> Output {
    let demo = common::demo_model();
    Command::new(env!("CARGO_BIN_EXE_neuronxa"))
        .args(args)
        .env("NEURONXA_CACHE", cache)
        .env("NEURONXA_DEMO_MODEL", demo)
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn run_writes_consistent_scores_states_and_matrices() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let output = neuronxa(
        cache.path(),
        &[
            "run",
            "--model",
            "demo",
            "--langs",
            "en,fr,de,zh",
            "--sentences",
            "6",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let run = neuronxa::run::Run::load_json(&dir.join("run.json")).unwrap();
    assert!(run.complete);
    assert_eq!(run.languages.len(), 4);
    assert_eq!(run.provenance.model.layers, 30);
    // Where the time went: said at the end, kept in the run, within the run's own time.
    let timings = &run.provenance.timings;
    let stages = [
        timings.loading,
        timings.tokenising,
        timings.extracting,
        timings.saving,
        timings.scoring,
    ];
    assert!(
        timings.extracting > 0.0 && timings.scoring > 0.0,
        "{timings:?}"
    );
    // The scoring that ran alongside the extraction added nothing to the run's time.
    assert!(
        stages.iter().sum::<f64>() - timings.scoring_alongside <= run.provenance.seconds,
        "{timings:?}"
    );
    // The last line names the stages that took any time, as the run keeps them.
    let done = stderr(&output);
    let done = done.lines().find(|l| l.starts_with("done in")).unwrap();
    match timings.describe() {
        stages if stages.is_empty() => assert!(!done.contains('('), "{done}"),
        stages => assert!(done.ends_with(&format!(" ({stages})")), "{done} / {stages}"),
    }

    // scores.csv: one row per language × method × layer, scores in [0, 1].
    let scores = common::read_csv(&dir.join("scores.csv"));
    assert_eq!(
        scores[0],
        ["model", "pivot", "language", "method", "layer", "score"]
    );
    assert_eq!(scores.len() - 1, 4 * (30 + 30 + 31 + 31));
    let mut by_key: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for row in &scores[1..] {
        let score: f64 = row[5].parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{row:?}");
        by_key
            .entry((row[2].clone(), row[3].clone()))
            .or_default()
            .push(score);
    }
    // The pivot against itself is a perfect match at every layer.
    assert!(
        by_key[&("eng_Latn".into(), "nas".into())]
            .iter()
            .all(|&s| s == 1.0)
    );

    // summary.csv: its mean is the mean of scores.csv, its max the max, chance beside it.
    let summary = common::read_csv(&dir.join("summary.csv"));
    assert_eq!(
        &summary[0][..8],
        [
            "model",
            "pivot",
            "language",
            "method",
            "mean",
            "max",
            "best_layer",
            "chance"
        ]
    );
    for row in &summary[1..] {
        let values = &by_key[&(row[2].clone(), row[3].clone())];
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        assert!(
            (row[4].parse::<f64>().unwrap() - mean).abs() < 1e-5,
            "{row:?}"
        );
        assert!(
            (row[5].parse::<f64>().unwrap() - max).abs() < 1e-5,
            "{row:?}"
        );
        let best: usize = row[6].parse().unwrap();
        assert!((values[best] - max).abs() < 1e-9);
        let chance: f64 = row[7].parse().unwrap();
        assert!((0.0..=1.0).contains(&chance));
    }

    // The pair matrices are symmetric with ones on the diagonal... and agree with the pivot row.
    let matrices = common::read_csv(&dir.join("matrices.csv"));
    let mut cells: HashMap<(String, String, String, String), f64> = HashMap::new();
    for row in &matrices[1..] {
        cells.insert(
            (
                row[0].clone(),
                row[1].clone(),
                row[2].clone(),
                row[3].clone(),
            ),
            row[4].parse().unwrap(),
        );
    }
    for ((method, layer, a, b), v) in &cells {
        assert_eq!(
            cells[&(method.clone(), layer.clone(), b.clone(), a.clone())],
            *v
        );
    }
    for row in &scores[1..] {
        let key = (
            row[3].clone(),
            row[4].clone(),
            "eng_Latn".to_string(),
            row[2].clone(),
        );
        assert!(
            (cells[&key] - row[5].parse::<f64>().unwrap()).abs() < 1e-6,
            "{key:?}"
        );
    }

    // Pooled states, readable as safetensors: [n, layers, d_ff] and [n, layers + 1, d_model].
    let states = candle_core::safetensors::load(
        dir.join("states/fra_Latn.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(states["nas"].dims(), [6, 30, 1536]);
    assert_eq!(states["nav"].dims(), [6, 30, 1536]);
    assert_eq!(states["hidden_weighted"].dims(), [6, 31, 576]);
    assert_eq!(states["hidden_last"].dims(), [6, 31, 576]);

    // The same run again comes from the cache.
    let again = neuronxa(
        cache.path(),
        &[
            "run",
            "--model",
            "demo",
            "--langs",
            "en,fr,de,zh",
            "--sentences",
            "6",
        ],
    );
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("reopened from the cache"),
        "{}",
        stderr(&again)
    );
    // Its stage timings are the first run's, and said to be.
    assert!(
        stderr(&again).contains("(first computed in "),
        "{}",
        stderr(&again)
    );

    // Correlation with task accuracies (invented numbers: this checks the plumbing, not science).
    let tasks = out.path().join("tasks.csv");
    std::fs::write(
        &tasks,
        "language,belebele,xnli\nfr,0.71,0.60\nde,0.69,0.58\nzh,0.55,0.49\n",
    )
    .unwrap();
    let output = neuronxa(
        cache.path(),
        &[
            "correlate",
            "--run",
            dir.to_str().unwrap(),
            "--tasks",
            tasks.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = common::read_csv(&dir.join("correlations.csv"));
    assert_eq!(&rows[0][..5], ["task", "method", "layer", "n", "pearson_r"]);
    let mean_rows: Vec<_> = rows.iter().filter(|r| r[2] == "mean").collect();
    assert_eq!(mean_rows.len(), 2 * 4);
    for row in mean_rows {
        assert_eq!(row[3], "3");
        let r: f64 = row[4].parse().unwrap();
        assert!((-1.0..=1.0).contains(&r));
    }

    // Headless plots.
    for (view, file) in [
        ("heatmap", "h.png"),
        ("layers", "l.svg"),
        ("matrix", "m.png"),
    ] {
        let path = out.path().join(file);
        let output = neuronxa(
            cache.path(),
            &[
                "plot",
                "--run",
                dir.to_str().unwrap(),
                "--view",
                view,
                "--out",
                path.to_str().unwrap(),
            ],
        );
        assert!(output.status.success(), "{view}: {}", stderr(&output));
        assert!(
            std::fs::metadata(&path).unwrap().len() > 1000,
            "{view} plot is empty"
        );
    }
    let scatter = out.path().join("s.png");
    let output = neuronxa(
        cache.path(),
        &[
            "plot",
            "--run",
            dir.to_str().unwrap(),
            "--view",
            "scatter",
            "--tasks",
            tasks.to_str().unwrap(),
            "--out",
            scatter.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "scatter: {}", stderr(&output));
}

#[test]
fn unknown_language_is_a_clear_error_with_exit_code_1() {
    let cache = tempfile::tempdir().unwrap();
    let output = neuronxa(
        cache.path(),
        &["run", "--langs", "en,xx", "--sentences", "2"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("xx"), "{}", stderr(&output));
}

#[test]
fn ragged_corpus_names_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let corpus = tempfile::tempdir().unwrap();
    std::fs::write(corpus.path().join("eng_Latn.txt"), "One.\nTwo.\nThree.\n").unwrap();
    std::fs::write(corpus.path().join("fra_Latn.txt"), "Un.\nDeux.\n").unwrap();
    let output = neuronxa(
        cache.path(),
        &[
            "run",
            "--corpus",
            corpus.path().to_str().unwrap(),
            "--langs",
            "en,fr",
            "--sentences",
            "2",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("fra_Latn.txt"),
        "{}",
        stderr(&output)
    );
    // A failed job says so, not "done".
    assert!(
        stderr(&output).contains("failed in "),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("done in "), "{}", stderr(&output));
}

#[test]
fn usage_errors_exit_with_2_and_help_explains_options() {
    let cache = tempfile::tempdir().unwrap();
    let output = neuronxa(cache.path(), &["run", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    let help = neuronxa(cache.path(), &["run", "--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--model",
        "--corpus",
        "--langs",
        "--pivot",
        "--sentences",
        "--out",
        "--device",
        "--dtype",
        "--batch-size",
    ] {
        assert!(text.contains(option), "--help lacks {option}");
    }
}

#[test]
fn inspect_and_models_describe_the_demo_model() {
    let cache = tempfile::tempdir().unwrap();
    let output = neuronxa(cache.path(), &["inspect", "--model", "demo"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("30 layers") && text.contains("d_ff 1536"),
        "{text}"
    );
    // What was recognised, in words.
    for line in [
        "attention: 9 heads (3 key/value), head_dim 64",
        "positions: rotary on all 64 dimensions of each head; θ 100000",
        "norms: RMSNorm, before attention and before the MLP",
        "MLP: gated, SiLU; neurons 1536 × 30 layers, states of act(gate)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    let output = neuronxa(cache.path(), &["models"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("present"));
}

/// A GGUF file in the storage types candle lacks (i-quants, ternary, FP4) is recognised, says
/// its types, and runs: scores for every language, as on any other model.
#[test]
fn a_gguf_in_i_quants_inspects_and_runs() {
    let cache = tempfile::tempdir().unwrap();
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/llama_iquants/model.gguf");
    let model = model.to_str().unwrap();
    let output = neuronxa(cache.path(), &["inspect", "--model", model]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(
        first.contains("2 layers") && first.contains("d_ff 512"),
        "{text}"
    );
    for storage in ["IQ1_S", "IQ2_XS", "IQ3_XXS", "IQ4_NL", "TQ2_0", "NVFP4"] {
        assert!(first.contains(storage), "{storage} not in {first}");
    }
    let out = tempfile::tempdir().unwrap();
    let args = [
        "run",
        "--model",
        model,
        "--langs",
        "en,fr,ja",
        "--sentences",
        "8",
        "--methods",
        "nas,mexa",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let output = neuronxa(cache.path(), &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(run["complete"], true);
    assert_eq!(run["languages"].as_array().map(Vec::len), Some(3), "{run}");
}

/// `neuronxa bench` of the tiny llama on the CPU over `sentences` (one per line), with `extra`
/// arguments: its output and its JSON report.
fn bench_tiny_on_the_cpu(sentences: &str, extra: &[&str]) -> (Output, serde_json::Value) {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sentences.txt");
    std::fs::write(&file, sentences).unwrap();
    let report = dir.path().join("bench.json");
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/llama");
    let mut args = vec![
        "bench",
        "--model",
        tiny.to_str().unwrap(),
        "--sentences-file",
        file.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = neuronxa(cache.path(), &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (output, json)
}

#[test]
fn bench_reads_a_sentences_file_and_writes_its_report_as_json() {
    let (_, json) = bench_tiny_on_the_cpu(
        "The cat sleeps on the warm windowsill.\nLe chat dort sur le rebord chaud.\nDie Katze schläft.\n",
        &["--batch-size", "2"],
    );
    // Three sentences, run two at a time.
    assert_eq!(json["sentences"], 3);
    assert_eq!(json["batch_size"], 2);
    assert!(json["tokens"].as_u64().unwrap() >= 3);
    assert!(json["seconds"].as_f64().unwrap() > 0.0, "{json}");
    // Forward passes are timed alone only on a GPU.
    assert!(json["forward_seconds"].is_null(), "{json}");
    assert!(json["forward_plain_seconds"].is_null(), "{json}");
    // f32 on the CPU pools with the CPU kernels.
    assert_eq!(json["capture"], "CPU kernels");
}

#[test]
fn bench_times_the_forward_stage_by_stage() {
    // bf16 on the CPU runs the generic ops, the GPU's path, stage by stage.
    let (output, json) = bench_tiny_on_the_cpu(
        "The cat sleeps.\nLe chat dort sur le rebord.\n",
        &["--dtype", "bf16", "--stages"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("stages"), "{stdout}");
    let stages = json["stages"].as_array().expect("stages in the report");
    let layers = 3;
    let calls = |name: &str| {
        stages
            .iter()
            .find(|stage| stage["stage"] == name)
            .and_then(|stage| stage["calls"].as_u64())
            .unwrap_or_else(|| panic!("no stage {name:?} in {json}"))
    };
    // One batch of two sentences: each layer's stages once, the residual steps after the
    // embeddings, after attention and after the MLP.
    for stage in [
        "attention: q/k/v projection",
        "attention: scores",
        "attention: softmax",
        "attention: values, head layout",
        "MLP: gate/up projection",
        "MLP: NAS/NAV pooling",
        "MLP: down projection",
    ] {
        assert_eq!(calls(stage), layers, "{stage}");
    }
    assert_eq!(calls("embeddings"), 1);
    // Each residual step: its add, its norm and its pools (one step adds nothing to the
    // embeddings, another pools nothing, but each is timed).
    for stage in ["residual adds", "norms", "pooled hidden states"] {
        assert_eq!(calls(stage), 1 + 2 * layers, "{stage}");
    }
    for stage in stages {
        assert!(stage["seconds"].as_f64().unwrap() >= 0.0, "{stage}");
    }
    assert_eq!(json["capture"], "generic tensor ops");
}

#[test]
fn bench_scoring_scores_made_up_states_of_the_models_shape() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("scoring.json");
    // Only the config is read: a folder holding nothing else is enough.
    let model = dir.path().join("shape");
    std::fs::create_dir(&model).unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/llama");
    std::fs::copy(tiny.join("config.json"), model.join("config.json")).unwrap();
    let output = neuronxa(
        cache.path(),
        &[
            "bench",
            "--scoring",
            "--model",
            model.to_str().unwrap(),
            "--langs",
            "en,fr,de",
            "--sentences",
            "12",
            "--json",
            report.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny.join("config.json")).unwrap()).unwrap();
    let layers = config["num_hidden_layers"].as_u64().unwrap();
    assert_eq!(json["layers"].as_u64(), Some(layers));
    assert_eq!(json["neurons"], config["intermediate_size"]);
    assert_eq!(json["languages"], 3);
    assert_eq!(json["per_language_seconds"].as_array().unwrap().len(), 3);
    // Three languages: the pairs (en, en), (fr, en), (fr, fr), (de, en), (de, fr), (de, de),
    // each 12 × 12 products of `neurons`-long rows per layer, for NAS and NAV.
    let neurons = json["neurons"].as_f64().unwrap();
    let d_model = json["d_model"].as_f64().unwrap();
    let expected =
        6.0 * 2.0 * 144.0 * (2.0 * neurons * layers as f64 + 2.0 * d_model * (layers + 1) as f64);
    assert_eq!(json["product_flops"].as_f64(), Some(expected));
    // The pivot against itself is matched at every layer (the made-up sentences differ), so
    // each method's sum of pivot scores is at least the layers' count, and at most 3 × it.
    for (method, method_layers) in [
        ("nas", layers),
        ("nav", layers),
        ("mexa", layers + 1),
        ("mexa_last", layers + 1),
    ] {
        let sum = json["score_sums"][method].as_f64().unwrap();
        assert!(
            sum >= method_layers as f64 && sum <= 3.0 * method_layers as f64,
            "{method}: {sum}"
        );
    }
    // A folder without a config.json is refused in words.
    let output = neuronxa(
        cache.path(),
        &[
            "bench",
            "--scoring",
            "--model",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("config.json"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn batch_size_is_auto_or_a_number() {
    let cache = tempfile::tempdir().unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/llama");
    let run = |batch: &str| {
        neuronxa(
            cache.path(),
            &[
                "run",
                "--model",
                tiny.to_str().unwrap(),
                "--langs",
                "en,fr",
                "--sentences",
                "3",
                "--no-cache",
                "--batch-size",
                batch,
            ],
        )
    };
    let auto = run("auto");
    assert!(auto.status.success(), "{}", stderr(&auto));
    let wrong = run("many");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("neither \"auto\" nor a number"),
        "{}",
        stderr(&wrong)
    );
}

/// `neuronxa inspect … | head -1`: the reader goes away after one line; the program must end
/// quietly, not panic over the closed pipe.
#[test]
#[cfg(unix)]
fn a_closed_output_pipe_is_not_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/gpt2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_neuronxa"))
        .args(["inspect", "--model"])
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Close the reading end at once.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
}

/// `--experts routed` reaches the run a mixture of experts computes (run.json keeps it).
#[test]
fn the_experts_reading_is_a_flag() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/olmoe");
    let output = neuronxa(
        cache.path(),
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--langs",
            "en,fr",
            "--sentences",
            "3",
            "--experts",
            "routed",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run["settings"]["capture"]["expert_pooling"], "RoutedTokens",
        "{}",
        run["settings"]["capture"]
    );
}
