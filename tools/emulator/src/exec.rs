//! Runs Dataverse operations under the cost model: wait for a free execution slot
//! (`parallelism`), spend the operation's execution time (`op_cost_ms`), then apply it under the
//! state lock. The lock is taken per operation, so other requests interleave between the parts
//! of a `$batch` as they do on a real server.

use std::time::Duration;

use crate::state::{Shared, State, lock};

/// Spends `ops` operations' execution time, then runs `apply` on the state. Returns its result
/// and the execution milliseconds charged (for the execution-time limit).
pub async fn run<T>(shared: &Shared, ops: usize, apply: impl FnOnce(&mut State) -> T) -> (T, u64) {
    let (cost, slots) = {
        let st = lock(shared);
        (st.cost.op_cost_ms, st.parallel.clone())
    };
    // Held while the operation "executes"; dropped after it has been applied.
    let _slot = match slots {
        Some(s) => s.acquire_owned().await.ok(),
        None => None,
    };
    let exec_ms = cost.saturating_mul(ops as u64);
    if exec_ms > 0 {
        tokio::time::sleep(Duration::from_millis(exec_ms)).await;
    }
    let out = apply(&mut lock(shared));
    (out, exec_ms)
}
