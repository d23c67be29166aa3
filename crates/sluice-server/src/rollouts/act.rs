//! An operator's action on a rollout: folded into the engine's state as an observation,
//! written with its event, then the rollout is advanced.

use sluice_core::access::{Actor as Person, Role};
use sluice_core::rollout::{Observation, OutcomeKind};
use sluice_protocol::rollouts::EventDetail;
use sluice_store::{Actor, RolloutWrite, StoreError, StoredRollout};

use super::advance::advance;
use super::error::RolloutError;
use super::model::OperatorAction;
use super::{event, json_of, load};
use crate::state::AppState;

/// Takes an operator's action: folded into the state as an observation, written with its
/// event, then the rollout is advanced.
pub async fn act(
    state: &AppState,
    person: &Person,
    actor: &Actor,
    id: &str,
    action: OperatorAction,
) -> Result<StoredRollout, RolloutError> {
    for _ in 0..5 {
        let _guard = state.rollouts.lock.lock().await;
        let mut loaded = load(state, id).await?;
        if loaded.stored.finished_at.is_some() {
            return Err(RolloutError::Conflict(format!(
                "rollout {id} is finished ({}): nothing more to do",
                loaded.stored.outcome.map_or("ended", OutcomeKind::as_str)
            )));
        }
        let by = person.user.clone();
        let observation = match &action {
            OperatorAction::Pause { reason } => Observation::Pause {
                by,
                reason: nonempty(reason, "reason")?,
            },
            OperatorAction::Resume => Observation::Resume { by },
            OperatorAction::Abort { reason } => Observation::Abort {
                by,
                reason: nonempty(reason, "reason")?,
            },
            OperatorAction::Rollback { reason } => {
                let reason = nonempty(reason, "reason")?;
                loaded.runtime.rollback_requested = Some(reason.clone());
                Observation::Abort {
                    by,
                    reason: format!("rolled back: {reason}"),
                }
            }
            OperatorAction::ApproveGate { to_ring } => {
                if !person.roles.contains(&Role::Approver) {
                    return Err(RolloutError::Forbidden(
                        "approving a gate between rings takes the approver role".to_owned(),
                    ));
                }
                if person.user == loaded.stored.created_by {
                    return Err(RolloutError::Forbidden(format!(
                        "{} started rollout {id} and cannot approve its gates (separation of duties)",
                        person.user
                    )));
                }
                Observation::ApproveGate {
                    to_ring: *to_ring,
                    by,
                }
            }
            OperatorAction::ResetBreaker => Observation::ResetBreaker { by },
            OperatorAction::Retry { host } => {
                loaded.runtime.retry(host);
                Observation::Retry {
                    host: host.clone(),
                    by,
                }
            }
        };
        loaded
            .state
            .apply(&loaded.plan, &observation)
            .map_err(|e| RolloutError::Conflict(format!("rollout {id}: {e}")))?;
        let write = RolloutWrite {
            state: json_of(&loaded.state)?,
            runtime: json_of(&loaded.runtime)?,
            phase: loaded.state.phase(),
            outcome: None,
            events: vec![event(EventDetail::Acted(action.clone()), true)?],
            ..Default::default()
        };
        match state
            .store
            .advance_rollout(id, loaded.stored.version, &write, actor)
            .await
        {
            Ok(_) => {
                drop(_guard);
                state.rollouts.moved(id);
                return advance(state, id).await;
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RolloutError::Conflict(format!(
        "rollout {id} kept moving under this action; try again"
    )))
}

fn nonempty(text: &str, field: &'static str) -> Result<String, RolloutError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(RolloutError::InvalidField {
            field,
            detail: "give a reason".to_owned(),
        });
    }
    Ok(text.to_owned())
}
