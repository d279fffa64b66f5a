//! The purposes and topics catalogue, loaded once per execution environment.
//!
//! Start-up tries to load it, but Entra or Dataverse being down then must not
//! fail the init (a failed init cannot back its messages off, so a long outage
//! would push them to the dead-letter queue). The function starts without it
//! and each invocation that needs to write tries again until one succeeds;
//! meanwhile those writes fail retryably and back off in the queue.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::domain::writes::Catalog;

/// Where the catalogue comes from (Dataverse in production).
pub trait CatalogSource: Send + Sync {
    /// Reads the catalogue, or says in one line why it could not.
    fn load(&self, deadline: Instant) -> BoxFuture<'_, Result<Catalog, CatalogUnavailable>>;
}

/// The catalogue could not be read (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("purposes and topics are not loaded yet: {0}")]
pub struct CatalogUnavailable(pub String);

/// A catalogue that is loaded, or loaded on first use.
pub struct LazyCatalog {
    cell: OnceCell<Arc<Catalog>>,
    source: Option<Arc<dyn CatalogSource>>,
}

impl LazyCatalog {
    /// A catalogue already in hand (read at start, or fixed in tests).
    pub fn loaded(catalog: Catalog) -> Self {
        Self {
            cell: OnceCell::new_with(Some(Arc::new(catalog))),
            source: None,
        }
    }

    /// A catalogue read from `source` on first use, and again on each use
    /// until a read succeeds.
    pub fn pending(source: Arc<dyn CatalogSource>) -> Self {
        Self {
            cell: OnceCell::new(),
            source: Some(source),
        }
    }

    /// True once the catalogue is in hand.
    pub fn is_loaded(&self) -> bool {
        self.cell.initialized()
    }

    /// The catalogue, reading it first if needed.
    pub async fn get(&self, deadline: Instant) -> Result<Arc<Catalog>, CatalogUnavailable> {
        self.cell
            .get_or_try_init(|| async {
                let Some(source) = &self.source else {
                    return Err(CatalogUnavailable("no catalogue source".into()));
                };
                let catalog = source.load(deadline).await?;
                tracing::info!("purposes and topics loaded");
                Ok(Arc::new(catalog))
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `failures` reads.
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
    }

    impl CatalogSource for Flaky {
        fn load(&self, _: Instant) -> BoxFuture<'_, Result<Catalog, CatalogUnavailable>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = call < self.failures;
            Box::pin(async move {
                if fail {
                    Err(CatalogUnavailable("Dataverse is unavailable".into()))
                } else {
                    Ok(Catalog::default())
                }
            })
        }
    }

    #[tokio::test]
    async fn a_failed_read_is_retried_on_the_next_use_then_kept() {
        let source = Arc::new(Flaky {
            failures: 2,
            calls: AtomicU32::new(0),
        });
        let catalog = LazyCatalog::pending(source.clone());
        let deadline = Instant::now();
        assert!(catalog.get(deadline).await.is_err());
        assert!(catalog.get(deadline).await.is_err());
        assert!(!catalog.is_loaded());
        assert!(catalog.get(deadline).await.is_ok());
        assert!(catalog.get(deadline).await.is_ok());
        assert_eq!(source.calls.load(Ordering::SeqCst), 3, "kept once read");
    }
}
