//! Governance policies (CAB, deferral).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A policy as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyView {
    /// `cab` or `deferral`.
    pub kind: String,
    /// Its version (1 for the built-in default).
    pub version: u32,
    /// Whether this is the built-in default (never edited).
    pub default: bool,
    /// When the version was stored.
    pub created_at: Option<String>,
    /// Who stored it.
    pub created_by: Option<String>,
    /// The policy, as JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub policy: Value,
    /// The same policy as TOML, to edit and send back.
    pub toml: String,
}

/// A new version of a policy: the whole document, as TOML or as JSON (one of them). Its
/// `version` is set by the server (the current version + 1); it may be left out.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// The policy as TOML (docs/change.md).
    pub toml: Option<String>,
    /// The policy as JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub policy: Option<Value>,
    /// The version this edit was based on; a conflict (409) if another edit came first.
    pub based_on: Option<u32>,
}
