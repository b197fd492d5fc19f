//! Errors of the analysis: every one names the file and line, the language or the value it is
//! about, so that a user can fix the input without reading code.

/// Result of the analysis functions.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}:{line}: not valid UTF-8 (save the file as UTF-8)")]
    InvalidUtf8 { file: String, line: usize },

    /// A problem at one line of an input file.
    #[error("{file}:{line}: {message}")]
    AtLine {
        file: String,
        line: usize,
        message: String,
    },

    /// A problem with a whole input file or folder.
    #[error("{file}: {message}")]
    InFile { file: String, message: String },

    #[error(
        "{file} has {lines} sentences but {other_file} has {other_lines}: parallel files must be line-aligned (line {first_unpaired} of the longer one has no counterpart)"
    )]
    UnequalLength {
        file: String,
        lines: usize,
        other_file: String,
        other_lines: usize,
        first_unpaired: usize,
    },

    #[error(
        "unknown language '{input}'; give an ISO 639-1 (en), ISO 639-3 (eng) or FLORES-200 code (eng_Latn){}",
        suggestion_list(suggestions)
    )]
    UnknownLanguage {
        input: String,
        suggestions: Vec<String>,
    },

    #[error("language {lang} appears twice: in {first} and in {second}")]
    DuplicateLanguage {
        lang: String,
        first: String,
        second: String,
    },

    #[error("language {lang} is not in corpus '{corpus}' (it has: {available})")]
    MissingLanguage {
        lang: String,
        corpus: String,
        available: String,
    },

    #[error("{requested} sentences requested but {lang} has only {available}")]
    NotEnoughSentences {
        lang: String,
        requested: usize,
        available: usize,
    },

    #[error("{origin}: no sentences (the corpus is empty)")]
    EmptyCorpus { origin: String },

    /// Vectors or matrices of the wrong shape, or a request that makes no sense.
    #[error("{0}")]
    InvalidInput(String),

    #[error("{what} contains a non-finite value (NaN or infinity) at {position}")]
    NonFinite { what: String, position: String },

    #[error("correlation needs at least 3 pairs of values, got {n}")]
    TooFewPoints { n: usize },

    #[error("{which} has zero variance (all values equal): the correlation is undefined")]
    ZeroVariance { which: String },

    #[error("matrix computation failed: {0}")]
    Compute(String),
}

fn suggestion_list(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

impl AnalysisError {
    pub(crate) fn at_line(file: &str, line: usize, message: impl Into<String>) -> Self {
        AnalysisError::AtLine {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn in_file(file: &str, message: impl Into<String>) -> Self {
        AnalysisError::InFile {
            file: file.to_string(),
            message: message.into(),
        }
    }
}
