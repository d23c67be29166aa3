//! Policies on the server: the CAB policy and the deferral policy. Each edit is validated whole
//! by `sluice-core` and stored as a new version (audited as `policy.update`); nothing is
//! overwritten. Reading is `crate::governance::current_policy`. This module knows nothing of
//! HTTP: `crate::error` maps [`PolicyError`] to problem documents.

use serde_json::Value;
use sluice_store::StoreError;

use crate::auth::Principal;
use crate::governance::{GovernanceError, PolicyDocument, current_policy};
use crate::state::AppState;
use sluice_protocol::policies::PolicyUpdate;

/// What went wrong with a policy edit.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The edit was based on another version than the current one.
    #[error("{0}")]
    Conflict(String),
    /// The document is refused; `field` names the part at fault when one is.
    #[error("{detail}")]
    Invalid {
        /// The field, when one is at fault.
        field: Option<String>,
        /// Why.
        detail: String,
    },
    /// Reading the current policy failed.
    #[error(transparent)]
    Governance(#[from] GovernanceError),
    /// The policy could not be written down as JSON.
    #[error("policy document: {0}")]
    Encode(#[from] serde_json::Error),
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PolicyError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.to_owned()),
            detail: detail.into(),
        }
    }

    fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: None,
            detail: detail.into(),
        }
    }
}

/// The edit as a policy of kind `P` at `version`, checked whole.
fn parse<P: PolicyDocument>(update: PolicyUpdate, version: u32) -> Result<P, PolicyError> {
    let policy: P = match (update.toml, update.policy) {
        (Some(text), None) => {
            let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                PolicyError::invalid("toml", format!("toml: not valid TOML: {e}"))
            })?;
            table.insert(
                "version".to_owned(),
                toml::Value::Integer(i64::from(version)),
            );
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    PolicyError::invalid("toml", format!("toml: {} policy: {e}", P::KIND))
                })?
        }
        (None, Some(Value::Object(mut object))) => {
            object.insert("version".to_owned(), Value::from(version));
            serde_json::from_value(Value::Object(object)).map_err(|e| {
                PolicyError::invalid("policy", format!("policy: {} policy: {e}", P::KIND))
            })?
        }
        (None, Some(_)) => {
            return Err(PolicyError::invalid(
                "policy",
                "policy: a JSON object is expected",
            ));
        }
        _ => {
            return Err(PolicyError::unprocessable(
                "give the policy as toml (text) or as policy (a JSON object), one of them",
            ));
        }
    };
    let field = "policy";
    policy
        .check()
        .map_err(|reason| PolicyError::invalid(field, reason))?;
    Ok(policy)
}

/// Stores `update` as the next version of the `P` policy, unless it was based on another.
pub async fn update<P: PolicyDocument>(
    state: &AppState,
    principal: &Principal,
    update: PolicyUpdate,
) -> Result<(), PolicyError> {
    let current = current_policy::<P>(&state.store).await?.policy.version();
    if let Some(based_on) = update.based_on
        && based_on != current
    {
        return Err(PolicyError::Conflict(format!(
            "the {} policy is at version {current}; this edit was based on version {based_on}: read it again",
            P::KIND
        )));
    }
    let next = current + 1;
    let policy: P = parse(update, next)?;
    let document = serde_json::to_value(&policy)?;
    state
        .store
        .put_policy(P::KIND, next, &document, &principal.actor())
        .await?;
    Ok(())
}
