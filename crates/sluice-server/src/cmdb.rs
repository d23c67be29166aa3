//! The CMDB on the server: assets, groups and services as stored, and the findings an asset's
//! change weighs on.
//!
//! Parsing and validation are `sluice-core`'s (`Asset`, `Selector`, the CSV and Ansible
//! readers); the store writes and audits. The only check added here is the one the core cannot
//! make without I/O: that a time zone exists in the tz database. This module knows nothing of
//! HTTP: `crate::error` maps [`CmdbServiceError`] to problem documents.

use std::collections::{BTreeMap, BTreeSet};

use sluice_core::cmdb::{self, Asset, Group, Selector, Service};
use sluice_store::{Change, ImportSummary, StoreError};

use sluice_protocol::assets::{ImportFormat, ServiceBody};

use crate::auth::Principal;
use crate::intel::{self, IntelError};
use crate::state::AppState;

/// Largest page of assets.
pub const MAX_LIMIT: usize = 1000;

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 100;

/// What went wrong with a CMDB record.
#[derive(Debug, thiserror::Error)]
pub enum CmdbServiceError {
    /// No such asset or service.
    #[error("{0}")]
    NotFound(String),
    /// A field's value is refused.
    #[error("{detail}")]
    Invalid {
        /// The field's JSON path.
        field: String,
        /// Why.
        detail: String,
    },
    /// Something that should not fail did.
    #[error("{0}")]
    Internal(String),
    /// Recomputing the host's findings failed.
    #[error(transparent)]
    Intel(#[from] IntelError),
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CmdbServiceError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

/// A page of the assets a selector picks.
pub struct AssetListing {
    /// The assets.
    pub items: Vec<Asset>,
    /// How many the selector picks.
    pub total: usize,
    /// Page size.
    pub limit: usize,
    /// Page start.
    pub offset: usize,
    /// The selector, as parsed.
    pub selector: String,
}

/// Parses a selector; none is every host.
pub fn selector(text: Option<&str>) -> Result<Selector, CmdbServiceError> {
    Selector::parse(text.unwrap_or_default())
        .map_err(|e| CmdbServiceError::invalid("selector", format!("selector: {e}")))
}

/// The key an asset is looked up by: the CMDB's host-name rule (`cmdb::parse_hostname`), which
/// trims and lower-cases. A name the rule refuses is looked up as written, lower-cased: no
/// stored asset has such a name, so it is not found, as before.
fn host_key(hostname: &str) -> String {
    cmdb::parse_hostname(hostname).unwrap_or_else(|_| hostname.trim().to_ascii_lowercase())
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

/// The page of assets `selector_text` picks.
pub async fn list_assets(
    state: &AppState,
    selector_text: Option<&str>,
    limit: Option<usize>,
    offset: Option<usize>,
) -> Result<AssetListing, CmdbServiceError> {
    let selector = selector(selector_text)?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(CmdbServiceError::invalid(
            "limit",
            format!("limit: {limit} is not from 1 to {MAX_LIMIT}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    let assets = state.assets.get(&state.store).await?;
    let mut total = 0;
    let mut items = Vec::new();
    for asset in selector.filter(assets.iter()) {
        if total >= offset && items.len() < limit {
            items.push(asset.clone());
        }
        total += 1;
    }
    Ok(AssetListing {
        items,
        total,
        limit,
        offset,
        selector: selector.to_string(),
    })
}

/// Asset `hostname` (case-insensitive).
pub async fn asset(state: &AppState, hostname: &str) -> Result<Asset, CmdbServiceError> {
    let key = host_key(hostname);
    state
        .store
        .asset(&key)
        .await?
        .ok_or_else(|| CmdbServiceError::NotFound(format!("asset {key} not found")))
}

/// Stores `asset` whole under `hostname` and recomputes the host's findings when it changed.
pub async fn put_asset(
    state: &AppState,
    principal: &Principal,
    hostname: &str,
    asset: Asset,
) -> Result<(Asset, Change), CmdbServiceError> {
    let key = cmdb::parse_hostname(hostname)
        .map_err(|e| CmdbServiceError::invalid("hostname", e.to_string()))?;
    if asset.hostname != key {
        return Err(CmdbServiceError::invalid(
            "hostname",
            format!(
                "hostname: the record is for {} but the path names {key}",
                asset.hostname
            ),
        ));
    }
    check_time_zone(&asset).map_err(|e| CmdbServiceError::invalid("time_zone", e))?;
    let (asset, change) = state.store.put_asset(&asset, &principal.actor()).await?;
    if change != Change::Unchanged {
        // Criticality, exposure and data classes weigh in every finding on the host.
        intel::recompute_stored_host(
            &state.store,
            &state.intel,
            &asset.hostname,
            &principal.actor(),
        )
        .await?;
    }
    Ok((asset, change))
}

/// Sets keys of asset `hostname` (each checked alone first, so the error names the key at
/// fault) and recomputes the host's findings when it changed.
pub async fn patch_asset(
    state: &AppState,
    principal: &Principal,
    hostname: &str,
    set: Vec<(String, String)>,
) -> Result<Asset, CmdbServiceError> {
    let key = host_key(hostname);
    if set.is_empty() {
        return Err(CmdbServiceError::invalid(
            "set",
            format!("set: nothing to set; known keys are {}", cmdb::ASSET_KEYS),
        ));
    }
    // Each pair is tried alone first, so the answer names the key at fault.
    let mut pairs = Vec::with_capacity(set.len());
    for (name, text) in set {
        let field = format!("set.{name}");
        let mut scratch =
            Asset::new("scratch").map_err(|e| CmdbServiceError::Internal(e.to_string()))?;
        scratch
            .set(&name, &text)
            .map_err(|e| CmdbServiceError::invalid(&field, e.to_string()))?;
        check_time_zone(&scratch).map_err(|e| CmdbServiceError::invalid(&field, e))?;
        pairs.push((name, text));
    }
    let (asset, change) = state
        .store
        .set_asset(&key, &pairs, &principal.actor())
        .await?;
    if change != Change::Unchanged {
        intel::recompute_stored_host(
            &state.store,
            &state.intel,
            &asset.hostname,
            &principal.actor(),
        )
        .await?;
    }
    Ok(asset)
}

/// Deletes asset `hostname`.
pub async fn delete_asset(
    state: &AppState,
    principal: &Principal,
    hostname: &str,
) -> Result<(), CmdbServiceError> {
    state
        .store
        .delete_asset(&host_key(hostname), &principal.actor())
        .await?;
    Ok(())
}

/// Imports assets (and groups) from `content` in `format` (resolved), named `source` in
/// errors; recomputes the hosts' findings when anything changed. Returns how many assets the
/// content held and what the store did.
pub async fn import_assets(
    state: &AppState,
    principal: &Principal,
    format: ImportFormat,
    content: &str,
    source: &str,
) -> Result<(usize, ImportSummary), CmdbServiceError> {
    let parsed = match format {
        ImportFormat::Csv => cmdb::csv::import(source, content).map(|a| (a, Vec::new())),
        ImportFormat::AnsibleIni => {
            cmdb::ansible::parse_ini(source, content).map(|i| (i.assets, i.groups))
        }
        ImportFormat::AnsibleYaml | ImportFormat::Auto => {
            cmdb::ansible::parse_yaml(source, content).map(|i| (i.assets, i.groups))
        }
    };
    let (assets, groups) =
        parsed.map_err(|e| CmdbServiceError::invalid("content", e.to_string()))?;
    for asset in &assets {
        check_time_zone(asset).map_err(|e| {
            CmdbServiceError::invalid("content", format!("{source}: host {}: {e}", asset.hostname))
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
            intel::recompute_stored_host(&state.store, &state.intel, hostname, &principal.actor())
                .await?;
        }
    }
    Ok((count, summary))
}

/// The assets `selector_text` picks, for export.
pub async fn picked_assets(
    state: &AppState,
    selector_text: Option<&str>,
) -> Result<Vec<Asset>, CmdbServiceError> {
    let selector = selector(selector_text)?;
    let assets = state.assets.get(&state.store).await?;
    Ok(selector.filter(assets.iter()).cloned().collect())
}

/// Every group with how many assets are in it.
pub async fn groups(state: &AppState) -> Result<Vec<(Group, usize)>, CmdbServiceError> {
    let groups = state.store.groups().await?;
    let mut members: BTreeMap<String, usize> = BTreeMap::new();
    for asset in state.store.assets().await? {
        for group in asset.groups {
            *members.entry(group).or_default() += 1;
        }
    }
    Ok(groups
        .into_iter()
        .map(|g| {
            let count = members.get(&g.name).copied().unwrap_or(0);
            (g, count)
        })
        .collect())
}

/// Creates or replaces group `name`.
pub async fn put_group(
    state: &AppState,
    principal: &Principal,
    name: &str,
    description: Option<String>,
) -> Result<(Group, Change), CmdbServiceError> {
    let mut group =
        Group::new(name).map_err(|e| CmdbServiceError::invalid("name", e.to_string()))?;
    group.description = description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    let (group, change) = state.store.put_group(&group, &principal.actor()).await?;
    Ok((group, change))
}

/// Service `name`.
pub async fn service(state: &AppState, name: &str) -> Result<Service, CmdbServiceError> {
    state
        .store
        .service(name)
        .await?
        .ok_or_else(|| CmdbServiceError::NotFound(format!("service {name} not found")))
}

/// Creates or replaces service `name`; its members must be host names.
pub async fn put_service(
    state: &AppState,
    principal: &Principal,
    name: String,
    body: ServiceBody,
) -> Result<(Service, Change), CmdbServiceError> {
    let members = body
        .members
        .iter()
        .map(|m| {
            cmdb::parse_hostname(m).map_err(|e| CmdbServiceError::invalid("members", e.to_string()))
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
    Ok((service, change))
}

#[cfg(test)]
mod tests {
    use super::*;

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
