//! `cpc-sync reverse-sync --once`: one pass of Dynamics → Didomi
//! ([`crate::service::reverse`]) with the state the operator names: none
//! (every pass from the beginning), a watermark file (`--watermark FILE`),
//! or the stack's DynamoDB table (`--state-table TABLE`), whose lock keeps
//! the command and the scheduled function from running at the same time.

use std::io::Write;
use std::path::PathBuf;

use tokio::time::Instant;
use uuid::Uuid;

use crate::adapters::dataverse::DataverseClient;
use crate::adapters::didomi_api::DidomiApiClient;
use crate::adapters::dynamodb_state::{self, DynamoStateStore};
use crate::adapters::state_file::FileWatermarkStore;
use crate::config::IntegrationConfig;
use crate::service::reverse::{NoWatermark, Pass, PassOptions, ReverseError, ReverseSummary};

/// Where the command keeps its watermark and lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateChoice {
    /// Nowhere: every pass starts from the beginning.
    #[default]
    None,
    /// A watermark file and its `.lock` beside it.
    File(PathBuf),
    /// The stack's DynamoDB state table (shared with the scheduled function).
    Table(String),
}

/// The lock holder's label for command runs.
pub const HOLDER: &str = "cpc-sync";

/// One pass with `state`; `out` gets the event lines (dry run) and the
/// lines of rows that cannot be expressed.
#[allow(clippy::too_many_arguments)]
pub async fn run_once(
    dataverse: &DataverseClient,
    didomi: &DidomiApiClient,
    config: &IntegrationConfig,
    own_user: Uuid,
    state: &StateChoice,
    dry_run: bool,
    deadline: Instant,
    out: &mut (dyn Write + Send),
) -> Result<ReverseSummary, ReverseError> {
    let options = PassOptions {
        dry_run,
        holder: HOLDER.to_string(),
        deadline,
    };
    let pass = Pass {
        rows: dataverse,
        didomi,
        state: &NoWatermark,
        config,
        own_user,
    };
    match state {
        StateChoice::None => pass.run(&options, out).await,
        StateChoice::File(path) => {
            let store = FileWatermarkStore::new(path.clone());
            pass.with_state(&store).run(&options, out).await
        }
        StateChoice::Table(table) => {
            let store = DynamoStateStore::new(dynamodb_state::sdk_client().await, table.clone());
            pass.with_state(&store).run(&options, out).await
        }
    }
}
