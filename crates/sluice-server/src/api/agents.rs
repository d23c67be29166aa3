//! Agents: enrollment, signed challenges for short-lived access tokens, revocation, inventory,
//! and jobs (queued by operators, long-polled, claimed and reported by agents).
//!
//! The protocol is written down in `docs/agent-protocol.md`. An agent sees and touches only its
//! own jobs and inventory: its host name comes from its token, never from the request.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sluice_core::inventory::host::HostInventory;
use sluice_core::job::JobReport;
use sluice_protocol::agents::{
    AgentToken, AgentView, Challenge, ChallengeRequest, CreateEnrollmentToken, CreateJob, Enroll,
    Enrolled, InventoryDiff, InventoryRequest, IssuedEnrollmentToken, JobFilter, JobRecord,
    TokenRequest,
};
use sluice_protocol::findings::PushReport;
use sluice_store::{Agent, StoredJob};
use utoipa::IntoParams;

use crate::agents;
use crate::auth::{AgentPrincipal, Principal};
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;

/// Creates a one-time enrollment token (admin).
#[utoipa::path(post, path = "/api/v1/agents/enrollment-tokens", tag = "agents", security(("token" = ["admin"])),
    request_body = CreateEnrollmentToken,
    responses((status = 201, body = IssuedEnrollmentToken), (status = 422, body = Problem)))]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateEnrollmentToken>,
) -> Result<(StatusCode, Json<IssuedEnrollmentToken>), ApiError> {
    let issued = agents::create_enrollment_token(&state, &principal, &request.expires_in).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// The API's view of a stored agent.
fn agent_view(agent: Agent) -> AgentView {
    AgentView {
        id: agent.id,
        hostname: agent.hostname,
        labels: agent.labels,
        enrolled_at: agent.enrolled_at,
        last_seen_at: agent.last_seen_at,
        revoked_at: agent.revoked_at,
        inventory_requested_at: agent.inventory_requested_at,
    }
}

/// The wire's record of a stored job.
fn job_record(stored: StoredJob) -> JobRecord {
    JobRecord {
        job: stored.job,
        agent_id: stored.agent_id,
        hostname: stored.hostname,
        state: stored.state,
        created_by: stored.created_by,
        created_at: stored.created_at,
        claimed_at: stored.claimed_at,
        finished_at: stored.finished_at,
        report: stored.report,
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
            .map(agent_view)
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
    let agent = agents::revoke(&state, &principal, &hostname).await?;
    Ok(Json(agent_view(agent)))
}

/// Enrolls an agent with a one-time token (anonymous: the token is the credential).
#[utoipa::path(post, path = "/api/v1/agent/enroll", tag = "agent protocol", request_body = Enroll,
    responses((status = 201, body = Enrolled), (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn enroll(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(request): ApiJson<Enroll>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    let enrolled = agents::enroll(&state, request, request_id).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

/// Issues a challenge for an enrolled, unrevoked agent (anonymous).
#[utoipa::path(post, path = "/api/v1/agent/challenge", tag = "agent protocol", request_body = ChallengeRequest,
    responses((status = 200, body = Challenge), (status = 401, body = Problem)))]
pub async fn challenge(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ChallengeRequest>,
) -> Result<Json<Challenge>, ApiError> {
    Ok(Json(agents::challenge(&state, &request.agent_id).await?))
}

/// Exchanges a signed challenge for an access token of at most 15 minutes (anonymous: the
/// signature is the credential).
#[utoipa::path(post, path = "/api/v1/agent/token", tag = "agent protocol", request_body = TokenRequest,
    responses((status = 200, body = AgentToken), (status = 401, body = Problem)))]
pub async fn token(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Json<AgentToken>, ApiError> {
    Ok(Json(agents::token(&state, request).await?))
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
    Ok(Json(
        agents::put_inventory(&state, &principal, inventory).await?,
    ))
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
    Ok(Json(
        agents::patch_inventory(&state, &principal, diff).await?,
    ))
}

/// Whether the calling agent should send its whole inventory now (agent).
#[utoipa::path(get, path = "/api/v1/agent/inventory-request", tag = "agent protocol", security(("agent" = [])),
    responses((status = 200, body = InventoryRequest)))]
pub async fn inventory_request(
    State(state): State<AppState>,
    Extension(principal): Extension<AgentPrincipal>,
) -> Result<Json<InventoryRequest>, ApiError> {
    Ok(Json(InventoryRequest {
        requested: agents::inventory_requested(&state, &principal).await?,
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
    let agent = agents::request_inventory(&state, &principal, &hostname).await?;
    Ok((StatusCode::ACCEPTED, Json(agent_view(agent))))
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
    Ok(
        match agents::next_job(&state, &principal, wait.wait).await? {
            Some(job) => Json(job).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

/// Records the calling agent's report on one of its own jobs (agent).
#[utoipa::path(post, path = "/api/v1/agent/jobs/{id}/report", tag = "agent protocol", security(("agent" = [])),
    params(("id" = String, Path, description = "job id")),
    request_body(content = Object, description = "the job report (sluice_core::job::JobReport)"),
    responses((status = 200, body = JobRecord), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn report_job(
    State(state): State<AppState>,
    Extension(principal): Extension<AgentPrincipal>,
    Path(id): Path<String>,
    ApiJson(report): ApiJson<JobReport>,
) -> Result<Json<JobRecord>, ApiError> {
    let stored = agents::report_job(&state, &principal, &id, &report).await?;
    Ok(Json(job_record(stored)))
}

/// Queues a job for a host's agent (operator, admin). The same idempotency key twice queues
/// one job.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "agents", security(("token" = ["operator", "admin"])),
    request_body = CreateJob,
    responses((status = 201, body = JobRecord), (status = 200, description = "already queued with that idempotency key", body = JobRecord),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<JobRecord>), ApiError> {
    let (stored, created) = agents::create_job(&state, &principal, request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(job_record(stored))))
}

/// Jobs, newest first (any role).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "agents", security(("token" = [])), params(JobFilter),
    responses((status = 200, body = Vec<JobRecord>)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    Query(filter): Query<JobFilter>,
) -> Result<Json<Vec<JobRecord>>, ApiError> {
    let jobs = agents::list_jobs(&state, filter).await?;
    Ok(Json(jobs.into_iter().map(job_record).collect()))
}

/// One job with its report (any role).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "agents", security(("token" = [])),
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = JobRecord), (status = 404, body = Problem)))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    Ok(Json(job_record(agents::job(&state, &id).await?)))
}
