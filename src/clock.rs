//! The one source of "now" for the engine and the API, behind a trait so that every reader
//! of time goes through one seam.

use crate::domain::Millis;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

/// Wall-clock time. Due times are wall-clock instants, so this is what production uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        jiff::Timestamp::now().as_millisecond()
    }
}
