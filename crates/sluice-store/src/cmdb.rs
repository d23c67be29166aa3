//! The CMDB in the database: assets, groups and services.
//!
//! Records are checked by `sluice-core` (`Asset::validate`, `validate_services`) before they are
//! written and stored whole as canonical JSON; a few columns are copied out for lookups. Every
//! change is audited in its own transaction; a write that changes nothing writes nothing, not
//! even an audit event. Selectors are never translated to SQL: the core's `Selector` is the one
//! definition of what matches.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sluice_core::audit::NewAuditEvent;
use sluice_core::cmdb::{self, Asset, Group, Service};
use sqlx::Row;

use crate::audit::append_audit;
use crate::record::{audit_value, lock_writes};
use crate::{Actor, Result, Store, StoreError, begin_write, now, on_pool};

/// What a write did to the stored record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed and was changed.
    Updated,
    /// It existed exactly so; nothing was written.
    Unchanged,
}

/// What an import did, counted per asset (and per group for inventories that declare groups).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Assets created.
    pub created: usize,
    /// Assets changed.
    pub updated: usize,
    /// Assets already stored exactly as imported.
    pub unchanged: usize,
    /// Groups created.
    pub groups_created: usize,
    /// Groups whose description changed.
    pub groups_updated: usize,
}

impl ImportSummary {
    fn count(&mut self, change: Change) {
        match change {
            Change::Created => self.created += 1,
            Change::Updated => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }
}

macro_rules! fetch_asset {
    ($executor:expr, $hostname:expr) => {{
        let row = sqlx::query("SELECT record FROM assets WHERE hostname = $1")
            .bind($hostname)
            .fetch_optional($executor)
            .await?;
        match row {
            None => None,
            Some(row) => Some(asset_from(&row.try_get::<String, _>("record")?)?),
        }
    }};
}

/// Writes `$after` over `$before` (the stored record, if any) and audits it; returns the
/// [`Change`]. An identical record is left alone.
macro_rules! store_asset {
    ($tx:expr, $pg:expr, $before:expr, $after:expr, $actor:expr) => {{
        let before: Option<&Asset> = $before;
        let after: &Asset = $after;
        let actor: &Actor = $actor;
        if before == Some(after) {
            Change::Unchanged
        } else {
            let record = asset_json(after)?;
            let change = if before.is_some() {
                sqlx::query(
                    "UPDATE assets SET environment = $2, criticality = $3, group_names = $4, record = $5, updated_at = $6 \
                     WHERE hostname = $1",
                )
                .bind(&after.hostname)
                .bind(&after.environment)
                .bind(i32::from(after.criticality))
                .bind(group_names(&after.groups))
                .bind(&record)
                .bind(now())
                .execute(&mut *$tx)
                .await?;
                Change::Updated
            } else {
                sqlx::query(
                    "INSERT INTO assets (hostname, environment, criticality, group_names, record, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&after.hostname)
                .bind(&after.environment)
                .bind(i32::from(after.criticality))
                .bind(group_names(&after.groups))
                .bind(&record)
                .bind(now())
                .execute(&mut *$tx)
                .await?;
                Change::Created
            };
            append_audit!(
                $tx,
                $pg,
                NewAuditEvent {
                    actor: actor.name.clone(),
                    action: if change == Change::Created { "asset.create" } else { "asset.update" }.to_owned(),
                    object: format!("asset:{}", after.hostname),
                    before: before.map(|b| audit_value("cmdb record", b)).transpose()?,
                    after: Some(audit_value("cmdb record", after)?),
                    request_id: actor.request_id.clone(),
                }
            );
            change
        }
    }};
}

macro_rules! fetch_group {
    ($executor:expr, $name:expr) => {{
        let row = sqlx::query("SELECT name, description FROM asset_groups WHERE name = $1")
            .bind($name)
            .fetch_optional($executor)
            .await?;
        match row {
            None => None,
            Some(row) => Some(Group {
                name: row.try_get("name")?,
                description: row.try_get("description")?,
            }),
        }
    }};
}

/// As [`store_asset!`], for a group.
macro_rules! store_group {
    ($tx:expr, $pg:expr, $before:expr, $after:expr, $actor:expr) => {{
        let before: Option<&Group> = $before;
        let after: &Group = $after;
        let actor: &Actor = $actor;
        if before == Some(after) {
            Change::Unchanged
        } else {
            let sql = if before.is_some() {
                "UPDATE asset_groups SET description = $2, updated_at = $3 WHERE name = $1"
            } else {
                "INSERT INTO asset_groups (name, description, updated_at) VALUES ($1, $2, $3)"
            };
            sqlx::query(sql)
                .bind(&after.name)
                .bind(&after.description)
                .bind(now())
                .execute(&mut *$tx)
                .await?;
            let change = if before.is_some() {
                Change::Updated
            } else {
                Change::Created
            };
            append_audit!(
                $tx,
                $pg,
                NewAuditEvent {
                    actor: actor.name.clone(),
                    action: if change == Change::Created {
                        "group.create"
                    } else {
                        "group.update"
                    }
                    .to_owned(),
                    object: format!("group:{}", after.name),
                    before: before.map(|b| audit_value("cmdb record", b)).transpose()?,
                    after: Some(audit_value("cmdb record", after)?),
                    request_id: actor.request_id.clone(),
                }
            );
            change
        }
    }};
}

macro_rules! fetch_services {
    ($executor:expr) => {{
        let rows = sqlx::query("SELECT record FROM services ORDER BY name")
            .fetch_all($executor)
            .await?;
        let mut services = Vec::with_capacity(rows.len());
        for row in &rows {
            services.push(service_from(&row.try_get::<String, _>("record")?)?);
        }
        services
    }};
}

impl Store {
    /// One asset by host name (as stored: lower case).
    pub async fn asset(&self, hostname: &str) -> Result<Option<Asset>> {
        on_pool!(self, |pool, pg| Ok(fetch_asset!(pool, hostname)))
    }

    /// A cheap fingerprint of the asset table (row count and latest change), to tell whether a
    /// cached copy of [`Store::assets`] is still current.
    pub async fn assets_stamp(&self) -> Result<String> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT COUNT(*) AS n, MAX(updated_at) AS latest FROM assets")
                .fetch_one(pool)
                .await?;
            let n: i64 = row.try_get("n")?;
            let latest: Option<String> = row.try_get("latest")?;
            Ok(format!("{n}/{}", latest.unwrap_or_default()))
        })
    }

    /// Every asset, by host name.
    pub async fn assets(&self) -> Result<Vec<Asset>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query("SELECT record FROM assets ORDER BY hostname")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| asset_from(&row.try_get::<String, _>("record")?))
                .collect()
        })
    }

    /// Creates or replaces an asset; audited as `asset.create` or `asset.update` with the record
    /// before and after. An identical record writes nothing and records nothing.
    pub async fn upsert_asset(&self, asset: &Asset, actor: &Actor) -> Result<Asset> {
        self.put_asset(asset, actor).await.map(|(asset, _)| asset)
    }

    /// [`Store::upsert_asset`], also saying whether it created, changed or left the record.
    pub async fn put_asset(&self, asset: &Asset, actor: &Actor) -> Result<(Asset, Change)> {
        check_asset(asset)?;
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let before = fetch_asset!(&mut *tx, &asset.hostname);
            let change = store_asset!(tx, pg, before.as_ref(), asset, actor);
            tx.commit().await?;
            Ok((asset.clone(), change))
        })
    }

    /// Sets `key=value` pairs on a stored asset with [`Asset::set`] semantics: all of them or,
    /// if any is wrong, none. Read and write happen in one transaction, so a concurrent change
    /// is never overwritten with stale fields.
    pub async fn set_asset(
        &self,
        hostname: &str,
        pairs: &[(String, String)],
        actor: &Actor,
    ) -> Result<(Asset, Change)> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let before = fetch_asset!(&mut *tx, hostname)
                .ok_or_else(|| StoreError::NotFound(format!("asset {hostname}")))?;
            let mut after = before.clone();
            for (key, value) in pairs {
                after
                    .set(key, value)
                    .map_err(|e| StoreError::Invalid(format!("asset {hostname}: {e}")))?;
            }
            check_asset(&after)?;
            let change = store_asset!(tx, pg, Some(&before), &after, actor);
            tx.commit().await?;
            Ok((after, change))
        })
    }

    /// Stores the assets and groups of one import in one transaction: all of them or, if
    /// anything fails, none. Assets and groups not named are left as they are. One audit event
    /// per created or changed asset and group, in the same transaction.
    pub async fn import_assets(
        &self,
        assets: Vec<Asset>,
        groups: Vec<Group>,
        actor: &Actor,
    ) -> Result<ImportSummary> {
        let mut seen = BTreeSet::new();
        for asset in &assets {
            check_asset(asset)?;
            if !seen.insert(asset.hostname.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "host {} appears more than once in the import",
                    asset.hostname
                )));
            }
        }
        let mut seen = BTreeSet::new();
        for group in &groups {
            check_group(group)?;
            if !seen.insert(group.name.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "group {} appears more than once in the import",
                    group.name
                )));
            }
        }
        on_pool!(self, |pool, pg| {
            let mut summary = ImportSummary::default();
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            for group in &groups {
                let before = fetch_group!(&mut *tx, &group.name);
                match store_group!(tx, pg, before.as_ref(), group, actor) {
                    Change::Created => summary.groups_created += 1,
                    Change::Updated => summary.groups_updated += 1,
                    Change::Unchanged => {}
                }
            }
            for asset in &assets {
                let before = fetch_asset!(&mut *tx, &asset.hostname);
                summary.count(store_asset!(tx, pg, before.as_ref(), asset, actor));
            }
            tx.commit().await?;
            Ok(summary)
        })
    }

    /// Deletes an asset; audited as `asset.delete`. An asset that a service lists as a member
    /// is refused (conflict): the service would name a host that no longer exists.
    pub async fn delete_asset(&self, hostname: &str, actor: &Actor) -> Result<()> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let before = fetch_asset!(&mut *tx, hostname)
                .ok_or_else(|| StoreError::NotFound(format!("asset {hostname}")))?;
            let rows = sqlx::query(
                "SELECT service FROM service_members WHERE hostname = $1 ORDER BY service",
            )
            .bind(hostname)
            .fetch_all(&mut *tx)
            .await?;
            if !rows.is_empty() {
                let services = rows
                    .iter()
                    .map(|row| row.try_get::<String, _>("service"))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                return Err(StoreError::Conflict(format!(
                    "asset {hostname} is a member of the service(s) {}; remove it from them first",
                    services.join(", ")
                )));
            }
            sqlx::query("DELETE FROM assets WHERE hostname = $1")
                .bind(hostname)
                .execute(&mut *tx)
                .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "asset.delete",
                    format!("asset:{hostname}"),
                    Some(audit_value("cmdb record", &before)?),
                    None
                )
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// One declared group by name.
    pub async fn group(&self, name: &str) -> Result<Option<Group>> {
        on_pool!(self, |pool, pg| Ok(fetch_group!(pool, name)))
    }

    /// Declared groups, by name. Membership lives on the assets (`Asset::groups`); a group that
    /// assets name need not be declared.
    pub async fn groups(&self) -> Result<Vec<Group>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query("SELECT name, description FROM asset_groups ORDER BY name")
                .fetch_all(pool)
                .await?;
            let mut groups = Vec::with_capacity(rows.len());
            for row in &rows {
                groups.push(Group {
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                });
            }
            Ok(groups)
        })
    }

    /// Declares a group or changes its description; audited as `group.create` or
    /// `group.update`. An identical record writes nothing.
    pub async fn upsert_group(&self, group: &Group, actor: &Actor) -> Result<Group> {
        self.put_group(group, actor).await.map(|(group, _)| group)
    }

    /// [`Store::upsert_group`], also saying what it did.
    pub async fn put_group(&self, group: &Group, actor: &Actor) -> Result<(Group, Change)> {
        check_group(group)?;
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let before = fetch_group!(&mut *tx, &group.name);
            let change = store_group!(tx, pg, before.as_ref(), group, actor);
            tx.commit().await?;
            Ok((group.clone(), change))
        })
    }

    /// Deletes a declared group; audited as `group.delete`. Refused (conflict) while assets are
    /// members: deleting the declaration would not take them out of it.
    pub async fn delete_group(&self, name: &str, actor: &Actor) -> Result<()> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let before = fetch_group!(&mut *tx, name)
                .ok_or_else(|| StoreError::NotFound(format!("group {name}")))?;
            let member_sql = if pg {
                "SELECT hostname FROM assets WHERE strpos(group_names, $1) > 0 ORDER BY hostname"
            } else {
                "SELECT hostname FROM assets WHERE instr(group_names, $1) > 0 ORDER BY hostname"
            };
            let members = sqlx::query(member_sql)
                .bind(format!("|{name}|"))
                .fetch_all(&mut *tx)
                .await?;
            if let Some(first) = members.first() {
                let first: String = first.try_get("hostname")?;
                return Err(StoreError::Conflict(format!(
                    "group {name} still has {} member(s) ({first}{}); take them out of it first",
                    members.len(),
                    if members.len() > 1 { ", …" } else { "" }
                )));
            }
            sqlx::query("DELETE FROM asset_groups WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "group.delete",
                    format!("group:{name}"),
                    Some(audit_value("cmdb record", &before)?),
                    None
                )
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// One service by name.
    pub async fn service(&self, name: &str) -> Result<Option<Service>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT record FROM services WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(service_from(&row.try_get::<String, _>("record")?)?)),
            }
        })
    }

    /// Every service, by name.
    pub async fn services(&self) -> Result<Vec<Service>> {
        on_pool!(self, |pool, pg| Ok(fetch_services!(pool)))
    }

    /// Creates or replaces a service; audited as `service.create` or `service.update`. The
    /// whole set of services, with this one in it, is checked with `validate_services` against
    /// the stored hosts first: every problem is reported, nothing is written.
    pub async fn upsert_service(&self, service: &Service, actor: &Actor) -> Result<Service> {
        self.put_service(service, actor)
            .await
            .map(|(service, _)| service)
    }

    /// [`Store::upsert_service`], also saying what it did.
    pub async fn put_service(&self, service: &Service, actor: &Actor) -> Result<(Service, Change)> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let mut all: Vec<Service> = fetch_services!(&mut *tx);
            let before = all
                .iter()
                .position(|s| s.name == service.name)
                .map(|i| all.remove(i));
            if before.as_ref() == Some(service) {
                return Ok((service.clone(), Change::Unchanged));
            }
            all.push(service.clone());
            let mut known = BTreeSet::new();
            for host in &service.members {
                let row = sqlx::query("SELECT hostname FROM assets WHERE hostname = $1")
                    .bind(host)
                    .fetch_optional(&mut *tx)
                    .await?;
                if row.is_some() {
                    known.insert(host.as_str());
                }
            }
            // Other services' members are stored hosts: service_members references assets.
            cmdb::validate_services(&all, |host| {
                known.contains(host) || !service.members.contains(host)
            })
            .map_err(|problems| {
                StoreError::Invalid(
                    problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            let record = serde_json::to_string(service)
                .map_err(|e| StoreError::Corrupt(format!("service {}: {e}", service.name)))?;
            let sql = if before.is_some() {
                "UPDATE services SET record = $2, updated_at = $3 WHERE name = $1"
            } else {
                "INSERT INTO services (name, record, updated_at) VALUES ($1, $2, $3)"
            };
            sqlx::query(sql)
                .bind(&service.name)
                .bind(&record)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM service_members WHERE service = $1")
                .bind(&service.name)
                .execute(&mut *tx)
                .await?;
            for host in &service.members {
                sqlx::query("INSERT INTO service_members (service, hostname) VALUES ($1, $2)")
                    .bind(&service.name)
                    .bind(host)
                    .execute(&mut *tx)
                    .await?;
            }
            let change = if before.is_some() {
                Change::Updated
            } else {
                Change::Created
            };
            append_audit!(
                tx,
                pg,
                NewAuditEvent {
                    actor: actor.name.clone(),
                    action: if change == Change::Created {
                        "service.create"
                    } else {
                        "service.update"
                    }
                    .to_owned(),
                    object: format!("service:{}", service.name),
                    before: before
                        .as_ref()
                        .map(|b| audit_value("cmdb record", b))
                        .transpose()?,
                    after: Some(audit_value("cmdb record", service)?),
                    request_id: actor.request_id.clone(),
                }
            );
            tx.commit().await?;
            Ok((service.clone(), change))
        })
    }

    /// Deletes a service; audited as `service.delete`. Refused (conflict) while other services
    /// depend on it.
    pub async fn delete_service(&self, name: &str, actor: &Actor) -> Result<()> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let all: Vec<Service> = fetch_services!(&mut *tx);
            let before = all
                .iter()
                .find(|s| s.name == name)
                .cloned()
                .ok_or_else(|| StoreError::NotFound(format!("service {name}")))?;
            let dependents: Vec<&str> = all
                .iter()
                .filter(|s| s.depends_on.contains(name))
                .map(|s| s.name.as_str())
                .collect();
            if !dependents.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "service(s) {} depend on {name}; change them first",
                    dependents.join(", ")
                )));
            }
            sqlx::query("DELETE FROM service_members WHERE service = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM services WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "service.delete",
                    format!("service:{name}"),
                    Some(audit_value("cmdb record", &before)?),
                    None
                )
            );
            tx.commit().await?;
            Ok(())
        })
    }
}

fn check_asset(asset: &Asset) -> Result<()> {
    asset
        .validate()
        .map_err(|e| StoreError::Invalid(format!("asset {}: {e}", asset.hostname)))
}

fn check_group(group: &Group) -> Result<()> {
    match cmdb::parse_group_name(&group.name) {
        Ok(name) if name == group.name => Ok(()),
        Ok(_) => Err(StoreError::Invalid(format!(
            "group {:?}: a name without surrounding spaces",
            group.name
        ))),
        Err(e) => Err(StoreError::Invalid(e.to_string())),
    }
}

/// The stored form: canonical JSON (fields in a fixed order, lists and maps sorted).
fn asset_json(asset: &Asset) -> Result<String> {
    serde_json::to_string(asset)
        .map_err(|e| StoreError::Corrupt(format!("asset {}: {e}", asset.hostname)))
}

fn asset_from(record: &str) -> Result<Asset> {
    serde_json::from_str(record).map_err(|e| StoreError::Corrupt(format!("asset record: {e}")))
}

fn service_from(record: &str) -> Result<Service> {
    serde_json::from_str(record).map_err(|e| StoreError::Corrupt(format!("service record: {e}")))
}

/// `|a|b|`: each name fenced by `|`, which names cannot hold, so `|a|` finds exactly `a`.
fn group_names(groups: &BTreeSet<String>) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let mut text = String::from("|");
    for group in groups {
        text.push_str(group);
        text.push('|');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_fenced() {
        assert_eq!(group_names(&BTreeSet::new()), "");
        let groups = BTreeSet::from(["db".to_owned(), "web_1".to_owned()]);
        assert_eq!(group_names(&groups), "|db|web_1|");
    }
}
