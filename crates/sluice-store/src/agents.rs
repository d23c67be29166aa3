//! Agents and their jobs in the database.
//!
//! Enrollment tokens are one-time and stored hashed; an agent is known by its Ed25519 public key;
//! a challenge is used once; agent access tokens are stored hashed and die with a revocation.
//! Enrollment, revocation, job creation, claims and reports are audited in the same transaction
//! as the change. Challenges and access tokens are short-lived session material and are not
//! audited (a fleet of 10,000 agents would write a million such events a day); who did what with
//! them is, because every job claim and report is.
//!
//! Jobs are claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL (several replicas may serve the
//! same agent); on SQLite the write lock serialises claims. A job an agent claimed but never
//! reported is handed to the same agent again on its next poll: the agent's journal and the job's
//! idempotency key make the second delivery safe, and no job is lost to a crash.

use serde::{Deserialize, Serialize};
use sluice_core::job::{Job, JobReport, JobState};
use sqlx::Row;

use crate::accounts::new_id;
use crate::audit::append_audit;
use crate::record::audit_value;
use crate::{Actor, Result, Store, StoreError, begin_write, now, on_pool};

/// An enrolled agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// Id, chosen by the server at enrollment.
    pub id: String,
    /// The host it manages (its CMDB asset).
    pub hostname: String,
    /// Ed25519 public key, base64 (standard alphabet, padded).
    pub public_key: String,
    /// Labels given at enrollment (`k=v`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// When it enrolled.
    pub enrolled_at: String,
    /// When it last called the server.
    pub last_seen_at: Option<String>,
    /// When it was revoked; a revoked agent is refused everything.
    pub revoked_at: Option<String>,
    /// When an operator asked for a fresh inventory that has not come yet.
    pub inventory_requested_at: Option<String>,
}

/// A job as stored: the spec, where it stands and the report once there is one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    /// The job, as the agent receives it.
    pub job: Job,
    /// The agent it is for.
    pub agent_id: String,
    /// Its host.
    pub hostname: String,
    /// `queued`, `claimed`, `cancelled` or the reported outcome (`succeeded`, `failed`, …).
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
    pub report: Option<JobReport>,
}

/// How an enrollment attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// No such token.
    UnknownToken,
    /// The token was used before.
    TokenUsed,
    /// The token has expired.
    TokenExpired,
    /// The host has an agent that is not revoked.
    AlreadyEnrolled,
}

macro_rules! agent_from_row {
    ($row:expr) => {{
        let row = $row;
        let labels: String = row.try_get("labels")?;
        Agent {
            id: row.try_get("id")?,
            hostname: row.try_get("hostname")?,
            public_key: row.try_get("public_key")?,
            labels: serde_json::from_str(&labels)
                .map_err(|e| StoreError::Corrupt(format!("agent labels: {e}")))?,
            enrolled_at: row.try_get("enrolled_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            revoked_at: row.try_get("revoked_at")?,
            inventory_requested_at: row.try_get("inventory_requested_at")?,
        }
    }};
}

macro_rules! job_from_row {
    ($row:expr) => {{
        let row = $row;
        let spec: String = row.try_get("spec")?;
        let report: Option<String> = row.try_get("report")?;
        StoredJob {
            job: serde_json::from_str(&spec)
                .map_err(|e| StoreError::Corrupt(format!("job spec: {e}")))?,
            agent_id: row.try_get("agent_id")?,
            hostname: row.try_get("hostname")?,
            state: {
                let state: String = row.try_get("state")?;
                state
                    .parse::<sluice_core::job::JobState>()
                    .map_err(|e| StoreError::Corrupt(format!("job state: {e}")))?
            },
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            claimed_at: row.try_get("claimed_at")?,
            finished_at: row.try_get("finished_at")?,
            report: report
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("job report: {e}")))?,
        }
    }};
}

/// Whether the agent exists and is not revoked, read inside the transaction `$tx`.
macro_rules! live_agent {
    ($tx:ident, $agent_id:expr) => {
        sqlx::query("SELECT 1 FROM agents WHERE id = $1 AND revoked_at IS NULL")
            .bind($agent_id)
            .fetch_optional(&mut *$tx)
            .await?
            .is_some()
    };
}

const AGENT_COLUMNS: &str = "id, hostname, public_key, labels, enrolled_at, last_seen_at, revoked_at, inventory_requested_at";
pub(crate) use job_from_row;

pub(crate) const JOB_COLUMNS: &str =
    "id, agent_id, hostname, spec, state, created_by, created_at, claimed_at, finished_at, report";

impl Store {
    /// Stores a one-time enrollment token (its hash); audited `agent.enrollment-token.create`.
    /// Returns the token's id.
    pub async fn create_enrollment_token(
        &self,
        token_hash: &str,
        expires_at: &str,
        actor: &Actor,
    ) -> Result<String> {
        let id = new_id();
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            sqlx::query("INSERT INTO enrollment_tokens (id, token_hash, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&id)
                .bind(token_hash)
                .bind(&actor.name)
                .bind(&at)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "agent.enrollment-token.create",
                    format!("enrollment-token:{id}"),
                    None,
                    Some(serde_json::json!({"expires_at": expires_at}))
                )
            );
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Enrolls an agent with a one-time token: the token is spent and the agent stored in one
    /// transaction, audited `agent.enroll`. A revoked host may enroll again (new key, same id).
    pub async fn enroll_agent(
        &self,
        token_hash: &str,
        hostname: &str,
        public_key: &str,
        labels: &std::collections::BTreeMap<String, String>,
        now_at: &str,
        request_id: Option<&str>,
    ) -> Result<std::result::Result<Agent, EnrollRefusal>> {
        let labels_text =
            serde_json::to_string(labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let actor = Actor::named(&format!("agent:{hostname}"), request_id);
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let token = sqlx::query(
                "SELECT id, expires_at, used_at FROM enrollment_tokens WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(token) = token else {
                return Ok(Err(EnrollRefusal::UnknownToken));
            };
            let used_at: Option<String> = token.try_get("used_at")?;
            if used_at.is_some() {
                return Ok(Err(EnrollRefusal::TokenUsed));
            }
            let expires_at: String = token.try_get("expires_at")?;
            if expires_at.as_str() <= now_at {
                return Ok(Err(EnrollRefusal::TokenExpired));
            }
            let token_id: String = token.try_get("id")?;
            let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE hostname = $1");
            let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(hostname)
                .fetch_optional(&mut *tx)
                .await?;
            let before = match &existing {
                Some(row) => Some(agent_from_row!(row)),
                None => None,
            };
            if before.as_ref().is_some_and(|a| a.revoked_at.is_none()) {
                return Ok(Err(EnrollRefusal::AlreadyEnrolled));
            }
            let agent = Agent {
                id: before.as_ref().map(|a| a.id.clone()).unwrap_or_else(new_id),
                hostname: hostname.to_owned(),
                public_key: public_key.to_owned(),
                labels: labels.clone(),
                enrolled_at: now_at.to_owned(),
                last_seen_at: Some(now_at.to_owned()),
                revoked_at: None,
                inventory_requested_at: None,
            };
            if before.is_some() {
                sqlx::query("UPDATE agents SET public_key = $1, labels = $2, enrolled_at = $3, last_seen_at = $3, revoked_at = NULL WHERE id = $4")
                    .bind(&agent.public_key)
                    .bind(&labels_text)
                    .bind(&agent.enrolled_at)
                    .bind(&agent.id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query("INSERT INTO agents (id, hostname, public_key, labels, enrolled_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $5)")
                    .bind(&agent.id)
                    .bind(&agent.hostname)
                    .bind(&agent.public_key)
                    .bind(&labels_text)
                    .bind(&agent.enrolled_at)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE enrollment_tokens SET used_at = $1, used_by = $2 WHERE id = $3")
                .bind(now_at)
                .bind(&agent.id)
                .bind(&token_id)
                .execute(&mut *tx)
                .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "agent.enroll",
                    format!("agent:{hostname}"),
                    before.as_ref().map(|a| audit_value("agent", a)).transpose()?,
                    Some(serde_json::json!({"id": agent.id, "public_key": agent.public_key, "labels": labels, "enrollment_token": token_id}))
                )
            );
            tx.commit().await?;
            Ok(Ok(agent))
        })
    }

    /// One agent by id.
    pub async fn agent(&self, id: &str) -> Result<Option<Agent>> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1");
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(row) => Some(agent_from_row!(&row)),
                None => None,
            })
        })
    }

    /// Every agent, by host name.
    pub async fn agents(&self) -> Result<Vec<Agent>> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY hostname");
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?;
            let mut agents = Vec::with_capacity(rows.len());
            for row in &rows {
                agents.push(agent_from_row!(row));
            }
            Ok(agents)
        })
    }

    /// Revokes a host's agent at once: its access tokens and challenges are deleted in the same
    /// transaction. Audited `agent.revoke`.
    pub async fn revoke_agent(&self, hostname: &str, actor: &Actor) -> Result<Agent> {
        let at = now();
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE hostname = $1");
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(hostname)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("agent for host {hostname}")))?;
            let mut agent = agent_from_row!(&row);
            if agent.revoked_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "the agent of {hostname} is already revoked"
                )));
            }
            sqlx::query("UPDATE agents SET revoked_at = $1 WHERE id = $2")
                .bind(&at)
                .bind(&agent.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM agent_tokens WHERE agent_id = $1")
                .bind(&agent.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM agent_challenges WHERE agent_id = $1")
                .bind(&agent.id)
                .execute(&mut *tx)
                .await?;
            agent.revoked_at = Some(at.clone());
            append_audit!(
                tx,
                pg,
                actor.event(
                    "agent.revoke",
                    format!("agent:{hostname}"),
                    None,
                    Some(audit_value("agent", &agent)?)
                )
            );
            tx.commit().await?;
            Ok(agent)
        })
    }

    /// Stores a challenge for an agent that is enrolled and not revoked; `false` otherwise.
    pub async fn create_challenge(
        &self,
        agent_id: &str,
        nonce: &str,
        expires_at: &str,
    ) -> Result<bool> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let live = live_agent!(tx, agent_id);
            if live {
                // Expired challenges are swept as new ones come.
                sqlx::query("DELETE FROM agent_challenges WHERE expires_at <= $1")
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO agent_challenges (nonce, agent_id, expires_at) VALUES ($1, $2, $3)",
                )
                .bind(nonce)
                .bind(agent_id)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(live)
        })
    }

    /// Spends a challenge: returns its agent and expiry, and deletes it (a challenge is good for
    /// one signature only).
    pub async fn take_challenge(&self, nonce: &str) -> Result<Option<(String, String)>> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let row =
                sqlx::query("SELECT agent_id, expires_at FROM agent_challenges WHERE nonce = $1")
                    .bind(nonce)
                    .fetch_optional(&mut *tx)
                    .await?;
            let found = match row {
                Some(row) => Some((row.try_get("agent_id")?, row.try_get("expires_at")?)),
                None => None,
            };
            if found.is_some() {
                sqlx::query("DELETE FROM agent_challenges WHERE nonce = $1")
                    .bind(nonce)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(found)
        })
    }

    /// Stores an agent access token (its hash) unless the agent was revoked meanwhile; sweeps
    /// the agent's expired tokens. Returns whether it was stored.
    pub async fn issue_agent_token(
        &self,
        agent_id: &str,
        token_hash: &str,
        expires_at: &str,
    ) -> Result<bool> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let live = live_agent!(tx, agent_id);
            if live {
                sqlx::query("DELETE FROM agent_tokens WHERE agent_id = $1 AND expires_at <= $2")
                    .bind(agent_id)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO agent_tokens (token_hash, agent_id, expires_at) VALUES ($1, $2, $3)",
                )
                .bind(token_hash)
                .bind(agent_id)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE agents SET last_seen_at = $1 WHERE id = $2")
                    .bind(&at)
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(live)
        })
    }

    /// The agent an access token belongs to, with the token's expiry; revoked agents have no
    /// tokens.
    pub async fn agent_by_token(&self, token_hash: &str) -> Result<Option<(Agent, String)>> {
        let sql = "SELECT a.id, a.hostname, a.public_key, a.labels, a.enrolled_at, a.last_seen_at, a.revoked_at, a.inventory_requested_at, t.expires_at AS token_expires_at \
                   FROM agent_tokens t JOIN agents a ON a.id = t.agent_id WHERE t.token_hash = $1";
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(sql)
                .bind(token_hash)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(row) => {
                    let expires: String = row.try_get("token_expires_at")?;
                    Some((agent_from_row!(&row), expires))
                }
                None => None,
            })
        })
    }

    /// Asks a host's agent for a fresh inventory (it sends one on its next round); audited
    /// `agent.inventory-request`.
    pub async fn request_inventory(&self, hostname: &str, actor: &Actor) -> Result<Agent> {
        let at = now();
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE hostname = $1 AND revoked_at IS NULL"
        );
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(hostname)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("an enrolled agent on {hostname}")))?;
            let mut agent = agent_from_row!(&row);
            agent.inventory_requested_at = Some(at.clone());
            sqlx::query("UPDATE agents SET inventory_requested_at = $1 WHERE id = $2")
                .bind(&at)
                .bind(&agent.id)
                .execute(&mut *tx)
                .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "agent.inventory-request",
                    format!("agent:{hostname}"),
                    None,
                    Some(serde_json::json!({"requested_at": at}))
                )
            );
            tx.commit().await?;
            Ok(agent)
        })
    }

    /// Whether an inventory was asked of this agent and not sent since.
    pub async fn inventory_requested(&self, agent_id: &str) -> Result<bool> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT inventory_requested_at FROM agents WHERE id = $1")
                .bind(agent_id)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(row) => row
                    .try_get::<Option<String>, _>("inventory_requested_at")?
                    .is_some(),
                None => false,
            })
        })
    }

    /// Clears the request once the agent sent an inventory.
    pub async fn inventory_received(&self, agent_id: &str) -> Result<()> {
        on_pool!(self, |pool, pg| {
            sqlx::query("UPDATE agents SET inventory_requested_at = NULL WHERE id = $1 AND inventory_requested_at IS NOT NULL")
                .bind(agent_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Queues a job for a host's agent; audited `job.create`. A job whose idempotency key is
    /// already stored is not queued twice: the stored one comes back (and `false`).
    pub async fn create_job(
        &self,
        job: &Job,
        hostname: &str,
        actor: &Actor,
    ) -> Result<(StoredJob, bool)> {
        let at = now();
        let spec = serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let agent_sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE hostname = $1 AND revoked_at IS NULL"
        );
        let job_sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1");
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let existing = sqlx::query(sqlx::AssertSqlSafe(job_sql))
                .bind(&job.idempotency_key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                let stored = job_from_row!(&row);
                if stored.hostname != hostname || stored.job.targets != job.targets {
                    return Err(StoreError::Conflict(format!(
                        "idempotency key {} belongs to job {} with other targets or host",
                        job.idempotency_key, stored.job.id
                    )));
                }
                return Ok((stored, false));
            }
            let agent = sqlx::query(sqlx::AssertSqlSafe(agent_sql))
                .bind(hostname)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("an enrolled agent on {hostname}")))?;
            let agent = agent_from_row!(&agent);
            sqlx::query("INSERT INTO jobs (id, agent_id, hostname, idempotency_key, spec, state, created_by, created_at) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)")
                .bind(&job.id)
                .bind(&agent.id)
                .bind(hostname)
                .bind(&job.idempotency_key)
                .bind(&spec)
                .bind(&actor.name)
                .bind(&at)
                .execute(&mut *tx)
                .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "job.create",
                    format!("job:{}", job.id),
                    None,
                    Some(serde_json::json!({"host": hostname, "job": job}))
                )
            );
            tx.commit().await?;
            Ok((
                StoredJob {
                    job: job.clone(),
                    agent_id: agent.id,
                    hostname: hostname.to_owned(),
                    state: JobState::Queued,
                    created_by: actor.name.clone(),
                    created_at: at,
                    claimed_at: None,
                    finished_at: None,
                    report: None,
                },
                true,
            ))
        })
    }

    /// Cancels a job no agent has taken yet (audited `job.cancel`); true when it was queued.
    /// A job already claimed runs to its report.
    pub async fn cancel_job(&self, id: &str, actor: &Actor) -> Result<bool> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let done = sqlx::query(
                "UPDATE jobs SET state = 'cancelled', finished_at = $1 WHERE id = $2 AND state = 'queued'",
            )
            .bind(&at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let cancelled = done.rows_affected() == 1;
            if cancelled {
                append_audit!(
                    tx,
                    pg,
                    actor.event("job.cancel", format!("job:{id}"), None, None)
                );
            }
            tx.commit().await?;
            Ok(cancelled)
        })
    }

    /// The agent's next job: one it claimed but never reported first (redelivery after a crash),
    /// else the oldest queued one, which becomes `claimed` (audited `job.claim`).
    pub async fn claim_job(&self, agent: &Agent) -> Result<Option<StoredJob>> {
        let at = now();
        let actor = Actor::named(&format!("agent:{}", agent.hostname), None);
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let lock = if pg { " FOR UPDATE SKIP LOCKED" } else { "" };
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE agent_id = $1 AND state IN ('claimed', 'queued') \
                 ORDER BY CASE state WHEN 'claimed' THEN 0 ELSE 1 END, created_at, id LIMIT 1{lock}"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&agent.id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                tx.commit().await?;
                return Ok(None);
            };
            let mut job = job_from_row!(&row);
            if job.state == JobState::Queued {
                sqlx::query("UPDATE jobs SET state = 'claimed', claimed_at = $1 WHERE id = $2")
                    .bind(&at)
                    .bind(&job.job.id)
                    .execute(&mut *tx)
                    .await?;
                job.state = JobState::Claimed;
                job.claimed_at = Some(at.clone());
                append_audit!(
                    tx,
                    pg,
                    actor.event("job.claim", format!("job:{}", job.job.id), None, None)
                );
            }
            sqlx::query("UPDATE agents SET last_seen_at = $1 WHERE id = $2")
                .bind(&at)
                .bind(&agent.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(job))
        })
    }

    /// Records an agent's report on its own job; audited `job.report`. Another agent's job is
    /// "not found" (an agent learns nothing about jobs that are not its own). The same report
    /// twice is accepted once; a different report for a finished job is a conflict.
    pub async fn report_job(
        &self,
        agent: &Agent,
        job_id: &str,
        report: &JobReport,
    ) -> Result<StoredJob> {
        let at = now();
        let actor = Actor::named(&format!("agent:{}", agent.hostname), None);
        let text = serde_json::to_string(report).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND agent_id = $2");
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(job_id)
                .bind(&agent.id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
            let mut job = job_from_row!(&row);
            if report.job_id != job.job.id || report.idempotency_key != job.job.idempotency_key {
                return Err(StoreError::Invalid(format!(
                    "the report is for job {} ({}), not {job_id}",
                    report.job_id, report.idempotency_key
                )));
            }
            if let Some(previous) = &job.report {
                if previous == report {
                    tx.commit().await?;
                    return Ok(job);
                }
                return Err(StoreError::Conflict(format!(
                    "job {job_id} already reported {}",
                    job.state
                )));
            }
            let state = JobState::from(report.outcome);
            sqlx::query("UPDATE jobs SET state = $1, report = $2, finished_at = $3, claimed_at = COALESCE(claimed_at, $3) WHERE id = $4")
                .bind(state.as_str())
                .bind(&text)
                .bind(&at)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "job.report",
                    format!("job:{job_id}"),
                    Some(serde_json::json!({"state": job.state})),
                    Some(serde_json::json!({"state": state, "interrupted_at": report.interrupted_at, "versions_after": report.versions_after}))
                )
            );
            tx.commit().await?;
            job.state = state;
            job.finished_at = Some(at);
            job.report = Some(report.clone());
            Ok(job)
        })
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Option<StoredJob>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(row) => Some(job_from_row!(&row)),
                None => None,
            })
        })
    }

    /// Jobs, newest first, all or one host's.
    pub async fn jobs(&self, hostname: Option<&str>, limit: i64) -> Result<Vec<StoredJob>> {
        let sql = match hostname {
            Some(_) => format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE hostname = $1 ORDER BY created_at DESC, id LIMIT $2"
            ),
            None => format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE $1 = $1 ORDER BY created_at DESC, id LIMIT $2"
            ),
        };
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(hostname.unwrap_or_default())
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in &rows {
                jobs.push(job_from_row!(row));
            }
            Ok(jobs)
        })
    }
}
