//! Fresh scratch directories under the system temp dir, one per test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// An empty directory `cpc-sync-tests/<name>-<pid>-<n>`, created now.
pub fn dir(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join("cpc-sync-tests").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}
