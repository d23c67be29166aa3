//! The Alertmanager webhook's answer.

use serde::{Deserialize, Serialize};

/// What the webhook did.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertsReceived {
    /// Alerts in the payload.
    pub alerts: usize,
    /// Rollouts whose state they moved.
    pub rollouts: Vec<String>,
}
