//! Change governance on the server: what the handlers and the periodic task share.
//!
//! Reads the current policies (stored versions, or the documented defaults as version 1), builds
//! the acting person (user, roles, CAB groups), assesses a draft's risk from the CMDB and the
//! history of similar changes, records due escalations, and tells each finding's deferral
//! standing. Every decision here is `sluice-core`'s (`change::*`, `deferral::*`); this module
//! fetches what those functions take and stores what they return.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::access;
use sluice_core::change::{
    Assessment, CabPolicy, ChangeRequest, ChangeState, Escalation, History, ScopeFacts, assess,
    escalation_due,
};
use sluice_core::deferral::DeferralTarget;
use sluice_core::deferral::{Deferral, DeferralPolicy, FindingRef, Standing, standing};
use sluice_store::{Actor, ChangeEvent, Covered, DeferralsQuery, Store, StoreError, StoredFinding};

use crate::auth::Principal;

/// What went wrong reading or writing governance records.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record no longer reads as what it was written as (a programming error).
    #[error("{0}")]
    Corrupt(String),
}

/// A policy document kept in the store's `policies` table.
pub trait PolicyDocument: Serialize + DeserializeOwned + Default {
    /// The kind it is stored under (`cab`, `deferral`).
    const KIND: &'static str;

    /// Its version.
    fn version(&self) -> u32;

    /// Checks what serde cannot; the message names the rule or field.
    fn check(&self) -> Result<(), String>;
}

impl PolicyDocument for CabPolicy {
    const KIND: &'static str = "cab";

    fn version(&self) -> u32 {
        self.version
    }

    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }
}

impl PolicyDocument for DeferralPolicy {
    const KIND: &'static str = "deferral";

    fn version(&self) -> u32 {
        self.version
    }

    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }
}

/// The current policy of a kind and where it came from.
#[derive(Clone, Debug)]
pub struct CurrentPolicy<P> {
    /// The policy.
    pub policy: P,
    /// The stored version's time and author; `None` for the built-in default.
    pub stored: Option<(String, String)>,
}

/// The current policy: the highest stored version, else the documented default (version 1).
pub async fn current_policy<P: PolicyDocument>(
    store: &Store,
) -> Result<CurrentPolicy<P>, GovernanceError> {
    match store.policy(P::KIND).await? {
        None => Ok(CurrentPolicy {
            policy: P::default(),
            stored: None,
        }),
        Some(stored) => {
            let policy: P = serde_json::from_value(stored.document).map_err(|e| {
                GovernanceError::Corrupt(format!(
                    "stored {} policy version {}: {e}",
                    P::KIND,
                    stored.version
                ))
            })?;
            Ok(CurrentPolicy {
                policy,
                stored: Some((stored.created_at, stored.created_by)),
            })
        }
    }
}

/// The acting person as governance sees them: the token's roles and the user's groups.
pub async fn person(
    store: &Store,
    principal: &Principal,
) -> Result<access::Actor, GovernanceError> {
    let groups = store
        .user(&principal.username)
        .await?
        .map(|u| u.groups)
        .unwrap_or_default();
    Ok(access::Actor {
        user: principal.username.clone(),
        roles: principal.roles.clone(),
        groups,
    })
}

/// How similar changes went: implemented changes that share a package with this one (or follow
/// the same template), and how many of them failed or were rolled back.
pub async fn history(store: &Store, change: &ChangeRequest) -> Result<History, GovernanceError> {
    let done = store
        .changes_in(&[
            ChangeState::Completed,
            ChangeState::Failed,
            ChangeState::RolledBack,
            ChangeState::Reviewed,
            ChangeState::Closed,
        ])
        .await?;
    let packages: BTreeSet<&str> = change.bundle.iter().map(|i| i.package.as_str()).collect();
    let mut history = History::default();
    for stored in &done {
        let other = &stored.change;
        if other.id == change.id || other.times.implementation_started.is_none() {
            continue;
        }
        let same_template = other.template.is_some() && other.template == change.template;
        let shares_package = other
            .bundle
            .iter()
            .any(|i| packages.contains(i.package.as_str()));
        if !(same_template || shares_package) {
            continue;
        }
        history.similar_changes += 1;
        let failed = other
            .history
            .iter()
            .any(|h| matches!(h.to, ChangeState::Failed | ChangeState::RolledBack));
        if failed {
            history.failed += 1;
        }
    }
    Ok(history)
}

/// The risk and peer-review assessment of a draft, from the CMDB's current assets and services.
pub async fn assessment(
    store: &Store,
    assets: &[sluice_core::cmdb::Asset],
    change: &ChangeRequest,
    policy: &CabPolicy,
    now: Timestamp,
) -> Result<Assessment, GovernanceError> {
    let services = store.services().await?;
    let facts = ScopeFacts::collect(&change.scope, assets, &services);
    let history = history(store, change).await?;
    Ok(assess(change, &facts, false, history, policy, now))
}

/// An escalation the periodic task recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordedEscalation {
    /// The change.
    pub change: String,
    /// The step that fell due.
    pub escalation: Escalation,
}

/// Records every escalation that has fallen due by `now` on changes in review: each one is
/// written to the change and audited as `change.escalate` (actor `system`) in one transaction,
/// and its group is notified. The server calls this every minute; tests call it with a fake
/// `now`. A change moved by someone else meanwhile is left for the next round.
pub async fn escalate_due(
    store: &Store,
    now: Timestamp,
) -> Result<Vec<RecordedEscalation>, GovernanceError> {
    let mut recorded = Vec::new();
    for stored in store.changes_in(&[ChangeState::InReview]).await? {
        let due = escalation_due(&stored.change, now);
        if due.is_empty() {
            continue;
        }
        let mut change = stored.change.clone();
        for escalation in &due {
            change
                .record_escalation(escalation, now)
                .map_err(|e| GovernanceError::Corrupt(e.to_string()))?;
        }
        let event = ChangeEvent {
            action: "change.escalate".to_owned(),
            before: Some(
                serde_json::json!({"state": change.state, "escalations": stored.change.escalations}),
            ),
            after: Some(serde_json::json!({"state": change.state, "escalated": due, "at": now})),
        };
        match store
            .update_change(&change, stored.version, event, &Actor::system())
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict(reason)) => {
                tracing::info!(change = %change.id, %reason, "escalation left for the next round");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        for escalation in due {
            // Notifications are delivered by the notifications module when it exists; until
            // then the escalation is in the audit chain and the log.
            tracing::info!(change = %change.id, group = %escalation.group, step = escalation.step, "escalated: the group is asked to decide");
            recorded.push(RecordedEscalation {
                change: change.id.clone(),
                escalation,
            });
        }
    }
    Ok(recorded)
}

/// Every deferral that can bear on a finding's standing (revoked ones never do).
pub async fn live_deferrals(store: &Store) -> Result<Vec<Deferral>, GovernanceError> {
    Ok(store
        .deferrals(&DeferralsQuery::default())
        .await?
        .into_iter()
        .map(|s| s.deferral)
        .collect())
}

/// What the deferral records make of a stored finding at `now`.
pub fn finding_standing(
    finding: &StoredFinding,
    deferrals: &[Deferral],
    now: Timestamp,
) -> Standing {
    standing(
        &FindingRef {
            id: finding.id.to_string(),
            host: finding.hostname.clone(),
            package: finding.finding.package.clone(),
        },
        deferrals,
        now,
    )
}

/// What the records active at `now` cover, for the findings query.
pub fn covered(deferrals: &[Deferral], now: Timestamp) -> Covered {
    let mut covered = Covered::default();
    for deferral in deferrals.iter().filter(|d| d.effective(now)) {
        match &deferral.target {
            DeferralTarget::Finding { id } => {
                // Finding targets are checked to be stored findings' ids when requested.
                if let Ok(id) = id.parse() {
                    covered.ids.push(id);
                }
            }
            DeferralTarget::HostPackage { host, package } => {
                covered.host_packages.push((host.clone(), package.clone()));
            }
        }
    }
    covered
}
