//! Maintenance windows, freezes and freeze exceptions in the database.
//!
//! Windows and freezes are kept by name with their definition as written
//! (`sluice_core::calendar::WindowSpec`, `FreezeSpec`); what a definition means is
//! `sluice_core::calendar`'s to say on every read, never SQL's. Exceptions are numbered `FEX-<n>`
//! and decided once. Every write is audited in the same transaction (`window.create`,
//! `window.delete`, `freeze.create`, `freeze.delete`, `freeze-exception.request`,
//! `freeze-exception.approve`, `freeze-exception.reject`).

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_core::calendar::{FreezeSpec, WindowSpec};
use sqlx::{AssertSqlSafe, Row};

use crate::audit::append_audit;
use crate::changes::stamp;
use crate::record::{audit_value, from_record, lock_writes, next_number, record_text};
use crate::{Actor, Result, Store, StoreError, begin_write, on_pool};

/// A stored maintenance window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWindow {
    /// Unique name.
    pub name: String,
    /// The hosts it applies to: a CMDB selector (`group=web`); empty means every host.
    pub scope: String,
    /// The definition as written.
    pub definition: WindowSpec,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// A stored freeze.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFreeze {
    /// Unique name.
    pub name: String,
    /// The hosts it holds for: a CMDB selector; empty means every host.
    pub scope: String,
    /// The definition as written.
    pub definition: FreezeSpec,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// Where an exception request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExceptionState {
    /// Waiting for an approver: lifts nothing.
    Requested,
    /// Approved: lifts the freeze within its scope and range.
    Approved,
    /// Rejected: lifts nothing.
    Rejected,
}

impl ExceptionState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }
}

/// A request to work inside a freeze.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFreezeException {
    /// `FEX-<n>`, given by the store.
    pub id: String,
    /// The freeze it lifts, by name.
    pub freeze: String,
    /// The hosts it lifts the freeze for: a CMDB selector; empty means every host the freeze
    /// holds for.
    pub scope: String,
    /// Start of the lifted time.
    pub from: Timestamp,
    /// End of the lifted time.
    pub until: Timestamp,
    /// Why the work cannot wait.
    pub justification: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: Timestamp,
    /// Requested, approved or rejected.
    pub state: ExceptionState,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<Timestamp>,
}

fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String> {
    record_text(what, value)
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    from_record(what, text)
}

/// Windows and freezes share one shape: a named record in its own table.
struct Named {
    table: &'static str,
    /// For messages and audit objects: `window`, `freeze`.
    kind: &'static str,
}

const WINDOWS: Named = Named {
    table: "maintenance_windows",
    kind: "window",
};
const FREEZES: Named = Named {
    table: "freezes",
    kind: "freeze",
};

impl Store {
    async fn create_named<T: Serialize>(
        &self,
        named: &Named,
        name: &str,
        created_at: Timestamp,
        item: &T,
        actor: &Actor,
    ) -> Result<()> {
        let record = to_json(named.kind, item)?;
        let kind = named.kind;
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let exists = sqlx::query(AssertSqlSafe(format!(
                "SELECT name FROM {} WHERE name = $1",
                named.table
            )))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_some() {
                return Err(StoreError::Conflict(format!(
                    "{kind} {name:?} already exists; delete it first to replace it"
                )));
            }
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (name, created_at, record) VALUES ($1, $2, $3)",
                named.table
            )))
            .bind(name)
            .bind(stamp(created_at))
            .bind(&record)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    &format!("{kind}.create"),
                    format!("{kind}:{name}"),
                    None,
                    Some(audit_value("calendar record", item)?)
                )
            );
            tx.commit().await?;
            Ok(())
        })
    }

    async fn named_records(&self, named: &Named) -> Result<Vec<String>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT record FROM {} ORDER BY name",
                named.table
            )))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| Ok(row.try_get::<String, _>("record")?))
                .collect()
        })
    }

    async fn delete_named(&self, named: &Named, name: &str, actor: &Actor) -> Result<()> {
        let kind = named.kind;
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let before = sqlx::query(AssertSqlSafe(format!(
                "SELECT record FROM {} WHERE name = $1",
                named.table
            )))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{kind} {name:?}")))?;
            let before: String = before.try_get("record")?;
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE name = $1",
                named.table
            )))
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if named.table == FREEZES.table {
                // A freeze made again under the same name must not inherit old approvals.
                sqlx::query("DELETE FROM freeze_exceptions WHERE freeze_name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            append_audit!(
                tx,
                pg,
                actor.event(
                    &format!("{kind}.delete"),
                    format!("{kind}:{name}"),
                    Some(from_record::<serde_json::Value>(
                        "calendar record",
                        &before
                    )?),
                    None
                )
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// Stores a new window; a name already taken is a conflict. Audited as `window.create`.
    pub async fn create_window(&self, window: &StoredWindow, actor: &Actor) -> Result<()> {
        self.create_named(&WINDOWS, &window.name, window.created_at, window, actor)
            .await
    }

    /// Every window, by name.
    pub async fn windows(&self) -> Result<Vec<StoredWindow>> {
        self.named_records(&WINDOWS)
            .await?
            .iter()
            .map(|r| from_json("window record", r))
            .collect()
    }

    /// Deletes a window. Audited as `window.delete`.
    pub async fn delete_window(&self, name: &str, actor: &Actor) -> Result<()> {
        self.delete_named(&WINDOWS, name, actor).await
    }

    /// Stores a new freeze; a name already taken is a conflict. Audited as `freeze.create`.
    pub async fn create_freeze(&self, freeze: &StoredFreeze, actor: &Actor) -> Result<()> {
        self.create_named(&FREEZES, &freeze.name, freeze.created_at, freeze, actor)
            .await
    }

    /// Every freeze, by name.
    pub async fn freezes(&self) -> Result<Vec<StoredFreeze>> {
        self.named_records(&FREEZES)
            .await?
            .iter()
            .map(|r| from_json("freeze record", r))
            .collect()
    }

    /// Deletes a freeze and its exception requests. Audited as `freeze.delete`.
    pub async fn delete_freeze(&self, name: &str, actor: &Actor) -> Result<()> {
        self.delete_named(&FREEZES, name, actor).await
    }

    /// Stores a new exception request for an existing freeze, giving it the next id (`FEX-<n>`)
    /// and the state `requested`. Audited as `freeze-exception.request`.
    pub async fn request_freeze_exception(
        &self,
        mut exception: StoredFreezeException,
        actor: &Actor,
    ) -> Result<StoredFreezeException> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let freeze = sqlx::query("SELECT name FROM freezes WHERE name = $1")
                .bind(&exception.freeze)
                .fetch_optional(&mut *tx)
                .await?;
            if freeze.is_none() {
                return Err(StoreError::NotFound(format!(
                    "freeze {:?}",
                    exception.freeze
                )));
            }
            let number = next_number!(tx, "freeze_exceptions");
            exception.id = format!("FEX-{number}");
            exception.state = ExceptionState::Requested;
            exception.decided_by = None;
            exception.decided_at = None;
            sqlx::query(
                "INSERT INTO freeze_exceptions (id, number, freeze_name, state, updated_at, record) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&exception.id)
            .bind(number)
            .bind(&exception.freeze)
            .bind(exception.state.as_str())
            .bind(stamp(exception.requested_at))
            .bind(to_json("freeze exception", &exception)?)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "freeze-exception.request",
                    format!("freeze-exception:{}", exception.id),
                    None,
                    Some(audit_value("calendar record", &exception)?)
                )
            );
            tx.commit().await?;
            Ok(exception)
        })
    }

    /// One exception request by id.
    pub async fn freeze_exception(&self, id: &str) -> Result<Option<StoredFreezeException>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT record FROM freeze_exceptions WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(|row| from_json("freeze exception", &row.try_get::<String, _>("record")?))
                .transpose()
        })
    }

    /// Exception requests, oldest first; only those of `freeze` when given.
    pub async fn freeze_exceptions(
        &self,
        freeze: Option<&str>,
    ) -> Result<Vec<StoredFreezeException>> {
        on_pool!(self, |pool, pg| {
            let rows = match freeze {
                Some(freeze) => sqlx::query(
                    "SELECT record FROM freeze_exceptions WHERE freeze_name = $1 ORDER BY number",
                )
                .bind(freeze)
                .fetch_all(pool)
                .await?,
                None => {
                    sqlx::query("SELECT record FROM freeze_exceptions ORDER BY number")
                        .fetch_all(pool)
                        .await?
                }
            };
            rows.iter()
                .map(|row| from_json("freeze exception", &row.try_get::<String, _>("record")?))
                .collect()
        })
    }

    /// Approves or rejects a request that is still `requested`; one already decided is a
    /// conflict. Who may decide is the caller's to check. Audited as `freeze-exception.approve`
    /// or `freeze-exception.reject`, with the record before and after.
    pub async fn decide_freeze_exception(
        &self,
        id: &str,
        approve: bool,
        at: Timestamp,
        actor: &Actor,
    ) -> Result<StoredFreezeException> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let row = sqlx::query("SELECT record FROM freeze_exceptions WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("freeze exception {id}")))?;
            let before_text: String = row.try_get("record")?;
            let before: StoredFreezeException = from_json("freeze exception", &before_text)?;
            let mut after = before.clone();
            after.state = if approve {
                ExceptionState::Approved
            } else {
                ExceptionState::Rejected
            };
            after.decided_by = Some(actor.name.clone());
            after.decided_at = Some(at);
            let updated = sqlx::query(
                "UPDATE freeze_exceptions SET state = $1, updated_at = $2, record = $3 \
                 WHERE id = $4 AND state = 'requested'",
            )
            .bind(after.state.as_str())
            .bind(stamp(at))
            .bind(to_json("freeze exception", &after)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "freeze exception {id} is already {}",
                    before.state.as_str()
                )));
            }
            let action = if approve {
                "freeze-exception.approve"
            } else {
                "freeze-exception.reject"
            };
            append_audit!(
                tx,
                pg,
                actor.event(
                    action,
                    format!("freeze-exception:{id}"),
                    Some(audit_value("calendar record", &before)?),
                    Some(audit_value("calendar record", &after)?)
                )
            );
            tx.commit().await?;
            Ok(after)
        })
    }
}
