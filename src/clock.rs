//! The one source of "now" for the engine and the API, behind a trait so that every reader
//! of time goes through one seam.

use crate::domain::Millis;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;

    /// Microseconds since the epoch: the engine waits for a due time with this, since a
    /// wait computed from whole milliseconds can be up to one late for nothing.
    fn now_us(&self) -> i64 {
        self.now_ms() * 1_000
    }
}

/// Wall-clock time. Due times are wall-clock instants, so this is what production uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        jiff::Timestamp::now().as_millisecond()
    }

    fn now_us(&self) -> i64 {
        jiff::Timestamp::now().as_microsecond()
    }
}
