//! The CMDB over HTTP: assets, groups and services.
//!
//! Reads are open to every authenticated role; writes need `operator` or `admin`. Parsing and
//! validation are `sluice-core`'s; storing and the tz database check are `crate::cmdb`'s. Every
//! mutating route declares `Idempotency-Key`.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sluice_core::cmdb::{self, Asset, Group, Service};
use sluice_protocol::assets::{
    AssetPage, AssetPatch, ExportFormat, GroupBody, GroupView, ImportFormat, ImportRequest,
    ImportResult, ServiceBody,
};
use sluice_store::Change;
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::cmdb as records;
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;

/// Which assets, and which page of them.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A selector such as `env=prod,criticality>=4` (see docs/cmdb.md); empty or absent: all.
    pub selector: Option<String>,
    /// At most this many assets (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// Skip this many matching assets first (default 0).
    pub offset: Option<usize>,
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

/// Assets matching a selector, a page at a time.
#[utoipa::path(get, path = "/api/v1/assets", tag = "cmdb", security(("token" = [])), params(ListQuery),
    responses((status = 200, body = AssetPage), (status = 422, body = Problem, description = "a selector term, the limit or the offset is wrong")))]
pub async fn list_assets(
    State(state): State<AppState>,
    list: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<AssetPage>, ApiError> {
    let list = query(list)?;
    let listing =
        records::list_assets(&state, list.selector.as_deref(), list.limit, list.offset).await?;
    Ok(Json(AssetPage {
        items: listing.items,
        total: listing.total,
        limit: listing.limit,
        offset: listing.offset,
        selector: listing.selector,
    }))
}

/// One asset.
#[utoipa::path(get, path = "/api/v1/assets/{hostname}", tag = "cmdb", security(("token" = [])),
    params(("hostname" = String, Path, description = "host name (case-insensitive)")),
    responses((status = 200, body = Object, description = "the asset"), (status = 404, body = Problem)))]
pub async fn get_asset(
    State(state): State<AppState>,
    Path(hostname): Path<String>,
) -> Result<Json<Asset>, ApiError> {
    Ok(Json(records::asset(&state, &hostname).await?))
}

fn created_or_ok(change: Change) -> StatusCode {
    if change == Change::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Creates or replaces an asset with the record given (every field; absent ones take their
/// defaults). 201 when created, 200 otherwise; an identical record changes nothing.
#[utoipa::path(put, path = "/api/v1/assets/{hostname}", tag = "cmdb", security(("token" = ["operator", "admin"])),
    params(("hostname" = String, Path, description = "host name"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    request_body(content = Object, description = "the asset record (docs/cmdb.md); its hostname must be the path's", content_type = "application/json"),
    responses((status = 200, body = Object), (status = 201, body = Object), (status = 422, body = Problem)))]
pub async fn put_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(hostname): Path<String>,
    ApiJson(asset): ApiJson<Asset>,
) -> Result<(StatusCode, Json<Asset>), ApiError> {
    let (asset, change) = records::put_asset(&state, &principal, &hostname, asset).await?;
    Ok((created_or_ok(change), Json(asset)))
}

fn value_text(key: &str, value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(()),
            })
            .collect::<Result<Vec<_>, ()>>()
            .map(|items| items.join(","))
            .map_err(|()| {
                ApiError::invalid_field(
                    &format!("set.{key}"),
                    format!("set.{key}: a list must hold text only"),
                )
            }),
        Value::Object(_) => Err(ApiError::invalid_field(
            &format!("set.{key}"),
            format!("set.{key}: expected text, a number or a list of text"),
        )),
    }
}

/// Sets some attributes of an asset: all of them, or none if any is wrong.
#[utoipa::path(patch, path = "/api/v1/assets/{hostname}", tag = "cmdb", security(("token" = ["operator", "admin"])),
    params(("hostname" = String, Path, description = "host name (case-insensitive)"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    request_body = AssetPatch,
    responses((status = 200, body = Object), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(hostname): Path<String>,
    ApiJson(patch): ApiJson<AssetPatch>,
) -> Result<Json<Asset>, ApiError> {
    let mut set = Vec::with_capacity(patch.set.len());
    for (name, value) in &patch.set {
        set.push((name.clone(), value_text(name, value)?));
    }
    Ok(Json(
        records::patch_asset(&state, &principal, &hostname, set).await?,
    ))
}

/// Deletes an asset (refused while a service lists it as a member).
#[utoipa::path(delete, path = "/api/v1/assets/{hostname}", tag = "cmdb", security(("token" = ["operator", "admin"])),
    params(("hostname" = String, Path, description = "host name (case-insensitive)"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_asset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(hostname): Path<String>,
) -> Result<StatusCode, ApiError> {
    records::delete_asset(&state, &principal, &hostname).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resolving `auto` (the wire type lives in `sluice_protocol`).
pub trait Resolve {
    /// Resolves `auto` from the content; other formats stay as they are.
    fn resolve(self, content: &str) -> Self;
}

impl Resolve for ImportFormat {
    fn resolve(self, content: &str) -> Self {
        if self != Self::Auto {
            return self;
        }
        let first = content
            .trim_start_matches('\u{feff}')
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'));
        let csv_header = first.is_some_and(|line| {
            line.contains(',')
                && line.split(',').any(|cell| {
                    let cell = cell.trim().trim_matches('"').trim();
                    cell.eq_ignore_ascii_case("hostname") || cell.eq_ignore_ascii_case("host")
                })
        });
        if csv_header {
            return Self::Csv;
        }
        match cmdb::ansible::detect_format(content) {
            cmdb::ansible::InventoryFormat::Ini => Self::AnsibleIni,
            cmdb::ansible::InventoryFormat::Yaml => Self::AnsibleYaml,
        }
    }
}

/// Imports assets (and, from Ansible, groups) from CSV or an Ansible inventory: all or nothing.
/// Assets the file does not name are left as they are.
#[utoipa::path(post, path = "/api/v1/assets/import", tag = "cmdb", security(("token" = ["operator", "admin"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    request_body = ImportRequest,
    responses((status = 200, body = ImportResult), (status = 422, body = Problem, description = "the file does not parse: the message names the line, column, host or variable")))]
pub async fn import_assets(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<ImportRequest>,
) -> Result<Json<ImportResult>, ApiError> {
    let source = request.source_name.as_deref().unwrap_or("import");
    let format = request.format.resolve(&request.content);
    let (count, summary) =
        records::import_assets(&state, &principal, format, &request.content, source).await?;
    Ok(Json(ImportResult {
        format,
        assets: count,
        created: summary.created,
        updated: summary.updated,
        unchanged: summary.unchanged,
        groups_created: summary.groups_created,
        groups_updated: summary.groups_updated,
    }))
}

/// What to export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` (default) or `json`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub format: ExportFormat,
    /// Only the assets this selector picks (default: all).
    pub selector: Option<String>,
}

/// Every matching asset, as CSV or JSON, by host name.
#[utoipa::path(get, path = "/api/v1/assets/export", tag = "cmdb", security(("token" = [])), params(ExportQuery),
    responses((status = 200, description = "text/csv or a JSON array of assets"), (status = 422, body = Problem)))]
pub async fn export_assets(
    State(state): State<AppState>,
    export: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let export = query(export)?;
    let picked = records::picked_assets(&state, export.selector.as_deref()).await?;
    Ok(match export.format {
        ExportFormat::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            cmdb::csv::export(picked.iter()),
        )
            .into_response(),
        ExportFormat::Json => Json(picked).into_response(),
    })
}

/// Declared groups, by name, with their member counts.
#[utoipa::path(get, path = "/api/v1/groups", tag = "cmdb", security(("token" = [])),
    responses((status = 200, body = Vec<GroupView>)))]
pub async fn list_groups(State(state): State<AppState>) -> Result<Json<Vec<GroupView>>, ApiError> {
    Ok(Json(
        records::groups(&state)
            .await?
            .into_iter()
            .map(|(g, members)| GroupView {
                members,
                name: g.name,
                description: g.description,
            })
            .collect(),
    ))
}

/// Declares a group or changes its description. Membership is set on the assets.
#[utoipa::path(put, path = "/api/v1/groups/{name}", tag = "cmdb", security(("token" = ["operator", "admin"])),
    params(("name" = String, Path, description = "group name"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    request_body = GroupBody,
    responses((status = 200, body = Object), (status = 201, body = Object), (status = 422, body = Problem)))]
pub async fn put_group(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<GroupBody>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let (group, change) = records::put_group(&state, &principal, &name, body.description).await?;
    Ok((created_or_ok(change), Json(group)))
}

/// Deletes a declared group (refused while assets are in it).
#[utoipa::path(delete, path = "/api/v1/groups/{name}", tag = "cmdb", security(("token" = ["operator", "admin"])),
    params(("name" = String, Path, description = "group name"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_group(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_group(&name, &principal.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every service, by name.
#[utoipa::path(get, path = "/api/v1/services", tag = "cmdb", security(("token" = [])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_services(State(state): State<AppState>) -> Result<Json<Vec<Service>>, ApiError> {
    Ok(Json(state.store.services().await?))
}

/// One service.
#[utoipa::path(get, path = "/api/v1/services/{name}", tag = "cmdb", security(("token" = [])),
    params(("name" = String, Path, description = "service name")),
    responses((status = 200, body = Object), (status = 404, body = Problem)))]
pub async fn get_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Service>, ApiError> {
    Ok(Json(records::service(&state, &name).await?))
}

/// Creates or replaces a service. The whole set of services is checked with it (members are
/// stored hosts, dependencies exist, no cycles); every problem is reported.
#[utoipa::path(put, path = "/api/v1/services/{name}", tag = "cmdb", security(("token" = ["operator", "admin"])),
    params(("name" = String, Path, description = "service name"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    request_body = ServiceBody,
    responses((status = 200, body = Object), (status = 201, body = Object), (status = 422, body = Problem)))]
pub async fn put_service(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ServiceBody>,
) -> Result<(StatusCode, Json<Service>), ApiError> {
    let (service, change) = records::put_service(&state, &principal, name, body).await?;
    Ok((created_or_ok(change), Json(service)))
}

/// Deletes a service (refused while others depend on it).
#[utoipa::path(delete, path = "/api/v1/services/{name}", tag = "cmdb", security(("token" = ["operator", "admin"])),
    params(("name" = String, Path, description = "service name"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_service(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_service(&name, &principal.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tells_csv_from_inventories() {
        let cases = [
            ("hostname,env\nweb1,prod\n", ImportFormat::Csv),
            (
                "\u{feff}\"Host\" , criticality\nweb1,5\n",
                ImportFormat::Csv,
            ),
            ("# exported\nos,hostname\n", ImportFormat::Csv),
            ("[web]\nweb1\n", ImportFormat::AnsibleIni),
            ("web1 ansible_host=10.0.0.1\n", ImportFormat::AnsibleIni),
            ("all:\n  hosts:\n    web1:\n", ImportFormat::AnsibleYaml),
            ("---\nall: {}\n", ImportFormat::AnsibleYaml),
        ];
        for (text, expected) in cases {
            assert_eq!(ImportFormat::Auto.resolve(text), expected, "{text:?}");
        }
        assert_eq!(ImportFormat::Csv.resolve("[web]\n"), ImportFormat::Csv);
    }

    #[test]
    fn patch_values_become_text() {
        assert_eq!(
            value_text("criticality", &serde_json::json!(5)).unwrap(),
            "5"
        );
        assert_eq!(value_text("env", &Value::Null).unwrap(), "");
        assert_eq!(
            value_text("tags", &serde_json::json!(["web", "edge"])).unwrap(),
            "web,edge"
        );
        let err = value_text("tags", &serde_json::json!([1])).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("set.tags"));
    }
}
