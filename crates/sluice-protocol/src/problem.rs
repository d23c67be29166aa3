//! The error document every API failure answers with (RFC 9457, `application/problem+json`).

use serde::{Deserialize, Serialize};

/// The problem document (RFC 9457).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI reference for the problem type (`about:blank`: the title says it).
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's summary.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong.
    pub detail: String,
    /// JSON path of the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
