//! The HTTP API under `/api/v1`, plus health, readiness and metrics. Each module declares its
//! routes with their OpenAPI description, including the roles each needs (`security` scopes).

pub mod accounts;
pub mod agents;
pub mod alerts;
pub mod assets;
pub mod audit;
pub mod calendars;
pub mod changes;
pub mod deferrals;
pub mod findings;
pub mod health;
pub mod policies;
pub mod rollouts;

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The document's frame; paths are added by the routers.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice API", description = "Patch governance and progressive rollout for Linux fleets. Every route except health, readiness, metrics, this document and login needs `Authorization: Bearer slc_…`; the `token` security scopes list the roles a route accepts (empty: any role)."),
    modifiers(&BearerToken),
    tags((name = "health"), (name = "accounts"), (name = "audit"), (name = "findings"), (name = "cmdb"), (name = "changes"), (name = "deferrals"), (name = "policies"), (name = "calendars"), (name = "rollouts"))
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // Agent access tokens (`slca_…`), from a signed challenge; accepted on agent routes only.
        components.add_security_scheme(
            "agent",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route with its documentation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::whoami))
        .routes(routes!(accounts::list_users, accounts::create_user))
        .routes(routes!(accounts::list_tokens, accounts::create_token))
        .routes(routes!(accounts::revoke_token))
        .routes(routes!(accounts::list_user_tokens))
        .routes(routes!(accounts::disable_user))
        .routes(routes!(accounts::enable_user))
        .routes(routes!(accounts::reset_password))
        .routes(routes!(
            accounts::list_login_locks,
            accounts::clear_login_lock
        ))
        .routes(routes!(audit::list_events))
        .routes(routes!(audit::verify))
        .routes(routes!(findings::list_feeds, findings::create_feed))
        .routes(routes!(findings::sync_feed))
        .routes(routes!(findings::push_inventory))
        .routes(routes!(findings::list_findings))
        .routes(routes!(assets::list_assets))
        .routes(routes!(
            assets::get_asset,
            assets::put_asset,
            assets::patch_asset,
            assets::delete_asset
        ))
        .routes(routes!(assets::import_assets))
        .routes(routes!(assets::export_assets))
        .routes(routes!(assets::list_groups))
        .routes(routes!(assets::put_group, assets::delete_group))
        .routes(routes!(assets::list_services))
        .routes(routes!(
            assets::get_service,
            assets::put_service,
            assets::delete_service
        ))
        .routes(routes!(agents::create_enrollment_token))
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::revoke_agent))
        .routes(routes!(agents::enroll))
        .routes(routes!(agents::challenge))
        .routes(routes!(agents::token))
        .routes(routes!(agents::put_inventory, agents::patch_inventory))
        .routes(routes!(agents::inventory_request))
        .routes(routes!(agents::request_inventory))
        .routes(routes!(agents::next_job))
        .routes(routes!(agents::report_job))
        .routes(routes!(agents::list_jobs, agents::create_job))
        .routes(routes!(agents::get_job))
        .routes(routes!(changes::list_changes, changes::create_change))
        .routes(routes!(changes::get_change, changes::edit_change))
        .routes(routes!(changes::act))
        .routes(routes!(changes::export_change))
        .routes(routes!(calendars::preview_conflicts))
        .routes(routes!(calendars::list_windows, calendars::create_window))
        .routes(routes!(calendars::delete_window))
        .routes(routes!(calendars::list_freezes, calendars::create_freeze))
        .routes(routes!(calendars::delete_freeze))
        .routes(routes!(
            calendars::list_freeze_exceptions,
            calendars::request_freeze_exception
        ))
        .routes(routes!(calendars::list_all_freeze_exceptions))
        .routes(routes!(calendars::approve_freeze_exception))
        .routes(routes!(calendars::reject_freeze_exception))
        .routes(routes!(policies::get_cab, policies::put_cab))
        .routes(routes!(policies::get_deferral, policies::put_deferral))
        .routes(routes!(
            deferrals::list_deferrals,
            deferrals::request_deferral
        ))
        .routes(routes!(deferrals::get_deferral))
        .routes(routes!(deferrals::approve_deferral))
        .routes(routes!(deferrals::renew_deferral))
        .routes(routes!(deferrals::revoke_deferral))
        .routes(routes!(rollouts::list_rollouts, rollouts::start_rollout))
        .routes(routes!(rollouts::get_rollout))
        .routes(routes!(rollouts::act_on_rollout))
        .routes(routes!(rollouts::rollout_events))
        .routes(routes!(alerts::alertmanager))
}
