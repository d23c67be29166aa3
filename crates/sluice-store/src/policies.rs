//! Versioned policy documents (the CAB policy, the deferral policy), stored as JSON.
//!
//! Every edit inserts a new version; nothing is overwritten, so a change can always be judged
//! again by the version it recorded. The current policy of a kind is its highest version. This
//! module stores documents whole and never reads their content: the server validates them with
//! `sluice-core` before they get here.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use crate::audit::append_audit;
use crate::record::lock_writes;
use crate::{Actor, Result, Store, StoreError, begin_write, now, on_pool};

/// One version of a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// `cab` or `deferral`.
    pub kind: String,
    /// Its version.
    pub version: u32,
    /// The document, as JSON.
    pub document: Value,
    /// When it was stored.
    pub created_at: String,
    /// Who stored it.
    pub created_by: String,
}

macro_rules! policy_from_row {
    ($row:expr) => {{
        let row = $row;
        let version: i64 = row.try_get("version")?;
        let document: String = row.try_get("document")?;
        StoredPolicy {
            kind: row.try_get("kind")?,
            version: u32::try_from(version)
                .map_err(|_| StoreError::Corrupt(format!("policy version {version}")))?,
            document: serde_json::from_str(&document)
                .map_err(|e| StoreError::Corrupt(format!("policy document: {e}")))?,
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
        }
    }};
}

impl Store {
    /// The current (highest) version of a policy, if any was stored.
    pub async fn policy(&self, kind: &str) -> Result<Option<StoredPolicy>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(
                "SELECT kind, version, document, created_at, created_by FROM policies \
                 WHERE kind = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(kind)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(policy_from_row!(&row))),
            }
        })
    }

    /// One version of a policy.
    pub async fn policy_version(&self, kind: &str, version: u32) -> Result<Option<StoredPolicy>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(
                "SELECT kind, version, document, created_at, created_by FROM policies \
                 WHERE kind = $1 AND version = $2",
            )
            .bind(kind)
            .bind(i64::from(version))
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(policy_from_row!(&row))),
            }
        })
    }

    /// Stores a new version of a policy; audited as `policy.update` with the previous stored
    /// version and the new one. `version` must be above every stored version of the kind (a
    /// conflict otherwise: someone else edited it first).
    pub async fn put_policy(
        &self,
        kind: &str,
        version: u32,
        document: &Value,
        actor: &Actor,
    ) -> Result<StoredPolicy> {
        let text = serde_json::to_string(document)
            .map_err(|e| StoreError::Invalid(format!("policy {kind}: {e}")))?;
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let row = sqlx::query(
                "SELECT kind, version, document, created_at, created_by FROM policies \
                 WHERE kind = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(kind)
            .fetch_optional(&mut *tx)
            .await?;
            let before = match row {
                None => None,
                Some(row) => Some(policy_from_row!(&row)),
            };
            if let Some(before) = &before
                && before.version >= version
            {
                return Err(StoreError::Conflict(format!(
                    "the {kind} policy is at version {} already; version {version} cannot follow it (edit the current version)",
                    before.version
                )));
            }
            let stored = StoredPolicy {
                kind: kind.to_owned(),
                version,
                document: document.clone(),
                created_at: now(),
                created_by: actor.name.clone(),
            };
            sqlx::query(
                "INSERT INTO policies (kind, version, document, created_at, created_by) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind)
            .bind(i64::from(version))
            .bind(&text)
            .bind(&stored.created_at)
            .bind(&stored.created_by)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "policy.update",
                    format!("policy:{kind}"),
                    before
                        .map(|b| serde_json::json!({"version": b.version, "document": b.document})),
                    Some(serde_json::json!({"version": version, "document": document}))
                )
            );
            tx.commit().await?;
            Ok(stored)
        })
    }
}
