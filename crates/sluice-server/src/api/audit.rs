//! The audit chain, read-only.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use sluice_core::audit::AuditEvent;
use sluice_protocol::audit::Verification;
use utoipa::IntoParams;

use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Which events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events at or after this date (`YYYY-MM-DD`) or time (RFC 3339).
    pub since: Option<String>,
}

/// Normalises a `since` value to the stored RFC 3339 UTC form.
pub fn since_bound(text: &str) -> Result<String, String> {
    let timestamp = if let Ok(date) = text.parse::<jiff::civil::Date>() {
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|e| e.to_string())?
            .timestamp()
    } else {
        text.parse::<jiff::Timestamp>().map_err(|e| {
            format!("{text:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time: {e}")
        })?
    };
    Ok(timestamp.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// Audit events in order.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", security(("token" = ["security", "admin"])), params(EventQuery),
    responses((status = 200, body = Vec<Object>), (status = 422, body = Problem)))]
pub async fn list_events(
    State(state): State<AppState>,
    Query(query): Query<EventQuery>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let since = query
        .since
        .as_deref()
        .map(since_bound)
        .transpose()
        .map_err(|e| ApiError::invalid_field("since", e))?;
    Ok(Json(state.store.audit_events(since.as_deref()).await?))
}

/// Recomputes the whole chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("token" = ["security", "admin"])),
    responses((status = 200, body = Verification)))]
pub async fn verify(State(state): State<AppState>) -> Result<Json<Verification>, ApiError> {
    Ok(Json(match state.store.verify_audit().await? {
        Ok(head) => Verification {
            intact: true,
            events: head.seq,
            head_hash: Some(head.hash),
            problem: None,
        },
        Err(broken) => Verification {
            intact: false,
            events: 0,
            head_hash: None,
            problem: Some(broken.to_string()),
        },
    }))
}
