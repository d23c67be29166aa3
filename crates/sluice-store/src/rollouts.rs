//! Rollouts in the database: the plan, the engine's state and the server's bookkeeping beside
//! it, the jobs a rollout queued, its event log, and the memory of rolled-back versions.
//!
//! Plan, state, spec and runtime are stored as JSON documents the server reads back (the
//! store never interprets them). Every write carries the version it read: a write against an
//! older version is refused, so two servers, or a restarted one, never advance one rollout from
//! the same state twice. An advance writes everything it decided in one transaction: the new
//! state, the jobs it queued (each under an idempotency key, so a retried advance queues
//! nothing twice), the reports it folded in, its events and their audit records.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::job::Job;
use sluice_core::rollout::{OutcomeKind, RolloutPhase};
use sqlx::{AssertSqlSafe, Row};

use crate::agents::{JOB_COLUMNS, job_from_row};
use crate::audit::append_audit;
use crate::record::lock_writes;
use crate::{Actor, Result, Store, StoreError, StoredJob, begin_write, now, on_pool};

/// A stored rollout and the version it was read at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRollout {
    /// `RO-<n>`, in creation order.
    pub id: String,
    /// The change it carries.
    pub change_id: String,
    /// What was asked for (policy, job template, signals), as given.
    pub spec: Value,
    /// The plan (`sluice_core::rollout::Plan`).
    pub plan: Value,
    /// The engine's state (`sluice_core::rollout::RolloutState`).
    pub state: Value,
    /// The server's bookkeeping beside the state.
    pub runtime: Value,
    /// The phase, copied for listings (the `phase` column's text, parsed).
    pub phase: RolloutPhase,
    /// How it ended, once it did (the `outcome` column's text, parsed).
    pub outcome: Option<OutcomeKind>,
    /// Rises by one with every write.
    pub version: i64,
    /// Who started it.
    pub created_by: String,
    /// When.
    pub created_at: String,
    /// Last write.
    pub updated_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
}

/// A rollout to create.
#[derive(Clone, Debug)]
pub struct NewRollout {
    /// The change.
    pub change_id: String,
    /// As asked.
    pub spec: Value,
    /// The plan.
    pub plan: Value,
    /// The initial state.
    pub state: Value,
    /// The initial bookkeeping.
    pub runtime: Value,
    /// The initial phase.
    pub phase: RolloutPhase,
}

/// An event to log (and, when `audit` holds, to seal into the audit chain).
#[derive(Clone, Debug, PartialEq)]
pub struct NewRolloutEvent {
    /// `started`, `hosts-started`, `host-succeeded`, `breaker-tripped`, …
    pub kind: String,
    /// Details.
    pub detail: Value,
    /// Whether the audit chain records it (transitions do; waits do not).
    pub audit: bool,
}

/// A logged event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRolloutEvent {
    /// 1, 2, … per rollout.
    pub seq: i64,
    /// When.
    pub at: String,
    /// What.
    pub kind: String,
    /// Details.
    pub detail: Value,
}

/// Everything one advance decided, written together.
#[derive(Clone, Debug, Default)]
pub struct RolloutWrite {
    /// The new state.
    pub state: Value,
    /// The new bookkeeping.
    pub runtime: Value,
    /// The new phase.
    pub phase: RolloutPhase,
    /// The outcome, once it ended.
    pub outcome: Option<OutcomeKind>,
    /// Jobs to queue: (host, kind, job). A job whose idempotency key exists is not queued again.
    pub jobs: Vec<(String, String, Job)>,
    /// Jobs whose reports were folded in.
    pub observed: Vec<String>,
    /// Events to log.
    pub events: Vec<NewRolloutEvent>,
    /// (scope, package, version) a breaker's rollback undid.
    pub rolled_back: Vec<(String, String, String)>,
}

/// A job a rollout queued, as it stands now.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutJob {
    /// `update` or `rollback`.
    pub kind: String,
    /// When its report was folded into the rollout.
    pub observed_at: Option<String>,
    /// The job.
    pub job: StoredJob,
}

const ROLLOUT_COLUMNS: &str = "id, change_id, spec, plan, state, runtime, phase, outcome, version, created_by, created_at, updated_at, finished_at";

macro_rules! rollout_from_row {
    ($row:expr) => {{
        let row = $row;
        let doc = |name: &str| -> Result<Value> {
            let text: String = row.try_get(name)?;
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("rollout {name}: {e}")))
        };
        StoredRollout {
            id: row.try_get("id")?,
            change_id: row.try_get("change_id")?,
            spec: doc("spec")?,
            plan: doc("plan")?,
            state: doc("state")?,
            runtime: doc("runtime")?,
            phase: {
                let text: String = row.try_get("phase")?;
                text.parse::<RolloutPhase>()
                    .map_err(|e| StoreError::Corrupt(format!("rollout phase: {e}")))?
            },
            outcome: match row.try_get::<Option<String>, _>("outcome")? {
                None => None,
                Some(text) => Some(
                    text.parse::<OutcomeKind>()
                        .map_err(|e| StoreError::Corrupt(format!("rollout outcome: {e}")))?,
                ),
            },
            version: row.try_get("version")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            finished_at: row.try_get("finished_at")?,
        }
    }};
}

fn text(value: &Value) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Appends events to the log (numbered after the last) and seals the audited ones.
macro_rules! log_events {
    ($tx:ident, $pg:ident, $id:expr, $events:expr, $at:expr, $actor:expr) => {{
        let row = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS n FROM rollout_events WHERE rollout_id = $1",
        )
        .bind($id)
        .fetch_one(&mut *$tx)
        .await?;
        let mut seq: i64 = row.try_get::<i64, _>("n")?;
        for event in $events {
            seq += 1;
            sqlx::query(
                "INSERT INTO rollout_events (rollout_id, seq, at, kind, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind($id)
            .bind(seq)
            .bind($at)
            .bind(&event.kind)
            .bind(text(&event.detail)?)
            .execute(&mut *$tx)
            .await?;
        }
        for event in $events.iter().filter(|e| e.audit) {
            append_audit!(
                $tx,
                $pg,
                $actor.event(
                    &format!("rollout.{}", event.kind),
                    format!("rollout:{}", $id),
                    None,
                    Some(event.detail.clone())
                )
            );
        }
    }};
}

impl Store {
    /// Stores a new rollout as `RO-<n>` with its first events; audited as `rollout.<kind>`.
    pub async fn create_rollout(
        &self,
        new: &NewRollout,
        events: &[NewRolloutEvent],
        actor: &Actor,
    ) -> Result<StoredRollout> {
        let at = now();
        let sql = format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1");
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let open =
                sqlx::query("SELECT id FROM rollouts WHERE change_id = $1 AND finished_at IS NULL")
                    .bind(&new.change_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(row) = open {
                let id: String = row.try_get("id")?;
                return Err(StoreError::Conflict(format!(
                    "change {} already has rollout {id} under way",
                    new.change_id
                )));
            }
            let row = sqlx::query("SELECT COUNT(*) AS n FROM rollouts")
                .fetch_one(&mut *tx)
                .await?;
            let id = format!("RO-{}", row.try_get::<i64, _>("n")? + 1);
            sqlx::query(
                "INSERT INTO rollouts (id, change_id, spec, plan, state, runtime, phase, outcome, version, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 1, $8, $9, $9)",
            )
            .bind(&id)
            .bind(&new.change_id)
            .bind(text(&new.spec)?)
            .bind(text(&new.plan)?)
            .bind(text(&new.state)?)
            .bind(text(&new.runtime)?)
            .bind(new.phase.as_str())
            .bind(&actor.name)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            log_events!(tx, pg, &id, events, &at, actor);
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
            let stored = rollout_from_row!(&row);
            tx.commit().await?;
            Ok(stored)
        })
    }

    /// One rollout.
    pub async fn rollout(&self, id: &str) -> Result<Option<StoredRollout>> {
        let sql = format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1");
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(rollout_from_row!(&row))),
            }
        })
    }

    /// Rollouts, newest first: of one change when given, only unfinished ones when `open`.
    pub async fn rollouts(&self, change: Option<&str>, open: bool) -> Result<Vec<StoredRollout>> {
        let mut sql = format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE 1 = 1");
        if change.is_some() {
            sql.push_str(" AND change_id = $1");
        }
        if open {
            sql.push_str(" AND finished_at IS NULL");
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC");
        on_pool!(self, |pool, pg| {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            if let Some(change) = change {
                query = query.bind(change);
            }
            let rows = query.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(rollout_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Writes one advance of a rollout read at `expected_version`: refused with a conflict when
    /// someone wrote it since (nothing is written then). Jobs are queued with their idempotency
    /// keys (a key already queued is kept as it is), observed jobs are marked, events are logged
    /// and audited, rolled-back versions remembered, all in one transaction.
    pub async fn advance_rollout(
        &self,
        id: &str,
        expected_version: i64,
        write: &RolloutWrite,
        actor: &Actor,
    ) -> Result<StoredRollout> {
        let at = now();
        let sql = format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1");
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let finished = write.outcome.as_ref().map(|_| at.clone());
            let updated = sqlx::query(
                "UPDATE rollouts SET state = $1, runtime = $2, phase = $3, outcome = $4, version = version + 1, updated_at = $5, \
                 finished_at = COALESCE(finished_at, $6) WHERE id = $7 AND version = $8",
            )
            .bind(text(&write.state)?)
            .bind(text(&write.runtime)?)
            .bind(write.phase.as_str())
            .bind(write.outcome.map(OutcomeKind::as_str))
            .bind(&at)
            .bind(&finished)
            .bind(id)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                let row = sqlx::query("SELECT version FROM rollouts WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                return match row {
                    None => Err(StoreError::NotFound(format!("rollout {id}"))),
                    Some(row) => {
                        let now: i64 = row.try_get("version")?;
                        Err(StoreError::Conflict(format!(
                            "rollout {id} was advanced by someone else: read at version {expected_version}, now at {now}"
                        )))
                    }
                };
            }
            for (host, kind, job) in &write.jobs {
                let agent =
                    sqlx::query("SELECT id FROM agents WHERE hostname = $1 AND revoked_at IS NULL")
                        .bind(host)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| {
                            StoreError::Invalid(format!("no enrolled agent on {host}"))
                        })?;
                let agent_id: String = agent.try_get("id")?;
                let spec =
                    serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let inserted = sqlx::query(
                    "INSERT INTO jobs (id, agent_id, hostname, idempotency_key, spec, state, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(&job.id)
                .bind(&agent_id)
                .bind(host)
                .bind(&job.idempotency_key)
                .bind(&spec)
                .bind(&actor.name)
                .bind(&at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO rollout_jobs (job_id, rollout_id, hostname, kind, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&job.id)
                .bind(id)
                .bind(host)
                .bind(kind)
                .bind(&at)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 1 {
                    append_audit!(
                        tx,
                        pg,
                        actor.event(
                            "job.create",
                            format!("job:{}", job.id),
                            None,
                            Some(serde_json::json!({"host": host, "rollout": id, "job": job}))
                        )
                    );
                }
            }
            for job_id in &write.observed {
                sqlx::query(
                    "UPDATE rollout_jobs SET observed_at = $1 WHERE job_id = $2 AND rollout_id = $3 AND observed_at IS NULL",
                )
                .bind(&at)
                .bind(job_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            for (scope, package, version) in &write.rolled_back {
                sqlx::query(
                    "INSERT INTO rolled_back_versions (scope, package, version, rollout_id, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(scope)
                .bind(package)
                .bind(version)
                .bind(id)
                .bind(&at)
                .execute(&mut *tx)
                .await?;
            }
            log_events!(tx, pg, id, &write.events, &at, actor);
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let stored = rollout_from_row!(&row);
            tx.commit().await?;
            Ok(stored)
        })
    }

    /// The jobs a rollout queued, oldest first; only those not yet folded in when `open`.
    pub async fn rollout_jobs(&self, id: &str, open: bool) -> Result<Vec<RolloutJob>> {
        let columns: Vec<String> = JOB_COLUMNS.split(", ").map(|c| format!("j.{c}")).collect();
        let mut sql = format!(
            "SELECT {}, r.kind AS rollout_kind, r.observed_at AS observed_at FROM rollout_jobs r JOIN jobs j ON j.id = r.job_id WHERE r.rollout_id = $1",
            columns.join(", ")
        );
        if open {
            sql.push_str(" AND r.observed_at IS NULL");
        }
        sql.push_str(" ORDER BY r.created_at, r.job_id");
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(RolloutJob {
                    kind: row.try_get("rollout_kind")?,
                    observed_at: row.try_get("observed_at")?,
                    job: job_from_row!(row),
                });
            }
            Ok(out)
        })
    }

    /// A rollout's events after `after` (0 for all), in order.
    pub async fn rollout_events(&self, id: &str, after: i64) -> Result<Vec<StoredRolloutEvent>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(
                "SELECT seq, at, kind, detail FROM rollout_events WHERE rollout_id = $1 AND seq > $2 ORDER BY seq",
            )
            .bind(id)
            .bind(after)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let detail: String = row.try_get("detail")?;
                out.push(StoredRolloutEvent {
                    seq: row.try_get("seq")?,
                    at: row.try_get("at")?,
                    kind: row.try_get("kind")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StoreError::Corrupt(format!("rollout event: {e}")))?,
                });
            }
            Ok(out)
        })
    }

    /// Every remembered (scope, package, version) a breaker's rollback undid.
    pub async fn rolled_back_versions(&self) -> Result<Vec<(String, String, String)>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(
                "SELECT scope, package, version FROM rolled_back_versions ORDER BY scope, package, version",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((
                    row.try_get("scope")?,
                    row.try_get("package")?,
                    row.try_get("version")?,
                ));
            }
            Ok(out)
        })
    }
}
