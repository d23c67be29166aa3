//! The record behind `Idempotency-Key`: the first answer to a mutating request, per user and
//! key, so a retried request gets the same answer instead of acting twice.
//!
//! Not audited: it records answers, not changes (the change it answered was audited). Never
//! holds secrets: the server only uses it for routes whose answers hold none.

use sqlx::Row;

use crate::{Result, Store, begin_write, on_pool};

/// An answer kept for replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of the body, if it had one.
    pub content_type: Option<String>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

/// What a claim on a key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new (or its earlier attempt was abandoned): run the request, then complete
    /// or release the key.
    New,
    /// The same request ran before: here is its answer.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

fn stamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Store {
    /// Claims `key` for `user_id`'s request with this fingerprint at `now`.
    ///
    /// Keys created before `expired_before` are forgotten first; a claim still running since
    /// before `stale_before` counts as abandoned (its process died) and is taken over.
    pub async fn claim_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        now: jiff::Timestamp,
        expired_before: jiff::Timestamp,
        stale_before: jiff::Timestamp,
    ) -> Result<KeyClaim> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(stamp(expired_before))
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, idem_key) DO NOTHING",
            )
            .bind(user_id)
            .bind(key)
            .bind(fingerprint)
            .bind(stamp(now))
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                tx.commit().await?;
                return Ok(KeyClaim::New);
            }
            let select = if pg {
                "SELECT fingerprint, status, content_type, body, created_at FROM idempotency_keys \
                 WHERE user_id = $1 AND idem_key = $2 FOR UPDATE"
            } else {
                "SELECT fingerprint, status, content_type, body, created_at FROM idempotency_keys \
                 WHERE user_id = $1 AND idem_key = $2"
            };
            let Some(row) = sqlx::query(select)
                .bind(user_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
            else {
                // Claimed and released between the two statements: the caller may try again.
                return Ok(KeyClaim::InFlight);
            };
            let stored_fingerprint: String = row.try_get("fingerprint")?;
            if stored_fingerprint != fingerprint {
                return Ok(KeyClaim::Mismatch);
            }
            let status: Option<i32> = row.try_get("status")?;
            if let Some(status) = status {
                return Ok(KeyClaim::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    content_type: row.try_get("content_type")?,
                    body: row
                        .try_get::<Option<Vec<u8>>, _>("body")?
                        .unwrap_or_default(),
                }));
            }
            let created_at: String = row.try_get("created_at")?;
            if created_at < stamp(stale_before) {
                sqlx::query(
                    "UPDATE idempotency_keys SET created_at = $3 WHERE user_id = $1 AND idem_key = $2",
                )
                .bind(user_id)
                .bind(key)
                .bind(stamp(now))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(KeyClaim::New);
            }
            Ok(KeyClaim::InFlight)
        })
    }

    /// Keeps the answer of a claimed key for replay.
    pub async fn complete_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<()> {
        on_pool!(self, |pool, pg| {
            sqlx::query(
                "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 \
                 WHERE user_id = $1 AND idem_key = $2",
            )
            .bind(user_id)
            .bind(key)
            .bind(i32::from(response.status))
            .bind(&response.content_type)
            .bind(&response.body)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Gives up a claimed key whose request produced no answer worth keeping (a server error),
    /// so a retry runs the request again.
    pub async fn release_idempotency_key(&self, user_id: &str, key: &str) -> Result<()> {
        on_pool!(self, |pool, pg| {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2 AND status IS NULL",
            )
            .bind(user_id)
            .bind(key)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}
