//! `sluice server` and `sluice db migrate`: settings in layers (file, environment, flags), the
//! store, the first admin, and the HTTP server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use sluice_server::settings::{Database, Secret, Settings, SettingsLayer};

/// Where the records are: shared by the commands that open the store directly.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Data directory holding the SQLite database `sluice.db` (default ./sluice-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use PostgreSQL instead: postgres://USER@HOST:PORT/DB (or SLUICE_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// A TOML settings file.
    #[arg(long, value_name = "FILE", env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Arguments of `sluice server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address to listen on (default 127.0.0.1:8470).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Serve /metrics without authentication (default true).
    #[arg(long, value_name = "BOOL")]
    metrics_public: Option<bool>,
    /// A directory local feed sources may be read from; repeat for several (default: the
    /// data directory's feeds/; none with PostgreSQL).
    #[arg(long = "feed-dir", value_name = "DIR")]
    feed_dirs: Vec<PathBuf>,
}

impl DatabaseArgs {
    /// Settings from the file, then the environment, then these flags.
    pub fn settings(&self, extra: SettingsLayer) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => SettingsLayer::from_file(path)?,
            None => SettingsLayer::default(),
        };
        let env = SettingsLayer::from_env(std::env::vars())?;
        let flags = SettingsLayer {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone().map(Secret::new),
            ..extra
        };
        Ok(Settings::from_layer(
            file.overridden_by(env).overridden_by(flags),
        )?)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `sluice server`.
pub fn run(args: ServerArgs) -> Result<ExitCode> {
    let settings = args.database.settings(SettingsLayer {
        listen: args.listen,
        metrics_public: args.metrics_public,
        feed_dirs: (!args.feed_dirs.is_empty()).then_some(args.feed_dirs),
        ..SettingsLayer::default()
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    runtime()?.block_on(async {
        let store = sluice_server::open_store(&settings).await?;
        if let Some(password) = sluice_server::ensure_admin(&store, &settings).await? {
            eprintln!(
                "\nCreated the first user: admin\nIts password, shown this once: {password}\nLog in with: sluice login --server http://{} --username admin\n",
                settings.listen
            );
        }
        sluice_server::serve(settings, store).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Subcommands of `sluice db`.
#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations (the server also does this at start).
    Migrate(DatabaseArgs),
}

/// Runs `sluice db …`.
pub fn run_db(command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Migrate(database) => {
            let settings = database.settings(SettingsLayer::default())?;
            runtime()?.block_on(async {
                let store = sluice_server::open_store(&settings).await?;
                store.close().await;
                Ok::<_, anyhow::Error>(())
            })?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens the existing store named by the arguments read-only, for offline commands such as
/// `audit verify`: nothing is created or migrated, so a mistyped `--data-dir` fails naming the
/// path instead of reading an empty database it just made.
pub fn with_store<T>(
    database: &DatabaseArgs,
    work: impl AsyncFnOnce(sluice_store::Store) -> Result<T>,
) -> Result<T> {
    let settings = database.settings(SettingsLayer::default())?;
    runtime()?.block_on(async {
        let store = match &settings.database {
            Database::Sqlite(path) => sluice_store::Store::open_sqlite_read_only(path).await?,
            Database::Postgres(url) => sluice_store::Store::connect_existing(url.expose()).await?,
        };
        let result = work(store.clone()).await;
        store.close().await;
        result
    })
}
