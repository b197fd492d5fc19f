//! A run's numbers as files: `run.json`, `scores.csv`, `summary.csv` and the pair matrices.

use std::path::Path;

use super::{Method, Run, RunError, atomic_write};

fn io_error(path: &Path, source: std::io::Error) -> RunError {
    RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// CSV text from rows (the first row is the header); fields are quoted when they need it.
pub fn csv_string(rows: &[Vec<String>]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        // Writing to memory cannot fail for I/O reasons.
        let _ = writer.write_record(row);
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

pub fn write_csv(path: &Path, rows: &[Vec<String>]) -> Result<(), RunError> {
    atomic_write(path, csv_string(rows).as_bytes()).map_err(|e| io_error(path, e))
}

fn num(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v:.6}")
    }
}

/// `model,pivot,language,method,layer,score` — one row per language, method and layer.
pub fn scores_rows(run: &Run) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "model", "pivot", "language", "method", "layer", "score",
    ])];
    for lang in &run.languages {
        for method in run.methods() {
            if let Some(scores) = run.scores(lang, method) {
                for (layer, score) in scores.per_layer.iter().enumerate() {
                    rows.push(vec![
                        run.model_name().to_string(),
                        run.settings.pivot.code().to_string(),
                        lang.code().to_string(),
                        method.key().to_string(),
                        layer.to_string(),
                        num(*score),
                    ]);
                }
            }
        }
    }
    rows
}

/// `model,pivot,language,method,mean,max,best_layer,chance` and retrieval P@1 means.
pub fn summary_rows(run: &Run) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "model",
        "pivot",
        "language",
        "method",
        "mean",
        "max",
        "best_layer",
        "chance",
        "p_at_1_forward",
        "p_at_1_backward",
        "bits_per_byte_proxy",
    ])];
    for lang in &run.languages {
        for method in run.methods() {
            if let Some(s) = run.scores(lang, method) {
                rows.push(vec![
                    run.model_name().to_string(),
                    run.settings.pivot.code().to_string(),
                    lang.code().to_string(),
                    method.key().to_string(),
                    num(s.mean()),
                    num(s.max()),
                    s.best_layer().to_string(),
                    num(s.chance_mean()),
                    num(super::mean(&s.p_at_1_forward)),
                    num(super::mean(&s.p_at_1_backward)),
                    run.proxy_bits_per_byte
                        .get(lang)
                        .map(|v| num(*v))
                        .unwrap_or_default(),
                ]);
            }
        }
    }
    rows
}

/// `method,layer,language_a,language_b,score` for every layer, plus `layer = mean`.
pub fn matrix_rows(run: &Run) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "method",
        "layer",
        "language_a",
        "language_b",
        "score",
    ])];
    for (method, matrix) in &run.matrices {
        let mean = matrix.mean_over_layers();
        let layers = matrix
            .per_layer
            .iter()
            .enumerate()
            .map(|(l, m)| (l.to_string(), m))
            .chain(std::iter::once(("mean".to_string(), &mean)));
        for (layer, grid) in layers {
            for (i, a) in matrix.languages.iter().enumerate() {
                for (j, b) in matrix.languages.iter().enumerate() {
                    rows.push(vec![
                        method.key().to_string(),
                        layer.clone(),
                        a.code().to_string(),
                        b.code().to_string(),
                        num(grid[i][j]),
                    ]);
                }
            }
        }
    }
    rows
}

/// The mean-over-layers matrix of one method as a square table with language codes.
pub fn square_matrix_rows(run: &Run, method: Method, layer: Option<usize>) -> Vec<Vec<String>> {
    let Some(matrix) = run.matrices.get(&method) else {
        return Vec::new();
    };
    let grid = match layer {
        Some(l) => matrix.per_layer.get(l).cloned().unwrap_or_default(),
        None => matrix.mean_over_layers(),
    };
    let mut head = vec!["language".to_string()];
    head.extend(matrix.languages.iter().map(|l| l.code().to_string()));
    let mut rows = vec![head];
    for (i, lang) in matrix.languages.iter().enumerate() {
        let mut row = vec![lang.code().to_string()];
        row.extend(grid.get(i).into_iter().flatten().map(|v| num(*v)));
        rows.push(row);
    }
    rows
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Writes `run.json`, `scores.csv`, `summary.csv`, `matrices.csv` and
/// `matrix_<method>_mean.csv` into `dir`.
pub fn write_run_dir(run: &Run, dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let json = dir.join("run.json");
    run.save_json(&json).map_err(|e| io_error(&json, e))?;
    write_csv(&dir.join("scores.csv"), &scores_rows(run))?;
    write_csv(&dir.join("summary.csv"), &summary_rows(run))?;
    write_csv(&dir.join("matrices.csv"), &matrix_rows(run))?;
    for method in run.matrices.keys() {
        write_csv(
            &dir.join(format!("matrix_{}_mean.csv", method.key())),
            &square_matrix_rows(run, *method, None),
        )?;
    }
    Ok(())
}
