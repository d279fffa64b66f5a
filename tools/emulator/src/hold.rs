//! Completion notices: every processed request (admin edits included) is announced, so a fault
//! can hold one request until another has been applied (`hold_until_applied`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::faults::HoldUntil;

/// One processed request.
#[derive(Debug)]
pub struct Completed {
    /// HTTP method.
    pub method: String,
    /// Raw path and query.
    pub path_and_query: String,
    /// Raw request body.
    pub body: Bytes,
}

/// Broadcast of processed requests.
#[derive(Clone, Debug)]
pub struct Completions(broadcast::Sender<Arc<Completed>>);

impl Default for Completions {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

/// A subscription taken when a request is picked for holding, so nothing completing in between
/// is missed.
pub struct Waiter(broadcast::Receiver<Arc<Completed>>);

impl Completions {
    /// Tells every waiter that a request has been fully processed.
    pub fn announce(&self, method: &str, path_and_query: &str, body: Bytes) {
        // No receiver is the normal case; nothing to do then.
        let _ = self.0.send(Arc::new(Completed {
            method: method.to_string(),
            path_and_query: path_and_query.to_string(),
            body,
        }));
    }

    /// Starts listening for completions.
    pub fn subscribe(&self) -> Waiter {
        Waiter(self.0.subscribe())
    }
}

impl Waiter {
    /// Waits until a request matching `hold` completes (true) or `max_wait_ms` passes (false).
    pub async fn wait(mut self, hold: &HoldUntil) -> bool {
        let released = async {
            loop {
                match self.0.recv().await {
                    Ok(c) if hold.releases(&c.method, &c.path_and_query, &c.body) => return true,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        tokio::time::timeout(Duration::from_millis(hold.max_wait_ms), released)
            .await
            .unwrap_or(false)
    }
}
