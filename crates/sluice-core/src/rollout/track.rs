//! The orchestrator's bookkeeping beside the engine's state: per host, what the server is
//! waiting for (a fresh inventory, a reboot, a rollback job), and per rollout, what it already
//! recorded (breaker trips, regressions, compared rings, lowered HAProxy servers).
//!
//! The engine's [`HostStatus`](super::HostStatus) says where a host stands for the rollout;
//! a [`HostTrack`] says what the server still has to do about it. Each host is in exactly one
//! [`TrackPhase`], so a host cannot be verified and rolled back at once. Never does I/O.
//!
//! Stored as JSON. A rollout stored before host tracks existed (the flat maps and sets of the
//! first `Runtime`) is read through [`StoredBookkeeping`] and converted.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What the server still has to do about one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TrackPhase {
    /// Nothing beside the engine's status: its update job is queued or running, or its result
    /// is folded in for good.
    Updating,
    /// Its job succeeded; a fresh inventory (received after `job_ended`) must confirm the
    /// versions. `asked`: the server asked the agent for one.
    Verifying {
        /// When the job ended (the store's time of the report).
        job_ended: Timestamp,
        /// Whether the agent was asked for an inventory.
        asked: bool,
    },
    /// Verified, but a reboot is pending: waits for an inventory that says it is not.
    AwaitingReboot {
        /// When the agent was last asked (or the reboot was first seen).
        last_asked: Timestamp,
    },
    /// A rollback job was queued for it (its report moves it on or to `RollbackFailed`).
    RollingBack {
        /// The rollback job.
        rollback_job: String,
    },
    /// It could not be rolled back: never queued for a rollback again (until a retry).
    RollbackFailed {
        /// The rollback job that failed, if one could be queued at all.
        rollback_job: Option<String>,
    },
    /// Its update job was cancelled before an agent took it (after an abort).
    Cancelled,
}

/// One host's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTrack {
    /// Update attempts (a retry makes another); job ids and idempotency keys carry it.
    pub attempts: u32,
    /// Its current update job.
    #[serde(default)]
    pub job: Option<String>,
    /// Versions of the bundle's packages before its first update: what a rollback returns to.
    #[serde(default)]
    pub before: Option<BTreeMap<String, String>>,
    /// What the server waits for.
    #[serde(flatten)]
    pub phase: TrackPhase,
    /// The last word on it (a failed step, a verification), for people.
    #[serde(default)]
    pub note: Option<String>,
}

impl Default for HostTrack {
    fn default() -> Self {
        Self {
            attempts: 1,
            job: None,
            before: None,
            phase: TrackPhase::Updating,
            note: None,
        }
    }
}

impl HostTrack {
    /// The rollback job queued for it, if any (running, done or failed).
    pub fn rollback_job(&self) -> Option<&str> {
        match &self.phase {
            TrackPhase::RollingBack { rollback_job: job } => Some(job),
            TrackPhase::RollbackFailed { rollback_job: job } => job.as_deref(),
            _ => None,
        }
    }

    /// Whether a rollback was ever decided for it: it is not queued again.
    pub fn rollback_decided(&self) -> bool {
        matches!(
            self.phase,
            TrackPhase::RollingBack { .. } | TrackPhase::RollbackFailed { .. }
        )
    }
}

/// The orchestrator's bookkeeping for one rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredBookkeeping")]
pub struct Bookkeeping {
    /// Hosts the server has done something about, by name.
    pub hosts: BTreeMap<String, HostTrack>,
    /// Breaker trips so far.
    pub breaker_trips: u32,
    /// When the trip last recorded happened (the engine's trip time).
    pub trip_recorded: Option<Timestamp>,
    /// Hosts restored to their earlier versions (by their own job or a rollback job).
    pub rollbacks: u32,
    /// Why nothing starts, when the engine said wait.
    pub waiting: Option<String>,
    /// When waiting may end.
    pub wait_until: Option<Timestamp>,
    /// The last pause recorded (so a pause is logged once).
    pub last_pause: Option<String>,
    /// An operator asked to roll the whole rollout back: why.
    pub rollback_requested: Option<String>,
    /// Latency regressions seen against the pre-update baseline.
    pub regressions: Vec<String>,
    /// Rings already compared with their baseline.
    pub compared: BTreeSet<usize>,
    /// HAProxy servers whose weight is lowered now.
    pub lowered: BTreeSet<String>,
    /// When the Prometheus query last ran.
    pub prometheus_at: Option<Timestamp>,
}

impl Bookkeeping {
    /// The host's track, if the server did anything about it.
    pub fn host(&self, host: &str) -> Option<&HostTrack> {
        self.hosts.get(host)
    }

    /// The host's track, made on first use.
    pub fn host_mut(&mut self, host: &str) -> &mut HostTrack {
        self.hosts.entry(host.to_owned()).or_default()
    }

    /// Its phase (`Updating` for a host never touched).
    pub fn phase(&self, host: &str) -> &TrackPhase {
        self.hosts
            .get(host)
            .map_or(&TrackPhase::Updating, |t| &t.phase)
    }

    /// Its current update job.
    pub fn job(&self, host: &str) -> Option<&str> {
        self.host(host).and_then(|t| t.job.as_deref())
    }

    /// Its note.
    pub fn note(&self, host: &str) -> Option<&str> {
        self.host(host).and_then(|t| t.note.as_deref())
    }

    /// Sets its note.
    pub fn set_note(&mut self, host: &str, note: impl Into<String>) {
        self.host_mut(host).note = Some(note.into());
    }

    /// Its rollback job, if one was queued.
    pub fn rollback_job(&self, host: &str) -> Option<&str> {
        self.host(host).and_then(HostTrack::rollback_job)
    }

    /// Its update attempt (1 until a retry).
    pub fn attempt(&self, host: &str) -> u32 {
        self.host(host).map_or(1, |t| t.attempts)
    }

    /// Waiting for a fresh inventory to confirm its versions.
    pub fn is_verifying(&self, host: &str) -> bool {
        matches!(self.phase(host), TrackPhase::Verifying { .. })
    }

    /// Its job was cancelled before an agent took it.
    pub fn is_cancelled(&self, host: &str) -> bool {
        matches!(self.phase(host), TrackPhase::Cancelled)
    }

    /// It could not be rolled back.
    pub fn rollback_failed(&self, host: &str) -> bool {
        matches!(self.phase(host), TrackPhase::RollbackFailed { .. })
    }

    /// Whether any host waits for verification.
    pub fn any_verifying(&self) -> bool {
        self.hosts
            .values()
            .any(|t| matches!(t.phase, TrackPhase::Verifying { .. }))
    }

    /// Whether any host could not be rolled back.
    pub fn any_rollback_failed(&self) -> bool {
        self.hosts
            .values()
            .any(|t| matches!(t.phase, TrackPhase::RollbackFailed { .. }))
    }

    /// A person retries the host: another attempt, its rollback and note forgotten.
    pub fn retry(&mut self, host: &str) {
        let track = self.hosts.entry(host.to_owned()).or_default();
        track.attempts += 1;
        if track.rollback_decided() {
            track.phase = TrackPhase::Updating;
        }
        track.note = None;
    }
}

/// The bookkeeping as stored: the current shape (`hosts`) and, read only, the flat maps and
/// sets of the first shape. Both may be present; what `hosts` says wins.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StoredBookkeeping {
    hosts: BTreeMap<String, HostTrack>,
    breaker_trips: u32,
    trip_recorded: Option<Timestamp>,
    rollbacks: u32,
    waiting: Option<String>,
    wait_until: Option<Timestamp>,
    last_pause: Option<String>,
    rollback_requested: Option<String>,
    regressions: Vec<String>,
    compared: BTreeSet<usize>,
    lowered: BTreeSet<String>,
    prometheus_at: Option<Timestamp>,
    // The first shape.
    attempts: BTreeMap<String, u32>,
    jobs: BTreeMap<String, String>,
    before: BTreeMap<String, BTreeMap<String, String>>,
    rollback_jobs: BTreeMap<String, String>,
    rollback_failed: BTreeSet<String>,
    verifying: BTreeMap<String, Timestamp>,
    inventory_asked: BTreeSet<String>,
    awaiting_reboot: BTreeMap<String, Timestamp>,
    cancelled: BTreeSet<String>,
    notes: BTreeMap<String, String>,
}

impl From<StoredBookkeeping> for Bookkeeping {
    fn from(stored: StoredBookkeeping) -> Self {
        let mut hosts: BTreeMap<String, HostTrack> = BTreeMap::new();
        let names: BTreeSet<&String> = stored
            .attempts
            .keys()
            .chain(stored.jobs.keys())
            .chain(stored.before.keys())
            .chain(stored.rollback_jobs.keys())
            .chain(&stored.rollback_failed)
            .chain(stored.verifying.keys())
            .chain(stored.awaiting_reboot.keys())
            .chain(&stored.cancelled)
            .chain(stored.notes.keys())
            .collect();
        for name in names {
            let rollback_job = stored
                .rollback_jobs
                .get(name)
                .filter(|j| !j.is_empty())
                .cloned();
            // The first shape allowed overlaps its code never made but one: a host awaiting
            // a reboot when a rollback was queued. The rollback wins, as the newest decision.
            let phase = if stored.rollback_failed.contains(name) {
                TrackPhase::RollbackFailed { rollback_job }
            } else if stored.rollback_jobs.contains_key(name) {
                match rollback_job {
                    Some(job) => TrackPhase::RollingBack { rollback_job: job },
                    None => TrackPhase::RollbackFailed { rollback_job: None },
                }
            } else if let Some(job_ended) = stored.verifying.get(name) {
                TrackPhase::Verifying {
                    job_ended: *job_ended,
                    asked: stored.inventory_asked.contains(name),
                }
            } else if let Some(last_asked) = stored.awaiting_reboot.get(name) {
                TrackPhase::AwaitingReboot {
                    last_asked: *last_asked,
                }
            } else if stored.cancelled.contains(name) {
                TrackPhase::Cancelled
            } else {
                TrackPhase::Updating
            };
            hosts.insert(
                name.clone(),
                HostTrack {
                    attempts: stored.attempts.get(name).copied().unwrap_or(1),
                    job: stored.jobs.get(name).cloned(),
                    before: stored.before.get(name).cloned(),
                    phase,
                    note: stored.notes.get(name).cloned(),
                },
            );
        }
        hosts.extend(stored.hosts);
        Bookkeeping {
            hosts,
            breaker_trips: stored.breaker_trips,
            trip_recorded: stored.trip_recorded,
            rollbacks: stored.rollbacks,
            waiting: stored.waiting,
            wait_until: stored.wait_until,
            last_pause: stored.last_pause,
            rollback_requested: stored.rollback_requested,
            regressions: stored.regressions,
            compared: stored.compared,
            lowered: stored.lowered,
            prometheus_at: stored.prometheus_at,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A runtime as the first shape stored it (taken from a rollout mid-way: one host verified,
    /// one verifying, one awaiting a reboot, one rolled back, one whose rollback failed, one
    /// cancelled).
    const FIRST_SHAPE: &str = r#"{
        "attempts": {"web1": 1, "web2": 1, "web3": 2, "web4": 1, "web5": 1, "web6": 1},
        "jobs": {"web1": "RO-1-web1-u1", "web2": "RO-1-web2-u1", "web3": "RO-1-web3-u2",
                 "web4": "RO-1-web4-u1", "web5": "RO-1-web5-u1", "web6": "RO-1-web6-u1"},
        "before": {"web1": {"openssl": "3.0.2-1"}, "web4": {"openssl": "3.0.2-1"}},
        "rollback_jobs": {"web4": "RO-1-web4-r1", "web5": ""},
        "rollback_failed": ["web5"],
        "verifying": {"web2": "2026-06-01T00:00:05Z"},
        "inventory_asked": ["web2"],
        "awaiting_reboot": {"web3": "2026-06-01T00:01:00Z"},
        "cancelled": ["web6"],
        "notes": {"web5": "cannot roll back: no enrolled agent (revoked?)"},
        "breaker_trips": 1,
        "trip_recorded": "2026-06-01T00:02:00Z",
        "rollbacks": 1,
        "waiting": "outside every window",
        "wait_until": "2026-06-01T22:00:00Z",
        "last_pause": null,
        "rollback_requested": "bad build",
        "regressions": ["web1: http probe 10.0 ms → 31.0 ms"],
        "compared": [0],
        "lowered": ["web1"],
        "prometheus_at": "2026-06-01T00:03:00Z"
    }"#;

    #[test]
    fn a_runtime_stored_in_the_first_shape_reads_as_host_tracks() {
        let book: Bookkeeping = serde_json::from_str(FIRST_SHAPE).unwrap();
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        assert_eq!(book.phase("web1"), &TrackPhase::Updating);
        assert_eq!(
            book.host("web1").unwrap().before,
            Some([("openssl".to_owned(), "3.0.2-1".to_owned())].into())
        );
        assert_eq!(
            book.phase("web2"),
            &TrackPhase::Verifying {
                job_ended: at("2026-06-01T00:00:05Z"),
                asked: true
            }
        );
        assert_eq!(
            book.phase("web3"),
            &TrackPhase::AwaitingReboot {
                last_asked: at("2026-06-01T00:01:00Z")
            }
        );
        assert_eq!(book.attempt("web3"), 2);
        assert_eq!(book.job("web3"), Some("RO-1-web3-u2"));
        assert_eq!(
            book.phase("web4"),
            &TrackPhase::RollingBack {
                rollback_job: "RO-1-web4-r1".into()
            }
        );
        assert_eq!(book.rollback_job("web4"), Some("RO-1-web4-r1"));
        assert_eq!(
            book.phase("web5"),
            &TrackPhase::RollbackFailed { rollback_job: None }
        );
        assert_eq!(book.rollback_job("web5"), None);
        assert_eq!(
            book.note("web5"),
            Some("cannot roll back: no enrolled agent (revoked?)")
        );
        assert!(book.is_cancelled("web6"));
        assert_eq!(book.attempt("nobody"), 1);
        assert_eq!(book.breaker_trips, 1);
        assert_eq!(book.rollbacks, 1);
        assert_eq!(book.wait_until, Some(at("2026-06-01T22:00:00Z")));
        assert_eq!(book.rollback_requested.as_deref(), Some("bad build"));
        assert_eq!(book.compared, [0].into());
        assert_eq!(book.lowered, ["web1".to_owned()].into());

        // Written in the current shape, it reads back the same.
        let written = serde_json::to_value(&book).unwrap();
        assert!(written.get("verifying").is_none());
        assert_eq!(
            written["wait_until"],
            serde_json::json!("2026-06-01T22:00:00Z")
        );
        let again: Bookkeeping = serde_json::from_value(written).unwrap();
        assert_eq!(again, book);
    }

    #[test]
    fn an_empty_runtime_reads_as_empty_bookkeeping() {
        let book: Bookkeeping = serde_json::from_str("{}").unwrap();
        assert_eq!(book, Bookkeeping::default());
    }

    #[test]
    fn a_retry_forgets_the_rollback_and_the_note_and_counts_an_attempt() {
        let mut book = Bookkeeping::default();
        book.host_mut("web1").phase = TrackPhase::RollbackFailed {
            rollback_job: Some("r1".into()),
        };
        book.set_note("web1", "rollback failed");
        book.retry("web1");
        assert_eq!(book.attempt("web1"), 2);
        assert_eq!(book.phase("web1"), &TrackPhase::Updating);
        assert_eq!(book.note("web1"), None);
        book.retry("web2");
        assert_eq!(book.attempt("web2"), 2);
    }
}
