//! Where the users come from: the Didomi API's cursor walk (default) or a
//! batch export on disk, behind one page-by-page interface with a position
//! a checkpoint can store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::export::{ExportLine, ExportPosition, ExportReader};
use crate::adapters::didomi_api::{DidomiApiClient, DidomiApiError};

/// Users per export page (the API's page is Didomi's, 100).
pub const EXPORT_PAGE_SIZE: usize = 100;

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// The API: the `$cursor` of the next page (`None`: the first page).
    Api {
        /// The cursor.
        cursor: Option<String>,
    },
    /// A batch export: the file and the lines consumed in it.
    Export(ExportPosition),
    /// Everything was read.
    Finished,
}

/// One user of a page, or a line that is not one.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// A user as JSON, with where it came from (for error messages).
    User {
        /// `page 3` or `path:line`.
        origin: String,
        /// The user.
        user: Value,
    },
    /// An export line that is not a user.
    Malformed {
        /// `path:line`.
        origin: String,
        /// What is wrong.
        error: String,
    },
}

/// A page of users and the position after it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePage {
    /// The users (and malformed lines).
    pub items: Vec<SourceItem>,
    /// Where the page after this one starts.
    pub next: Position,
}

/// Why no page could be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Didomi API failed.
    #[error(transparent)]
    Api(#[from] DidomiApiError),
    /// The export could not be read.
    #[error("reading the export {path}: {source}")]
    Export {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SourceError {
    /// Whether the operator must fix the configuration (exit status 2).
    pub fn is_configuration(&self) -> bool {
        matches!(self, SourceError::Api(err) if err.is_configuration())
    }
}

/// The users to walk.
pub enum UserSource {
    /// `GET /consents/users`, page after page.
    Api {
        /// The client (boxed: it is much larger than the export reader).
        client: Box<DidomiApiClient>,
        /// The next page's cursor; `None` once the walk ended.
        cursor: Option<Option<String>>,
        /// Pages read so far in this run.
        pages: u64,
    },
    /// A batch export directory.
    Export {
        /// The directory.
        root: PathBuf,
        /// Its reader.
        reader: ExportReader,
    },
}

impl UserSource {
    /// The API walk, from the start or from a checkpoint's cursor.
    pub fn api(client: DidomiApiClient, cursor: Option<String>) -> Self {
        UserSource::Api {
            client: Box::new(client),
            cursor: Some(cursor),
            pages: 0,
        }
    }

    /// An export directory, from the start or from a checkpoint's position.
    pub fn export(root: PathBuf, start: Option<&ExportPosition>) -> Result<Self, SourceError> {
        let reader = ExportReader::open(&root, start).map_err(|source| SourceError::Export {
            path: root.clone(),
            source,
        })?;
        Ok(UserSource::Export { root, reader })
    }

    /// `api` or `export:<dir>`: what a checkpoint must match to be resumed.
    pub fn label(&self) -> String {
        match self {
            UserSource::Api { .. } => "api".into(),
            UserSource::Export { root, .. } => format!("export:{}", root.display()),
        }
    }

    /// Share of the source read, when it is known (exports: by bytes).
    pub fn fraction_done(&self) -> Option<f64> {
        match self {
            UserSource::Api { .. } => None,
            UserSource::Export { reader, .. } => Some(reader.fraction_done()),
        }
    }

    /// Didomi API requests sent so far (0 for exports).
    pub fn requests_sent(&self) -> u64 {
        match self {
            UserSource::Api { client, .. } => client.requests_sent(),
            UserSource::Export { .. } => 0,
        }
    }

    /// The next page; `None` at the end.
    pub async fn next_page(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<SourcePage>, SourceError> {
        match self {
            UserSource::Api {
                client,
                cursor,
                pages,
            } => {
                let Some(current) = cursor.clone() else {
                    return Ok(None);
                };
                let page = client.users_page(current.as_deref(), deadline).await?;
                *pages += 1;
                let origin = format!("API page {pages}");
                let items = page
                    .users
                    .into_iter()
                    .map(|user| SourceItem::User {
                        origin: origin.clone(),
                        user,
                    })
                    .collect();
                let next = match page.next_cursor {
                    Some(next) => {
                        *cursor = Some(Some(next.clone()));
                        Position::Api { cursor: Some(next) }
                    }
                    None => {
                        *cursor = None;
                        Position::Finished
                    }
                };
                Ok(Some(SourcePage { items, next }))
            }
            UserSource::Export { root, reader } => {
                let page =
                    reader
                        .next_page(EXPORT_PAGE_SIZE)
                        .map_err(|source| SourceError::Export {
                            path: root.clone(),
                            source,
                        })?;
                Ok(page.map(|(lines, position)| SourcePage {
                    items: lines
                        .into_iter()
                        .map(|line| match line {
                            ExportLine::User { origin, user } => SourceItem::User { origin, user },
                            ExportLine::Malformed { origin, error } => {
                                SourceItem::Malformed { origin, error }
                            }
                        })
                        .collect(),
                    next: Position::Export(position),
                }))
            }
        }
    }
}
