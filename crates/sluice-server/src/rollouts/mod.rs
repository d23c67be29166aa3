//! The rollout orchestrator: carries out what `sluice_core::rollout`'s engine decides.
//!
//! A rollout is stored as its plan, the engine's state and the orchestrator's bookkeeping
//! beside it (the core's [`Bookkeeping`]: one [`HostTrack`](sluice_core::rollout::HostTrack)
//! per host with its attempts, versions before its update, and what the server waits for).
//! One *advance* reads all of that, folds in what happened since (finished jobs, fresh
//! inventories), asks `next_actions` what to do now, turns the answer into jobs for agents, and
//! writes everything it decided in one transaction against the version it read. Every "if this
//! then that" is a pure function of `sluice_core::rollout` (`judge_update`, `verify_host`,
//! `plan_rollback`, `outcome`, `ring_baseline`); this module reads, asks the core, and writes.
//! So:
//!
//! - a crash between deciding and writing loses nothing: the next advance decides again from the
//!   same state, and the jobs it queues carry the same idempotency keys, so no host is updated
//!   twice;
//! - two servers advancing the same rollout cannot both win: the second write is refused and
//!   that server reads again;
//! - every transition is an event in the rollout's log and in the audit chain.
//!
//! A host's update is verified before it counts as succeeded: the job's report must show the
//! target versions, and a *fresh* inventory (asked for when the job ends) must show them too,
//! which also closes the findings the change was for. An inventory that says a reboot is
//! pending keeps the host `pending-reboot` until one says it is not.
//!
//! The background task ([`drive`]) advances every open rollout when a job report or an
//! inventory arrives (through [`RolloutHub::wake`]), when the engine said to wait until a
//! time, and every few seconds anyway (reports may arrive through another replica).
//!
//! # Two clocks
//!
//! - The **governance clock** (`state.clock`, movable in tests and demos) decides everything
//!   the engine decides: windows, freezes, soak, gates, the times of its observations, waits,
//!   and when the Prometheus query is due. A job's end enters the engine at its age on the
//!   governance clock ([`on_governance_clock`](sluice_core::rollout::on_governance_clock)).
//! - The **system clock** stamps facts the store records: a job's end (`finished_at`), an
//!   inventory's receipt (`received_at`). Verification compares those facts with each other
//!   and with the system's now: whether an inventory is fresh, [`VERIFY_TIMEOUT`],
//!   `INVENTORY_GRACE`, `REBOOT_POLL`. A fake governance clock never makes an inventory stale
//!   or a job late.
//!
//! Layout, in the order one advance reads: [`start`](start()) plans and stores a rollout;
//! [`advance`](advance()) folds, verifies, asks the engine and writes (`advance.rs`);
//! `signals.rs` brings in alerts, Prometheus and HAProxy; [`act`](act()) takes an operator's
//! action; [`drive`](drive()) is the background task; `model.rs` holds the stored shapes and
//! `error.rs` the [`RolloutError`].

mod act;
mod advance;
mod drive;
mod error;
mod model;
mod signals;
mod start;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sluice_core::access::{Actor as Person, Role};
use sluice_core::rollout::awaits_host;
use sluice_protocol::rollouts::EventDetail;
use sluice_store::NewRolloutEvent;

use crate::state::AppState;

pub use act::act;
pub use advance::advance;
pub use drive::{advance_all, drive};
pub use error::RolloutError;
pub use model::{
    HaproxySpec, JobTemplate, Loaded, OperatorAction, PrometheusSpec, RolloutRequest, StoredHost,
    StoredPlan, decode, default_policy,
};
pub use signals::fold_alerts;
pub use sluice_core::rollout::{Bookkeeping, VERIFY_TIMEOUT};
pub use start::{EMERGENCY_HORIZON, start};

/// Wakes the background task and tells event streams that a rollout moved. Cheap to clone.
#[derive(Clone)]
pub struct RolloutHub {
    wake: Arc<tokio::sync::Notify>,
    moved: tokio::sync::broadcast::Sender<String>,
    /// Serialises advances on this replica (other replicas are kept out by versions).
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Per open rollout, the hosts whose inventory it waits for (jobs running, verification,
    /// reboots): only their inventories wake the task, not every push of a large fleet.
    watched: Arc<std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

impl Default for RolloutHub {
    fn default() -> Self {
        let (moved, _) = tokio::sync::broadcast::channel(256);
        Self {
            wake: Arc::default(),
            moved,
            lock: Arc::default(),
            watched: Arc::default(),
        }
    }
}

impl RolloutHub {
    /// Something happened that may move a rollout (a job report).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// An inventory of `host` arrived: wakes the task if an open rollout waits for it.
    pub fn inventory_of(&self, host: &str) {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if watched.values().any(|hosts| hosts.contains(host)) {
            self.wake.notify_one();
        }
    }

    /// Records which hosts a rollout waits for now (none once it finished).
    fn watch(&self, loaded: &Loaded) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.stored.finished_at.is_some() {
            watched.remove(&loaded.stored.id);
            return;
        }
        let hosts: BTreeSet<String> = loaded
            .state
            .hosts
            .iter()
            .filter(|(host, run)| awaits_host(&loaded.runtime, host, run.status))
            .map(|(host, _)| host.clone())
            .collect();
        watched.insert(loaded.stored.id.clone(), hosts);
    }

    /// Rollout ids as they move, for event streams.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.moved.subscribe()
    }

    fn moved(&self, id: &str) {
        // Nobody listening is fine.
        let _ = self.moved.send(id.to_owned());
    }
}

/// Loads one rollout.
pub async fn load(state: &AppState, id: &str) -> Result<Loaded, RolloutError> {
    let stored = state
        .store
        .rollout(id)
        .await?
        .ok_or_else(|| RolloutError::NotFound(format!("rollout {id} not found")))?;
    decode(stored)
}

fn system_person() -> Person {
    Person {
        user: "system".to_owned(),
        roles: [Role::Operator].into(),
        groups: BTreeSet::new(),
    }
}

/// The stored form of a typed event.
fn event(detail: EventDetail, audit: bool) -> Result<NewRolloutEvent, RolloutError> {
    let (kind, detail) = detail
        .to_parts()
        .map_err(|e| RolloutError::Internal(format!("an event does not serialise: {e}")))?;
    Ok(NewRolloutEvent {
        kind,
        detail,
        audit,
    })
}

fn json_of<T: Serialize>(value: &T) -> Result<Value, RolloutError> {
    serde_json::to_value(value).map_err(|e| RolloutError::Internal(e.to_string()))
}
