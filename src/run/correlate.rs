//! Alignment against downstream task accuracy (METHOD.md §7): per task and method, Pearson r
//! with p-value and Fisher CI, Spearman ρ, a bootstrap CI, and r at every layer.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::analysis::lang::Lang;
use crate::analysis::stats::{self, Correlation};
use crate::analysis::tasks;

use super::{Method, Run, RunError};

/// Per-language values to set against alignment: a task's accuracy, or the built-in proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSeries {
    pub name: String,
    pub values: BTreeMap<Lang, f64>,
    /// The bits-per-byte proxy (lower is better), not a benchmark.
    pub is_proxy: bool,
}

/// Shown as "Bits per byte (capability proxy, lower = better)" wherever `is_proxy` is set.
pub const PROXY_NAME: &str = "Bits per byte";

/// The tasks of a CSV file, or the run's bits-per-byte proxy when no file is given.
pub fn task_series(run: &Run, tasks_csv: Option<&Path>) -> Result<Vec<TaskSeries>, RunError> {
    match tasks_csv {
        Some(path) => {
            let table = tasks::load_task_csv(path)?;
            Ok(table
                .tasks
                .into_iter()
                .map(|(name, values)| TaskSeries {
                    name,
                    values,
                    is_proxy: false,
                })
                .collect())
        }
        None => {
            if run.proxy_bits_per_byte.is_empty() {
                return Err(RunError::Invalid(
                    "this run has no bits-per-byte proxy (run with --proxy N) and no task file was given (--tasks FILE.csv)".into(),
                ));
            }
            Ok(vec![proxy_series(run)])
        }
    }
}

pub fn proxy_series(run: &Run) -> TaskSeries {
    TaskSeries {
        name: PROXY_NAME.into(),
        values: run.proxy_bits_per_byte.clone(),
        is_proxy: true,
    }
}

impl TaskSeries {
    /// The run's bits-per-byte proxy, if it has one.
    pub fn proxy(run: &Run) -> Option<Self> {
        (!run.proxy_bits_per_byte.is_empty()).then(|| proxy_series(run))
    }

    /// One task of a task table.
    pub fn from_table(table: &tasks::TaskTable, task: &str) -> Option<Self> {
        table.tasks.get(task).map(|values| Self {
            name: task.to_string(),
            values: values.clone(),
            is_proxy: false,
        })
    }
}

/// Paired (alignment, task value) over the non-pivot languages both cover.
pub fn paired_values(
    run: &Run,
    method: Method,
    layer: Option<usize>,
    task: &TaskSeries,
) -> Vec<(Lang, f64, f64)> {
    run.languages
        .iter()
        .filter(|lang| **lang != run.settings.pivot)
        .filter_map(|lang| {
            let scores = run.scores(lang, method)?;
            let x = match layer {
                Some(l) => *scores.per_layer.get(l)?,
                None => scores.mean(),
            };
            let y = *task.values.get(lang)?;
            Some((lang.clone(), x, y))
        })
        .collect()
}

pub fn correlate(
    run: &Run,
    method: Method,
    layer: Option<usize>,
    task: &TaskSeries,
    bootstrap: usize,
) -> Result<Correlation, RunError> {
    let pairs = paired_values(run, method, layer, task);
    let x: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let y: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    Ok(stats::correlate(&x, &y, bootstrap, 0)?)
}

/// Pearson r at every layer (NaN where it cannot be computed).
pub fn r_per_layer(run: &Run, method: Method, task: &TaskSeries) -> Vec<f64> {
    (0..run.layer_count(method))
        .map(|layer| correlate(run, method, Some(layer), task, 0).map_or(f64::NAN, |c| c.pearson_r))
        .collect()
}

/// The table `neuronxa correlate` prints and writes.
pub fn correlation_rows(
    run: &Run,
    tasks: &[TaskSeries],
    bootstrap: usize,
) -> Result<Vec<Vec<String>>, RunError> {
    let mut rows = vec![
        [
            "task",
            "method",
            "layer",
            "n",
            "pearson_r",
            "p_value",
            "ci95_low",
            "ci95_high",
            "spearman_rho",
            "spearman_p",
            "bootstrap_low",
            "bootstrap_high",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let f = |v: f64| format!("{v:.6}");
    for task in tasks {
        for method in run.methods() {
            let layers = std::iter::once(None).chain((0..run.layer_count(method)).map(Some));
            for layer in layers {
                let c = match correlate(
                    run,
                    method,
                    layer,
                    task,
                    if layer.is_none() { bootstrap } else { 0 },
                ) {
                    Ok(c) => c,
                    Err(e) if layer.is_none() => {
                        return Err(RunError::Invalid(format!(
                            "{} · {}: {e}",
                            task.name,
                            method.label()
                        )));
                    }
                    Err(_) => continue,
                };
                let (b_low, b_high) = if layer.is_none() {
                    (f(c.bootstrap_ci95.0), f(c.bootstrap_ci95.1))
                } else {
                    (String::new(), String::new())
                };
                rows.push(vec![
                    task.name.clone(),
                    method.key().into(),
                    layer.map_or("mean".into(), |l| l.to_string()),
                    c.n.to_string(),
                    f(c.pearson_r),
                    format!("{:.3e}", c.p_value),
                    f(c.ci95_fisher.0),
                    f(c.ci95_fisher.1),
                    f(c.spearman_rho),
                    format!("{:.3e}", c.spearman_p),
                    b_low,
                    b_high,
                ]);
            }
        }
    }
    Ok(rows)
}
