//! Persistence: one storage interface, [`Store`], over SQLite (the embedded default) and
//! PostgreSQL (for several server replicas), each with its own migrations.
//!
//! Every method that changes state writes its audit event in the same transaction as the
//! change, so the record and the change commit or fail together. The SQL is written once and
//! run against each backend's native driver (see `on_pool!`), so both backends behave the same;
//! the conformance tests in `tests/` run every scenario on both.

mod accounts;
mod agents;
mod audit;
mod calendars;
mod changes;
mod cmdb;
mod deferrals;
mod findings;
mod idempotency;
mod policies;
mod record;
mod rollouts;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use accounts::{LoginFailureGroup, LoginScope, NewToken, NewUser, Token, User};
pub use agents::{Agent, EnrollRefusal, StoredJob};
pub use calendars::{ExceptionState, StoredFreeze, StoredFreezeException, StoredWindow};
pub use changes::{ChangeEvent, ChangesPage, ChangesQuery, SchedulingLock, StoredChange};
pub use cmdb::{Change, ImportSummary};
pub use deferrals::{DeferralsQuery, StoredDeferral};
pub use findings::{
    COUNT_CAP, Covered, Feed, FeedKind, FindingsDiff, FindingsPage, FindingsQuery, InventoryWrite,
    NewFeed, StoredFinding, StoredInventory, SyncOutcome,
};
pub use idempotency::{KeyClaim, StoredResponse};
pub use policies::StoredPolicy;
pub use rollouts::{
    NewRollout, NewRolloutEvent, RolloutJob, RolloutWrite, StoredRollout, StoredRolloutEvent,
};

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in WAL mode, one file in the data directory.
    Sqlite,
    /// PostgreSQL, shared by any number of server replicas.
    Postgres,
}

#[derive(Clone, Debug)]
enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The storage interface. Cheap to clone (it holds a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pools: Pools,
    package_cache: PackageCache,
}

/// (ecosystem, name, version, arch, source name, source version).
pub(crate) type PackageKey = (String, String, String, String, String, String);

/// Ids of packages already in the package table, per process, keyed by [`findings::cache_key`]'s
/// text.
#[derive(Clone, Default)]
struct PackageCache(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>);

impl std::ops::Deref for PackageCache {
    type Target = std::sync::Mutex<std::collections::HashMap<String, i64>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for PackageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackageCache")
    }
}

/// Who is making a change, for the audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// User name, `agent:HOST` or `system`.
    pub name: String,
    /// The request that caused the change.
    pub request_id: Option<String>,
}

impl Actor {
    /// The server itself (first start, scheduled work).
    pub fn system() -> Self {
        Self {
            name: "system".to_owned(),
            request_id: None,
        }
    }

    /// A named user or process.
    pub fn named(name: &str, request_id: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            request_id: request_id.map(str::to_owned),
        }
    }

    /// The audit event this actor's change records.
    pub(crate) fn event(
        &self,
        action: &str,
        object: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> sluice_core::audit::NewAuditEvent {
        sluice_core::audit::NewAuditEvent {
            actor: self.name.clone(),
            action: action.to_owned(),
            object,
            before,
            after,
            request_id: self.request_id.clone(),
        }
    }
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The change conflicts with what is stored (a name already taken).
    #[error("{0}")]
    Conflict(String),
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A record that is not valid (a bad value, a service naming an unknown host).
    #[error("{0}")]
    Invalid(String),
    /// Stored data that Sluice cannot read back.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A record or audit payload that cannot be encoded for storing (nothing was written).
    #[error("cannot encode {0}")]
    Encode(String),
    /// A database URL Sluice does not understand.
    #[error("{0}")]
    InvalidUrl(String),
    /// No Sluice database where one was expected to exist already (a mistyped path, a
    /// database whose schema was never created).
    #[error("{0}")]
    Missing(String),
}

/// Results of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Runs the same body against whichever pool the store holds. `$pg` is `true` on PostgreSQL,
/// for the few statements whose SQL differs (row locks).
macro_rules! on_pool {
    ($store:expr, |$pool:ident, $pg:ident| $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite($pool) => {
                #[allow(unused_variables)]
                let $pg = false;
                $body
            }
            $crate::Pools::Postgres($pool) => {
                #[allow(unused_variables)]
                let $pg = true;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// Begins a write transaction. On SQLite, `BEGIN IMMEDIATE` takes the write lock up front so two
/// writers queue instead of failing when the second upgrades its read lock.
macro_rules! begin_write {
    ($pool:expr, $pg:expr) => {
        $pool
            .begin_with(if $pg { "BEGIN" } else { "BEGIN IMMEDIATE" })
            .await?
    };
}
pub(crate) use begin_write;

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` in WAL mode.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::sqlite_with(options).await
    }

    async fn sqlite_with(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            // In WAL mode NORMAL keeps the database consistent on power loss and fsyncs at
            // checkpoints instead of at every commit: the last transactions before a power cut
            // may be lost, never half-applied (docs/deploying.md).
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            // 64 MiB of page cache per connection: findings and package lookups stay in memory.
            .pragma("cache_size", "-65536")
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self {
            pools: Pools::Sqlite(pool),
            package_cache: PackageCache::default(),
        })
    }

    /// Connects to `postgres://…` or `sqlite:…` URLs.
    pub async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            return Ok(Self {
                pools: Pools::Postgres(pool),
                package_cache: PackageCache::default(),
            });
        }
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
            return Self::sqlite_with(options).await;
        }
        Err(StoreError::InvalidUrl(format!(
            "unsupported database URL {:?}: use postgres://USER@HOST:PORT/DB or sqlite:PATH",
            redact_url(url)
        )))
    }

    /// Opens an existing SQLite database read-only, creating nothing: for commands that only
    /// read the record (`sluice audit verify`), so a mistyped path fails instead of leaving an
    /// empty database that "verifies". Checks that the schema is there.
    pub async fn open_sqlite_read_only(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(StoreError::Missing(format!(
                "no Sluice database at {}: check --data-dir (or the database URL)",
                path.display()
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        let store = Self {
            pools: Pools::Sqlite(pool),
            package_cache: PackageCache::default(),
        };
        store.require_schema(&path.display().to_string()).await?;
        Ok(store)
    }

    /// Connects to an existing PostgreSQL database without migrating it, and checks that the
    /// schema is there: the read-only counterpart of [`Store::connect`] and [`Store::migrate`].
    pub async fn connect_existing(url: &str) -> Result<Self> {
        let store = Self::connect(url).await?;
        store.require_schema(&redact_url(url)).await?;
        Ok(store)
    }

    /// Fails unless Sluice's schema is in the database (`where` names it in the message).
    async fn require_schema(&self, place: &str) -> Result<()> {
        let found = on_pool!(self, |pool, pg| {
            let sql = if pg {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('_sqlx_migrations', 'audit_events')"
            } else {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_sqlx_migrations', 'audit_events')"
            };
            sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?
        });
        if found < 2 {
            return Err(StoreError::Missing(format!(
                "{place} holds no Sluice schema: check the path or URL (`sluice db migrate` creates the schema)"
            )));
        }
        Ok(())
    }

    /// Applies this backend's migrations that have not run yet.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pools {
            Pools::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Pools::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool, pg| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Refreshes the query planner's statistics (PostgreSQL `ANALYZE`, SQLite `PRAGMA
    /// optimize`), so plans stay good as tables grow; the server does this hourly.
    pub async fn optimize(&self) -> Result<()> {
        on_pool!(self, |pool, pg| {
            let sql = if pg { "ANALYZE" } else { "PRAGMA optimize" };
            sqlx::query(sql).execute(pool).await?;
        });
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        on_pool!(self, |pool, pg| pool.close().await)
    }
}

/// A URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_urls() {
        assert_eq!(
            redact_url("postgres://sluice:hunter2@db:5432/sluice"),
            "postgres://sluice:***@db:5432/sluice"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
    }
}
