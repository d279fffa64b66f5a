//! `--checkpoint FILE`: the position after the last completed page and the
//! counts so far, written after every page (to a temporary file renamed over
//! the old one, so a crash never leaves half a checkpoint). A restart with
//! the same file continues after that page; the page in flight when the run
//! stopped is read again, which is safe because snapshots replay as no-ops.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::source::Position;

/// What a checkpoint file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint<S> {
    /// Format version (1).
    pub version: u32,
    /// `api` or `export:<dir>`: a checkpoint resumes only the same source.
    pub source: String,
    /// Where the next page starts.
    pub position: Position,
    /// The command's counts up to that position.
    pub summary: S,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a checkpoint of this command.
    #[error("checkpoint {path} is not usable: {message}; delete it to start over")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads `path`; `None` when it does not exist yet. A checkpoint of another
/// source is refused, so an export run cannot continue an API walk.
pub fn load<S: for<'de> Deserialize<'de>>(
    path: &Path,
    source: &str,
) -> Result<Option<Checkpoint<S>>, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let checkpoint: Checkpoint<S> =
        serde_json::from_str(&text).map_err(|err| CheckpointError::Invalid {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
    if checkpoint.source != source {
        return Err(CheckpointError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "it belongs to source {:?}, not {source:?}",
                checkpoint.source
            ),
        });
    }
    Ok(Some(checkpoint))
}

/// Writes `checkpoint` to `path` atomically.
pub fn save<S: Serialize>(path: &Path, checkpoint: &Checkpoint<S>) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(checkpoint).expect("checkpoints serialise");
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}
