//! The background task: advances every open rollout when woken (a job report, an inventory a
//! rollout waits for), when the engine's wait ends, and every few seconds anyway.

use std::time::Duration;

use jiff::Timestamp;

use super::advance::advance;
use super::error::RolloutError;
use crate::state::AppState;

/// How often every open rollout is advanced even when nothing woke the task.
const TICK: Duration = Duration::from_secs(3);

/// Advances every open rollout; returns when the earliest of them asked to be looked at again.
pub async fn advance_all(state: &AppState) -> Result<Option<Timestamp>, RolloutError> {
    let mut earliest: Option<Timestamp> = None;
    for stored in state.store.rollouts(None, true).await? {
        match advance(state, &stored.id).await {
            Ok(advanced) => {
                let until = advanced
                    .runtime
                    .get("wait_until")
                    .and_then(|v| serde_json::from_value::<Option<Timestamp>>(v.clone()).ok())
                    .flatten();
                if let Some(until) = until {
                    earliest = Some(earliest.map_or(until, |e| e.min(until)));
                }
            }
            Err(e) => {
                tracing::warn!(rollout = %stored.id, error = %e, "advancing the rollout failed");
            }
        }
    }
    Ok(earliest)
}

/// The background task: advances open rollouts when woken, when a wait ends, and every few
/// seconds.
pub async fn drive(state: AppState) {
    loop {
        let next = match advance_all(&state).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "advancing rollouts failed");
                None
            }
        };
        let mut sleep = TICK;
        if let Some(until) = next {
            let now = state.clock.now();
            let wait = until.duration_since(now);
            if let Ok(wait) = Duration::try_from(wait)
                && wait < sleep
            {
                sleep = wait.max(Duration::from_millis(50));
            }
        }
        tokio::select! {
            () = state.rollouts.wake.notified() => {
                // Reports of one batch tend to come together, and an agent's fresh inventory
                // follows its report within a few milliseconds: take them in one advance.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            () = tokio::time::sleep(sleep) => {}
        }
    }
}
