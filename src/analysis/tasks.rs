//! Downstream task accuracies per language, read from a CSV file, to correlate with alignment.
//!
//! Two layouts, told apart by the header (names case-insensitive, surrounding spaces ignored):
//! - long: columns `language`, `task`, `accuracy` in any order, other columns ignored;
//! - wide: a `language` column and one column per task (every other column is a task); an
//!   empty cell means the task was not run for that language.
//!
//! Scale, decided per task: if any of its values ends in `%` or exceeds 1, all its values are
//! percentages (0–100) and are divided by 100; otherwise they are fractions (0–1). Values
//! outside the scale, unreadable numbers, unknown languages and a language given twice for one
//! task are errors naming the file and line.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{AnalysisError, Result};
use super::lang::Lang;

/// Accuracy in [0, 1] per task and language.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskTable {
    pub tasks: BTreeMap<String, BTreeMap<Lang, f64>>,
}

impl TaskTable {
    /// Task names, sorted.
    pub fn task_names(&self) -> Vec<&str> {
        self.tasks.keys().map(String::as_str).collect()
    }

    pub fn get(&self, task: &str, lang: &Lang) -> Option<f64> {
        self.tasks.get(task)?.get(lang).copied()
    }

    /// Every language with at least one accuracy, sorted.
    pub fn languages(&self) -> Vec<Lang> {
        let mut langs: Vec<Lang> = self
            .tasks
            .values()
            .flat_map(|by_lang| by_lang.keys().cloned())
            .collect();
        langs.sort();
        langs.dedup();
        langs
    }
}

/// One accuracy as read, before the per-task scale is known.
struct RawValue {
    lang: Lang,
    value: f64,
    percent_sign: bool,
    line: usize,
}

/// Reads a long or wide CSV of task accuracies (see the module documentation).
pub fn load_task_csv(path: &Path) -> Result<TaskTable> {
    let shown = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|error| csv_error(&shown, error))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|error| csv_error(&shown, error))?
        .iter()
        .map(|header| header.trim().to_ascii_lowercase())
        .collect();
    let column = |name: &str| headers.iter().position(|header| header == name);
    let Some(language_column) = column("language") else {
        return Err(AnalysisError::at_line(
            &shown,
            1,
            "no 'language' column in the header (expected language,task,accuracy or \
             language,<task1>,<task2>,…)",
        ));
    };
    let mut raw: BTreeMap<String, Vec<RawValue>> = BTreeMap::new();
    let long_format = column("task").is_some();
    let task_columns: Vec<(usize, String)> = if long_format {
        Vec::new()
    } else {
        let original = reader
            .headers()
            .map_err(|error| csv_error(&shown, error))?
            .clone();
        original
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != language_column)
            .map(|(index, name)| (index, name.trim().to_string()))
            .collect()
    };
    if !long_format && task_columns.is_empty() {
        return Err(AnalysisError::at_line(&shown, 1, "no task columns"));
    }
    let task_column = column("task");
    let accuracy_column = column("accuracy");
    if long_format && accuracy_column.is_none() {
        return Err(AnalysisError::at_line(
            &shown,
            1,
            "a 'task' column but no 'accuracy' column",
        ));
    }

    for record in reader.records() {
        let record = record.map_err(|error| csv_error(&shown, error))?;
        let line = record
            .position()
            .map_or(0, |position| position.line() as usize);
        let cell = |index: usize| record.get(index).unwrap_or("");
        let lang = Lang::parse(cell(language_column))
            .map_err(|error| AnalysisError::at_line(&shown, line, error.to_string()))?;
        let mut entries: Vec<(String, &str)> = Vec::new();
        if let (Some(task_index), Some(accuracy_index)) = (task_column, accuracy_column) {
            let task = cell(task_index);
            if task.is_empty() {
                return Err(AnalysisError::at_line(&shown, line, "empty task name"));
            }
            let accuracy = cell(accuracy_index);
            if accuracy.is_empty() {
                return Err(AnalysisError::at_line(
                    &shown,
                    line,
                    format!("no accuracy for {task} in {lang}"),
                ));
            }
            entries.push((task.to_string(), accuracy));
        } else {
            for (index, task) in &task_columns {
                // In the wide layout an empty cell is a task not run for this language.
                if !cell(*index).is_empty() {
                    entries.push((task.clone(), cell(*index)));
                }
            }
        }
        for (task, text) in entries {
            let (value, percent_sign) = parse_accuracy(text).ok_or_else(|| {
                AnalysisError::at_line(
                    &shown,
                    line,
                    format!("'{text}' is not a number (accuracy of {task} in {lang})"),
                )
            })?;
            let values = raw.entry(task.clone()).or_default();
            if let Some(earlier) = values.iter().find(|earlier| earlier.lang == lang) {
                return Err(AnalysisError::at_line(
                    &shown,
                    line,
                    format!(
                        "{task} in {lang} is given twice (first on line {})",
                        earlier.line
                    ),
                ));
            }
            values.push(RawValue {
                lang: lang.clone(),
                value,
                percent_sign,
                line,
            });
        }
    }
    if raw.is_empty() {
        return Err(AnalysisError::in_file(&shown, "no accuracies in the file"));
    }
    let mut tasks = BTreeMap::new();
    for (task, values) in raw {
        tasks.insert(task.clone(), normalise_task(&shown, &task, values)?);
    }
    Ok(TaskTable { tasks })
}

/// A number, optionally followed by `%`.
fn parse_accuracy(text: &str) -> Option<(f64, bool)> {
    let (number, percent_sign) = match text.strip_suffix('%') {
        Some(number) => (number.trim(), true),
        None => (text, false),
    };
    let value: f64 = number.parse().ok()?;
    value.is_finite().then_some((value, percent_sign))
}

/// Brings one task's values to [0, 1], deciding its scale from all of them.
fn normalise_task(file: &str, task: &str, values: Vec<RawValue>) -> Result<BTreeMap<Lang, f64>> {
    let percent = values.iter().any(|raw| raw.percent_sign || raw.value > 1.0);
    let (maximum, divisor, scale) = if percent {
        (100.0, 100.0, "percentages (0–100)")
    } else {
        (1.0, 1.0, "fractions (0–1)")
    };
    values
        .into_iter()
        .map(|raw| {
            if !(0.0..=maximum).contains(&raw.value) {
                return Err(AnalysisError::at_line(
                    file,
                    raw.line,
                    format!(
                        "accuracy {} of {task} in {} is outside the task's scale: {scale}",
                        raw.value, raw.lang
                    ),
                ));
            }
            Ok((raw.lang, raw.value / divisor))
        })
        .collect()
}

fn csv_error(file: &str, error: csv::Error) -> AnalysisError {
    let line = error.position().map(|position| position.line() as usize);
    match error.into_kind() {
        csv::ErrorKind::Io(source) => AnalysisError::Io {
            file: file.to_string(),
            source,
        },
        csv::ErrorKind::Utf8 { pos, .. } => AnalysisError::InvalidUtf8 {
            file: file.to_string(),
            line: pos.map_or(line.unwrap_or(0), |position| position.line() as usize),
        },
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => AnalysisError::at_line(
            file,
            pos.map_or(line.unwrap_or(0), |position| position.line() as usize),
            format!("{len} fields, but the header has {expected_len}"),
        ),
        other => match line {
            Some(line) => AnalysisError::at_line(file, line, format!("{other:?}")),
            None => AnalysisError::in_file(file, format!("{other:?}")),
        },
    }
}
