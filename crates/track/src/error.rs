//! One error type for the crate: every variant names where the bad input is (file, line,
//! field, camera) so that a user can fix it without reading the source.

use std::path::PathBuf;

/// Everything that can go wrong in `stadion-track`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid for its format (syntax, wrong type, missing field).
    #[error("{file}{}: field `{field}`: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        file: String,
        line: Option<usize>,
        field: String,
        reason: String,
    },
    /// A camera's parameters are unusable (NaN, singular intrinsics, non-rotation matrix...).
    #[error("{file}: camera `{camera}`: field `{field}`: {reason}")]
    Camera {
        file: String,
        camera: String,
        field: String,
        reason: String,
    },
    /// A camera that the data refers to is absent from the calibration.
    #[error("{file}: camera `{camera}` is not in the calibration (it has: {known})")]
    MissingCamera {
        file: String,
        camera: String,
        known: String,
    },
    /// Inputs that do not fit together (frame counts, joint counts, skeletons).
    #[error("{what}: {reason}")]
    Mismatch { what: String, reason: String },
    /// A solver could not produce an answer (too few points, degenerate geometry).
    #[error("{what}: {reason}")]
    Solver { what: String, reason: String },
}

impl Error {
    pub(crate) fn parse(
        file: &str,
        line: Option<usize>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Parse {
            file: file.to_owned(),
            line,
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
