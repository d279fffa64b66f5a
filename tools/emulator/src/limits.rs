//! Service-protection limits (reference §4): per user, over a sliding window, the number of
//! requests, their combined execution time and the requests in flight. A breach is answered with
//! 429, the Dataverse error code of that limit and `Retry-After` in whole seconds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cost::Limits;
use crate::errors::DvError;

/// Which limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// Too many requests in the window (`0x80072322`).
    Requests,
    /// Too much combined execution time in the window (`0x80072321`).
    ExecutionTime,
    /// Too many requests in flight (`0x80072326`).
    Concurrency,
}

/// A refused request: the limit and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// The limit that was hit.
    pub breach: Breach,
    /// Whole seconds until the window has room again (the `Retry-After` value).
    pub retry_after_secs: u64,
}

/// How many requests were refused, per limit (admin API counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ThrottleCounts {
    /// Refused with `0x80072322` (requests per window).
    pub requests: u64,
    /// Refused with `0x80072321` (execution time per window).
    pub execution_time: u64,
    /// Refused with `0x80072326` (requests in flight).
    pub concurrency: u64,
}

#[derive(Debug, Default)]
struct UserWindow {
    arrivals: VecDeque<Instant>,
    exec: VecDeque<(Instant, u64)>,
    in_flight: u64,
}

/// Sliding-window bookkeeping for every user.
#[derive(Debug, Default)]
pub struct Limiter {
    users: HashMap<String, UserWindow>,
    /// Refusals so far, by limit.
    pub refused: ThrottleCounts,
}

fn whole_secs_until(deadline: Instant, now: Instant) -> u64 {
    let wait = deadline.saturating_duration_since(now);
    // Dataverse sends whole seconds; never 0, which would invite an immediate retry.
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

impl Limiter {
    /// Admits a request of `user` or says which limit it breaks. Every arrival counts toward the
    /// request limit, refused ones included, so a client that keeps hammering keeps the window
    /// full (Dataverse: "continued hammering lengthens Retry-After").
    pub fn admit(&mut self, limits: &Limits, user: &str, now: Instant) -> Result<(), Throttle> {
        let window = Duration::from_secs(limits.window_s.max(1));
        let w = self.users.entry(user.to_string()).or_default();
        while w
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            w.arrivals.pop_front();
        }
        while w
            .exec
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            w.exec.pop_front();
        }
        w.arrivals.push_back(now);
        let refuse = |breach, retry_after_secs| Throttle {
            breach,
            retry_after_secs,
        };
        let verdict = if w.in_flight >= limits.concurrent {
            Err(refuse(Breach::Concurrency, 1))
        } else if w.arrivals.len() as u64 > limits.requests {
            // Room again once enough of the oldest arrivals leave the window.
            let excess = w.arrivals.len() - limits.requests as usize;
            let oldest = w.arrivals[excess - 1];
            Err(refuse(
                Breach::Requests,
                whole_secs_until(oldest + window, now),
            ))
        } else if w.exec.iter().map(|(_, ms)| ms).sum::<u64>() > limits.exec_ms {
            let mut total: u64 = w.exec.iter().map(|(_, ms)| ms).sum();
            let mut until = now;
            for (t, ms) in &w.exec {
                total -= ms;
                until = *t + window;
                if total <= limits.exec_ms {
                    break;
                }
            }
            Err(refuse(Breach::ExecutionTime, whole_secs_until(until, now)))
        } else {
            w.in_flight += 1;
            Ok(())
        };
        if let Err(t) = &verdict {
            match t.breach {
                Breach::Requests => self.refused.requests += 1,
                Breach::ExecutionTime => self.refused.execution_time += 1,
                Breach::Concurrency => self.refused.concurrency += 1,
            }
        }
        verdict
    }

    /// Ends an admitted request, charging its execution time to the window.
    pub fn release(&mut self, user: &str, exec_ms: u64, now: Instant) {
        if let Some(w) = self.users.get_mut(user) {
            w.in_flight = w.in_flight.saturating_sub(1);
            if exec_ms > 0 {
                w.exec.push_back((now, exec_ms));
            }
        }
    }

    /// Requests left in the window and execution milliseconds left, for the diagnostic headers.
    pub fn remaining(&self, limits: &Limits, user: &str) -> (u64, u64) {
        let Some(w) = self.users.get(user) else {
            return (limits.requests, limits.exec_ms);
        };
        let used: u64 = w.exec.iter().map(|(_, ms)| ms).sum();
        (
            limits.requests.saturating_sub(w.arrivals.len() as u64),
            limits.exec_ms.saturating_sub(used),
        )
    }

    /// Forgets every window (after the limits change).
    pub fn reset_windows(&mut self) {
        for w in self.users.values_mut() {
            w.arrivals.clear();
            w.exec.clear();
        }
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Dataverse error of a breach, with the configured figures in the message.
pub fn error(limits: &Limits, breach: Breach) -> DvError {
    match breach {
        Breach::Requests => DvError::new(
            429,
            "0x80072322",
            format!(
                "Number of requests exceeded the limit of {} over time window of {} seconds.",
                limits.requests, limits.window_s
            ),
        ),
        Breach::ExecutionTime => DvError::new(
            429,
            "0x80072321",
            format!(
                "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                thousands(limits.exec_ms),
                limits.window_s
            ),
        ),
        Breach::Concurrency => DvError::new(
            429,
            "0x80072326",
            format!(
                "Number of concurrent requests exceeded the limit of {}.",
                limits.concurrent
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(requests: u64, exec_ms: u64, concurrent: u64) -> Limits {
        Limits {
            requests,
            exec_ms,
            window_s: 10,
            concurrent,
        }
    }

    #[test]
    fn request_limit_refuses_the_next_one_until_the_oldest_leaves_the_window() {
        let l = limits(2, 1_000_000, 50);
        let mut lim = Limiter::default();
        let t0 = Instant::now();
        assert!(lim.admit(&l, "u", t0).is_ok());
        lim.release("u", 0, t0);
        assert!(lim.admit(&l, "u", t0 + Duration::from_secs(3)).is_ok());
        lim.release("u", 0, t0);
        let t = lim.admit(&l, "u", t0 + Duration::from_secs(4)).unwrap_err();
        assert_eq!(t.breach, Breach::Requests);
        assert_eq!(t.retry_after_secs, 6);
        assert_eq!(lim.refused.requests, 1);
        // Other users have their own window.
        assert!(lim.admit(&l, "v", t0 + Duration::from_secs(4)).is_ok());
    }

    #[test]
    fn execution_time_is_charged_on_release() {
        let l = limits(100, 50, 50);
        let mut lim = Limiter::default();
        let t0 = Instant::now();
        lim.admit(&l, "u", t0).unwrap();
        lim.release("u", 60, t0 + Duration::from_secs(1));
        let t = lim.admit(&l, "u", t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!(t.breach, Breach::ExecutionTime);
        assert_eq!(t.retry_after_secs, 9);
    }

    #[test]
    fn concurrency_counts_requests_in_flight() {
        let l = limits(100, 1_000_000, 1);
        let mut lim = Limiter::default();
        let t0 = Instant::now();
        lim.admit(&l, "u", t0).unwrap();
        assert_eq!(
            lim.admit(&l, "u", t0).unwrap_err().breach,
            Breach::Concurrency
        );
        lim.release("u", 0, t0);
        assert!(lim.admit(&l, "u", t0).is_ok());
    }

    #[test]
    fn messages_carry_the_configured_figures() {
        let l = Limits::default();
        assert_eq!(
            error(&l, Breach::Requests).message,
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
        );
        assert!(error(&l, Breach::ExecutionTime).message.starts_with(
            "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds"
        ));
        assert_eq!(error(&l, Breach::Concurrency).code, "0x80072326");
    }
}
