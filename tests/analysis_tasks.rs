//! Task accuracy tables: long and wide CSV, fractions and percentages, bad input.

use std::fs;
use std::path::{Path, PathBuf};

use neuronxa::analysis::{Lang, load_task_csv};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tasks")
        .join(name)
}

fn lang(code: &str) -> Lang {
    Lang::parse(code).expect("known language")
}

fn close(got: Option<f64>, want: f64) {
    match got {
        Some(value) => assert!((value - want).abs() < 1e-12, "got {value}, want {want}"),
        None => panic!("missing value, want {want}"),
    }
}

fn error_for(content: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tasks.csv");
    fs::write(&path, content).expect("write");
    match load_task_csv(&path) {
        Ok(table) => panic!("expected an error, got {table:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn long_format_in_any_column_order_with_extra_columns() {
    let table = load_task_csv(&fixture("long.csv")).expect("long");
    assert_eq!(table.task_names(), ["belebele", "xnli"]);
    close(table.get("belebele", &lang("en")), 0.874);
    close(table.get("belebele", &lang("hi")), 0.455);
    // xnli was given in percent (values above 1): normalised to fractions.
    close(table.get("xnli", &lang("en")), 0.552);
    close(table.get("xnli", &lang("ar")), 0.415);
    assert_eq!(table.get("xnli", &lang("fr")), None);
    let codes: Vec<String> = table
        .languages()
        .iter()
        .map(|l| l.code().to_string())
        .collect();
    assert_eq!(
        codes,
        ["arb_Arab", "eng_Latn", "fra_Latn", "hin_Deva", "zho_Hans"]
    );
}

#[test]
fn wide_format_detects_the_scale_per_task() {
    let table = load_task_csv(&fixture("wide.csv")).expect("wide");
    assert_eq!(table.task_names(), ["Belebele", "XNLI", "m-MMLU"]);
    close(table.get("Belebele", &lang("en")), 0.874);
    close(table.get("Belebele", &lang("ja")), 0.605);
    close(table.get("m-MMLU", &lang("zh")), 0.48);
    close(table.get("XNLI", &lang("ja")), 0.44);
    // An empty cell is a task not run for that language.
    assert_eq!(table.get("XNLI", &lang("fr")), None);
}

#[test]
fn percent_signs_and_spaced_headers() {
    let table = load_task_csv(&fixture("percent_sign.csv")).expect("percent");
    close(table.get("belebele", &lang("en")), 0.9);
    close(table.get("belebele", &lang("fr")), 0.8);
    close(table.get("belebele", &lang("de")), 0.75);
}

#[test]
fn bad_numbers_languages_and_duplicates_name_the_line() {
    let cases = [
        (
            "language,task,accuracy\nen,xnli,0.5\nfr,xnli,abc\n",
            "tasks.csv:3: 'abc' is not a number (accuracy of xnli in fra_Latn)",
        ),
        (
            "language,task,accuracy\nen,xnli,0.5\nqq,xnli,0.4\n",
            "tasks.csv:3: unknown language 'qq'",
        ),
        (
            "language,task,accuracy\nen,xnli,0.5\neng,xnli,0.4\n",
            "tasks.csv:3: xnli in eng_Latn is given twice (first on line 2)",
        ),
        (
            "language,xnli\nen,0.5\nfr,0.4\nen,0.3\n",
            "tasks.csv:4: xnli in eng_Latn is given twice",
        ),
        (
            "language,task,accuracy\nen,xnli,-0.1\nfr,xnli,0.4\n",
            "tasks.csv:2: accuracy -0.1 of xnli in eng_Latn is outside the task's scale: fractions (0–1)",
        ),
        (
            "language,task,accuracy\nen,xnli,120\nfr,xnli,40\n",
            "tasks.csv:2: accuracy 120 of xnli in eng_Latn is outside the task's scale: percentages (0–100)",
        ),
        (
            "language,task,accuracy\nen,xnli,NaN\n",
            "tasks.csv:2: 'NaN' is not a number",
        ),
        (
            "language,task,accuracy\nen,xnli,\n",
            "tasks.csv:2: no accuracy for xnli in eng_Latn",
        ),
        (
            "language,task,accuracy\nen,xnli,0.5,extra\n",
            "tasks.csv:2: 4 fields, but the header has 3",
        ),
        ("lang,xnli\nen,0.5\n", "tasks.csv:1: no 'language' column"),
        (
            "language,task\nen,xnli\n",
            "tasks.csv:1: a 'task' column but no 'accuracy' column",
        ),
        ("language\nen\n", "tasks.csv:1: no task columns"),
        ("language,xnli\n", "tasks.csv: no accuracies in the file"),
    ];
    for (content, expected) in cases {
        let error = error_for(content);
        assert!(error.contains(expected), "{error}\n  expected: {expected}");
    }
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let error = load_task_csv(&fixture("absent.csv"))
        .expect_err("absent")
        .to_string();
    assert!(error.contains("absent.csv"), "{error}");
}
