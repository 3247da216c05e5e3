//! The agent's one source of time, so tests can run it on a controlled clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reads the current time. Every clock read of the agent goes through this trait.
pub trait Clock: Send + Sync {
    /// Returns the time in milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;

    /// Returns the time in whole seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_millis() / 1_000
    }
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64
    }
}

/// A clock that starts at a chosen Unix time and advances with tokio's clock, so a test that
/// pauses tokio's time (`tokio::time::pause`) runs a 24-hour rollout in milliseconds.
pub struct TokioClock {
    start_millis: u64,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// Creates a clock that reads `start_millis` (milliseconds since the Unix epoch) now.
    pub fn starting_at(start_millis: u64) -> Self {
        TokioClock {
            start_millis,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_millis(&self) -> u64 {
        self.start_millis + self.started.elapsed().as_millis() as u64
    }
}
