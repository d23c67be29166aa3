//! The orchestrator's errors. The API maps them to problem documents in one place
//! (`From<RolloutError> for ApiError` in `crate::error`); the orchestrator knows no HTTP.

use sluice_store::StoreError;

use crate::calendar::CalendarError;
use crate::changes::ChangeError;

/// Why a rollout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The rollout or the change it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with where the rollout or its change stands.
    #[error("{0}")]
    Conflict(String),
    /// The request cannot be carried out as a whole (nothing to plan, no agent).
    #[error("{0}")]
    Invalid(String),
    /// One field of the request is not acceptable.
    #[error("{field}: {detail}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why.
        detail: String,
    },
    /// The person may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored rollout no longer reads.
    #[error("rollout {id}: stored {what} cannot be read: {reason}")]
    Corrupt {
        /// The rollout.
        id: String,
        /// Which part.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Something that should not fail did (a value that does not serialise).
    #[error("{0}")]
    Internal(String),
    /// The change service refused or failed (starting or finishing the change).
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// The calendar service failed (windows and freezes of the hosts).
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}
