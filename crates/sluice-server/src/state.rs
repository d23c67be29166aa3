//! What every request handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sluice_store::Store;

use crate::auth::{AccessTable, LoginLimiter};
use crate::clock::Clock;
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
    /// The last asset list read, with the table's stamp when it was read.
    pub assets: AssetCache,
    /// Renders `/metrics`, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// Wakes agents long-polling for jobs on this replica when a job is queued for them.
    pub job_signals: JobSignals,
    /// The time governance decisions are made at.
    pub clock: Clock,
    /// Wakes the rollout orchestrator; tells event streams a rollout moved.
    pub rollouts: crate::rollouts::RolloutHub,
    /// Held while a change's schedule is checked against the calendar and written.
    pub schedule_lock: Arc<tokio::sync::Mutex<()>>,
}

/// One wake-up per agent waiting for work. Waiters also re-check the database every few
/// seconds, so a job queued through another replica is seen without a signal.
#[derive(Clone, Default)]
pub struct JobSignals(
    Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>>,
);

impl JobSignals {
    /// The agent's signal, made on first use.
    pub fn of(&self, agent_id: &str) -> Arc<tokio::sync::Notify> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(agent_id.to_owned()).or_default().clone()
    }

    /// Wakes the agent if it is waiting here (or makes its next wait return at once).
    pub fn notify(&self, agent_id: &str) {
        self.of(agent_id).notify_one();
    }
}

/// A copy of the asset table for selector evaluation, refreshed when the table's stamp changes
/// (so changes made through another replica are seen on the next request).
#[derive(Clone, Default)]
pub struct AssetCache(Arc<tokio::sync::Mutex<Option<StampedAssets>>>);

/// The asset table's stamp and the assets read with it.
type StampedAssets = (String, Arc<Vec<sluice_core::cmdb::Asset>>);

impl AssetCache {
    /// The current assets.
    pub async fn get(
        &self,
        store: &Store,
    ) -> Result<Arc<Vec<sluice_core::cmdb::Asset>>, sluice_store::StoreError> {
        let stamp = store.assets_stamp().await?;
        let mut cached = self.0.lock().await;
        if let Some((seen, assets)) = cached.as_ref()
            && *seen == stamp
        {
            return Ok(assets.clone());
        }
        let assets = Arc::new(store.assets().await?);
        *cached = Some((stamp, assets.clone()));
        Ok(assets)
    }
}
