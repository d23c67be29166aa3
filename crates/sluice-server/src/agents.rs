//! Agents on the server: enrolment, signed challenges for short-lived access tokens,
//! revocation, inventory ingest, and jobs (queued by operators, long-polled, claimed and reported
//! by agents). An agent sees and touches only its own jobs and inventory: its host name comes
//! from its token, never from the request. This module knows nothing of HTTP: `crate::error`
//! maps [`AgentError`] to problem documents.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sluice_core::agent_auth::{self, CHALLENGE_SECONDS, MAX_AGENT_TOKEN_SECONDS};
use sluice_core::inventory::host::HostInventory;
use sluice_core::job::{Job, JobReport};
use sluice_store::{Agent, EnrollRefusal, StoreError, StoredJob};

use sluice_protocol::agents::{
    AgentToken, Challenge, CreateJob, Enroll, Enrolled, InventoryDiff, IssuedEnrollmentToken,
    JobFilter, TokenRequest,
};
use sluice_protocol::findings::PushReport;

use crate::auth::{AGENT_TOKEN_PREFIX, AgentPrincipal, Principal, new_secret, token_hash};
use crate::findings::{FindingsError, ingest};
use crate::settings::parse_duration;
use crate::state::AppState;

/// Prefix of enrollment tokens.
const ENROLL_PREFIX: &str = "slce_";

/// Longest a long poll waits, in seconds.
const MAX_WAIT_SECONDS: u64 = 30;

/// What went wrong with an agent, its credentials, its inventory or a job.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No such agent or job.
    #[error("{0}")]
    NotFound(String),
    /// The credentials (enrollment token, challenge, signature) are not valid.
    #[error("{0}")]
    NotAuthenticated(String),
    /// The state does not allow it (already enrolled, inventory base moved).
    #[error("{0}")]
    Conflict(String),
    /// A field's value is refused.
    #[error("{detail}")]
    Invalid {
        /// The field's JSON path.
        field: String,
        /// Why.
        detail: String,
    },
    /// Something that should not fail did (randomness, a stored key, time arithmetic).
    #[error("{0}")]
    Internal(String),
    /// Storing the inventory or its findings failed.
    #[error(transparent)]
    Findings(#[from] FindingsError),
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AgentError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

/// A time as the agent tables store it: RFC 3339 UTC with microseconds, so text order is time
/// order.
fn stamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The CMDB's host-name rule; the answer keeps the words the agent routes have always used.
fn valid_hostname(text: &str) -> Result<String, AgentError> {
    sluice_core::cmdb::parse_hostname(text)
        .map_err(|_| AgentError::invalid("hostname", "a host name: letters, digits, '-', '.', '_'"))
}

/// Issues a one-time enrollment token living `expires_in` (at most 7 days).
pub async fn create_enrollment_token(
    state: &AppState,
    principal: &Principal,
    expires_in: &str,
) -> Result<IssuedEnrollmentToken, AgentError> {
    let lifetime = parse_duration("expires_in", expires_in)
        .map_err(|e| AgentError::invalid("expires_in", e.to_string()))?;
    if lifetime > Duration::from_secs(7 * 86_400) {
        return Err(AgentError::invalid(
            "expires_in",
            "an enrollment token lives at most 7 days",
        ));
    }
    let span = jiff::SignedDuration::try_from(lifetime).map_err(AgentError::internal)?;
    let expires_at = stamp(
        jiff::Timestamp::now()
            .checked_add(span)
            .map_err(AgentError::internal)?,
    );
    let (secret, hash) = new_secret(ENROLL_PREFIX).map_err(AgentError::internal)?;
    let id = state
        .store
        .create_enrollment_token(&hash, &expires_at, &principal.actor())
        .await?;
    Ok(IssuedEnrollmentToken {
        id,
        token: secret,
        expires_at,
    })
}

/// Every agent.
pub async fn list(state: &AppState) -> Result<Vec<Agent>, AgentError> {
    Ok(state.store.agents().await?)
}

/// Revokes the agent of `hostname`.
pub async fn revoke(
    state: &AppState,
    principal: &Principal,
    hostname: &str,
) -> Result<Agent, AgentError> {
    let agent = state
        .store
        .revoke_agent(&hostname.to_ascii_lowercase(), &principal.actor())
        .await?;
    Ok(agent)
}

/// Gives a newly enrolled host a CMDB record from its labels, unless it has one.
async fn seed_asset(
    state: &AppState,
    hostname: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), AgentError> {
    if state.store.asset(hostname).await?.is_some() {
        return Ok(());
    }
    let Ok(mut asset) = sluice_core::cmdb::Asset::new(hostname) else {
        return Ok(());
    };
    let mut applied = false;
    for (key, value) in labels {
        match asset.set(key, value) {
            Ok(()) => applied = true,
            Err(e) => {
                tracing::debug!(%hostname, %key, error = %e, "agent label kept on the agent only")
            }
        }
    }
    if applied {
        state
            .store
            .upsert_asset(
                &asset,
                &sluice_store::Actor::named(&format!("agent:{hostname}"), None),
            )
            .await?;
    }
    Ok(())
}

/// Enrolls an agent with a one-time token; `request_id` goes to the audit chain.
pub async fn enroll(
    state: &AppState,
    request: Enroll,
    request_id: Option<&str>,
) -> Result<Enrolled, AgentError> {
    let hostname = valid_hostname(&request.hostname)?;
    if agent_auth::from_hex::<32>(&request.public_key)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .is_none()
    {
        return Err(AgentError::invalid(
            "public_key",
            "an Ed25519 public key: 32 bytes as 64 hex digits",
        ));
    }
    let outcome = state
        .store
        .enroll_agent(
            &token_hash(request.enrollment_token.trim()),
            &hostname,
            &request.public_key.to_ascii_lowercase(),
            &request.labels,
            &stamp(jiff::Timestamp::now()),
            request_id,
        )
        .await?;
    match outcome {
        Ok(agent) => {
            seed_asset(state, &hostname, &request.labels).await?;
            Ok(Enrolled { agent_id: agent.id })
        }
        Err(EnrollRefusal::UnknownToken) => Err(AgentError::NotAuthenticated(
            "unknown enrollment token".into(),
        )),
        Err(EnrollRefusal::TokenUsed) => Err(AgentError::NotAuthenticated(
            "the enrollment token was already used: ask an admin for a new one".into(),
        )),
        Err(EnrollRefusal::TokenExpired) => Err(AgentError::NotAuthenticated(
            "the enrollment token has expired".into(),
        )),
        Err(EnrollRefusal::AlreadyEnrolled) => Err(AgentError::Conflict(format!(
            "{hostname} already has an agent; revoke it first (sluice agents revoke {hostname})"
        ))),
    }
}

/// A challenge for agent `agent_id` to sign.
pub async fn challenge(state: &AppState, agent_id: &str) -> Result<Challenge, AgentError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(AgentError::internal)?;
    let nonce = agent_auth::to_hex(&bytes);
    let expires_at = stamp(
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(CHALLENGE_SECONDS))
            .map_err(AgentError::internal)?,
    );
    if !state
        .store
        .create_challenge(agent_id, &nonce, &expires_at)
        .await?
    {
        return Err(AgentError::NotAuthenticated(
            "unknown or revoked agent".into(),
        ));
    }
    Ok(Challenge { nonce, expires_at })
}

/// A short-lived access token for a signed challenge.
pub async fn token(state: &AppState, request: TokenRequest) -> Result<AgentToken, AgentError> {
    let refused =
        || AgentError::NotAuthenticated("the challenge or its signature is not valid".into());
    let (agent_id, expires_at) = state
        .store
        .take_challenge(&request.nonce)
        .await?
        .ok_or_else(refused)?;
    let now = jiff::Timestamp::now();
    if agent_id != request.agent_id || expires_at <= stamp(now) {
        return Err(refused());
    }
    let agent = state
        .store
        .agent(&agent_id)
        .await?
        .filter(|a| a.revoked_at.is_none())
        .ok_or_else(refused)?;
    let key = agent_auth::from_hex::<32>(&agent.public_key)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| AgentError::Internal(format!("stored key of agent {agent_id}")))?;
    let signature = agent_auth::from_hex::<64>(&request.signature)
        .map(|bytes| Signature::from_bytes(&bytes))
        .ok_or_else(refused)?;
    key.verify(
        &agent_auth::challenge_message(&agent_id, &request.nonce),
        &signature,
    )
    .map_err(|_| refused())?;
    let (secret, hash) = new_secret(AGENT_TOKEN_PREFIX).map_err(AgentError::internal)?;
    let expires_at = stamp(
        now.checked_add(jiff::SignedDuration::from_secs(MAX_AGENT_TOKEN_SECONDS))
            .map_err(AgentError::internal)?,
    );
    if !state
        .store
        .issue_agent_token(&agent_id, &hash, &expires_at)
        .await?
    {
        return Err(refused());
    }
    Ok(AgentToken {
        token: secret,
        expires_at,
    })
}

/// Stores the agent's whole inventory and its findings.
pub async fn put_inventory(
    state: &AppState,
    principal: &AgentPrincipal,
    inventory: HostInventory,
) -> Result<PushReport, AgentError> {
    let ecosystem = inventory
        .os_release
        .ecosystem()
        .map_err(|e| AgentError::invalid("os_release", e.to_string()))?;
    let os_release = serde_json::to_string(&inventory.os_release).map_err(AgentError::internal)?;
    let report = ingest(
        state,
        principal.agent.hostname.clone(),
        ecosystem,
        inventory.packages,
        Some(&os_release),
        inventory.reboot_required,
        &principal.actor(),
    )
    .await?;
    state.store.inventory_received(&principal.agent.id).await?;
    state.rollouts.inventory_of(&principal.agent.hostname);
    Ok(report)
}

/// Applies a diff against the stored inventory and stores the result with its findings.
pub async fn patch_inventory(
    state: &AppState,
    principal: &AgentPrincipal,
    diff: InventoryDiff,
) -> Result<PushReport, AgentError> {
    let hostname = principal.agent.hostname.clone();
    let Some((stored, mut packages)) = state.store.inventory(&hostname).await? else {
        return Err(AgentError::Conflict(
            "no inventory is stored for this host: send it whole (PUT)".into(),
        ));
    };
    if stored.package_hash != diff.base {
        return Err(AgentError::Conflict(
            "the stored inventory is not the diff's base: send it whole (PUT)".into(),
        ));
    }
    let ecosystem = diff
        .os_release
        .ecosystem()
        .map_err(|e| AgentError::invalid("os_release", e.to_string()))?;
    let key = |name: &str, arch: Option<&str>| (name.to_owned(), arch.map(str::to_owned));
    let gone: HashSet<(String, Option<String>)> = diff
        .removed
        .iter()
        .map(|r| key(&r.name, r.arch.as_deref()))
        .chain(diff.added.iter().map(|p| key(&p.name, p.arch.as_deref())))
        .collect();
    packages.retain(|p| !gone.contains(&key(&p.name, p.arch.as_deref())));
    packages.extend(diff.added);
    let os_release = serde_json::to_string(&diff.os_release).map_err(AgentError::internal)?;
    let report = ingest(
        state,
        hostname,
        ecosystem,
        packages,
        Some(&os_release),
        diff.reboot_required,
        &principal.actor(),
    )
    .await?;
    state.store.inventory_received(&principal.agent.id).await?;
    state.rollouts.inventory_of(&principal.agent.hostname);
    Ok(report)
}

/// Whether the agent is asked to send its inventory.
pub async fn inventory_requested(
    state: &AppState,
    principal: &AgentPrincipal,
) -> Result<bool, AgentError> {
    Ok(state.store.inventory_requested(&principal.agent.id).await?)
}

/// Asks the agent of `hostname` for its inventory, waking it if it waits here.
pub async fn request_inventory(
    state: &AppState,
    principal: &Principal,
    hostname: &str,
) -> Result<Agent, AgentError> {
    let agent = state
        .store
        .request_inventory(&hostname.to_ascii_lowercase(), &principal.actor())
        .await?;
    state.job_signals.notify(&agent.id);
    Ok(agent)
}

/// The agent's next job, waiting up to `wait` seconds (at most 30) for one; `None` when none
/// came or the agent is asked for its inventory.
pub async fn next_job(
    state: &AppState,
    principal: &AgentPrincipal,
    wait: Option<u64>,
) -> Result<Option<Job>, AgentError> {
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(wait.unwrap_or(25).min(MAX_WAIT_SECONDS));
    let signal = state.job_signals.of(&principal.agent.id);
    loop {
        if let Some(job) = state.store.claim_job(&principal.agent).await? {
            return Ok(Some(job.job));
        }
        let now = tokio::time::Instant::now();
        // An inventory request ends the wait: the agent's next round sends it.
        if now >= deadline || state.store.inventory_requested(&principal.agent.id).await? {
            return Ok(None);
        }
        // Woken by a job queued on this replica, or re-check after 5 s for other replicas.
        let nap = (deadline - now).min(Duration::from_secs(5));
        let _ = tokio::time::timeout(nap, signal.notified()).await;
    }
}

/// Records the agent's report on its job `id`.
pub async fn report_job(
    state: &AppState,
    principal: &AgentPrincipal,
    id: &str,
    report: &JobReport,
) -> Result<StoredJob, AgentError> {
    let job = state.store.report_job(&principal.agent, id, report).await?;
    metrics::counter!("sluice_jobs_reported_total", "outcome" => job.state.as_str()).increment(1);
    state.rollouts.wake();
    Ok(job)
}

/// Checks and queues a job for a host; `true` when it is new (not a retry of the same key).
pub async fn create_job(
    state: &AppState,
    principal: &Principal,
    request: CreateJob,
) -> Result<(StoredJob, bool), AgentError> {
    let hostname = valid_hostname(&request.host)?;
    let mut spec = request.job;
    let Some(object) = spec.as_object_mut() else {
        return Err(AgentError::invalid("job", "a JSON object"));
    };
    let id = match object.get("id").and_then(|v| v.as_str()) {
        Some(id) => id.to_owned(),
        None => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(AgentError::internal)?;
            let id = format!("job-{}", agent_auth::to_hex(&bytes));
            object.insert("id".into(), id.clone().into());
            id
        }
    };
    if !object.contains_key("idempotency_key") {
        object.insert("idempotency_key".into(), id.into());
    }
    let job: Job = serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        AgentError::invalid(&format!("job.{path}"), e.into_inner().to_string())
    })?;
    let scheme = state
        .store
        .asset(&hostname)
        .await?
        .and_then(|a| a.os)
        .map(|os| os.scheme())
        .unwrap_or(sluice_core::version::Scheme::Deb);
    job.validate(scheme)
        .map_err(|e| AgentError::invalid("job", e.to_string()))?;
    let (stored, created) = state
        .store
        .create_job(&job, &hostname, &principal.actor())
        .await?;
    if created {
        state.job_signals.notify(&stored.agent_id);
    }
    Ok((stored, created))
}

/// Recent jobs, of one host or all.
pub async fn list_jobs(state: &AppState, filter: JobFilter) -> Result<Vec<StoredJob>, AgentError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AgentError::invalid("limit", "1 to 1000"));
    }
    let host = filter.host.map(|h| h.to_ascii_lowercase());
    Ok(state.store.jobs(host.as_deref(), limit).await?)
}

/// Job `id`.
pub async fn job(state: &AppState, id: &str) -> Result<StoredJob, AgentError> {
    state
        .store
        .job(id)
        .await?
        .ok_or_else(|| AgentError::NotFound(format!("job {id}")))
}
