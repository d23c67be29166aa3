//! The audit chain in the database: appending inside a change's transaction, reading, verifying.

use sluice_core::audit::{self, AuditEvent, ChainBreak, ChainHead, NewAuditEvent};
use sqlx::Row;

use crate::{Result, Store, StoreError, begin_write, on_pool};

/// Appends an event to the chain inside an open transaction: locks the head (a row lock on
/// PostgreSQL; SQLite's write transaction already excludes other writers), seals the event after
/// it, inserts it and moves the head.
macro_rules! append_audit {
    ($tx:expr, $pg:expr, $event:expr) => {{
        let head_sql = if $pg {
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
        } else {
            "SELECT seq, hash FROM audit_head WHERE id = 1"
        };
        let row = sqlx::query(head_sql).fetch_one(&mut *$tx).await?;
        let seq: i64 = sqlx::Row::try_get(&row, "seq")?;
        let hash: String = sqlx::Row::try_get(&row, "hash")?;
        let sealed = sluice_core::audit::seal($event, seq + 1, jiff::Timestamp::now(), &hash);
        sqlx::query(
            "INSERT INTO audit_events (seq, at, actor, action, object, before_json, after_json, request_id, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(sealed.seq)
        .bind(&sealed.at)
        .bind(&sealed.actor)
        .bind(&sealed.action)
        .bind(&sealed.object)
        .bind(&sealed.before)
        .bind(&sealed.after)
        .bind(&sealed.request_id)
        .bind(&sealed.prev_hash)
        .bind(&sealed.hash)
        .execute(&mut *$tx)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(sealed.seq)
            .bind(&sealed.hash)
            .execute(&mut *$tx)
            .await?;
        sealed
    }};
}
pub(crate) use append_audit;

fn event_from<R>(row: &R) -> Result<AuditEvent>
where
    R: Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AuditEvent {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        object: row.try_get("object")?,
        before: row.try_get("before_json")?,
        after: row.try_get("after_json")?,
        request_id: row.try_get("request_id")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

impl Store {
    /// Records an event that has no other state change with it (a failed login, an export).
    pub async fn record(&self, event: NewAuditEvent) -> Result<AuditEvent> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let sealed = append_audit!(tx, pg, event);
            tx.commit().await?;
            Ok(sealed)
        })
    }

    /// Events in sequence order, optionally only those at or after `since` (RFC 3339, UTC).
    pub async fn audit_events(&self, since: Option<&str>) -> Result<Vec<AuditEvent>> {
        on_pool!(self, |pool, pg| {
            let rows = match since {
                Some(since) => {
                    sqlx::query(
                        "SELECT seq, at, actor, action, object, before_json, after_json, request_id, prev_hash, hash \
                         FROM audit_events WHERE at >= $1 ORDER BY seq",
                    )
                    .bind(since)
                    .fetch_all(pool)
                    .await?
                }
                None => {
                    sqlx::query(
                        "SELECT seq, at, actor, action, object, before_json, after_json, request_id, prev_hash, hash \
                         FROM audit_events ORDER BY seq",
                    )
                    .fetch_all(pool)
                    .await?
                }
            };
            rows.iter().map(event_from).collect()
        })
    }

    /// The recorded head of the chain.
    pub async fn audit_head(&self) -> Result<ChainHead> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::Corrupt("the audit head row is missing".to_owned()))?;
            Ok(ChainHead {
                seq: row.try_get("seq")?,
                hash: row.try_get("hash")?,
            })
        })
    }

    /// Recomputes the whole chain: `Ok(Ok(head))` when intact, `Ok(Err(break))` naming the first
    /// altered, inserted or missing event.
    pub async fn verify_audit(&self) -> Result<std::result::Result<ChainHead, ChainBreak>> {
        let head = self.audit_head().await?;
        let events = self.audit_events(None).await?;
        Ok(audit::verify(events, &head))
    }
}
