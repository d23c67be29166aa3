//! The CMDB: assets, groups, services, import and export.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::cmdb::{Asset, Budget};

/// One page of matching assets, by host name.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssetPage {
    /// The assets on this page.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<Asset>,
    /// How many assets match in all.
    pub total: usize,
    /// The page size used.
    pub limit: usize,
    /// The offset used.
    pub offset: usize,
    /// The selector in canonical form (empty: all).
    pub selector: String,
}

/// Attributes to set, as `sluice assets set` takes them.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AssetPatch {
    /// `key: value` pairs with `Asset::set` semantics: lists replaced whole (`"web,edge"`), an
    /// empty value or `null` clears, `var.NAME` sets a variable. Numbers are taken as text.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub set: BTreeMap<String, Value>,
}

/// The text formats an import reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ImportFormat {
    /// CSV with a header row naming `hostname` (or `host`).
    Csv,
    /// An Ansible INI inventory.
    AnsibleIni,
    /// An Ansible YAML inventory.
    AnsibleYaml,
    /// Recognised from the content: CSV when the first line names a `hostname` or `host`
    /// column, otherwise an Ansible inventory (INI or YAML, as Ansible tells them apart).
    Auto,
}

/// A file to import.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The format (default `auto`).
    #[serde(default = "auto")]
    pub format: ImportFormat,
    /// The file's text.
    pub content: String,
    /// The file's name, for messages (default `import`).
    #[serde(default)]
    pub source_name: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportResult {
    /// The format read (`auto` resolved).
    pub format: ImportFormat,
    /// Assets in the file.
    pub assets: usize,
    /// Assets created.
    pub created: usize,
    /// Assets changed.
    pub updated: usize,
    /// Assets already stored exactly so.
    pub unchanged: usize,
    /// Groups declared by the file and created.
    pub groups_created: usize,
    /// Groups whose description changed.
    pub groups_updated: usize,
}

/// Export formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// CSV, as `sluice assets import` reads back.
    #[default]
    Csv,
    /// A JSON array of asset records.
    Json,
}

/// A declared group and how many assets are in it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupView {
    /// Name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Assets that list it in their `groups`.
    pub members: usize,
}

/// A group's description.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    /// What the group is for, for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// A service's definition (its name is the path's).
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceBody {
    /// 1 (most important) to 5.
    #[serde(default)]
    pub tier: Option<u8>,
    /// Host names of its members: stored assets.
    #[serde(default)]
    pub members: BTreeSet<String>,
    /// Services patched before it, never together with it.
    #[serde(default)]
    pub depends_on: BTreeSet<String>,
    /// How many members may be down at once: a count (`"2"`) or a share (`"25%"`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub disruption_budget: Option<Budget>,
}

fn auto() -> ImportFormat {
    ImportFormat::Auto
}
