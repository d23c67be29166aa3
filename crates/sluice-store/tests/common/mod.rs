//! Shared by the storage test binaries: a fresh, migrated store on SQLite or PostgreSQL, and a
//! way to reach its database behind its back.

#![allow(dead_code)]

use sluice_store::Store;
use sqlx::Connection;

pub fn admin_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, migrated store plus a way to reach its database behind its back.
pub struct TestDb {
    pub store: Store,
    pub raw_url: String,
    drop_pg: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        store.migrate().await.unwrap();
        Self {
            store,
            raw_url: format!("sqlite:{}", path.display()),
            drop_pg: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Self {
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL must run at {admin} for the conformance tests (.ci/setup starts it): {e}")
        });
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!(
            "sluice_test_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let (base, _) = admin.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Self {
            store,
            raw_url: url,
            drop_pg: Some(name),
            _dir: None,
        }
    }

    /// Runs SQL directly against the database, as someone with database access would.
    pub async fn tamper(&self, sql: &str) {
        if self.drop_pg.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.raw_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap();
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.raw_url)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some(name) = self.drop_pg {
            let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
}

/// Runs a scenario on both backends.
#[macro_export]
macro_rules! on_both {
    ($scenario:ident) => {
        let db = common::TestDb::sqlite().await;
        assert_eq!(db.store.backend(), sluice_store::Backend::Sqlite);
        $scenario(&db).await;
        db.finish().await;
        let db = common::TestDb::postgres().await;
        assert_eq!(db.store.backend(), sluice_store::Backend::Postgres);
        $scenario(&db).await;
        db.finish().await;
    };
}
