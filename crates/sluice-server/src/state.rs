//! What every request handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sluice_store::Store;

use crate::auth::{AccessTable, LoginLimiter};
use crate::intel::IntelHandle;
use crate::settings::Settings;

/// Shared state: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// Access rules from the OpenAPI document.
    pub access: Arc<AccessTable>,
    /// Failed-login bookkeeping.
    pub limiter: LoginLimiter,
    /// The advisory index and the lock that serialises recomputation.
    pub intel: IntelHandle,
    /// Renders `/metrics`, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
}
