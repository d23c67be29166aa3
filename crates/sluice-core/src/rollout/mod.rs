//! Rollouts: an approved, scheduled change carried to its hosts ring by ring.
//!
//! Owns planning (`plan`, and `plan_change` for a scheduled change: rings, canary, batches,
//! budgets) and progression (`engine`: a pure
//! state machine, `next_actions(plan, state, calendar, now)`), and the memory of rolled-back
//! versions. Never does I/O and never reads the clock: the server feeds in what agents and
//! operators reported, carries out the actions, and feeds their results back
//! (see docs/rollout.md).

pub mod engine;
pub mod memory;
pub mod plan;

pub use engine::{
    Action, ApplyError, BreakerScope, BreakerTrip, HostRun, HostStatus, Observation, RolloutPhase,
    RolloutState, next_actions, parity,
};
pub use memory::RolledBackVersions;
pub use plan::{
    Batch, BreakerThresholds, HostInfo, OnTrip, Plan, PlanError, Ring, RolloutPolicy, Service,
    Size, default_ring_order, plan, plan_change,
};
