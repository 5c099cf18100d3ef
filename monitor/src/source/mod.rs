//! Where log lines come from: the node container through the Docker Engine API
//! ([`docker`]), a plain log file that is tailed ([`file`]), or files imported once
//! ([`import`]). Every source feeds the same [`crate::ingest::Ingest`] path.
//!
//! Only this module names bollard, and it only makes read-only Docker calls
//! (version, list, inspect, logs, events).

pub mod decode;
pub mod demo;
pub mod docker;
pub mod file;
pub mod import;

use std::time::Duration;

use serde::Serialize;

/// What a live source is doing, for the status API and the logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    /// `docker`, `file` or `demo`.
    pub kind: &'static str,
    pub connection: Connection,
    pub container: ContainerState,
    /// The last problem, in one line, if any.
    pub last_error: Option<String>,
}

impl SourceStatus {
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            connection: Connection::Connecting,
            container: ContainerState::Unknown,
            last_error: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    Connecting,
    Connected { version: String },
    Unreachable { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ContainerState {
    Unknown,
    /// No container with the configured name exists.
    Missing {
        name: String,
    },
    Running {
        id: String,
        name: String,
    },
    /// Created but never started (`docker create`, or a `docker run` that failed before
    /// the start): there is no exit code to show.
    Created {
        id: String,
        name: String,
    },
    Stopped {
        id: String,
        name: String,
        exit_code: Option<i64>,
    },
}

/// Capped exponential backoff: 250 ms, 500 ms, 1 s, ... up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        self.attempt = self.attempt.saturating_add(1);
        self.base.saturating_mul(factor).min(self.max)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
        let got: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![250, 500, 1000, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }

    #[test]
    fn backoff_never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
    }
}
