//! Sluice's domain, pure.
//!
//! Architecture invariant: nothing in this crate performs I/O, spawns threads for I/O, reads the
//! clock or touches a database. Callers hand in bytes, parsed state and the current time; the
//! crate hands back decisions. That keeps every decision testable with fixtures and a fake clock.

pub mod cvss;
pub mod version;
