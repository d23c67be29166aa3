//! The CMDB over HTTP: assets, groups and services.
//!
//! Reads are open to every authenticated role; writes need `operator` or `admin`. Parsing and
//! validation are `sluice-core`'s (`Asset`, `Selector`, the CSV and Ansible readers); the store
//! writes and audits. The only check added here is the one the core cannot make without I/O:
//! that a time zone exists in the tz database. Every mutating route declares `Idempotency-Key`.

use std::collections::{BTreeMap, BTreeSet};

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sluice_core::cmdb::{self, Asset, Group, Selector, Service};
use sluice_protocol::assets::{
    AssetPage, AssetPatch, ExportFormat, GroupBody, GroupView, ImportFormat, ImportRequest,
    ImportResult, ServiceBody,
};
use sluice_store::{Change, ImportSummary};
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;

/// Largest page.
pub const MAX_LIMIT: usize = 1000;

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 100;

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

fn selector(text: Option<&str>) -> Result<Selector, ApiError> {
    Selector::parse(text.unwrap_or_default())
        .map_err(|e| ApiError::invalid_field("selector", format!("selector: {e}")))
}

/// Assets matching a selector, a page at a time.
#[utoipa::path(get, path = "/api/v1/assets", tag = "cmdb", security(("token" = [])), params(ListQuery),
    responses((status = 200, body = AssetPage), (status = 422, body = Problem, description = "a selector term, the limit or the offset is wrong")))]
pub async fn list_assets(
    State(state): State<AppState>,
    list: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<AssetPage>, ApiError> {
    let list = query(list)?;
    let selector = selector(list.selector.as_deref())?;
    let limit = list.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("limit: {limit} is not from 1 to {MAX_LIMIT}"),
        ));
    }
    let offset = list.offset.unwrap_or(0);
    let assets = state.assets.get(&state.store).await?;
    let mut total = 0;
    let mut items = Vec::new();
    for asset in selector.filter(assets.iter()) {
        if total >= offset && items.len() < limit {
            items.push(asset.clone());
        }
        total += 1;
    }
    Ok(Json(AssetPage {
        items,
        total,
        limit,
        offset,
        selector: selector.to_string(),
    }))
}

/// The key as stored: host names are lower case.
fn host_key(hostname: &str) -> String {
    hostname.trim().to_ascii_lowercase()
}

/// One asset.
#[utoipa::path(get, path = "/api/v1/assets/{hostname}", tag = "cmdb", security(("token" = [])),
    params(("hostname" = String, Path, description = "host name (case-insensitive)")),
    responses((status = 200, body = Object, description = "the asset"), (status = 404, body = Problem)))]
pub async fn get_asset(
    State(state): State<AppState>,
    Path(hostname): Path<String>,
) -> Result<Json<Asset>, ApiError> {
    let key = host_key(&hostname);
    state
        .store
        .asset(&key)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("asset {key} not found")))
}

/// Checks what the core cannot without the tz database: that the time zone exists. When the
/// server has no tz database at all, the shape check the core made is all there is.
fn check_time_zone(asset: &Asset) -> Result<(), String> {
    let Some(zone) = &asset.time_zone else {
        return Ok(());
    };
    let db = jiff::tz::db();
    if db.is_definitively_empty() || db.get(zone).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "time_zone: {zone:?} is not a time zone in the tz database"
        ))
    }
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
    let key = cmdb::parse_hostname(&hostname)
        .map_err(|e| ApiError::invalid_field("hostname", e.to_string()))?;
    if asset.hostname != key {
        return Err(ApiError::invalid_field(
            "hostname",
            format!(
                "hostname: the record is for {} but the path names {key}",
                asset.hostname
            ),
        ));
    }
    check_time_zone(&asset).map_err(|e| ApiError::invalid_field("time_zone", e))?;
    let (asset, change) = state.store.put_asset(&asset, &principal.actor()).await?;
    if change != sluice_store::Change::Unchanged {
        // Criticality, exposure and data classes weigh in every finding on the host.
        crate::intel::recompute_stored_host(
            &state.store,
            &state.intel,
            &asset.hostname,
            &principal.actor(),
        )
        .await?;
    }
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
    let key = host_key(&hostname);
    if patch.set.is_empty() {
        return Err(ApiError::invalid_field(
            "set",
            format!("set: nothing to set; known keys are {}", cmdb::ASSET_KEYS),
        ));
    }
    // Each pair is tried alone first, so the answer names the key at fault.
    let mut pairs = Vec::with_capacity(patch.set.len());
    for (name, value) in &patch.set {
        let text = value_text(name, value)?;
        let field = format!("set.{name}");
        let mut scratch = Asset::new("scratch").map_err(ApiError::internal)?;
        scratch
            .set(name, &text)
            .map_err(|e| ApiError::invalid_field(&field, e.to_string()))?;
        check_time_zone(&scratch).map_err(|e| ApiError::invalid_field(&field, e))?;
        pairs.push((name.clone(), text));
    }
    let (asset, change) = state
        .store
        .set_asset(&key, &pairs, &principal.actor())
        .await?;
    if change != sluice_store::Change::Unchanged {
        crate::intel::recompute_stored_host(
            &state.store,
            &state.intel,
            &asset.hostname,
            &principal.actor(),
        )
        .await?;
    }
    Ok(Json(asset))
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
    state
        .store
        .delete_asset(&host_key(&hostname), &principal.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resolving `auto` (the wire type lives in `sluice_protocol`).
trait Resolve {
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
    let parsed = match format {
        ImportFormat::Csv => cmdb::csv::import(source, &request.content).map(|a| (a, Vec::new())),
        ImportFormat::AnsibleIni => {
            cmdb::ansible::parse_ini(source, &request.content).map(|i| (i.assets, i.groups))
        }
        ImportFormat::AnsibleYaml | ImportFormat::Auto => {
            cmdb::ansible::parse_yaml(source, &request.content).map(|i| (i.assets, i.groups))
        }
    };
    let (assets, groups) = parsed.map_err(|e| ApiError::invalid_field("content", e.to_string()))?;
    for asset in &assets {
        check_time_zone(asset).map_err(|e| {
            ApiError::invalid_field("content", format!("{source}: host {}: {e}", asset.hostname))
        })?;
    }
    let count = assets.len();
    let hostnames: Vec<String> = assets.iter().map(|a| a.hostname.clone()).collect();
    let summary: ImportSummary = state
        .store
        .import_assets(assets, groups, &principal.actor())
        .await?;
    if summary.created + summary.updated > 0 {
        for hostname in &hostnames {
            crate::intel::recompute_stored_host(
                &state.store,
                &state.intel,
                hostname,
                &principal.actor(),
            )
            .await?;
        }
    }
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
    let selector = selector(export.selector.as_deref())?;
    let assets = state.assets.get(&state.store).await?;
    let picked: Vec<&Asset> = selector.filter(assets.iter()).collect();
    Ok(match export.format {
        ExportFormat::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            cmdb::csv::export(picked),
        )
            .into_response(),
        ExportFormat::Json => Json(picked).into_response(),
    })
}

/// Declared groups, by name, with their member counts.
#[utoipa::path(get, path = "/api/v1/groups", tag = "cmdb", security(("token" = [])),
    responses((status = 200, body = Vec<GroupView>)))]
pub async fn list_groups(State(state): State<AppState>) -> Result<Json<Vec<GroupView>>, ApiError> {
    let groups = state.store.groups().await?;
    let mut members: BTreeMap<String, usize> = BTreeMap::new();
    for asset in state.store.assets().await? {
        for group in asset.groups {
            *members.entry(group).or_default() += 1;
        }
    }
    Ok(Json(
        groups
            .into_iter()
            .map(|g| GroupView {
                members: members.get(&g.name).copied().unwrap_or(0),
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
    let mut group =
        Group::new(&name).map_err(|e| ApiError::invalid_field("name", e.to_string()))?;
    group.description = body
        .description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    let (group, change) = state.store.put_group(&group, &principal.actor()).await?;
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
    state
        .store
        .service(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("service {name} not found")))
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
    let members = body
        .members
        .iter()
        .map(|m| {
            cmdb::parse_hostname(m).map_err(|e| ApiError::invalid_field("members", e.to_string()))
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let service = Service {
        name,
        tier: body.tier,
        members,
        depends_on: body.depends_on,
        disruption_budget: body.disruption_budget,
    };
    let (service, change) = state
        .store
        .put_service(&service, &principal.actor())
        .await?;
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

    #[test]
    fn unknown_time_zones_are_refused() {
        let mut asset = Asset::new("web1").unwrap();
        asset.set("tz", "Europe/Paris").unwrap();
        assert_eq!(check_time_zone(&asset), Ok(()));
        asset.set("tz", "Europe/Atlantis").unwrap();
        if !jiff::tz::db().is_definitively_empty() {
            assert!(
                check_time_zone(&asset)
                    .unwrap_err()
                    .contains("Europe/Atlantis")
            );
        }
    }
}
