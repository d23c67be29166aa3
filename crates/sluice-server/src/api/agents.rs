//! Agents: enrollment, signed challenges for short-lived access tokens, revocation, inventory,
//! and jobs (queued by operators, long-polled, claimed and reported by agents).
//!
//! The protocol is written down in `docs/agent-protocol.md`. An agent sees and touches only its
//! own jobs and inventory: its host name comes from its token, never from the request.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sluice_core::agent_auth::{self, CHALLENGE_SECONDS, MAX_AGENT_TOKEN_SECONDS};
use sluice_core::inventory::host::HostInventory;
use sluice_core::job::{Job, JobReport};
use sluice_store::{Agent, EnrollRefusal, StoredJob};
use utoipa::{IntoParams, ToSchema};

use crate::api::findings::{PushReport, ingest};
use crate::auth::{AGENT_TOKEN_PREFIX, AgentPrincipal, Principal, new_secret, token_hash};
use crate::error::{ApiError, ApiJson, Problem};
use crate::settings::parse_duration;
use crate::state::AppState;

/// Prefix of enrollment tokens.
const ENROLL_PREFIX: &str = "slce_";

/// Longest a long poll waits, in seconds.
const MAX_WAIT_SECONDS: u64 = 30;

fn stamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// An enrollment token request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    /// Lifetime such as `1h` (at most 7 days).
    pub expires_in: String,
}

/// A one-time enrollment token, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedEnrollmentToken {
    /// Its id (for the audit trail).
    pub id: String,
    /// The secret: give it to one agent (`sluice agent --enroll-token`).
    pub token: String,
    /// When it stops working if unused.
    pub expires_at: String,
}

/// Creates a one-time enrollment token (admin).
#[utoipa::path(post, path = "/api/v1/agents/enrollment-tokens", tag = "agents", security(("token" = ["admin"])),
    request_body = CreateEnrollmentToken,
    responses((status = 201, body = IssuedEnrollmentToken), (status = 422, body = Problem)))]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateEnrollmentToken>,
) -> Result<(StatusCode, Json<IssuedEnrollmentToken>), ApiError> {
    let lifetime = parse_duration("expires_in", &request.expires_in)
        .map_err(|e| ApiError::invalid_field("expires_in", e.to_string()))?;
    if lifetime > Duration::from_secs(7 * 86_400) {
        return Err(ApiError::invalid_field(
            "expires_in",
            "an enrollment token lives at most 7 days",
        ));
    }
    let span = jiff::SignedDuration::try_from(lifetime).map_err(ApiError::internal)?;
    let expires_at = stamp(
        jiff::Timestamp::now()
            .checked_add(span)
            .map_err(ApiError::internal)?,
    );
    let (secret, hash) = new_secret(ENROLL_PREFIX)?;
    let id = state
        .store
        .create_enrollment_token(&hash, &expires_at, &principal.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedEnrollmentToken {
            id,
            token: secret,
            expires_at,
        }),
    ))
}

/// An agent as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    /// Id.
    pub id: String,
    /// Host.
    pub hostname: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Enrolled at.
    pub enrolled_at: String,
    /// Last call.
    pub last_seen_at: Option<String>,
    /// Revoked at.
    pub revoked_at: Option<String>,
    /// An inventory asked for and not sent yet, since.
    pub inventory_requested_at: Option<String>,
}

impl From<Agent> for AgentView {
    fn from(agent: Agent) -> Self {
        Self {
            id: agent.id,
            hostname: agent.hostname,
            labels: agent.labels,
            enrolled_at: agent.enrolled_at,
            last_seen_at: agent.last_seen_at,
            revoked_at: agent.revoked_at,
            inventory_requested_at: agent.inventory_requested_at,
        }
    }
}

/// Enrolled agents (any role).
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", security(("token" = [])),
    responses((status = 200, body = Vec<AgentView>)))]
pub async fn list_agents(State(state): State<AppState>) -> Result<Json<Vec<AgentView>>, ApiError> {
    Ok(Json(
        state
            .store
            .agents()
            .await?
            .into_iter()
            .map(AgentView::from)
            .collect(),
    ))
}

/// Revokes a host's agent at once: its tokens stop working on the next request (admin).
#[utoipa::path(post, path = "/api/v1/agents/{hostname}/revoke", tag = "agents", security(("token" = ["admin"])),
    params(("hostname" = String, Path, description = "the agent's host")),
    responses((status = 200, body = AgentView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn revoke_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(hostname): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let agent = state
        .store
        .revoke_agent(&hostname.to_ascii_lowercase(), &principal.actor())
        .await?;
    Ok(Json(agent.into()))
}

/// An agent's enrollment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    /// The one-time enrollment token.
    pub enrollment_token: String,
    /// The host's name.
    pub hostname: String,
    /// The agent's Ed25519 public key, 32 bytes as hex.
    pub public_key: String,
    /// Labels (`env=prod`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The enrolled agent's id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Enrolled {
    /// The id the agent signs challenges with.
    pub agent_id: String,
}

/// A host new to the CMDB takes its CMDB attributes (`env`, `tz`, `criticality`, …) from the
/// agent's labels, so `sluice agent --labels env=prod,tz=Europe/Berlin` places it in the right
/// ring and windows from the start. A host the CMDB already knows keeps what it says: the CMDB
/// is the source of truth. Labels that are not CMDB attributes are kept on the agent only.
async fn seed_asset(
    state: &AppState,
    hostname: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), ApiError> {
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

/// Enrolls an agent with a one-time token (anonymous: the token is the credential).
#[utoipa::path(post, path = "/api/v1/agent/enroll", tag = "agent protocol", request_body = Enroll,
    responses((status = 201, body = Enrolled), (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn enroll(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(request): ApiJson<Enroll>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let hostname = valid_hostname(&request.hostname)?;
    if agent_auth::from_hex::<32>(&request.public_key)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .is_none()
    {
        return Err(ApiError::invalid_field(
            "public_key",
            "an Ed25519 public key: 32 bytes as 64 hex digits",
        ));
    }
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let outcome = state
        .store
        .enroll_agent(
            &token_hash(request.enrollment_token.trim()),
            &hostname,
            &request.public_key.to_ascii_lowercase(),
            &request.labels,
            &stamp(jiff::Timestamp::now()),
            request_id.as_deref(),
        )
        .await?;
    match outcome {
        Ok(agent) => {
            seed_asset(&state, &hostname, &request.labels).await?;
            Ok((StatusCode::CREATED, Json(Enrolled { agent_id: agent.id })))
        }
        Err(EnrollRefusal::UnknownToken) => {
            Err(ApiError::unauthenticated("unknown enrollment token"))
        }
        Err(EnrollRefusal::TokenUsed) => Err(ApiError::unauthenticated(
            "the enrollment token was already used: ask an admin for a new one",
        )),
        Err(EnrollRefusal::TokenExpired) => Err(ApiError::unauthenticated(
            "the enrollment token has expired",
        )),
        Err(EnrollRefusal::AlreadyEnrolled) => Err(ApiError::conflict(format!(
            "{hostname} already has an agent; revoke it first (sluice agents revoke {hostname})"
        ))),
    }
}

fn valid_hostname(text: &str) -> Result<String, ApiError> {
    let hostname = text.trim().to_ascii_lowercase();
    if hostname.is_empty()
        || hostname.len() > 253
        || !hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(ApiError::invalid_field(
            "hostname",
            "a host name: letters, digits, '-', '.', '_'",
        ));
    }
    Ok(hostname)
}

/// A challenge request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The agent's id from enrollment.
    pub agent_id: String,
}

/// A challenge to sign.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Challenge {
    /// Random nonce, hex; good once.
    pub nonce: String,
    /// Answer before this.
    pub expires_at: String,
}

/// Issues a challenge for an enrolled, unrevoked agent (anonymous).
#[utoipa::path(post, path = "/api/v1/agent/challenge", tag = "agent protocol", request_body = ChallengeRequest,
    responses((status = 200, body = Challenge), (status = 401, body = Problem)))]
pub async fn challenge(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ChallengeRequest>,
) -> Result<Json<Challenge>, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    let nonce = agent_auth::to_hex(&bytes);
    let expires_at = stamp(
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(CHALLENGE_SECONDS))
            .map_err(ApiError::internal)?,
    );
    if !state
        .store
        .create_challenge(&request.agent_id, &nonce, &expires_at)
        .await?
    {
        return Err(ApiError::unauthenticated("unknown or revoked agent"));
    }
    Ok(Json(Challenge { nonce, expires_at }))
}

/// A signed challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The agent's id.
    pub agent_id: String,
    /// The nonce it signed.
    pub nonce: String,
    /// Ed25519 signature of the challenge message, 64 bytes as hex.
    pub signature: String,
}

/// A short-lived agent access token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentToken {
    /// Bearer token for the agent routes.
    pub token: String,
    /// At most 15 minutes away.
    pub expires_at: String,
}

/// Exchanges a signed challenge for an access token of at most 15 minutes (anonymous: the
/// signature is the credential).
#[utoipa::path(post, path = "/api/v1/agent/token", tag = "agent protocol", request_body = TokenRequest,
    responses((status = 200, body = AgentToken), (status = 401, body = Problem)))]
pub async fn token(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Json<AgentToken>, ApiError> {
    let refused = || ApiError::unauthenticated("the challenge or its signature is not valid");
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
        .ok_or_else(|| ApiError::internal(format!("stored key of agent {agent_id}")))?;
    let signature = agent_auth::from_hex::<64>(&request.signature)
        .map(|bytes| Signature::from_bytes(&bytes))
        .ok_or_else(refused)?;
    key.verify(
        &agent_auth::challenge_message(&agent_id, &request.nonce),
        &signature,
    )
    .map_err(|_| refused())?;
    let (secret, hash) = new_secret(AGENT_TOKEN_PREFIX)?;
    let expires_at = stamp(
        now.checked_add(jiff::SignedDuration::from_secs(MAX_AGENT_TOKEN_SECONDS))
            .map_err(ApiError::internal)?,
    );
    if !state
        .store
        .issue_agent_token(&agent_id, &hash, &expires_at)
        .await?
    {
        return Err(refused());
    }
    Ok(Json(AgentToken {
        token: secret,
        expires_at,
    }))
}

/// Stores the calling agent's host inventory and recomputes its findings (agent).
#[utoipa::path(put, path = "/api/v1/agent/inventory", tag = "agent protocol", security(("agent" = [])),
    request_body(content = Object, description = "the host inventory (sluice_core::inventory::HostInventory)"),
    responses((status = 200, body = PushReport), (status = 422, body = Problem)))]
pub async fn put_inventory(
    State(state): State<AppState>,
    Extension(principal): Extension<AgentPrincipal>,
    ApiJson(inventory): ApiJson<HostInventory>,
) -> Result<Json<PushReport>, ApiError> {
    let ecosystem = inventory
        .os_release
        .ecosystem()
        .map_err(|e| ApiError::invalid_field("os_release", e.to_string()))?;
    let os_release = serde_json::to_string(&inventory.os_release).map_err(ApiError::internal)?;
    let report = ingest(
        &state,
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
    Ok(Json(report))
}

/// A package the agent no longer has, by name and architecture.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovedPackage {
    /// Package name.
    pub name: String,
    /// Architecture, when the package has one.
    #[serde(default)]
    pub arch: Option<String>,
}

/// What changed in a host's packages since the inventory whose hash is `base`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryDiff {
    /// `package_hash` of the inventory this diff applies to (from the last push's answer).
    pub base: String,
    /// `/etc/os-release`, as in a full inventory.
    #[schema(value_type = Object)]
    pub os_release: sluice_core::inventory::OsRelease,
    /// Packages installed or changed (a new version replaces the stored one).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub added: Vec<sluice_core::inventory::InstalledPackage>,
    /// Packages removed.
    #[serde(default)]
    pub removed: Vec<RemovedPackage>,
    /// A reboot is pending, as in a full inventory.
    #[serde(default)]
    pub reboot_required: bool,
}

/// Applies a diff to the calling agent's stored inventory and recomputes its findings (agent).
/// 409 when the stored inventory is not the diff's base: the agent then sends it whole.
#[utoipa::path(patch, path = "/api/v1/agent/inventory", tag = "agent protocol", security(("agent" = [])),
    request_body = InventoryDiff,
    responses((status = 200, body = PushReport), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_inventory(
    State(state): State<AppState>,
    Extension(principal): Extension<AgentPrincipal>,
    ApiJson(diff): ApiJson<InventoryDiff>,
) -> Result<Json<PushReport>, ApiError> {
    let hostname = principal.agent.hostname.clone();
    let Some((stored, mut packages)) = state.store.inventory(&hostname).await? else {
        return Err(ApiError::conflict(
            "no inventory is stored for this host: send it whole (PUT)",
        ));
    };
    if stored.package_hash != diff.base {
        return Err(ApiError::conflict(
            "the stored inventory is not the diff's base: send it whole (PUT)",
        ));
    }
    let ecosystem = diff
        .os_release
        .ecosystem()
        .map_err(|e| ApiError::invalid_field("os_release", e.to_string()))?;
    let key = |name: &str, arch: Option<&str>| (name.to_owned(), arch.map(str::to_owned));
    let gone: std::collections::HashSet<(String, Option<String>)> = diff
        .removed
        .iter()
        .map(|r| key(&r.name, r.arch.as_deref()))
        .chain(diff.added.iter().map(|p| key(&p.name, p.arch.as_deref())))
        .collect();
    packages.retain(|p| !gone.contains(&key(&p.name, p.arch.as_deref())));
    packages.extend(diff.added);
    let os_release = serde_json::to_string(&diff.os_release).map_err(ApiError::internal)?;
    let report = ingest(
        &state,
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
    Ok(Json(report))
}

/// Whether an operator asked this agent for a fresh inventory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InventoryRequest {
    /// Send the whole inventory now.
    pub requested: bool,
}

/// Whether the calling agent should send its whole inventory now (agent).
#[utoipa::path(get, path = "/api/v1/agent/inventory-request", tag = "agent protocol", security(("agent" = [])),
    responses((status = 200, body = InventoryRequest)))]
pub async fn inventory_request(
    State(state): State<AppState>,
    Extension(principal): Extension<AgentPrincipal>,
) -> Result<Json<InventoryRequest>, ApiError> {
    Ok(Json(InventoryRequest {
        requested: state.store.inventory_requested(&principal.agent.id).await?,
    }))
}

/// Asks a host's agent for a fresh, whole inventory; a waiting agent is woken (operator, admin).
#[utoipa::path(post, path = "/api/v1/agents/{hostname}/inventory-request", tag = "agents", security(("token" = ["operator", "admin"])),
    params(("hostname" = String, Path, description = "the agent's host")),
    responses((status = 202, body = AgentView), (status = 404, body = Problem)))]
pub async fn request_inventory(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(hostname): Path<String>,
) -> Result<(StatusCode, Json<AgentView>), ApiError> {
    let agent = state
        .store
        .request_inventory(&hostname.to_ascii_lowercase(), &principal.actor())
        .await?;
    state.job_signals.notify(&agent.id);
    Ok((StatusCode::ACCEPTED, Json(agent.into())))
}

/// How long to wait for a job.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// Seconds to wait when nothing is queued (0 to 30; default 25).
    pub wait: Option<u64>,
}

/// The calling agent's next job: long-polls up to `wait` seconds; 204 when none came (agent).
#[utoipa::path(get, path = "/api/v1/agent/jobs/next", tag = "agent protocol", security(("agent" = [])),
    params(Wait),
    responses((status = 200, description = "the job", body = Object), (status = 204, description = "no job")))]
pub async fn next_job(
    State(state): State<AppState>,
    Extension(principal): Extension<AgentPrincipal>,
    Query(wait): Query<Wait>,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(wait.wait.unwrap_or(25).min(MAX_WAIT_SECONDS));
    let signal = state.job_signals.of(&principal.agent.id);
    loop {
        if let Some(job) = state.store.claim_job(&principal.agent).await? {
            return Ok(Json(job.job).into_response());
        }
        let now = tokio::time::Instant::now();
        // An inventory request ends the wait: the agent's next round sends it.
        if now >= deadline || state.store.inventory_requested(&principal.agent.id).await? {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Woken by a job queued on this replica, or re-check after 5 s for other replicas.
        let nap = (deadline - now).min(Duration::from_secs(5));
        let _ = tokio::time::timeout(nap, signal.notified()).await;
    }
}

/// Records the calling agent's report on one of its own jobs (agent).
#[utoipa::path(post, path = "/api/v1/agent/jobs/{id}/report", tag = "agent protocol", security(("agent" = [])),
    params(("id" = String, Path, description = "job id")),
    request_body(content = Object, description = "the job report (sluice_core::job::JobReport)"),
    responses((status = 200, body = Object), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn report_job(
    State(state): State<AppState>,
    Extension(principal): Extension<AgentPrincipal>,
    Path(id): Path<String>,
    ApiJson(report): ApiJson<JobReport>,
) -> Result<Json<StoredJob>, ApiError> {
    let job = state
        .store
        .report_job(&principal.agent, &id, &report)
        .await?;
    metrics::counter!("sluice_jobs_reported_total", "outcome" => job.state.as_str()).increment(1);
    state.rollouts.wake();
    Ok(Json(job))
}

/// A job to queue for a host's agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// The host.
    pub host: String,
    /// The job (`id` and `idempotency_key` may be left out: the server fills them).
    #[schema(value_type = Object)]
    pub job: serde_json::Value,
}

/// Queues a job for a host's agent (operator, admin). The same idempotency key twice queues
/// one job.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "agents", security(("token" = ["operator", "admin"])),
    request_body = CreateJob,
    responses((status = 201, body = Object), (status = 200, description = "already queued with that idempotency key", body = Object),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<StoredJob>), ApiError> {
    let hostname = valid_hostname(&request.host)?;
    let mut spec = request.job;
    let Some(object) = spec.as_object_mut() else {
        return Err(ApiError::invalid_field("job", "a JSON object"));
    };
    let id = match object.get("id").and_then(|v| v.as_str()) {
        Some(id) => id.to_owned(),
        None => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
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
        ApiError::invalid_field(&format!("job.{path}"), e.into_inner().to_string())
    })?;
    let scheme = state
        .store
        .asset(&hostname)
        .await?
        .and_then(|a| a.os)
        .map(|os| os.scheme())
        .unwrap_or(sluice_core::version::Scheme::Deb);
    job.validate(scheme)
        .map_err(|e| ApiError::invalid_field("job", e.to_string()))?;
    let (stored, created) = state
        .store
        .create_job(&job, &hostname, &principal.actor())
        .await?;
    if created {
        state.job_signals.notify(&stored.agent_id);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)))
}

/// Job listing filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobFilter {
    /// One host.
    pub host: Option<String>,
    /// At most this many, newest first (1 to 1000; default 100).
    pub limit: Option<i64>,
}

/// Jobs, newest first (any role).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "agents", security(("token" = [])), params(JobFilter),
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    Query(filter): Query<JobFilter>,
) -> Result<Json<Vec<StoredJob>>, ApiError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "1 to 1000"));
    }
    let host = filter.host.map(|h| h.to_ascii_lowercase());
    Ok(Json(state.store.jobs(host.as_deref(), limit).await?))
}

/// One job with its report (any role).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "agents", security(("token" = [])),
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = Object), (status = 404, body = Problem)))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StoredJob>, ApiError> {
    state
        .store
        .job(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))
}
