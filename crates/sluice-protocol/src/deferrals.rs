//! Deferrals: risk acceptance records.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sluice_core::deferral::{Deferral, DeferralStatus};

/// A record as the API shows it: the record, its version and where it stands now.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeferralView {
    /// The record.
    #[serde(flatten)]
    pub deferral: Deferral,
    /// Raised by one with every write.
    pub version: i64,
    /// `pending`, `active` (until), `expired` (since) or `revoked` (at).
    pub status: DeferralStatus,
}

/// Approval of a record (no fields).
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {}

/// A renewal.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// The new expiry (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub expires_at: Timestamp,
    /// A new justification, if the reason changed.
    pub justification: Option<String>,
}

/// A revocation.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Why.
    pub reason: String,
}

/// Which records to list.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct DeferralFilter {
    /// Only records on this host.
    pub host: Option<String>,
    /// Only records for this finding.
    pub finding: Option<String>,
    /// `pending`, `active`, `expired` or `revoked` (revoked ones are listed only when asked).
    pub status: Option<String>,
}
