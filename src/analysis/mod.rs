//! The analysis: languages, parallel corpora, the alignment score of METHOD.md §4, and its
//! correlation with downstream task accuracies (§7). Pure computation on data in memory and
//! small files; it knows nothing of models or user interfaces.

pub mod align;
pub mod corpus;
pub mod error;
pub mod lang;
pub mod stats;
pub mod tasks;

pub use align::{
    NearestNeighbours, Neighbour, NormalizedRows, PairScore, SimilarityMatrix, chance_score,
    cosine_matrix, nearest_neighbours, normalize_rows, score,
};
pub use corpus::{Corpus, LanguageText, Sample, bundled, load, select};
pub use error::{AnalysisError, Result};
pub use lang::{DEFAULT_LANGUAGES, Lang};
pub use stats::{Correlation, correlate};
pub use tasks::{TaskTable, load_task_csv};
