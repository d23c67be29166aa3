//! Change requests in the database.
//!
//! A change is stored whole as the JSON of `sluice_core::change::ChangeRequest` (the record the
//! state machine produced), with copies of the fields that listings filter on. Ids are
//! `CHG-<n>`, numbered in creation order. Every write carries the version it was read at: a
//! write against an older version is refused (someone else moved the change in between), so a
//! transition is never applied to a state it was not decided for. Each write appends its audit
//! event in the same transaction. This module stores; it never decides whether a transition is
//! allowed (that is `sluice_core::change::transition`).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::change::{ChangeRequest, ChangeState};
use sqlx::{AssertSqlSafe, Row};

use crate::audit::append_audit;
use crate::record::{
    audit_value, from_record, lock_writes, next_number, record_text, version_conflict,
};
use crate::{Actor, Result, Store, begin_write, on_pool};

/// Held while a change's schedule is checked against the calendar and written, so that two
/// changes on the same hosts are never both checked before either is written. On PostgreSQL it
/// is a session advisory lock on a connection of its own, shared by every replica; the
/// connection is closed when the lock is dropped, which releases it even if the holder died.
/// On SQLite (one process) the server's own mutex is enough and this holds nothing.
pub struct SchedulingLock {
    _connection: Option<sqlx::PgConnection>,
}

/// The advisory lock's key: "sluice scheduling" in ASCII, as a number.
const SCHEDULING_LOCK_KEY: i64 = 0x736c_7563_6573_6368;

impl Store {
    /// Takes the scheduling lock, waiting for another replica that holds it.
    pub async fn lock_scheduling(&self) -> Result<SchedulingLock> {
        match &self.pools {
            crate::Pools::Sqlite(_) => Ok(SchedulingLock { _connection: None }),
            crate::Pools::Postgres(pool) => {
                let mut connection = pool.acquire().await?.detach();
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(SCHEDULING_LOCK_KEY)
                    .execute(&mut connection)
                    .await?;
                Ok(SchedulingLock {
                    _connection: Some(connection),
                })
            }
        }
    }
}

/// A time as stored: RFC 3339 UTC with six fractional digits, so stored times compare as text.
pub(crate) fn stamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A stored change and the version it was read at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredChange {
    /// The record.
    pub change: ChangeRequest,
    /// Raised by one with every write; pass it back to write.
    pub version: i64,
}

/// Which changes to list.
#[derive(Clone, Debug, Default)]
pub struct ChangesQuery {
    /// Only these states.
    pub states: Option<Vec<ChangeState>>,
    /// Only this type (`standard`, `normal`, `emergency`).
    pub kind: Option<String>,
    /// Only changes this user requested.
    pub requester: Option<String>,
    /// Only this risk level.
    pub risk: Option<String>,
    /// Only changes whose retrospective review is not done and was due before this time.
    pub review_overdue_at: Option<Timestamp>,
    /// Page size.
    pub limit: i64,
    /// Page start.
    pub offset: i64,
}

/// A page of changes, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangesPage {
    /// The changes.
    pub items: Vec<StoredChange>,
    /// How many match.
    pub total: i64,
}

/// The audit event a change write records: its action (`change.submit`, …) and what to show
/// before and after.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    /// `change.<action>`.
    pub action: String,
    /// What the event shows before.
    pub before: Option<Value>,
    /// What the event shows after.
    pub after: Option<Value>,
}

fn record_json(change: &ChangeRequest) -> Result<String> {
    record_text(&format!("change {}", change.id), change)
}

fn change_from(record: &str, version: i64) -> Result<StoredChange> {
    let change = from_record("change record", record)?;
    Ok(StoredChange { change, version })
}

/// The columns copied out of the record: state, type, risk, retrospective deadline, review time,
/// created and updated.
struct Columns {
    state: &'static str,
    kind: &'static str,
    risk: Option<&'static str>,
    retrospective_due: Option<String>,
    reviewed_at: Option<String>,
    created_at: String,
    updated_at: String,
}

fn columns(change: &ChangeRequest) -> Columns {
    let created = change.times.created.unwrap_or_else(Timestamp::now);
    Columns {
        state: change.state.as_str(),
        kind: change.kind.as_str(),
        risk: change.risk().map(|r| r.as_str()),
        retrospective_due: change.retrospective_due.map(stamp),
        reviewed_at: change.review.as_ref().map(|r| stamp(r.at)),
        created_at: stamp(created),
        updated_at: stamp(change.times.updated.unwrap_or(created)),
    }
}

impl Store {
    /// Stores a new change, giving it the next id (`CHG-<n>`, whatever id it carried); audited as
    /// `change.create` with the record.
    pub async fn create_change(
        &self,
        mut change: ChangeRequest,
        actor: &Actor,
    ) -> Result<StoredChange> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let number = next_number!(tx, "changes");
            change.id = format!("CHG-{number}");
            let record = record_json(&change)?;
            let c = columns(&change);
            sqlx::query(
                "INSERT INTO changes (id, number, state, kind, requester, risk, retrospective_due, reviewed_at, created_at, updated_at, version, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&change.id)
            .bind(number)
            .bind(c.state)
            .bind(c.kind)
            .bind(&change.requester)
            .bind(c.risk)
            .bind(&c.retrospective_due)
            .bind(&c.reviewed_at)
            .bind(&c.created_at)
            .bind(&c.updated_at)
            .bind(1_i64)
            .bind(&record)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "change.create",
                    format!("change:{}", change.id),
                    None,
                    Some(audit_value("change", &change)?)
                )
            );
            tx.commit().await?;
            Ok(StoredChange { change, version: 1 })
        })
    }

    /// One change by id.
    pub async fn change(&self, id: &str) -> Result<Option<StoredChange>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT record, version FROM changes WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(change_from(
                    &row.try_get::<String, _>("record")?,
                    row.try_get("version")?,
                )?)),
            }
        })
    }

    /// Every change in one of `states`, oldest first (for the escalation task and risk history).
    pub async fn changes_in(&self, states: &[ChangeState]) -> Result<Vec<StoredChange>> {
        let page = self
            .changes(&ChangesQuery {
                states: Some(states.to_vec()),
                limit: i64::MAX,
                ..ChangesQuery::default()
            })
            .await?;
        let mut items = page.items;
        items.reverse();
        Ok(items)
    }

    /// A page of changes, newest first, and how many match.
    pub async fn changes(&self, query: &ChangesQuery) -> Result<ChangesPage> {
        on_pool!(self, |pool, pg| {
            let mut conditions: Vec<String> = Vec::new();
            let mut n = 0;
            let mut next = || {
                n += 1;
                format!("${n}")
            };
            if let Some(states) = &query.states {
                if states.is_empty() {
                    conditions.push("1 = 0".to_owned());
                } else {
                    let places: Vec<String> = states.iter().map(|_| next()).collect();
                    conditions.push(format!("state IN ({})", places.join(", ")));
                }
            }
            if query.kind.is_some() {
                conditions.push(format!("kind = {}", next()));
            }
            if query.requester.is_some() {
                conditions.push(format!("requester = {}", next()));
            }
            if query.risk.is_some() {
                conditions.push(format!("risk = {}", next()));
            }
            if query.review_overdue_at.is_some() {
                conditions.push(format!(
                    "retrospective_due IS NOT NULL AND reviewed_at IS NULL AND retrospective_due < {}",
                    next()
                ));
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            };
            let (limit_p, offset_p) = (next(), next());
            let page_sql = AssertSqlSafe(format!(
                "SELECT record, version FROM changes{filter} ORDER BY number DESC LIMIT {limit_p} OFFSET {offset_p}"
            ));
            let count_sql = AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM changes{filter}"));
            let mut page = sqlx::query(page_sql);
            let mut count = sqlx::query(count_sql);
            let mut texts: Vec<String> = Vec::new();
            for state in query.states.iter().flatten() {
                texts.push(state.as_str().to_owned());
            }
            texts.extend(query.kind.iter().cloned());
            texts.extend(query.requester.iter().cloned());
            texts.extend(query.risk.iter().cloned());
            texts.extend(query.review_overdue_at.map(stamp));
            for text in &texts {
                page = page.bind(text.clone());
                count = count.bind(text.clone());
            }
            let rows = page
                .bind(query.limit)
                .bind(query.offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = count.fetch_one(pool).await?.try_get("n")?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                items.push(change_from(
                    &row.try_get::<String, _>("record")?,
                    row.try_get("version")?,
                )?);
            }
            Ok(ChangesPage { items, total })
        })
    }

    /// Writes `change` over the stored record read at `expected_version` and appends `event`, in
    /// one transaction. A change written by someone else since (a newer version) is refused as
    /// a conflict naming both versions; nothing is written.
    pub async fn update_change(
        &self,
        change: &ChangeRequest,
        expected_version: i64,
        event: ChangeEvent,
        actor: &Actor,
    ) -> Result<StoredChange> {
        let record = record_json(change)?;
        let c = columns(change);
        let version = expected_version + 1;
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let updated = sqlx::query(
                "UPDATE changes SET state = $1, kind = $2, risk = $3, retrospective_due = $4, reviewed_at = $5, updated_at = $6, version = $7, record = $8 \
                 WHERE id = $9 AND version = $10",
            )
            .bind(c.state)
            .bind(c.kind)
            .bind(c.risk)
            .bind(&c.retrospective_due)
            .bind(&c.reviewed_at)
            .bind(&c.updated_at)
            .bind(version)
            .bind(&record)
            .bind(&change.id)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                let row = sqlx::query("SELECT version FROM changes WHERE id = $1")
                    .bind(&change.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let now = match row {
                    None => None,
                    Some(row) => Some(row.try_get::<i64, _>("version")?),
                };
                return Err(version_conflict(
                    "change",
                    &change.id,
                    expected_version,
                    now,
                    "read it again and decide again",
                ));
            }
            append_audit!(
                tx,
                pg,
                actor.event(
                    &event.action,
                    format!("change:{}", change.id),
                    event.before,
                    event.after
                )
            );
            tx.commit().await?;
            Ok(StoredChange {
                change: change.clone(),
                version,
            })
        })
    }
}
