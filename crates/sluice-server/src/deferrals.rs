//! Deferrals, risk acceptances and legacy pins on the server: request, approve, renew, revoke,
//! list. The rules (who may approve, `security` for risk acceptance, longest durations, renewal
//! limits) are `sluice_core::deferral`'s; the store writes each step against the version it read
//! and audits it. This module knows nothing of HTTP: `crate::error` maps
//! [`DeferralServiceError`] to problem documents.

use jiff::Timestamp;
use sluice_core::access;
use sluice_core::deferral::{
    Deferral, DeferralError, DeferralPolicy, DeferralRequest, DeferralStatus, DeferralTarget,
};
use sluice_store::{DeferralsQuery, StoreError, StoredDeferral};

use crate::auth::Principal;
use crate::governance::{self, GovernanceError, current_policy};
use crate::state::AppState;
use sluice_protocol::deferrals::DeferralFilter;

/// What went wrong with a deferral record.
#[derive(Debug, thiserror::Error)]
pub enum DeferralServiceError {
    /// No such deferral.
    #[error("{0}")]
    NotFound(String),
    /// A field's value is refused.
    #[error("{detail}")]
    Invalid {
        /// The field's JSON path.
        field: String,
        /// Why.
        detail: String,
    },
    /// The deferral rules refused the step.
    #[error(transparent)]
    Refused(DeferralError),
    /// Reading governance records failed.
    #[error(transparent)]
    Governance(#[from] GovernanceError),
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeferralServiceError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

/// The stored deferral `id`.
pub async fn load(state: &AppState, id: &str) -> Result<StoredDeferral, DeferralServiceError> {
    state
        .store
        .deferral(id)
        .await?
        .ok_or_else(|| DeferralServiceError::NotFound(format!("deferral {id} not found")))
}

/// Checks the target of `principal`'s request and stores the request as pending.
pub async fn request(
    state: &AppState,
    principal: &Principal,
    request: DeferralRequest,
    now: Timestamp,
) -> Result<StoredDeferral, DeferralServiceError> {
    let mut request = request;
    match &mut request.target {
        DeferralTarget::Finding { id } => {
            let number: i64 = id.trim().parse().map_err(|_| {
                DeferralServiceError::invalid(
                    "target.id",
                    format!("target.id: {id:?} is not a finding id"),
                )
            })?;
            if state.store.finding(number).await?.is_none() {
                return Err(DeferralServiceError::invalid(
                    "target.id",
                    format!("target.id: no finding {number}"),
                ));
            }
            *id = number.to_string();
        }
        DeferralTarget::HostPackage { host, package } => {
            let key = host.trim().to_ascii_lowercase();
            if state.store.asset(&key).await?.is_none() {
                return Err(DeferralServiceError::invalid(
                    "target.host",
                    format!("target.host: no asset {key} in the CMDB"),
                ));
            }
            *host = key;
            *package = package.trim().to_owned();
        }
    }
    let person = governance::person(&state.store, principal).await?;
    let policy = current_policy::<DeferralPolicy>(&state.store).await?.policy;
    let deferral = Deferral::request("new", request, &person, &policy, now)
        .map_err(DeferralServiceError::Refused)?;
    let stored = state
        .store
        .create_deferral(deferral, &principal.actor())
        .await?;
    Ok(stored)
}

/// The records `filter` picks, as they stand at `now`.
pub async fn list(
    state: &AppState,
    filter: DeferralFilter,
    now: Timestamp,
) -> Result<Vec<StoredDeferral>, DeferralServiceError> {
    let status = filter.status.as_deref();
    if let Some(status) = status
        && !matches!(status, "pending" | "active" | "expired" | "revoked")
    {
        return Err(DeferralServiceError::invalid(
            "status",
            format!("status: {status:?} is not pending, active, expired or revoked"),
        ));
    }
    let stored = state
        .store
        .deferrals(&DeferralsQuery {
            hostname: filter.host.map(|h| h.trim().to_ascii_lowercase()),
            finding_id: filter.finding,
            include_revoked: status == Some("revoked"),
        })
        .await?;
    Ok(stored
        .into_iter()
        .filter(|s| {
            status.is_none_or(|wanted| {
                let name = match s.deferral.status(now) {
                    DeferralStatus::Pending => "pending",
                    DeferralStatus::Active { .. } => "active",
                    DeferralStatus::Expired { .. } => "expired",
                    DeferralStatus::Revoked { .. } => "revoked",
                };
                name == wanted
            })
        })
        .collect())
}

/// Applies `change` (approve, renew, revoke) to deferral `id` as `principal` and stores it,
/// audited as `action`.
pub async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    action: &str,
    now: Timestamp,
    change: impl FnOnce(
        &mut Deferral,
        &access::Actor,
        &DeferralPolicy,
        Timestamp,
    ) -> Result<(), DeferralError>,
) -> Result<StoredDeferral, DeferralServiceError> {
    let stored = load(state, id).await?;
    let person = governance::person(&state.store, principal).await?;
    let policy = current_policy::<DeferralPolicy>(&state.store).await?.policy;
    let mut deferral = stored.deferral.clone();
    change(&mut deferral, &person, &policy, now).map_err(DeferralServiceError::Refused)?;
    let saved = state
        .store
        .update_deferral(&deferral, stored.version, action, &principal.actor())
        .await?;
    Ok(saved)
}
