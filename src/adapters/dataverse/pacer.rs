//! Pacing: how many requests this client has in flight at once.
//!
//! Dataverse says how parallel a client may be (`x-ms-dop-hint` on every
//! answer) and refuses excess with 429 + `Retry-After` (reference §4). The
//! pacer never lets more requests out at once than `min(hint, cap)`; on a
//! 429 it halves its own limit and holds every new request until the
//! `Retry-After` has passed (so one throttled request does not turn into a
//! storm of them), then climbs back by one per `limit` successes
//! (additive increase, multiplicative decrease).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The header Dataverse sends its recommended degree of parallelism in.
pub const DOP_HINT_HEADER: &str = "x-ms-dop-hint";

/// Requests in flight allowed before the first `x-ms-dop-hint` is seen.
pub const FIRST_CONTACT: usize = 2;

/// Shared by every clone of a client (one per Lambda instance).
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Most requests in flight the configuration allows (`max_parallel`).
    cap: usize,
    /// The last `x-ms-dop-hint` seen (`None` before the first answer).
    hint: Option<usize>,
    /// The current limit, `1..=min(hint, cap)`.
    limit: usize,
    in_flight: usize,
    /// Successes since the limit last changed.
    successes: usize,
    /// No request leaves before this (a 429's `Retry-After`).
    resume_at: Option<Instant>,
}

impl State {
    /// Before the first answer no hint is known: start low (Microsoft:
    /// "start with a lower rate and ramp up") at [`FIRST_CONTACT`].
    fn ceiling(&self) -> usize {
        self.hint.unwrap_or(FIRST_CONTACT).min(self.cap).max(1)
    }
}

/// One request's slot; released on drop.
#[derive(Debug)]
pub struct Permit<'a> {
    pacer: &'a Pacer,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.pacer.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_flight = state.in_flight.saturating_sub(1);
        drop(state);
        self.pacer.released.notify_waiters();
    }
}

impl Pacer {
    /// A pacer allowing at most `cap` requests at once (and fewer when the
    /// server's hint says so).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            state: Mutex::new(State {
                cap,
                hint: None,
                limit: cap,
                in_flight: 0,
                successes: 0,
                resume_at: None,
            }),
            released: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot (and for any `Retry-After` hold to pass).
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let released = self.released.notified();
            let hold = {
                let mut state = self.lock();
                match state.resume_at {
                    Some(at) if at > Instant::now() => Some(at),
                    _ if state.in_flight < state.limit.min(state.ceiling()) => {
                        state.in_flight += 1;
                        return Permit { pacer: self };
                    }
                    _ => None,
                }
            };
            match hold {
                Some(at) => tokio::time::sleep_until(at).await,
                None => released.await,
            }
        }
    }

    /// A request succeeded; `hint` is its `x-ms-dop-hint`, if any.
    pub fn succeeded(&self, hint: Option<usize>) {
        let mut state = self.lock();
        if let Some(hint) = hint.filter(|h| *h > 0) {
            state.hint = Some(hint);
        }
        let ceiling = state.ceiling();
        state.successes += 1;
        if state.limit > ceiling {
            state.limit = ceiling;
            state.successes = 0;
        } else if state.successes >= state.limit && state.limit < ceiling {
            state.limit += 1;
            state.successes = 0;
        }
        drop(state);
        self.released.notify_waiters();
    }

    /// A request was throttled (429): halve the limit and hold new requests
    /// for `retry_after`.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let mut state = self.lock();
        state.limit = (state.limit.min(state.ceiling()) / 2).max(1);
        state.successes = 0;
        let resume = Instant::now() + retry_after.unwrap_or(Duration::from_secs(1));
        state.resume_at = Some(state.resume_at.map_or(resume, |at| at.max(resume)));
    }

    /// How many requests may be in flight now: what a caller splitting work
    /// into parallel requests should aim for.
    pub fn parallelism(&self) -> usize {
        let state = self.lock();
        state.limit.min(state.ceiling())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }
}

/// Reads `x-ms-dop-hint`.
pub fn dop_hint(headers: &reqwest::header::HeaderMap) -> Option<usize> {
    headers
        .get(DOP_HINT_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_bounds_the_cap_and_429_halves_then_climbs_back() {
        let pacer = Pacer::new(8);
        assert_eq!(pacer.parallelism(), FIRST_CONTACT, "before any hint: low");
        pacer.succeeded(Some(4));
        assert_eq!(pacer.parallelism(), 4, "the hint wins when lower");
        pacer.throttled(Some(Duration::ZERO));
        assert_eq!(pacer.parallelism(), 2);
        pacer.throttled(Some(Duration::ZERO));
        pacer.throttled(Some(Duration::ZERO));
        assert_eq!(pacer.parallelism(), 1, "never below one");
        pacer.succeeded(None);
        assert_eq!(pacer.parallelism(), 2, "one success per slot to climb");
        pacer.succeeded(None);
        pacer.succeeded(None);
        assert_eq!(pacer.parallelism(), 3);
        for _ in 0..20 {
            pacer.succeeded(Some(4));
        }
        assert_eq!(pacer.parallelism(), 4, "back to the hint, not beyond");
        pacer.succeeded(Some(16));
        for _ in 0..100 {
            pacer.succeeded(Some(16));
        }
        assert_eq!(pacer.parallelism(), 8, "the cap bounds a high hint");
    }

    #[tokio::test]
    async fn never_more_in_flight_than_the_limit_and_a_429_holds_everyone() {
        let pacer = std::sync::Arc::new(Pacer::new(2));
        let first = pacer.acquire().await;
        let second = pacer.acquire().await;
        let waiting = {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                let _third = pacer.acquire().await;
                Instant::now()
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(pacer.in_flight(), 2, "the third waits");
        let throttled_at = Instant::now();
        pacer.throttled(Some(Duration::from_millis(300)));
        assert_eq!(pacer.parallelism(), 1, "halved");
        drop(first);
        drop(second);
        let started = waiting.await.unwrap();
        assert!(
            started >= throttled_at + Duration::from_millis(300),
            "held until Retry-After passed"
        );
    }
}
