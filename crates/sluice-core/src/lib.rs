//! Sluice's domain, pure.
//!
//! Architecture invariant: nothing in this crate performs I/O, reads the clock or touches a
//! database. Callers hand in bytes, parsed state and the current date; the crate hands back
//! decisions. That keeps every decision testable with fixtures and a fake clock.

pub mod access;
pub mod advisory;
pub mod agent_auth;
pub mod alerting;
pub mod asset;
pub mod audit;
pub mod calendar;
pub mod change;
pub mod cmdb;
pub mod cvss;
pub mod deferral;
pub mod ecosystem;
pub mod finding;
pub mod inventory;
pub mod job;
pub mod matching;
pub mod priority;
pub mod rollout;
pub mod text;
pub mod version;
