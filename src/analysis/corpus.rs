//! Parallel corpora: the same sentences in several languages, line-aligned.
//!
//! [`load`] recognises these formats:
//! - a FLORES-200 / FLORES+ folder: `devtest/eng_Latn.devtest` or `dev/eng_Latn.dev`
//!   (FLORES-200), `devtest/eng_Latn` (FLORES+), the split folder itself, or FLORES-101's
//!   `eng.devtest`; devtest is preferred over dev;
//! - a folder of `<code>.txt` files, one sentence per line (this project's format);
//! - Tatoeba as in XTREME: `tatoeba.fra-eng.fra` + `tatoeba.fra-eng.eng` (a folder, or one file
//!   of a pair). Each pair file set is its own two-language corpus ([`load_tatoeba_pairs`]).
//!   Pairs have different English sides, so a folder of several pairs becomes one corpus only
//!   through the English sentences that *all* pairs contain, character for character (the first
//!   translation wins when a pair repeats an English sentence); no shared sentence is an error;
//! - a TSV file (`.tsv`): a header row of language codes, one column per language, no quoting;
//! - a JSONL file (`.jsonl`, `.ndjson`, `.json`): one object per line mapping codes to sentences.
//!
//! Every sentence must be non-empty, every language must have the same number of sentences,
//! and no language may appear twice: anything else is an error that names the file and line,
//! never a partly used corpus. A UTF-8 byte-order mark and CRLF line ends are accepted.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::de::{Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};

use super::error::{AnalysisError, Result};
use super::lang::Lang;

/// One language's side of a parallel corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageText {
    pub lang: Lang,
    pub sentences: Vec<String>,
    /// The file it was read from, or "bundled".
    pub origin: String,
}

/// Line-aligned sentences in several languages: sentence i of each language translates the
/// others' sentence i.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    pub name: String,
    /// Where it came from, for people (format and path, selection made).
    pub source: String,
    pub languages: Vec<LanguageText>,
}

impl Corpus {
    /// A corpus from parts, checked: at least one language, no duplicates, equal non-zero
    /// lengths, no empty sentence.
    pub fn new(
        name: impl Into<String>,
        source: impl Into<String>,
        languages: Vec<LanguageText>,
    ) -> Result<Corpus> {
        let corpus = Corpus {
            name: name.into(),
            source: source.into(),
            languages,
        };
        check_parallel(&corpus.name, &corpus.languages)?;
        Ok(corpus)
    }

    /// Number of sentences (the same in every language).
    pub fn len(&self) -> usize {
        self.languages
            .first()
            .map_or(0, |text| text.sentences.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, lang: &Lang) -> Option<&LanguageText> {
        self.languages.iter().find(|text| &text.lang == lang)
    }

    /// The languages, in corpus order.
    pub fn languages(&self) -> Vec<Lang> {
        self.languages
            .iter()
            .map(|text| text.lang.clone())
            .collect()
    }

    /// SHA-256 (hex) of the languages and their sentences, independent of language order and of
    /// name, source and origins: two corpora with the same text have the same hash.
    pub fn hash(&self) -> String {
        let mut texts: Vec<&LanguageText> = self.languages.iter().collect();
        texts.sort_by(|a, b| a.lang.cmp(&b.lang));
        let mut hasher = Sha256::new();
        for text in texts {
            // Length prefixes keep the encoding unambiguous ("ab"+"c" ≠ "a"+"bc").
            hasher.update((text.lang.code().len() as u64).to_le_bytes());
            hasher.update(text.lang.code().as_bytes());
            hasher.update((text.sentences.len() as u64).to_le_bytes());
            for sentence in &text.sentences {
                hasher.update((sentence.len() as u64).to_le_bytes());
                hasher.update(sentence.as_bytes());
            }
        }
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

fn check_parallel(corpus_name: &str, languages: &[LanguageText]) -> Result<()> {
    let Some(reference) = languages.first() else {
        return Err(AnalysisError::EmptyCorpus {
            origin: corpus_name.to_string(),
        });
    };
    for (index, text) in languages.iter().enumerate() {
        if let Some(earlier) = languages[..index]
            .iter()
            .find(|other| other.lang == text.lang)
        {
            return Err(AnalysisError::DuplicateLanguage {
                lang: text.lang.code().to_string(),
                first: earlier.origin.clone(),
                second: text.origin.clone(),
            });
        }
        if text.sentences.is_empty() {
            return Err(AnalysisError::EmptyCorpus {
                origin: text.origin.clone(),
            });
        }
        if text.sentences.len() != reference.sentences.len() {
            return Err(AnalysisError::UnequalLength {
                file: text.origin.clone(),
                lines: text.sentences.len(),
                other_file: reference.origin.clone(),
                other_lines: reference.sentences.len(),
                first_unpaired: text.sentences.len().min(reference.sentences.len()) + 1,
            });
        }
        if let Some(line) = text.sentences.iter().position(|s| s.trim().is_empty()) {
            return Err(AnalysisError::at_line(
                &text.origin,
                line + 1,
                format!("empty sentence for {}", text.lang),
            ));
        }
    }
    Ok(())
}

macro_rules! bundled_language {
    ($code:literal) => {
        (
            $code,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/", $code, ".txt")),
        )
    };
}

/// The corpus compiled into the program, in the order of the default languages.
const BUNDLED_TEXTS: [(&str, &str); 10] = [
    bundled_language!("eng_Latn"),
    bundled_language!("zho_Hans"),
    bundled_language!("fra_Latn"),
    bundled_language!("deu_Latn"),
    bundled_language!("ita_Latn"),
    bundled_language!("spa_Latn"),
    bundled_language!("rus_Cyrl"),
    bundled_language!("arb_Arab"),
    bundled_language!("hin_Deva"),
    bundled_language!("jpn_Jpan"),
];

/// The project's own parallel corpus for the ten default languages (`data/<code>.txt`).
pub fn bundled() -> Result<Corpus> {
    let mut languages = Vec::with_capacity(BUNDLED_TEXTS.len());
    for (code, text) in BUNDLED_TEXTS {
        let label = format!("bundled data/{code}.txt");
        languages.push(LanguageText {
            lang: Lang::parse(code)?,
            sentences: sentence_lines(text, &label)?,
            origin: label,
        });
    }
    // Checked with the file names as origins, so that an error says which file is wrong.
    check_parallel("bundled corpus", &languages)?;
    for text in &mut languages {
        text.origin = "bundled".to_string();
    }
    Ok(Corpus {
        name: "bundled".to_string(),
        source: "bundled with the program (data/<code>.txt)".to_string(),
        languages,
    })
}

/// Loads a parallel corpus from a folder or file, detecting its format (see the module docs).
pub fn load(path: &Path) -> Result<Corpus> {
    let shown = path.display().to_string();
    let metadata = fs::metadata(path).map_err(|source| AnalysisError::Io {
        file: shown.clone(),
        source,
    })?;
    if metadata.is_dir() {
        load_folder(path)
    } else {
        load_file(path)
    }
}

fn load_file(path: &Path) -> Result<Corpus> {
    let shown = path.display().to_string();
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(file) = TatoebaFile::from_path(path) {
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let pairs = tatoeba_files(folder)?;
        let Some(sides) = pairs.get(&file.pair) else {
            return Err(AnalysisError::in_file(&shown, "not a Tatoeba pair file"));
        };
        return load_tatoeba_pair(&file.pair, sides);
    }
    match extension_of(path).as_deref() {
        Some("tsv") => load_tsv(path),
        Some("jsonl" | "ndjson" | "json") => load_jsonl(path),
        Some("txt" | "dev" | "devtest") => Err(AnalysisError::in_file(
            &shown,
            format!(
                "{file_name} holds a single language; give the folder that holds one such file per language"
            ),
        )),
        _ => Err(AnalysisError::in_file(
            &shown,
            "unrecognised corpus file: expected a .tsv with a header of language codes, a .jsonl \
             of objects mapping codes to sentences, or a Tatoeba file tatoeba.xxx-eng.xxx",
        )),
    }
}

fn load_folder(dir: &Path) -> Result<Corpus> {
    for split in ["devtest", "dev"] {
        let split_dir = dir.join(split);
        if split_dir.is_dir() {
            return load_flores(&split_dir, split);
        }
    }
    let files = folder_files(dir)?;
    let has_extension = |wanted: &str| {
        files
            .iter()
            .any(|file| extension_of(file).as_deref() == Some(wanted))
    };
    if files
        .iter()
        .any(|file| TatoebaFile::from_path(file).is_some())
    {
        return load_tatoeba(dir);
    }
    for split in ["devtest", "dev"] {
        if has_extension(split) {
            return load_flores(dir, split);
        }
    }
    if has_extension("txt") {
        return load_text_folder(dir);
    }
    Err(AnalysisError::in_file(
        &dir.display().to_string(),
        "no corpus found: expected <code>.txt files, a FLORES folder (devtest/ or dev/), or \
         Tatoeba files tatoeba.xxx-eng.xxx",
    ))
}

/// Regular, non-hidden files of a folder, sorted by name.
fn folder_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io_error = |source| AnalysisError::Io {
        file: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if path.is_file() && !hidden {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn extension_of(path: &Path) -> Option<String> {
    path.extension()
        .map(|extension| extension.to_string_lossy().to_ascii_lowercase())
}

/// A folder of `<code>.txt` files, one sentence per line; languages sorted by code.
pub fn load_text_folder(dir: &Path) -> Result<Corpus> {
    let files: Vec<PathBuf> = folder_files(dir)?
        .into_iter()
        .filter(|file| extension_of(file).as_deref() == Some("txt"))
        .collect();
    let languages = read_language_files(&files)?;
    finish_folder_corpus(
        dir,
        format!("folder of <code>.txt files {}", dir.display()),
        languages,
    )
}

/// A FLORES split folder: `<code>.<split>` (FLORES-200, FLORES-101) or `<code>` (FLORES+).
/// Other files with an extension are ignored; a file without one must be named by a code.
pub fn load_flores(split_dir: &Path, split: &str) -> Result<Corpus> {
    let files: Vec<PathBuf> = folder_files(split_dir)?
        .into_iter()
        .filter(|file| match extension_of(file) {
            None => true,
            Some(extension) => extension == split,
        })
        .collect();
    let languages = read_language_files(&files)?;
    let corpus_dir = match split_dir.file_name() {
        Some(name) if name == split => split_dir.parent().unwrap_or(split_dir),
        _ => split_dir,
    };
    finish_folder_corpus(
        corpus_dir,
        format!("FLORES {split} {}", split_dir.display()),
        languages,
    )
}

fn finish_folder_corpus(
    dir: &Path,
    source: String,
    mut languages: Vec<LanguageText>,
) -> Result<Corpus> {
    let shown = dir.display().to_string();
    if languages.is_empty() {
        return Err(AnalysisError::EmptyCorpus { origin: shown });
    }
    check_parallel(&shown, &languages)?;
    languages.sort_by(|a, b| a.lang.cmp(&b.lang));
    Ok(Corpus {
        name: folder_name(dir),
        source,
        languages,
    })
}

fn folder_name(path: &Path) -> String {
    let absolute = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    absolute
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads each file as one language named by its file stem.
fn read_language_files(files: &[PathBuf]) -> Result<Vec<LanguageText>> {
    files
        .iter()
        .map(|file| {
            let shown = file.display().to_string();
            let stem = file
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            let lang = Lang::parse(&stem).map_err(|error| {
                AnalysisError::in_file(
                    &shown,
                    format!("the file name should be a language code: {error}"),
                )
            })?;
            let sentences = read_sentence_file(file)?;
            Ok(LanguageText {
                lang,
                sentences,
                origin: shown,
            })
        })
        .collect()
}

/// A text file of one sentence per line (see `sentence_lines`).
pub fn read_sentence_file(file: &Path) -> Result<Vec<String>> {
    sentence_lines(&read_text(file)?, &file.display().to_string())
}

/// The whole file as UTF-8; invalid bytes are reported with their line.
fn read_text(path: &Path) -> Result<String> {
    let shown = path.display().to_string();
    let bytes = fs::read(path).map_err(|source| AnalysisError::Io {
        file: shown.clone(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|error| {
        let valid = error.utf8_error().valid_up_to();
        let line = error.as_bytes()[..valid]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count()
            + 1;
        AnalysisError::InvalidUtf8 { file: shown, line }
    })
}

/// Lines of a text without the byte-order mark, the final newline and CR of CRLF.
fn text_lines(text: &str) -> Vec<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect()
}

/// One sentence per line; an empty or blank line is an error, as is an empty file.
fn sentence_lines(text: &str, file: &str) -> Result<Vec<String>> {
    let lines = text_lines(text);
    if lines.is_empty() {
        return Err(AnalysisError::EmptyCorpus {
            origin: file.to_string(),
        });
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            if line.trim().is_empty() {
                Err(AnalysisError::at_line(
                    file,
                    index + 1,
                    "empty line: every line must hold one sentence",
                ))
            } else {
                Ok(line.to_string())
            }
        })
        .collect()
}

/// `tatoeba.<a>-<b>.<side>`, as XTREME names its Tatoeba files.
struct TatoebaFile {
    pair: String,
    side: String,
}

impl TatoebaFile {
    fn from_path(path: &Path) -> Option<TatoebaFile> {
        let name = path.file_name()?.to_str()?;
        let rest = name.strip_prefix("tatoeba.")?;
        let (pair, side) = rest.split_once('.')?;
        let (first, second) = pair.split_once('-')?;
        (side == first || side == second).then(|| TatoebaFile {
            pair: pair.to_string(),
            side: side.to_string(),
        })
    }
}

/// Tatoeba files of a folder, grouped by pair name ("fra-eng") and side code.
fn tatoeba_files(dir: &Path) -> Result<HashMap<String, Vec<(String, PathBuf)>>> {
    let mut pairs: HashMap<String, Vec<(String, PathBuf)>> = HashMap::new();
    for file in folder_files(dir)? {
        if let Some(tatoeba) = TatoebaFile::from_path(&file) {
            pairs
                .entry(tatoeba.pair)
                .or_default()
                .push((tatoeba.side, file));
        }
    }
    Ok(pairs)
}

/// Each Tatoeba pair of a folder as its own two-language corpus (English first), by pair name.
pub fn load_tatoeba_pairs(dir: &Path) -> Result<Vec<Corpus>> {
    let pairs = tatoeba_files(dir)?;
    let mut names: Vec<&String> = pairs.keys().collect();
    names.sort();
    if names.is_empty() {
        return Err(AnalysisError::in_file(
            &dir.display().to_string(),
            "no Tatoeba files (tatoeba.xxx-eng.xxx) here",
        ));
    }
    names
        .into_iter()
        .map(|name| load_tatoeba_pair(name, &pairs[name]))
        .collect()
}

fn load_tatoeba_pair(pair: &str, sides: &[(String, PathBuf)]) -> Result<Corpus> {
    let (first, second) = pair.split_once('-').unwrap_or((pair, pair));
    let mut languages = Vec::with_capacity(2);
    for code in [first, second] {
        let Some((_, file)) = sides.iter().find(|(side, _)| side == code) else {
            let present = sides
                .first()
                .map(|(_, file)| file.display().to_string())
                .unwrap_or_default();
            return Err(AnalysisError::in_file(
                &present,
                format!("its counterpart tatoeba.{pair}.{code} is missing"),
            ));
        };
        languages.push(read_language_file_as(file, code)?);
    }
    check_parallel(pair, &languages)?;
    // English first: it is the pivot.
    languages.sort_by_key(|text| text.lang.code() != "eng_Latn");
    let dir = sides
        .first()
        .and_then(|(_, file)| file.parent())
        .unwrap_or(Path::new("."));
    Ok(Corpus {
        name: format!("tatoeba {pair}"),
        source: format!("Tatoeba (XTREME) pair {pair} in {}", dir.display()),
        languages,
    })
}

fn read_language_file_as(file: &Path, code: &str) -> Result<LanguageText> {
    let shown = file.display().to_string();
    let lang = Lang::parse(code).map_err(|error| {
        AnalysisError::in_file(&shown, format!("'{code}' is not a language code: {error}"))
    })?;
    Ok(LanguageText {
        lang,
        sentences: read_sentence_file(file)?,
        origin: shown,
    })
}

/// A folder of Tatoeba pairs as one corpus: one pair as it is; several merged on the English
/// sentences they all share.
pub fn load_tatoeba(dir: &Path) -> Result<Corpus> {
    let mut pairs = load_tatoeba_pairs(dir)?;
    if pairs.len() == 1 {
        return Ok(pairs.remove(0));
    }
    merge_on_english(dir, &pairs)
}

fn merge_on_english(dir: &Path, pairs: &[Corpus]) -> Result<Corpus> {
    let shown = dir.display().to_string();
    let english = Lang::parse("eng_Latn")?;
    // Per pair: English sentence → the first translation of it.
    let mut translations: Vec<(&LanguageText, HashMap<&str, &str>)> = Vec::new();
    for pair in pairs {
        let (Some(pivot), Some(other)) = (
            pair.get(&english),
            pair.languages.iter().find(|text| text.lang != english),
        ) else {
            return Err(AnalysisError::in_file(
                &shown,
                format!(
                    "{} has no English side, so the pairs cannot be merged on English; load one pair at a time",
                    pair.name
                ),
            ));
        };
        let mut by_english = HashMap::new();
        for (pivot_sentence, translation) in pivot.sentences.iter().zip(&other.sentences) {
            by_english
                .entry(pivot_sentence.as_str())
                .or_insert(translation.as_str());
        }
        translations.push((other, by_english));
    }
    let first_english = pairs
        .first()
        .and_then(|pair| pair.get(&english))
        .map(|text| text.sentences.as_slice())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    let shared: Vec<&String> = first_english
        .iter()
        .filter(|sentence| seen.insert(sentence.as_str()))
        .filter(|sentence| {
            translations
                .iter()
                .all(|(_, by_english)| by_english.contains_key(sentence.as_str()))
        })
        .collect();
    if shared.is_empty() {
        return Err(AnalysisError::in_file(
            &shown,
            format!(
                "the {} Tatoeba pairs share no English sentence, so they cannot form one parallel \
                 corpus; load one pair by giving one of its files (e.g. tatoeba.fra-eng.fra)",
                pairs.len()
            ),
        ));
    }
    let english_origin = pairs
        .first()
        .and_then(|pair| pair.get(&english))
        .map(|text| text.origin.clone())
        .unwrap_or_default();
    let mut languages = vec![LanguageText {
        lang: english,
        sentences: shared.iter().map(|sentence| sentence.to_string()).collect(),
        origin: english_origin,
    }];
    for (other, by_english) in &translations {
        languages.push(LanguageText {
            lang: other.lang.clone(),
            sentences: shared
                .iter()
                .map(|sentence| {
                    by_english
                        .get(sentence.as_str())
                        .copied()
                        .unwrap_or_default()
                })
                .map(str::to_string)
                .collect(),
            origin: other.origin.clone(),
        });
    }
    check_parallel(&shown, &languages)?;
    Ok(Corpus {
        name: folder_name(dir),
        source: format!(
            "Tatoeba (XTREME) {}: {} pairs merged on the {} English sentences they all share",
            dir.display(),
            pairs.len(),
            shared.len()
        ),
        languages,
    })
}

/// Parses a header cell or JSON key as a language, the error naming the file and line.
fn language_at(code: &str, file: &str, line: usize, place: &str) -> Result<Lang> {
    Lang::parse(code)
        .map_err(|error| AnalysisError::at_line(file, line, format!("{place}: {error}")))
}

/// A TSV file: header row of language codes, then one row of tab-separated sentences per line.
/// Cells are taken as they are (no quoting), so sentences may contain quotes but not tabs.
pub fn load_tsv(path: &Path) -> Result<Corpus> {
    let shown = path.display().to_string();
    let text = read_text(path)?;
    let lines = text_lines(&text);
    let Some(header) = lines.first() else {
        return Err(AnalysisError::EmptyCorpus { origin: shown });
    };
    let mut langs: Vec<Lang> = Vec::new();
    for (column, cell) in header.split('\t').enumerate() {
        let lang = language_at(cell.trim(), &shown, 1, &format!("column {}", column + 1))?;
        if let Some(earlier) = langs.iter().position(|known| known == &lang) {
            return Err(AnalysisError::DuplicateLanguage {
                lang: lang.code().to_string(),
                first: format!("{shown} column {}", earlier + 1),
                second: format!("{shown} column {}", column + 1),
            });
        }
        langs.push(lang);
    }
    let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(lines.len()); langs.len()];
    for (index, line) in lines.iter().enumerate().skip(1) {
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.len() != langs.len() {
            return Err(AnalysisError::at_line(
                &shown,
                index + 1,
                format!(
                    "{} tab-separated cells, but the header names {} languages",
                    cells.len(),
                    langs.len()
                ),
            ));
        }
        for ((cell, lang), column) in cells.iter().zip(&langs).zip(&mut columns) {
            if cell.trim().is_empty() {
                return Err(AnalysisError::at_line(
                    &shown,
                    index + 1,
                    format!("empty sentence for {lang}"),
                ));
            }
            column.push(cell.to_string());
        }
    }
    finish_row_corpus(path, "TSV", langs, columns)
}

fn finish_row_corpus(
    path: &Path,
    format: &str,
    langs: Vec<Lang>,
    columns: Vec<Vec<String>>,
) -> Result<Corpus> {
    let shown = path.display().to_string();
    if columns.first().is_none_or(Vec::is_empty) {
        return Err(AnalysisError::EmptyCorpus { origin: shown });
    }
    let languages = langs
        .into_iter()
        .zip(columns)
        .map(|(lang, sentences)| LanguageText {
            lang,
            sentences,
            origin: shown.clone(),
        })
        .collect();
    Corpus::new(folder_name(path), format!("{format} {shown}"), languages)
}

/// The entries of one JSON object, in order and with duplicate keys kept (so that they can be
/// reported rather than silently collapsed).
struct JsonEntries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = JsonEntries;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object mapping language codes to sentences")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<JsonEntries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(JsonEntries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// A JSONL file: each line one object `{"en": "...", "fr": "..."}`; every line must have the
/// same languages (as the first line).
pub fn load_jsonl(path: &Path) -> Result<Corpus> {
    let shown = path.display().to_string();
    let text = read_text(path)?;
    let mut langs: Vec<Lang> = Vec::new();
    let mut columns: Vec<Vec<String>> = Vec::new();
    for (index, line) in text_lines(&text).iter().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            return Err(AnalysisError::at_line(&shown, line_number, "empty line"));
        }
        let JsonEntries(entries) = serde_json::from_str(line).map_err(|error| {
            AnalysisError::at_line(&shown, line_number, format!("invalid JSON: {error}"))
        })?;
        let mut row: Vec<(Lang, String)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let lang = language_at(&key, &shown, line_number, &format!("key \"{key}\""))?;
            if row.iter().any(|(known, _)| known == &lang) {
                return Err(AnalysisError::at_line(
                    &shown,
                    line_number,
                    format!("language {lang} appears twice in this object"),
                ));
            }
            let sentence = match value {
                serde_json::Value::String(sentence) if !sentence.trim().is_empty() => sentence,
                serde_json::Value::String(_) => {
                    return Err(AnalysisError::at_line(
                        &shown,
                        line_number,
                        format!("empty sentence for {lang}"),
                    ));
                }
                other => {
                    return Err(AnalysisError::at_line(
                        &shown,
                        line_number,
                        format!("the value for \"{key}\" must be a string, found {other}"),
                    ));
                }
            };
            row.push((lang, sentence));
        }
        if index == 0 {
            langs = row.iter().map(|(lang, _)| lang.clone()).collect();
            columns = vec![Vec::new(); langs.len()];
        }
        let row_langs: BTreeSet<&Lang> = row.iter().map(|(lang, _)| lang).collect();
        let first_langs: BTreeSet<&Lang> = langs.iter().collect();
        if row_langs != first_langs {
            let missing: Vec<&str> = first_langs
                .difference(&row_langs)
                .map(|lang| lang.code())
                .collect();
            let extra: Vec<&str> = row_langs
                .difference(&first_langs)
                .map(|lang| lang.code())
                .collect();
            return Err(AnalysisError::at_line(
                &shown,
                line_number,
                format!(
                    "languages differ from line 1 (missing: [{}], extra: [{}])",
                    missing.join(", "),
                    extra.join(", ")
                ),
            ));
        }
        for (lang, sentence) in row {
            if let Some(column) = langs.iter().position(|known| known == &lang) {
                columns[column].push(sentence);
            }
        }
    }
    if langs.is_empty() {
        return Err(AnalysisError::EmptyCorpus { origin: shown });
    }
    finish_row_corpus(path, "JSONL", langs, columns)
}

/// Which sentences [`select`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Sample {
    /// The first n, in corpus order.
    First,
    /// n distinct sentences drawn with this seed, kept in corpus order.
    Random { seed: u64 },
}

/// The sub-corpus of `langs` (in that order) and n sentences, the same ones in every language.
pub fn select(corpus: &Corpus, langs: &[Lang], n: usize, sample: Sample) -> Result<Corpus> {
    if langs.is_empty() {
        return Err(AnalysisError::InvalidInput(
            "no language selected".to_string(),
        ));
    }
    if n == 0 {
        return Err(AnalysisError::InvalidInput(
            "the number of sentences must be at least 1".to_string(),
        ));
    }
    // The fields are public, so the corpus may have been assembled by hand: check it first.
    check_parallel(&corpus.name, &corpus.languages)?;
    let mut texts = Vec::with_capacity(langs.len());
    for (index, lang) in langs.iter().enumerate() {
        if langs[..index].contains(lang) {
            return Err(AnalysisError::InvalidInput(format!(
                "language {lang} is selected twice"
            )));
        }
        let text = corpus
            .get(lang)
            .ok_or_else(|| AnalysisError::MissingLanguage {
                lang: lang.code().to_string(),
                corpus: corpus.name.clone(),
                available: corpus
                    .languages
                    .iter()
                    .map(|text| text.lang.code())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if n > text.sentences.len() {
            return Err(AnalysisError::NotEnoughSentences {
                lang: format!("{} ({})", lang.code(), lang.name()),
                requested: n,
                available: text.sentences.len(),
            });
        }
        texts.push(text);
    }
    let available = corpus.len();
    let (indices, description) = match sample {
        Sample::First => ((0..n).collect::<Vec<usize>>(), "the first".to_string()),
        Sample::Random { seed } => {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut indices = rand::seq::index::sample(&mut rng, available, n).into_vec();
            indices.sort_unstable();
            (indices, format!("random (seed {seed})"))
        }
    };
    let languages = texts
        .into_iter()
        .map(|text| LanguageText {
            lang: text.lang.clone(),
            sentences: indices.iter().map(|&i| text.sentences[i].clone()).collect(),
            origin: text.origin.clone(),
        })
        .collect();
    Ok(Corpus {
        name: corpus.name.clone(),
        source: format!(
            "{}; {description} {n} of {available} sentences",
            corpus.source
        ),
        languages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_accept_bom_crlf_and_a_missing_final_newline() {
        assert_eq!(text_lines("\u{feff}a\r\nb\r\n"), vec!["a", "b"]);
        assert_eq!(text_lines("a\nb"), vec!["a", "b"]);
        assert!(text_lines("").is_empty());
        assert!(text_lines("\n").is_empty());
        assert_eq!(text_lines("\n\n"), vec!["", ""]);
    }

    #[test]
    fn tatoeba_names() {
        let file = TatoebaFile::from_path(Path::new("x/tatoeba.fra-eng.fra")).expect("pair");
        assert_eq!((file.pair.as_str(), file.side.as_str()), ("fra-eng", "fra"));
        assert!(TatoebaFile::from_path(Path::new("tatoeba.fra-eng.deu")).is_none());
        assert!(TatoebaFile::from_path(Path::new("fra.txt")).is_none());
    }
}
