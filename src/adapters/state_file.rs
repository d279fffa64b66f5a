//! The reverse sync's state in a file, for `cpc-sync reverse-sync --once
//! --watermark FILE`: the watermark in FILE (`{"modifiedon", "version"}`,
//! replaced atomically through a temporary file and a rename) and the lock in
//! `FILE.lock` (created exclusively; `{"holder", "expires_at"}`). A lock
//! whose lease is over is taken over. Good for one operator's machine; the
//! scheduled function uses the DynamoDB table (`adapters::dynamodb_state`),
//! which `--state-table` makes the CLI share.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::service::reverse::{Held, StateError, Watermark, WatermarkStore};

/// The watermark file's content.
#[derive(Debug, Serialize, Deserialize)]
struct WatermarkFile {
    modifiedon: DateTime<Utc>,
    /// Absent in files written before versions existed: version 1.
    #[serde(default = "first_version")]
    version: u64,
}

fn first_version() -> u64 {
    1
}

/// The lock file's content.
#[derive(Debug, Serialize, Deserialize)]
struct LockFile {
    holder: String,
    expires_at: DateTime<Utc>,
}

/// The watermark in a file and its lock beside it.
#[derive(Clone, Debug)]
pub struct FileWatermarkStore {
    path: PathBuf,
}

impl FileWatermarkStore {
    /// State in `path` (the watermark) and `path` + `.lock` (the lock).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The lock file's path.
    pub fn lock_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// The watermark and its version as the file holds them (version 0: no file).
    pub fn read(&self) -> Result<(Option<Watermark>, u64), StateError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let file: WatermarkFile = serde_json::from_str(&text)
                    .map_err(|err| invalid(&self.path, &format!("is not a watermark: {err}")))?;
                Ok((
                    Some(Watermark {
                        modifiedon: file.modifiedon,
                    }),
                    file.version,
                ))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok((None, 0)),
            Err(err) => Err(invalid(&self.path, &err.to_string())),
        }
    }

    fn write_lock(&self, lock: &LockFile, exclusive: bool) -> std::io::Result<()> {
        let text = serde_json::to_string(lock).map_err(std::io::Error::other)?;
        if exclusive {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.lock_path())?;
            file.write_all(text.as_bytes())
        } else {
            replace(&self.lock_path(), &text)
        }
    }

    fn read_lock(&self) -> Result<Option<LockFile>, StateError> {
        let path = self.lock_path();
        match std::fs::read_to_string(&path) {
            // A lock file being written right now may be empty: held.
            Ok(text) if text.trim().is_empty() => Ok(Some(LockFile {
                holder: "(being written)".into(),
                expires_at: Utc::now() + chrono::Duration::seconds(5),
            })),
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|err| invalid(&path, &format!("is not a lock: {err}"))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(invalid(&path, &err.to_string())),
        }
    }
}

fn invalid(path: &Path, message: &str) -> StateError {
    StateError::Invalid(format!("{}: {message}", path.display()))
}

/// Writes `text` to `path` atomically: a temporary file, then a rename.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

impl WatermarkStore for FileWatermarkStore {
    async fn lock(&self, holder: &str, lease: Duration) -> Result<Held, StateError> {
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let lock = LockFile {
            holder: holder.to_string(),
            expires_at,
        };
        match self.write_lock(&lock, true) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                match self.read_lock()? {
                    Some(current) if current.expires_at > now => {
                        return Err(StateError::Locked {
                            holder: current.holder,
                            expires_at: current.expires_at,
                        });
                    }
                    // Expired (or gone meanwhile): take it over.
                    _ => self
                        .write_lock(&lock, false)
                        .map_err(|err| invalid(&self.lock_path(), &err.to_string()))?,
                }
            }
            Err(err) => return Err(invalid(&self.lock_path(), &err.to_string())),
        }
        let (watermark, version) = self.read()?;
        Ok(Held {
            holder: holder.to_string(),
            expires_at,
            watermark,
            version,
        })
    }

    async fn advance(&self, held: &Held, to: &Watermark) -> Result<(), StateError> {
        let (_, version) = self.read()?;
        if version != held.version {
            return Err(StateError::Conflict {
                expected: held.version,
            });
        }
        let text = serde_json::to_string(&WatermarkFile {
            modifiedon: to.modifiedon,
            version: held.version + 1,
        })
        .map_err(|err| invalid(&self.path, &err.to_string()))?;
        replace(&self.path, &text).map_err(|err| invalid(&self.path, &err.to_string()))
    }

    async fn release(&self, held: &Held) -> Result<(), StateError> {
        match self.read_lock()? {
            Some(current) if current.holder == held.holder => {
                std::fs::remove_file(self.lock_path())
                    .map_err(|err| invalid(&self.lock_path(), &err.to_string()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> FileWatermarkStore {
        let dir =
            std::env::temp_dir().join(format!("cpc-state-file-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        FileWatermarkStore::new(dir.join("watermark.json"))
    }

    fn at(text: &str) -> Watermark {
        Watermark {
            modifiedon: text.parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn a_watermark_advances_under_the_lock_and_the_lock_is_released() {
        let store = store("advance");
        let held = store.lock("a", Duration::from_secs(60)).await.unwrap();
        assert_eq!((held.watermark.clone(), held.version), (None, 0));
        store
            .advance(&held, &at("2025-01-01T00:00:00Z"))
            .await
            .unwrap();
        store.release(&held).await.unwrap();
        assert!(!store.lock_path().exists());
        let again = store.lock("b", Duration::from_secs(60)).await.unwrap();
        assert_eq!(again.watermark, Some(at("2025-01-01T00:00:00Z")));
        assert_eq!(again.version, 1);
    }

    #[tokio::test]
    async fn a_held_lock_refuses_and_an_expired_one_is_taken_over() {
        let store = store("lock");
        let first = store.lock("a", Duration::from_secs(60)).await.unwrap();
        let refused = store.lock("b", Duration::from_secs(60)).await.unwrap_err();
        assert!(
            matches!(refused, StateError::Locked { ref holder, .. } if holder == "a"),
            "{refused:?}"
        );
        store.release(&first).await.unwrap();
        let expired = store.lock("c", Duration::ZERO).await.unwrap();
        let taken = store.lock("d", Duration::from_secs(60)).await.unwrap();
        // The old holder's release leaves the new holder's lock alone.
        store.release(&expired).await.unwrap();
        assert!(store.lock_path().exists());
        assert_eq!(taken.holder, "d");
    }

    #[tokio::test]
    async fn a_watermark_moved_by_someone_else_is_not_overwritten() {
        let store = store("conflict");
        let held = store.lock("a", Duration::from_secs(60)).await.unwrap();
        std::fs::write(
            &store.path,
            r#"{"modifiedon":"2030-01-01T00:00:00Z","version":7}"#,
        )
        .unwrap();
        let err = store
            .advance(&held, &at("2025-01-01T00:00:00Z"))
            .await
            .unwrap_err();
        assert_eq!(err, StateError::Conflict { expected: 0 });
        assert_eq!(store.read().unwrap(), (Some(at("2030-01-01T00:00:00Z")), 7));
    }

    #[test]
    fn a_file_without_a_version_reads_as_version_one() {
        let store = store("legacy");
        std::fs::write(&store.path, r#"{"modifiedon":"2025-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(store.read().unwrap(), (Some(at("2025-01-01T00:00:00Z")), 1));
    }
}
