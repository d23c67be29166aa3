//! Deferrals, risk acceptances and legacy pins in the database.
//!
//! Stored whole as the JSON of `sluice_core::deferral::Deferral`, with copies of what lookups
//! need (the finding, or host and package; approved, revoked, expiry). Ids are `DEF-<n>`. Writes
//! carry the version they read, as changes do, and are audited in the same transaction
//! (`deferral.request`, `deferral.approve`, `deferral.renew`, `deferral.revoke`). Whether a record
//! covers a finding at a given time is `sluice_core::deferral`'s to say, never SQL's.

use serde::{Deserialize, Serialize};
use sluice_core::deferral::{Deferral, DeferralKind, DeferralTarget};
use sqlx::{AssertSqlSafe, Row};

use crate::audit::append_audit;
use crate::changes::stamp;
use crate::record::{
    audit_value, from_record, lock_writes, next_number, record_text, version_conflict,
};
use crate::{Actor, Result, Store, StoreError, begin_write, on_pool};

/// A stored record and the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDeferral {
    /// The record.
    pub deferral: Deferral,
    /// Raised by one with every write.
    pub version: i64,
}

/// Which records to list.
#[derive(Clone, Debug, Default)]
pub struct DeferralsQuery {
    /// Only records on this host (host-package targets).
    pub hostname: Option<String>,
    /// Only records for this finding.
    pub finding_id: Option<String>,
    /// Include revoked records.
    pub include_revoked: bool,
}

fn kind_name(kind: &DeferralKind) -> &'static str {
    match kind {
        DeferralKind::Deferral => "deferral",
        DeferralKind::RiskAcceptance => "risk-acceptance",
        DeferralKind::LegacyPin { .. } => "legacy-pin",
    }
}

fn record_json(deferral: &Deferral) -> Result<String> {
    record_text(&format!("deferral {}", deferral.id), deferral)
}

fn deferral_from(record: &str, version: i64) -> Result<StoredDeferral> {
    let deferral = from_record("deferral record", record)?;
    Ok(StoredDeferral { deferral, version })
}

fn target_columns(target: &DeferralTarget) -> (Option<&str>, Option<&str>, Option<&str>) {
    match target {
        DeferralTarget::Finding { id } => (Some(id.as_str()), None, None),
        DeferralTarget::HostPackage { host, package } => {
            (None, Some(host.as_str()), Some(package.as_str()))
        }
    }
}

impl Store {
    /// Stores a new record, giving it the next id (`DEF-<n>`); audited as `deferral.request`.
    pub async fn create_deferral(
        &self,
        mut deferral: Deferral,
        actor: &Actor,
    ) -> Result<StoredDeferral> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let number = next_number!(tx, "deferrals");
            deferral.id = format!("DEF-{number}");
            let record = record_json(&deferral)?;
            let (finding, host, package) = target_columns(&deferral.target);
            sqlx::query(
                "INSERT INTO deferrals (id, number, finding_id, hostname, package, kind, requested_by, approved, revoked, expires_at, updated_at, version, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&deferral.id)
            .bind(number)
            .bind(finding)
            .bind(host)
            .bind(package)
            .bind(kind_name(&deferral.kind))
            .bind(&deferral.requested_by)
            .bind(deferral.approved_by.is_some())
            .bind(deferral.revoked.is_some())
            .bind(stamp(deferral.expires_at))
            .bind(stamp(deferral.requested_at))
            .bind(1_i64)
            .bind(&record)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "deferral.request",
                    format!("deferral:{}", deferral.id),
                    None,
                    Some(audit_value("deferral", &deferral)?)
                )
            );
            tx.commit().await?;
            Ok(StoredDeferral {
                deferral,
                version: 1,
            })
        })
    }

    /// One record by id.
    pub async fn deferral(&self, id: &str) -> Result<Option<StoredDeferral>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT record, version FROM deferrals WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(deferral_from(
                    &row.try_get::<String, _>("record")?,
                    row.try_get("version")?,
                )?)),
            }
        })
    }

    /// Records, newest first.
    pub async fn deferrals(&self, query: &DeferralsQuery) -> Result<Vec<StoredDeferral>> {
        on_pool!(self, |pool, pg| {
            let mut conditions: Vec<String> = Vec::new();
            let mut binds: Vec<String> = Vec::new();
            if !query.include_revoked {
                conditions.push(if pg { "NOT revoked" } else { "revoked = 0" }.to_owned());
            }
            if let Some(host) = &query.hostname {
                binds.push(host.clone());
                conditions.push(format!("hostname = ${}", binds.len()));
            }
            if let Some(finding) = &query.finding_id {
                binds.push(finding.clone());
                conditions.push(format!("finding_id = ${}", binds.len()));
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            };
            let sql = AssertSqlSafe(format!(
                "SELECT record, version FROM deferrals{filter} ORDER BY number DESC"
            ));
            let mut select = sqlx::query(sql);
            for bind in &binds {
                select = select.bind(bind.clone());
            }
            let rows = select.fetch_all(pool).await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                items.push(deferral_from(
                    &row.try_get::<String, _>("record")?,
                    row.try_get("version")?,
                )?);
            }
            Ok(items)
        })
    }

    /// Writes `deferral` over the record read at `expected_version`; audited as `action`
    /// (`deferral.approve`, `deferral.renew`, `deferral.revoke`) with the record before and
    /// after. A record written by someone else since is refused as a conflict.
    pub async fn update_deferral(
        &self,
        deferral: &Deferral,
        expected_version: i64,
        action: &str,
        actor: &Actor,
    ) -> Result<StoredDeferral> {
        let record = record_json(deferral)?;
        let version = expected_version + 1;
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let before = sqlx::query("SELECT record, version FROM deferrals WHERE id = $1")
                .bind(&deferral.id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("deferral {}", deferral.id)))?;
            let before_record: String = before.try_get("record")?;
            let updated = sqlx::query(
                "UPDATE deferrals SET approved = $1, revoked = $2, expires_at = $3, updated_at = $4, version = $5, record = $6 \
                 WHERE id = $7 AND version = $8",
            )
            .bind(deferral.approved_by.is_some())
            .bind(deferral.revoked.is_some())
            .bind(stamp(deferral.expires_at))
            .bind(crate::now())
            .bind(version)
            .bind(&record)
            .bind(&deferral.id)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                let now: i64 = before.try_get("version")?;
                return Err(version_conflict(
                    "deferral",
                    &deferral.id,
                    expected_version,
                    Some(now),
                    "read it again",
                ));
            }
            append_audit!(
                tx,
                pg,
                actor.event(
                    action,
                    format!("deferral:{}", deferral.id),
                    Some(from_record::<serde_json::Value>(
                        "deferral record",
                        &before_record
                    )?),
                    Some(audit_value("deferral", deferral)?)
                )
            );
            tx.commit().await?;
            Ok(StoredDeferral {
                deferral: deferral.clone(),
                version,
            })
        })
    }
}
