//! How a rollout ends, and what a rollback returns hosts to.
//!
//! Pure decisions over the engine's state and the orchestrator's [`Bookkeeping`]: the server
//! asks, then changes the change and writes the end.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::engine::{Action, BreakerScope, HostStatus, RolloutPhase, RolloutState};
use super::plan::{OnTrip, Plan};
use super::track::Bookkeeping;
use crate::job::Target;

/// How a rollout ended, with why. Stored and sent as its name (`completed`, `rolled-back`,
/// `aborted`, `failed`); the reason goes to the `finish` event and the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutOutcome {
    /// Every host updated and verified.
    Completed,
    /// Stopped and the hosts it changed were returned to their earlier versions.
    RolledBack(String),
    /// Stopped by an operator; hosts keep what they have.
    Aborted(String),
    /// A rollback left some hosts where it could not restore them.
    Failed(String),
}

impl RolloutOutcome {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Its kind, without the reason.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            RolloutOutcome::Completed => OutcomeKind::Completed,
            RolloutOutcome::RolledBack(_) => OutcomeKind::RolledBack,
            RolloutOutcome::Aborted(_) => OutcomeKind::Aborted,
            RolloutOutcome::Failed(_) => OutcomeKind::Failed,
        }
    }

    /// Why it ended, in words.
    pub fn reason(&self) -> &str {
        match self {
            RolloutOutcome::Completed => "every host updated and verified",
            RolloutOutcome::RolledBack(reason)
            | RolloutOutcome::Aborted(reason)
            | RolloutOutcome::Failed(reason) => reason,
        }
    }
}

impl fmt::Display for RolloutOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rollout outcome's name, as stored in the `outcome` column and sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeKind {
    /// `completed`.
    Completed,
    /// `rolled-back`.
    RolledBack,
    /// `aborted`.
    Aborted,
    /// `failed`.
    Failed,
}

impl OutcomeKind {
    /// Every kind, for parsing and tests.
    pub const ALL: [OutcomeKind; 4] = [
        OutcomeKind::Completed,
        OutcomeKind::RolledBack,
        OutcomeKind::Aborted,
        OutcomeKind::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Completed => "completed",
            OutcomeKind::RolledBack => "rolled-back",
            OutcomeKind::Aborted => "aborted",
            OutcomeKind::Failed => "failed",
        }
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored or sent outcome name that is none of [`OutcomeKind`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown rollout outcome {0:?} (expected completed, rolled-back, aborted or failed)")]
pub struct UnknownOutcome(pub String);

impl FromStr for OutcomeKind {
    type Err = UnknownOutcome;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        OutcomeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownOutcome(name.to_owned()))
    }
}

/// Whether the host's status means the rollout changed something a rollback must undo.
fn changed(status: HostStatus) -> bool {
    matches!(
        status,
        HostStatus::Succeeded | HostStatus::Failed | HostStatus::PendingReboot
    )
}

/// The hosts an operator's rollback of the whole rollout returns: every host the rollout
/// changed, except those whose update job was cancelled before it ran.
pub fn hosts_to_roll_back(state: &RolloutState, book: &Bookkeeping) -> Vec<String> {
    state
        .hosts
        .iter()
        .filter(|(h, run)| changed(run.status) && !book.is_cancelled(h))
        .map(|(h, _)| h.clone())
        .collect()
}

/// What to do about rolling one host back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackPlan {
    /// A rollback was already decided for it (queued, done or failed): nothing.
    AlreadyDecided,
    /// It cannot be rolled back: its track moves to `RollbackFailed`, with this note.
    Impossible {
        /// The host's note.
        note: &'static str,
        /// The reason for the event.
        reason: &'static str,
    },
    /// Queue a rollback job to these versions (its recorded `before`).
    Queue(Vec<Target>),
}

/// Decides the rollback of `host`: `live` says whether it has an enrolled agent, `targets`
/// is the bundle. The versions it returns to are those recorded before its first update.
pub fn plan_rollback(
    book: &Bookkeeping,
    host: &str,
    live: bool,
    targets: &BTreeMap<String, String>,
) -> RollbackPlan {
    if book.host(host).is_some_and(|t| t.rollback_decided()) {
        return RollbackPlan::AlreadyDecided;
    }
    if !live {
        let note = "cannot roll back: no enrolled agent (revoked?)";
        return RollbackPlan::Impossible { note, reason: note };
    }
    let before = book.host(host).and_then(|t| t.before.as_ref());
    let back: Vec<Target> = targets
        .keys()
        .filter_map(|package| {
            before.and_then(|b| b.get(package)).map(|version| Target {
                package: package.clone(),
                version: version.clone(),
            })
        })
        .collect();
    if back.is_empty() {
        return RollbackPlan::Impossible {
            note: "cannot roll back: the versions before the update are not known (its job never reported)",
            reason: "versions before the update unknown",
        };
    }
    RollbackPlan::Queue(back)
}

/// How the rollout ended, if it did. `actions` is what the engine said last, `outstanding`
/// whether any job is still queued or running.
pub fn outcome(
    plan: &Plan,
    state: &RolloutState,
    book: &Bookkeeping,
    actions: &[Action],
    outstanding: bool,
) -> Option<RolloutOutcome> {
    if outstanding || book.any_verifying() {
        return None;
    }
    let failed_rollbacks = book.any_rollback_failed();
    let rolled_back = |reason: String| {
        if failed_rollbacks {
            RolloutOutcome::Failed(format!("{reason}; some hosts could not be rolled back"))
        } else {
            RolloutOutcome::RolledBack(reason)
        }
    };
    if let Some(reason) = &state.aborted {
        if book.rollback_requested.is_some() {
            let pending = state.hosts.iter().any(|(h, run)| {
                changed(run.status) && !book.rollback_failed(h) && !book.is_cancelled(h)
            });
            if pending {
                return None;
            }
            return Some(rolled_back(reason.clone()));
        }
        return Some(RolloutOutcome::Aborted(reason.clone()));
    }
    if state.phase() == RolloutPhase::Completed {
        return Some(RolloutOutcome::Completed);
    }
    let trip = state.breaker?;
    if plan.policy.on_trip == OnTrip::Pause {
        return None;
    }
    let in_flight = state.hosts.values().any(|r| r.status.in_flight());
    let to_roll_back = actions.iter().any(|a| match a {
        Action::RollBack(hosts) => hosts.iter().any(|h| !book.rollback_failed(h)),
        _ => false,
    });
    if in_flight || to_roll_back {
        return None;
    }
    let reason = format!(
        "the breaker tripped: {} failed of a threshold of {} ({})",
        trip.failed,
        trip.threshold,
        match trip.scope {
            BreakerScope::Batch { ring, batch } => format!("ring {ring}, batch {batch}"),
            BreakerScope::Ring { ring, .. } => format!("ring {ring}"),
        }
    );
    Some(rolled_back(reason))
}

/// The (environment, package, version) triples a rollback undid: the rings that had hosts
/// rolled back, with the bundle's targets; `environment` names a host's environment.
pub fn rolled_back_scopes<'a>(
    state: &RolloutState,
    environment: impl Fn(&str) -> Option<&'a str>,
    targets: &BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    let scopes: BTreeSet<&str> = state
        .hosts
        .iter()
        .filter(|(_, run)| run.status == HostStatus::RolledBack)
        .filter_map(|(host, _)| environment(host))
        .collect();
    let mut out = Vec::new();
    for scope in scopes {
        for (package, version) in targets {
            out.push((scope.to_owned(), package.clone(), version.clone()));
        }
    }
    out
}

/// Whether the orchestrator waits for the host's inventory or report: its job runs, it is
/// being verified, or it has a rollback job. Only these hosts' inventories wake it.
pub fn awaits_host(book: &Bookkeeping, host: &str, status: HostStatus) -> bool {
    status.in_flight() || book.is_verifying(host) || book.rollback_job(host).is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn outcome_and_phase_names_parse_back_and_unknown_ones_are_named() {
        for kind in OutcomeKind::ALL {
            assert_eq!(kind.as_str().parse::<OutcomeKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        let unknown = "done".parse::<OutcomeKind>().unwrap_err();
        assert!(unknown.to_string().contains("\"done\""), "{unknown}");
        for phase in [
            "planned",
            "running",
            "paused",
            "halted",
            "aborted",
            "completed",
        ] {
            let parsed: RolloutPhase = phase.parse().unwrap();
            assert_eq!(parsed.as_str(), phase);
            assert_eq!(
                serde_json::to_value(parsed).unwrap(),
                serde_json::json!(phase)
            );
        }
        assert!(
            "stalled"
                .parse::<RolloutPhase>()
                .unwrap_err()
                .to_string()
                .contains("stalled")
        );
    }
}
