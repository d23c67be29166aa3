//! The shape every numbered, versioned, audited record shares (changes `CHG-n`, deferrals
//! `DEF-n`, freeze exceptions `FEX-n`): writes serialised before their first read, the next
//! number taken inside the write, records and audit payloads encoded with their errors
//! propagated (an event is never written without its before/after), and the one refusal of a
//! write made over a version someone else replaced.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Result, StoreError};

/// Serialises audited writes on PostgreSQL before the first read, so "does it exist" or "the
/// next number" and the write that follows see the same state (every audited write takes this
/// row lock anyway when it appends its event). SQLite's `BEGIN IMMEDIATE` already excludes
/// other writers.
macro_rules! lock_writes {
    ($tx:expr, $pg:expr) => {
        if $pg {
            sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *$tx)
                .await?;
        }
    };
}
pub(crate) use lock_writes;

/// The next number of a numbered table (`changes`, `deferrals`, `freeze_exceptions`): one past
/// the highest, read inside the write transaction after [`lock_writes!`].
macro_rules! next_number {
    ($tx:expr, $table:literal) => {{
        let row = sqlx::query(concat!(
            "SELECT COALESCE(MAX(number), 0) AS n FROM ",
            $table
        ))
        .fetch_one(&mut *$tx)
        .await?;
        sqlx::Row::try_get::<i64, _>(&row, "n")? + 1
    }};
}
pub(crate) use next_number;

/// A record as the JSON text stored in its `record` column.
pub(crate) fn record_text<T: Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode(format!("{what}: {e}")))
}

/// A record read back from its JSON text.
pub(crate) fn from_record<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// What an audit event shows before or after: the value's JSON, or the error. Never `None` on a
/// failure, which would write an event that hides what changed.
pub(crate) fn audit_value<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Encode(format!("{what}: {e}")))
}

/// The refusal of a write over a version someone else replaced (`now` is the stored version,
/// `None` when the record is gone).
pub(crate) fn version_conflict(
    kind: &str,
    id: &str,
    expected: i64,
    now: Option<i64>,
    advice: &str,
) -> StoreError {
    match now {
        None => StoreError::NotFound(format!("{kind} {id}")),
        Some(now) => StoreError::Conflict(format!(
            "{kind} {id} was changed by someone else: it was read at version {expected} and is now at version {now}; {advice}"
        )),
    }
}
