//! Progress on stderr: on a terminal one line redrawn in place (users, rate,
//! and the share done with an ETA when the source knows its size); otherwise
//! a plain line at most every 10 seconds, for logs.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a non-terminal stderr gets a line.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);
/// How often the terminal line is redrawn.
const TTY_INTERVAL: Duration = Duration::from_millis(200);

/// A progress reporter for one run.
pub struct Progress {
    what: &'static str,
    tty: bool,
    started: Instant,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// A reporter for `what` ("backfill", "reconcile"); silent when `enabled` is false.
    pub fn new(what: &'static str, enabled: bool) -> Self {
        Self {
            what,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
            enabled,
        }
    }

    /// Reports `users` done so far, and the share done when known.
    pub fn update(&mut self, users: u64, fraction: Option<f64>) {
        if !self.enabled {
            return;
        }
        let interval = if self.tty {
            TTY_INTERVAL
        } else {
            PLAIN_INTERVAL
        };
        if self.last.is_some_and(|last| last.elapsed() < interval) {
            return;
        }
        self.last = Some(Instant::now());
        let line = describe(self.what, users, self.started.elapsed(), fraction);
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let bar = bar(fraction);
            let _ = write!(stderr, "\r\x1b[2K{bar}{line}");
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }

    /// Ends the terminal line.
    pub fn finish(&mut self, users: u64, fraction: Option<f64>) {
        if !self.enabled {
            return;
        }
        self.last = None;
        self.update(users, fraction);
        if self.tty {
            eprintln!();
        }
    }
}

fn bar(fraction: Option<f64>) -> String {
    let Some(fraction) = fraction else {
        return String::new();
    };
    let filled = (fraction.clamp(0.0, 1.0) * 30.0).round() as usize;
    format!("[{}{}] ", "#".repeat(filled), "-".repeat(30 - filled))
}

/// `backfill: 12000 users, 850.0 users/s, 40% done, ETA 21s`.
pub fn describe(what: &str, users: u64, elapsed: Duration, fraction: Option<f64>) -> String {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = users as f64 / seconds;
    let mut line = format!("{what}: {users} users, {rate:.1} users/s");
    if let Some(fraction) = fraction.filter(|f| *f > 0.0) {
        let left = seconds * (1.0 - fraction.min(1.0)) / fraction;
        line.push_str(&format!(
            ", {:.0}% done, ETA {:.0}s",
            fraction * 100.0,
            left
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_the_rate_and_an_eta_when_the_share_is_known() {
        let line = describe("backfill", 500, Duration::from_secs(10), Some(0.25));
        assert_eq!(line, "backfill: 500 users, 50.0 users/s, 25% done, ETA 30s");
    }

    #[test]
    fn without_a_known_size_there_is_no_eta() {
        let line = describe("backfill", 100, Duration::from_secs(2), None);
        assert_eq!(line, "backfill: 100 users, 50.0 users/s");
    }
}
