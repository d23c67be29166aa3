//! The audit trail.

use serde::{Deserialize, Serialize};

/// The result of recomputing the chain.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    /// Whether the chain is intact.
    pub intact: bool,
    /// Events verified (the head's sequence number when intact).
    pub events: i64,
    /// The head hash, to anchor outside the database.
    pub head_hash: Option<String>,
    /// The first break, when not intact.
    pub problem: Option<String>,
}
