//! Errors of the pose pipeline; each names the file (video or model) and what went wrong.

use std::path::PathBuf;

/// What can go wrong between a video file and its keypoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `ffmpeg`/`ffprobe` could not be started (not installed, not on `PATH`).
    #[error("{path}: cannot start {program}: {source}")]
    Spawn {
        program: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `ffprobe` failed or described no usable video stream.
    #[error("{path}: ffprobe: {message}")]
    Probe { path: PathBuf, message: String },
    /// `ffmpeg` stopped with an error while decoding.
    #[error("{path}: ffmpeg failed after {frames} frames: {message}")]
    Decode {
        path: PathBuf,
        frames: usize,
        message: String,
    },
    /// Reading or writing a file (or a pipe) failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The landmark model could not be loaded or run.
    #[error("model {path}: {message}")]
    Model { path: PathBuf, message: String },
    /// An image buffer whose length does not match its dimensions.
    #[error("image {width}x{height} needs {expected} RGB bytes, got {len}")]
    ImageSize {
        width: usize,
        height: usize,
        expected: usize,
        len: usize,
    },
    /// A keypoint file could not be written.
    #[error(transparent)]
    Track(#[from] stadion_track::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
