//! Rollouts: an approved, scheduled change carried to its hosts ring by ring.
//!
//! Owns planning (`plan`, and `plan_change` for a scheduled change: rings, canary, batches,
//! budgets) and progression (`engine`: a pure
//! state machine, `next_actions(plan, state, calendar, now)`), and the memory of rolled-back
//! versions. Never does I/O and never reads the clock: the server feeds in what agents and
//! operators reported, carries out the actions, and feeds their results back
//! (see docs/rollout.md).
//!
//! Beside the engine, the orchestrator's own decisions: per-host bookkeeping as explicit
//! states (`track`), verification of updates, regressions and ring baselines (`verify`), and
//! the rollout's end and rollback targets (`outcome`), and when side work is due: ring
//! baselines, the Prometheus query, HAProxy weights (`due`).

pub mod due;
pub mod engine;
pub mod memory;
pub mod outcome;
pub mod plan;
pub mod track;
pub mod verify;

pub use due::{canaries_to_lower, prometheus_due, rings_due_for_baseline, weights_to_restore};
pub use engine::{
    Action, ApplyError, BreakerScope, BreakerTrip, HostRun, HostStatus, Observation, RolloutPhase,
    RolloutState, UnknownPhase, next_actions, parity,
};
pub use memory::RolledBackVersions;
pub use outcome::{
    OutcomeKind, RollbackPlan, RolloutOutcome, UnknownOutcome, awaits_host, hosts_to_roll_back,
    outcome, plan_rollback, rolled_back_scopes,
};
pub use plan::{
    Batch, BreakerThresholds, HostInfo, OnTrip, Plan, PlanError, Ring, RolloutPolicy, Service,
    Size, default_ring_order, plan, plan_change,
};
pub use track::{Bookkeeping, HostTrack, StoredBookkeeping, TrackPhase};
pub use verify::{
    DEFAULT_LATENCY_FACTOR, INVENTORY_GRACE, InventorySeen, REBOOT_POLL, RingBaseline,
    UpdateVerdict, VERIFY_TIMEOUT, VerifyStep, failed_step, judge_rollback, judge_update,
    latency_regression, on_governance_clock, ring_baseline, verify_host, wrong_versions,
};
