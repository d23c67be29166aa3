//! Agents and the agent protocol: enrollment, signed challenges, access tokens, inventory and
//! jobs (docs/agent-protocol.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_core::job::{Job, JobReport, JobState, Target};

/// An enrollment token request.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    /// Lifetime such as `1h` (at most 7 days).
    pub expires_in: String,
}

/// A one-time enrollment token, shown once.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedEnrollmentToken {
    /// Its id (for the audit trail).
    pub id: String,
    /// The secret: give it to one agent (`sluice agent --enroll-token`).
    pub token: String,
    /// When it stops working if unused.
    pub expires_at: String,
}

/// An agent as listed.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// An agent's enrollment.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Enrolled {
    /// The id the agent signs challenges with.
    pub agent_id: String,
}

/// A challenge request.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The agent's id from enrollment.
    pub agent_id: String,
}

/// A challenge to sign.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Challenge {
    /// Random nonce, hex; good once.
    pub nonce: String,
    /// Answer before this.
    pub expires_at: String,
}

/// A signed challenge.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentToken {
    /// Bearer token for the agent routes.
    pub token: String,
    /// At most 15 minutes away.
    pub expires_at: String,
}

/// A package the agent no longer has, by name and architecture.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RemovedPackage {
    /// Package name.
    pub name: String,
    /// Architecture, when the package has one.
    #[serde(default)]
    pub arch: Option<String>,
}

/// What changed in a host's packages since the inventory whose hash is `base`.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InventoryDiff {
    /// `package_hash` of the inventory this diff applies to (from the last push's answer).
    pub base: String,
    /// `/etc/os-release`, as in a full inventory.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub os_release: sluice_core::inventory::OsRelease,
    /// Packages installed or changed (a new version replaces the stored one).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub added: Vec<sluice_core::inventory::InstalledPackage>,
    /// Packages removed.
    #[serde(default)]
    pub removed: Vec<RemovedPackage>,
    /// A reboot is pending, as in a full inventory.
    #[serde(default)]
    pub reboot_required: bool,
}

/// Whether an operator asked this agent for a fresh inventory.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryRequest {
    /// Send the whole inventory now.
    pub requested: bool,
}

/// A job to queue for a host's agent.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// The host.
    pub host: String,
    /// The job (`id` and `idempotency_key` may be left out: the server fills them).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub job: serde_json::Value,
}

/// A job made of targets only, as `sluice jobs create --target` writes it: the server fills
/// `id` (and `idempotency_key` when left out), the rest takes the job's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDraft {
    /// The exact versions to install.
    pub targets: Vec<Target>,
    /// The same key twice queues one job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// A job as the server keeps it (`/api/v1/jobs`): the spec, where it stands and the report
/// once there is one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRecord {
    /// The job, as the agent receives it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub job: Job,
    /// The agent it is for.
    pub agent_id: String,
    /// Its host.
    pub hostname: String,
    /// `queued`, `claimed`, `cancelled` or the reported outcome (`succeeded`, `failed`, …).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state: JobState,
    /// Who asked for it.
    pub created_by: String,
    /// When.
    pub created_at: String,
    /// When the agent took it.
    pub claimed_at: Option<String>,
    /// When the agent reported.
    pub finished_at: Option<String>,
    /// The agent's report.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub report: Option<JobReport>,
}

/// Job listing filters.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct JobFilter {
    /// One host.
    pub host: Option<String>,
    /// At most this many, newest first (1 to 1000; default 100).
    pub limit: Option<i64>,
}
