//! [`WordnetError`]: every way reading a WordNet database can fail. Messages are lowercase
//! and name the file, the line (counting every line from 1, license lines included) and the
//! wndb(5) field, with what was expected and what was found (STYLE §8).

use std::path::{Path, PathBuf};

use warpgrid_engine::graph::GraphError;

/// Errors of the WordNet importer. An import that returns one produced nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WordnetError {
    /// A database file could not be read (most often: it is missing).
    #[error(
        "{}: cannot read (the directory must hold the WordNet 3.0 files \
         data.noun/verb/adj/adv and index.noun/verb/adj/adv; `apt-get install wordnet-base` \
         puts them in /usr/share/wordnet): {source}",
        path.display()
    )]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed line of a data or index file; `field` is the wndb(5) name of the field
    /// (`w_cnt`, `pointer 3 synset_offset`, ...).
    #[error("{}:{line}: field {field}: {reason}", path.display())]
    Line {
        /// The data or index file.
        path: PathBuf,
        /// Line number, from 1.
        line: u64,
        /// The wndb(5) field name.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A relation weight outside [0, 1] (0 disables the relation).
    #[error("invalid weight for relation {relation}: {reason}")]
    InvalidWeight {
        /// The relation's name (`hypernym`, ...).
        relation: String,
        /// The range and the weight given.
        reason: String,
    },
    /// The graph builder rejected the result (only on limits the engine enforces).
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl WordnetError {
    pub(crate) fn line(
        path: &Path,
        line: u64,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> WordnetError {
        WordnetError::Line {
            path: path.to_path_buf(),
            line,
            field: field.into(),
            reason: reason.into(),
        }
    }
}
