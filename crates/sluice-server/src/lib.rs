//! `sluice server`: the HTTP API over the store, with authentication on every route that is not
//! health, readiness, metrics, the OpenAPI document or login.
//!
//! Handlers carry out what `sluice-core` decides and what the store records; they decide nothing
//! themselves.

pub mod accounts;
pub mod agents;
pub mod api;
pub mod auth;
pub mod calendar;
pub mod changes;
pub mod clock;
pub mod cmdb;
pub mod connections;
pub mod deferrals;
pub mod error;
pub mod findings;
pub mod governance;
pub mod haproxy;
pub mod hardening;
pub mod idempotency;
pub mod intel;
pub mod policies;
pub mod rollouts;
pub mod settings;
pub mod state;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_core::access::Role;
use sluice_store::{Actor, NewUser, Store};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{AccessTable, LoginLimiter};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::idempotency::Idempotency;
use crate::settings::{Database, Settings};
use crate::state::AppState;

/// Server start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The API's own declarations are inconsistent (a programming error caught at start).
    #[error("API declaration: {0}")]
    Declaration(String),
    /// Anything else, with its reason.
    #[error("{0}")]
    Other(String),
}

/// Opens the configured database and applies migrations.
pub async fn open_store(settings: &Settings) -> Result<Store, ServerError> {
    let store = match &settings.database {
        Database::Sqlite(path) => {
            hardening::private_database_file(path)?;
            Store::open_sqlite(path).await?
        }
        Database::Postgres(url) => Store::connect(url.expose()).await?,
    };
    store.migrate().await?;
    Ok(store)
}

/// On the first start (no users), creates `admin` with the configured password or a random one,
/// returned so the caller can show it once. Audited like any other change. A configured
/// password must pass the rule every password passes (settings already check it; this holds
/// for settings built another way too).
pub async fn ensure_admin(
    store: &Store,
    settings: &Settings,
) -> Result<Option<String>, ServerError> {
    if let Some(secret) = &settings.admin_password
        && let Err(why) = auth::check_password(secret.expose())
    {
        return Err(ServerError::Other(format!(
            "admin_password (SLUICE_ADMIN_PASSWORD): {why}"
        )));
    }
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match &settings.admin_password {
        Some(secret) => (secret.expose().to_owned(), false),
        None => (
            auth::new_password().map_err(|e| ServerError::Other(e.to_string()))?,
            true,
        ),
    };
    let hash = auth::hash_password(&password).map_err(|e| ServerError::Other(e.to_string()))?;
    store
        .create_user(
            NewUser {
                username: "admin".to_owned(),
                password_hash: hash,
                roles: [Role::Admin, Role::Viewer].into(),
                groups: Default::default(),
            },
            &Actor::system(),
        )
        .await?;
    Ok(generated.then_some(password))
}

/// Builds the application: every route, the access rules read from its OpenAPI document, the
/// Swagger UI (vendored, no CDN), request ids and the body limit. Governance runs on the system
/// clock, or on the fake one the `fake_now` setting asks for.
pub fn app(
    store: Store,
    settings: Settings,
    metrics: Option<PrometheusHandle>,
    intel: intel::IntelHandle,
) -> Result<Router, ServerError> {
    let clock = clock_for(&settings);
    app_with_clock(store, settings, metrics, intel, clock)
}

/// The clock the settings ask for: the system's, unless `fake_now` is set.
pub fn clock_for(settings: &Settings) -> Clock {
    match settings.fake_now {
        Some(start) => Clock::starting_at(start),
        None => Clock::system(),
    }
}

/// [`app`] with the governance clock given (tests pass a manual one).
pub fn app_with_clock(
    store: Store,
    settings: Settings,
    metrics: Option<PrometheusHandle>,
    intel: intel::IntelHandle,
    clock: Clock,
) -> Result<Router, ServerError> {
    let (router, openapi) = api::router().split_for_parts();
    let access = AccessTable::from_openapi(&openapi).map_err(ServerError::Declaration)?;
    let idempotency = Idempotency::from_openapi(&openapi, store.clone(), settings.max_body_bytes)
        .map_err(ServerError::Declaration)?;
    let state = AppState {
        store,
        limiter: LoginLimiter::new(settings.login_max_failures, settings.login_window),
        settings: Arc::new(settings.clone()),
        access: Arc::new(access),
        intel,
        assets: Default::default(),
        metrics,
        job_signals: Default::default(),
        clock,
        rollouts: Default::default(),
        schedule_lock: Default::default(),
    };
    // The rollout orchestrator runs beside the routes, on the runtime that serves them.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(rollouts::drive(state.clone()));
    }
    let request_id = HeaderName::from_static("x-request-id");
    let router = router
        .merge(SwaggerUi::new("/api/docs").url("/api/v1/openapi.json", openapi))
        .fallback(|| async { ApiError::not_found("no such route") })
        // Inside `authorize`: answers are kept per authenticated user.
        .layer(axum::middleware::from_fn_with_state(
            idempotency,
            idempotency::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        // Every error answer is a problem document, whoever made it (an extractor's rejection,
        // the router's own 405), not only those handlers return.
        .layer(axum::middleware::from_fn(
            hardening::problem_for_every_error,
        ))
        // Outside `authorize`, so refusals are counted too.
        .layer(axum::middleware::from_fn(observe))
        .layer(axum::middleware::from_fn(hardening::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(settings.clone()),
            hardening::check_host,
        ))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state);
    Ok(router)
}

/// Installs the Prometheus recorder once per process. Request durations are histograms with
/// buckets from 1 ms to 10 s, so latency SLOs can be computed across replicas.
pub fn metrics_recorder() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                "sluice_http_request_duration_seconds".to_owned(),
            ),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .ok()?
        .install_recorder()
        .ok()
}

/// Counts requests and times them, labelled by route template (not the raw path, which would
/// make one series per host name) and status.
async fn observe(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("sluice_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("sluice_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// Runs the server until SIGTERM or SIGINT, then finishes in-flight requests.
pub async fn serve(settings: Settings, store: Store) -> Result<(), ServerError> {
    if let Some(path) = &settings.ca_file {
        tls::trust_ca_file(path.clone()).map_err(ServerError::Other)?;
    }
    let limits = connections::fit_descriptor_limit(settings.connections);
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let address = listener.local_addr()?;
    let intel = intel::IntelHandle::default();
    intel::load(&store, &intel)
        .await
        .map_err(|e| ServerError::Other(e.to_string()))?;
    let clock = clock_for(&settings);
    if let Some(start) = settings.fake_now {
        tracing::warn!(%start, "governance runs on a FAKE clock (fake_now): for tests and demos only");
        store
            .record(sluice_core::audit::NewAuditEvent {
                actor: "system".to_owned(),
                action: "clock.fake".to_owned(),
                object: "server".to_owned(),
                before: None,
                after: Some(
                    serde_json::json!({"fake_now": start, "system_now": jiff::Timestamp::now()}),
                ),
                request_id: None,
            })
            .await?;
    }
    let scheduler = {
        let (store, intel, clock) = (store.clone(), intel.clone(), clock.clone());
        let feeds = settings.feeds.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            for minute in 0u64.. {
                tick.tick().await;
                if let Err(e) = intel::scheduled(&store, &intel, &feeds).await {
                    tracing::warn!(error = %e, "scheduled feed sync failed");
                }
                if let Err(e) = governance::escalate_due(&store, clock.now()).await {
                    tracing::warn!(error = %e, "recording escalations failed");
                }
                if minute % 60 == 0
                    && let Err(e) = store.optimize().await
                {
                    tracing::warn!(error = %e, "refreshing planner statistics failed");
                }
            }
        })
    };
    let app = app_with_clock(store.clone(), settings, metrics_recorder(), intel, clock)?;
    tracing::info!(%address, max_connections = limits.max_total, "sluice server listening");
    connections::serve(listener, app, limits, shutdown_signal()).await?;
    scheduler.abort();
    store.close().await;
    tracing::info!("sluice server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
