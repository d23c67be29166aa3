//! The time governance decisions are made at: vote times, escalation and retrospective
//! deadlines, deferral expiry. Handlers take `now` from the [`Clock`] in the shared state, never
//! from the system directly, so tests can move time.
//!
//! - [`Clock::system`]: the system clock, always in production.
//! - [`Clock::starting_at`]: starts at a given time and runs at real speed. Only from the
//!   `fake_now` setting (`SLUICE_FAKE_NOW`), for end-to-end tests and demos: the server logs a
//!   warning and writes a `clock.fake` event to the audit chain when it starts with one, so a
//!   period judged on a fake clock is visible in the record. No route can set or move it.
//! - [`Clock::manual`]: stands still until its [`ClockHand`] moves it; for in-process tests. The
//!   hand is the only way to move it, and only the code that made the clock holds one.
//!
//! Token expiry, audit event times and findings' due dates stay on the system clock.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

/// Where `now` comes from.
#[derive(Clone, Debug)]
pub struct Clock(Source);

#[derive(Clone, Debug)]
enum Source {
    System,
    Offset { start: Timestamp, since: Instant },
    Manual(Arc<Mutex<Timestamp>>),
}

/// Moves a manual clock.
#[derive(Clone, Debug)]
pub struct ClockHand(Arc<Mutex<Timestamp>>);

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that reads `start` now and runs forward at real speed.
    pub fn starting_at(start: Timestamp) -> Self {
        Self(Source::Offset {
            start,
            since: Instant::now(),
        })
    }

    /// A clock that stands at `start` until its hand moves it.
    pub fn manual(start: Timestamp) -> (Self, ClockHand) {
        let time = Arc::new(Mutex::new(start));
        (Self(Source::Manual(time.clone())), ClockHand(time))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &self.0 {
            Source::System => Timestamp::now(),
            Source::Offset { start, since } => {
                let elapsed = SignedDuration::try_from(since.elapsed()).unwrap_or_default();
                start.checked_add(elapsed).unwrap_or(*start)
            }
            Source::Manual(time) => *time.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Whether this is anything but the system clock.
    pub fn is_fake(&self) -> bool {
        !matches!(self.0, Source::System)
    }
}

impl ClockHand {
    /// Sets the time.
    pub fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Moves the time forward (or back, with a negative duration).
    pub fn advance(&self, by: SignedDuration) {
        let mut time = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *time = time.checked_add(by).unwrap_or(*time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hand_moves_a_manual_clock() {
        let start: Timestamp = "2026-11-02T09:00:00Z".parse().unwrap();
        let (clock, hand) = Clock::manual(start);
        assert_eq!(clock.now(), start);
        hand.advance(SignedDuration::from_hours(49));
        assert_eq!(clock.now(), "2026-11-04T10:00:00Z".parse().unwrap());
        assert!(clock.is_fake());
        assert!(!Clock::system().is_fake());
        let running = Clock::starting_at(start);
        assert!(running.now() >= start);
        assert!(running.now() < "2026-11-02T09:10:00Z".parse().unwrap());
    }
}
