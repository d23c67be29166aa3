//! Starting a rollout: the change is checked, its hosts gathered (CMDB, agents, windows,
//! inventories), the plan made by the core and stored, the change's implementation started,
//! and the first advance run.

use std::collections::{BTreeMap, BTreeSet};

use sluice_core::access::Actor as Person;
use sluice_core::change::{
    Action as ChangeAction, ChangeRequest, ChangeState, ChangeType, Schedule,
};
use sluice_core::rollout::{
    Bookkeeping, HostInfo, RolledBackVersions, RolloutState, Service, Size, plan_change,
};
use sluice_protocol::rollouts::{EventDetail, RingPlanned};
use sluice_store::{Actor, NewRollout, StoredRollout};

use super::advance::advance;
use super::error::RolloutError;
use super::model::{RolloutRequest, StoredHost, StoredPlan, default_policy, host_info};
use super::{event, json_of};
use crate::state::AppState;

/// How long an approved emergency change without a schedule may take to roll out.
pub const EMERGENCY_HORIZON: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Plans and stores a rollout of `request.change`, starting the change's implementation for
/// `person` when it is scheduled. The first advance runs at once.
pub async fn start(
    state: &AppState,
    person: &Person,
    actor: &Actor,
    request: RolloutRequest,
) -> Result<StoredRollout, RolloutError> {
    let now = state.clock.now();
    let policy = request.policy.clone().unwrap_or_else(default_policy);
    let stored_change =
        state.store.change(&request.change).await?.ok_or_else(|| {
            RolloutError::NotFound(format!("change {} not found", request.change))
        })?;
    if let Some(open) = state
        .store
        .rollouts(Some(&request.change), true)
        .await?
        .first()
    {
        return Err(RolloutError::Conflict(format!(
            "change {} already has rollout {} under way",
            request.change, open.id
        )));
    }
    let change = &stored_change.change;
    // An emergency change may start as soon as the e-CAB approved it, without a schedule.
    let emergency_now =
        change.kind == ChangeType::Emergency && change.state == ChangeState::Approved;
    if !emergency_now
        && !matches!(
            change.state,
            ChangeState::Scheduled | ChangeState::Implementing
        )
    {
        return Err(RolloutError::Conflict(format!(
            "change {} is {}: only a scheduled (or implementing) change is rolled out, or an approved emergency change",
            change.id,
            change.state.as_str()
        )));
    }
    let (stored_hosts, services) = gather(state, change).await?;
    let hosts: Vec<HostInfo> = stored_hosts
        .iter()
        .map(|(name, host)| host_info(name, host))
        .collect::<Result<_, _>>()
        .map_err(RolloutError::Invalid)?;
    let mut remembered = RolledBackVersions::default();
    for (scope, package, version) in state.store.rolled_back_versions().await? {
        remembered.record(&scope, &package, &version);
    }
    // Planned as implementing: the schedule is what limits it either way.
    let mut planning = change.clone();
    planning.state = ChangeState::Implementing;
    if planning.schedule.is_none() {
        // An unscheduled emergency change: its hosts' windows and freezes still hold, within a
        // day from now.
        planning.schedule = Some(Schedule {
            start: now,
            end: now + EMERGENCY_HORIZON,
        });
    }
    let plan = plan_change(
        &planning,
        hosts,
        &services,
        &policy,
        &remembered,
        request.override_rolled_back,
    )
    .map_err(|e| RolloutError::Invalid(format!("cannot plan change {}: {e}", change.id)))?;
    let targets: BTreeMap<String, String> = change
        .bundle
        .iter()
        .map(|b| (b.package.clone(), b.target_version.clone()))
        .collect();
    let mut narrowed = stored_hosts.clone();
    for host in narrowed.values_mut() {
        host.versions.retain(|p, _| targets.contains_key(p));
    }
    let stored_plan = StoredPlan::of(
        &plan,
        &narrowed,
        targets,
        change.plan.rollback_criteria.max_latency_factor,
    );
    let rollout_state = RolloutState::new(&plan);

    if change.state == ChangeState::Scheduled || emergency_now {
        crate::changes::take_action(
            state,
            &stored_change,
            person,
            actor,
            ChangeAction::StartImplementation,
            now,
        )
        .await?;
    }
    let rings: Vec<RingPlanned> = plan
        .rings
        .iter()
        .map(|r| RingPlanned {
            environment: r.environment.clone(),
            batches: r.batches.iter().map(|b| b.hosts.len()).collect(),
        })
        .collect();
    let created = state
        .store
        .create_rollout(
            &NewRollout {
                change_id: change.id.clone(),
                spec: json_of(&request)?,
                plan: json_of(&stored_plan)?,
                state: json_of(&rollout_state)?,
                runtime: json_of(&Bookkeeping::default())?,
                phase: rollout_state.phase(),
            },
            &[event(
                EventDetail::Start {
                    change: change.id.clone(),
                    hosts: plan.hosts.len(),
                    rings,
                    policy: policy.clone(),
                },
                true,
            )?],
            actor,
        )
        .await?;
    state.rollouts.moved(&created.id);
    match advance(state, &created.id).await {
        Ok(advanced) => Ok(advanced),
        Err(e) => {
            tracing::warn!(rollout = %created.id, error = %e, "first advance failed; the background task tries again");
            Ok(created)
        }
    }
}

/// The hosts of the change's scope with what the planner needs, and the services they run.
async fn gather(
    state: &AppState,
    change: &ChangeRequest,
) -> Result<(BTreeMap<String, StoredHost>, Vec<Service>), RolloutError> {
    let assets = state.assets.get(&state.store).await?;
    let selected: BTreeSet<String> = change
        .scope
        .filter(assets.iter())
        .map(|a| a.hostname.clone())
        .collect();
    if selected.is_empty() {
        return Err(RolloutError::Invalid(format!(
            "change {}: its scope selects no host",
            change.id
        )));
    }
    let agents: BTreeSet<String> = state
        .store
        .agents()
        .await?
        .into_iter()
        .filter(|a| a.revoked_at.is_none())
        .map(|a| a.hostname)
        .collect();
    let missing: Vec<&str> = selected
        .iter()
        .filter(|h| !agents.contains(*h))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(RolloutError::Invalid(format!(
            "change {}: no enrolled agent on {}: enroll one, or narrow the change's scope",
            change.id,
            missing.join(", ")
        )));
    }
    let windows = crate::calendar::host_windows(state, &assets, &selected).await?;
    let all_services = state.store.services().await?;
    let mut out = BTreeMap::new();
    for asset in assets.iter().filter(|a| selected.contains(&a.hostname)) {
        let versions: BTreeMap<String, String> =
            match state.store.inventory(&asset.hostname).await? {
                Some((_, packages)) => packages.into_iter().map(|p| (p.name, p.version)).collect(),
                None => BTreeMap::new(),
            };
        let host_windows = windows.get(&asset.hostname).cloned().unwrap_or_default();
        let time_zone = asset
            .time_zone
            .clone()
            .or_else(|| host_windows.first().map(|w| w.tz.clone()))
            .unwrap_or_else(|| "UTC".to_owned());
        out.insert(
            asset.hostname.clone(),
            StoredHost {
                environment: asset.environment.clone().unwrap_or_default(),
                services: all_services
                    .iter()
                    .filter(|s| s.members.contains(&asset.hostname))
                    .map(|s| s.name.clone())
                    .collect(),
                time_zone,
                windows: host_windows,
                os: asset.os.as_ref().map(|o| o.to_string()).unwrap_or_default(),
                versions,
            },
        );
    }
    let services = all_services
        .iter()
        .filter(|s| s.members.iter().any(|m| out.contains_key(m)))
        .map(|s| Service {
            name: s.name.clone(),
            budget: match s.disruption_budget {
                Some(sluice_core::cmdb::Budget::Count(n)) => Size::Count(n.max(1)),
                Some(sluice_core::cmdb::Budget::Percent(p)) => Size::Percent(p.clamp(1, 100)),
                None => Size::Percent(100),
            },
        })
        .collect();
    Ok((out, services))
}
