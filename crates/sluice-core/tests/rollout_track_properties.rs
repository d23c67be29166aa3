//! Property tests of the orchestrator's decisions over host tracks: seeded random rollouts
//! (engine statuses, track phases, recorded versions, an abort or a breaker trip) and the
//! decisions the server asks of the core. After every draw: a rollout never ends while a host
//! is being verified, a host whose rollback failed is never queued for one again, a rollback
//! returns a host exactly to its recorded `before`, and a runtime stored in the first shape
//! reads as one phase per host and writes back unchanged.

// A test binary: its helpers fail loudly on purpose, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use sluice_core::rollout::{
    Action, Batch, Bookkeeping, BreakerScope, BreakerThresholds, BreakerTrip, HostRun, HostStatus,
    HostTrack, OnTrip, Plan, Ring, RollbackPlan, RolloutOutcome, RolloutPolicy, RolloutState, Size,
    TrackPhase, hosts_to_roll_back, outcome, plan_rollback,
};

/// SplitMix64: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const STATUSES: [HostStatus; 6] = [
    HostStatus::Pending,
    HostStatus::Running,
    HostStatus::Succeeded,
    HostStatus::Failed,
    HostStatus::RolledBack,
    HostStatus::PendingReboot,
];

fn at(seconds: i64) -> Timestamp {
    "2026-06-01T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(seconds)
}

fn targets() -> BTreeMap<String, String> {
    [("openssl", "3.0.2-2"), ("curl", "8.0-2")]
        .iter()
        .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
        .collect()
}

fn phase(rng: &mut Rng, host: &str) -> TrackPhase {
    match rng.below(6) {
        0 => TrackPhase::Updating,
        1 => TrackPhase::Verifying {
            job_ended: at(rng.below(100) as i64),
            asked: rng.chance(50),
        },
        2 => TrackPhase::AwaitingReboot {
            last_asked: at(rng.below(100) as i64),
        },
        3 => TrackPhase::RollingBack {
            rollback_job: format!("RO-1-{host}-r1"),
        },
        4 => TrackPhase::RollbackFailed {
            rollback_job: rng.chance(50).then(|| format!("RO-1-{host}-r1")),
        },
        _ => TrackPhase::Cancelled,
    }
}

/// A random rollout of `n` hosts in one ring.
fn draw(rng: &mut Rng) -> (Plan, RolloutState, Bookkeeping, Vec<Action>) {
    let n = 1 + rng.below(8) as usize;
    let hosts: Vec<String> = (0..n).map(|i| format!("web{i}")).collect();
    let plan = Plan {
        rings: vec![Ring {
            environment: "prod".into(),
            batches: vec![Batch {
                canary: false,
                hosts: hosts.clone(),
            }],
        }],
        hosts: BTreeMap::new(),
        budgets: BTreeMap::new(),
        policy: RolloutPolicy {
            ring_order: vec!["prod".into()],
            canary: None,
            batch: Size::Percent(100),
            max_concurrency: 10,
            breaker: BreakerThresholds {
                per_batch: Size::Count(1),
                per_ring: Size::Percent(10),
            },
            on_trip: if rng.chance(50) {
                OnTrip::RollbackBatch
            } else {
                OnTrip::Pause
            },
            soak: SignedDuration::ZERO,
            manual_gate: false,
            follow_the_sun: false,
        },
        implementation: None,
        detection_window: SignedDuration::ZERO,
    };
    let mut state = RolloutState {
        hosts: BTreeMap::new(),
        ring: 0,
        operator_pause: None,
        alerts: BTreeSet::new(),
        firing: BTreeSet::new(),
        breaker: None,
        aborted: None,
        approved_gates: BTreeSet::new(),
    };
    let mut book = Bookkeeping::default();
    for host in &hosts {
        let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
        state.hosts.insert(
            host.clone(),
            HostRun {
                status,
                failed: status == HostStatus::Failed,
                finished_at: None,
            },
        );
        if status != HostStatus::Pending {
            let before = rng.chance(80).then(|| {
                let mut versions = BTreeMap::new();
                versions.insert("openssl".to_owned(), format!("3.0.2-{}", rng.below(2)));
                if rng.chance(50) {
                    versions.insert("curl".to_owned(), "8.0-1".to_owned());
                }
                // A package outside the bundle is never part of a rollback.
                versions.insert("zlib".to_owned(), "1.2".to_owned());
                versions
            });
            book.hosts.insert(
                host.clone(),
                HostTrack {
                    attempts: 1 + rng.below(3) as u32,
                    job: Some(format!("RO-1-{host}-u1")),
                    before,
                    phase: phase(rng, host),
                    note: None,
                },
            );
        }
    }
    if rng.chance(30) {
        state.aborted = Some("stop".into());
        if rng.chance(50) {
            book.rollback_requested = Some("bad build".into());
        }
    } else if rng.chance(40) {
        state.breaker = Some(BreakerTrip {
            scope: BreakerScope::Batch { ring: 0, batch: 0 },
            failed: 1,
            threshold: 1,
            at: at(0),
        });
    }
    let actions = if rng.chance(30) {
        vec![Action::RollBack(hosts.clone())]
    } else {
        Vec::new()
    };
    (plan, state, book, actions)
}

#[test]
fn a_rollout_never_ends_while_a_host_is_being_verified() {
    let mut rng = Rng(12);
    let mut ended = 0;
    for _ in 0..5_000 {
        let (plan, state, book, actions) = draw(&mut rng);
        let end = outcome(&plan, &state, &book, &actions, false);
        if book.any_verifying() {
            assert_eq!(end, None, "{book:?}");
        }
        if let Some(end) = &end {
            ended += 1;
            // Completed only when every host succeeded; rolled back never with a failed
            // rollback (that is `failed`).
            if *end == RolloutOutcome::Completed {
                assert!(
                    state
                        .hosts
                        .values()
                        .all(|h| h.status == HostStatus::Succeeded)
                );
            }
            if let RolloutOutcome::RolledBack(_) = end {
                assert!(!book.any_rollback_failed(), "{book:?}");
            }
            assert!(
                ["completed", "rolled-back", "aborted", "failed"].contains(&end.as_str()),
                "{end:?}"
            );
        }
        // Outstanding jobs keep every rollout open.
        assert_eq!(outcome(&plan, &state, &book, &actions, true), None);
    }
    assert!(ended > 100, "the draws should end some rollouts: {ended}");
}

#[test]
fn a_host_whose_rollback_failed_is_never_queued_again_and_a_rollback_returns_to_before() {
    let mut rng = Rng(7);
    let targets = targets();
    for _ in 0..5_000 {
        let (_, state, book, _) = draw(&mut rng);
        for host in state.hosts.keys() {
            let live = rng.chance(90);
            let decided = plan_rollback(&book, host, live, &targets);
            match book.host(host).map(|t| &t.phase) {
                Some(TrackPhase::RollbackFailed { .. } | TrackPhase::RollingBack { .. }) => {
                    assert_eq!(decided, RollbackPlan::AlreadyDecided, "{host}: {book:?}");
                }
                _ => match decided {
                    RollbackPlan::Queue(back) => {
                        assert!(live);
                        let before = book.host(host).and_then(|t| t.before.clone()).unwrap();
                        let expected: BTreeMap<String, String> = before
                            .into_iter()
                            .filter(|(p, _)| targets.contains_key(p))
                            .collect();
                        let got: BTreeMap<String, String> =
                            back.into_iter().map(|t| (t.package, t.version)).collect();
                        assert_eq!(got, expected, "{host}");
                    }
                    RollbackPlan::Impossible { .. } => {
                        assert!(!live || book.host(host).and_then(|t| t.before.as_ref()).is_none());
                    }
                    RollbackPlan::AlreadyDecided => panic!("{host}: nothing was decided"),
                },
            }
        }
        // An operator's rollback never takes a host whose update was cancelled, nor one the
        // rollout did not change.
        for host in hosts_to_roll_back(&state, &book) {
            assert!(!book.is_cancelled(&host));
            assert!(matches!(
                state.status(&host),
                HostStatus::Succeeded | HostStatus::Failed | HostStatus::PendingReboot
            ));
        }
    }
}

#[test]
fn a_runtime_in_the_first_shape_reads_as_one_phase_per_host_and_writes_back_the_same() {
    let mut rng = Rng(3);
    for _ in 0..2_000 {
        let hosts: Vec<String> = (0..1 + rng.below(6)).map(|i| format!("web{i}")).collect();
        let mut old = json!({
            "attempts": {}, "jobs": {}, "before": {}, "rollback_jobs": {},
            "rollback_failed": [], "verifying": {}, "inventory_asked": [],
            "awaiting_reboot": {}, "cancelled": [], "notes": {}, "breaker_trips": 0,
            "rollbacks": 0, "regressions": [], "compared": [], "lowered": []
        });
        for host in &hosts {
            if rng.chance(70) {
                old["attempts"][host] = json!(1 + rng.below(3));
                old["jobs"][host] = json!(format!("RO-1-{host}-u1"));
            }
            // The overlaps the first code made: a verified host may have been asked; a
            // rollback job stays once queued, and failing adds the host to rollback_failed.
            match rng.below(6) {
                0 => {
                    old["verifying"][host] = json!(at(5).to_string());
                    if rng.chance(50) {
                        old["inventory_asked"]
                            .as_array_mut()
                            .unwrap()
                            .push(json!(host));
                    }
                }
                1 => old["awaiting_reboot"][host] = json!(at(9).to_string()),
                2 => old["rollback_jobs"][host] = json!(format!("RO-1-{host}-r1")),
                3 => {
                    old["rollback_jobs"][host] = json!(if rng.chance(50) {
                        String::new()
                    } else {
                        format!("RO-1-{host}-r1")
                    });
                    old["rollback_failed"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!(host));
                }
                4 => old["cancelled"].as_array_mut().unwrap().push(json!(host)),
                _ => {}
            }
            if rng.chance(30) {
                old["notes"][host] = json!("a note");
            }
        }
        let book: Bookkeeping = serde_json::from_value(old.clone()).unwrap();
        for host in &hosts {
            let verifying = old["verifying"].get(host).is_some();
            let reboot = old["awaiting_reboot"].get(host).is_some();
            let failed = old["rollback_failed"]
                .as_array()
                .unwrap()
                .contains(&json!(host));
            let rollback = old["rollback_jobs"]
                .get(host)
                .and_then(|j| j.as_str())
                .filter(|j| !j.is_empty());
            assert_eq!(book.is_verifying(host), verifying, "{host}: {old}");
            assert_eq!(book.rollback_failed(host), failed, "{host}: {old}");
            assert_eq!(book.rollback_job(host), rollback, "{host}: {old}");
            assert_eq!(
                matches!(book.phase(host), TrackPhase::AwaitingReboot { .. }),
                reboot
            );
            assert_eq!(
                book.job(host),
                old["jobs"].get(host).and_then(|j| j.as_str())
            );
            assert_eq!(
                book.attempt(host) as u64,
                old["attempts"]
                    .get(host)
                    .and_then(|a| a.as_u64())
                    .unwrap_or(1)
            );
        }
        let written = serde_json::to_value(&book).unwrap();
        let again: Bookkeeping = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(again, book);
        assert_eq!(serde_json::to_value(&again).unwrap(), written);
    }
}
