//! When the orchestrator's side work is due: the ring baselines to compare, the Prometheus
//! query, and the HAProxy weights of canary hosts to lower or restore.
//!
//! Pure decisions over the plan, the engine's state and the [`Bookkeeping`]; the server does
//! the comparison's reads, the query and the HAProxy calls, and records what it did in the
//! bookkeeping (`compared`, `prometheus_at`, `lowered`).

use jiff::{SignedDuration, Timestamp};

use super::engine::{Action, HostStatus, RolloutPhase, RolloutState};
use super::plan::Plan;
use super::track::Bookkeeping;

/// The rings whose comparison with their pre-update baseline is due: each ring the rollout
/// moved past (every ring, once it completed), once.
pub fn rings_due_for_baseline(plan: &Plan, state: &RolloutState, book: &Bookkeeping) -> Vec<usize> {
    let completed = state.phase() == RolloutPhase::Completed;
    (0..plan.rings.len())
        .filter(|r| (*r < state.ring || completed) && !book.compared.contains(r))
        .collect()
}

/// Whether the Prometheus query is due at `now` (the governance clock): it never ran, or
/// `interval_secs` (at least one) passed since it last did.
pub fn prometheus_due(last: Option<Timestamp>, interval_secs: u64, now: Timestamp) -> bool {
    let interval = SignedDuration::from_secs(i64::try_from(interval_secs.max(1)).unwrap_or(15));
    last.is_none_or(|at| now.duration_since(at) >= interval)
}

/// The canary hosts the engine's `actions` start whose HAProxy weight is not lowered yet:
/// lowered before their jobs are queued, so only a small share of traffic reaches them.
pub fn canaries_to_lower(plan: &Plan, book: &Bookkeeping, actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartHosts(hosts) => Some(hosts),
            _ => None,
        })
        .flatten()
        .filter(|h| {
            plan.position(h).is_some_and(|(r, b)| {
                plan.rings[r]
                    .batches
                    .get(b)
                    .is_some_and(|batch| batch.canary)
            })
        })
        .filter(|h| !book.lowered.contains(*h))
        .cloned()
        .collect()
}

/// The lowered hosts whose full weight comes back: their batch is behind the rollout (another
/// batch or ring is current) and they finished, or every one when the rollout ends (`all`).
pub fn weights_to_restore(
    plan: &Plan,
    state: &RolloutState,
    book: &Bookkeeping,
    all: bool,
) -> Vec<String> {
    let current = (state.ring, state.current_batch(plan));
    book.lowered
        .iter()
        .filter(|h| {
            all || plan.position(h).is_none_or(|(r, b)| {
                (r, Some(b)) != current
                    && matches!(
                        state.status(h),
                        HostStatus::Succeeded | HostStatus::RolledBack | HostStatus::Failed
                    )
            })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use jiff::SignedDuration;

    use super::*;
    use crate::rollout::engine::HostRun;
    use crate::rollout::plan::{Batch, BreakerThresholds, OnTrip, Ring, RolloutPolicy, Size};

    /// Two rings, each a one-host canary then a batch: dev (c0, b0), prod (c1, b1).
    fn plan() -> Plan {
        let ring = |env: &str, canary: &str, batch: &str| Ring {
            environment: env.to_owned(),
            batches: vec![
                Batch {
                    canary: true,
                    hosts: vec![canary.to_owned()],
                },
                Batch {
                    canary: false,
                    hosts: vec![batch.to_owned()],
                },
            ],
        };
        Plan {
            rings: vec![ring("dev", "c0", "b0"), ring("prod", "c1", "b1")],
            hosts: BTreeMap::new(),
            budgets: BTreeMap::new(),
            policy: RolloutPolicy {
                ring_order: vec!["dev".into(), "prod".into()],
                canary: Some(Size::Count(1)),
                batch: Size::Percent(50),
                max_concurrency: 10,
                breaker: BreakerThresholds {
                    per_batch: Size::Count(1),
                    per_ring: Size::Count(1),
                },
                on_trip: OnTrip::Pause,
                soak: SignedDuration::ZERO,
                manual_gate: false,
                follow_the_sun: false,
            },
            implementation: None,
            detection_window: SignedDuration::ZERO,
        }
    }

    fn state(plan: &Plan, statuses: &[(&str, HostStatus)], ring: usize) -> RolloutState {
        let mut state = RolloutState::new(plan);
        for (host, status) in statuses {
            state.hosts.insert(
                (*host).to_owned(),
                HostRun {
                    status: *status,
                    failed: false,
                    finished_at: None,
                },
            );
        }
        state.ring = ring;
        state
    }

    #[test]
    fn a_ring_is_compared_once_after_the_rollout_moved_past_it() {
        let plan = plan();
        let mut book = Bookkeeping::default();
        let running = state(&plan, &[("c1", HostStatus::Running)], 1);
        assert_eq!(rings_due_for_baseline(&plan, &running, &book), vec![0]);
        book.compared.insert(0);
        assert!(rings_due_for_baseline(&plan, &running, &book).is_empty());
        let first = state(&plan, &[("c0", HostStatus::Running)], 0);
        assert!(rings_due_for_baseline(&plan, &first, &Bookkeeping::default()).is_empty());
    }

    #[test]
    fn the_prometheus_query_is_due_first_then_every_interval() {
        let now: Timestamp = "2026-06-01T00:00:30Z".parse().unwrap();
        assert!(prometheus_due(None, 15, now));
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        assert!(!prometheus_due(at("2026-06-01T00:00:20Z"), 15, now));
        assert!(prometheus_due(at("2026-06-01T00:00:15Z"), 15, now));
        // An interval of zero is one second.
        assert!(!prometheus_due(at("2026-06-01T00:00:30Z"), 0, now));
        assert!(prometheus_due(at("2026-06-01T00:00:29Z"), 0, now));
    }

    #[test]
    fn only_canaries_not_yet_lowered_are_lowered() {
        let plan = plan();
        let mut book = Bookkeeping::default();
        let actions = [
            Action::StartHosts(vec!["c0".into(), "b0".into()]),
            Action::Complete,
        ];
        assert_eq!(canaries_to_lower(&plan, &book, &actions), vec!["c0"]);
        book.lowered.insert("c0".into());
        assert!(canaries_to_lower(&plan, &book, &actions).is_empty());
    }

    #[test]
    fn a_weight_comes_back_once_its_batch_is_behind_and_the_host_finished() {
        let plan = plan();
        let mut book = Bookkeeping::default();
        book.lowered.insert("c0".into());
        // The canary's batch is still current.
        let canary = state(&plan, &[("c0", HostStatus::Running)], 0);
        assert!(weights_to_restore(&plan, &canary, &book, false).is_empty());
        assert_eq!(weights_to_restore(&plan, &canary, &book, true), vec!["c0"]);
        // The next batch runs and the canary succeeded.
        let next = state(
            &plan,
            &[("c0", HostStatus::Succeeded), ("b0", HostStatus::Running)],
            0,
        );
        assert_eq!(weights_to_restore(&plan, &next, &book, false), vec!["c0"]);
        // A host the plan does not know is restored.
        book.lowered.insert("gone".into());
        assert_eq!(
            weights_to_restore(&plan, &canary, &book, false),
            vec!["gone"]
        );
    }
}
