//! Sluice's wire types: every request and answer of the HTTP API and of the agent protocol, in
//! one place that the server, the agent daemon and the CLI all use, so a renamed field breaks
//! the build rather than a client at run time.
//!
//! Types only: no I/O, no handlers. The doc comments are the OpenAPI descriptions; the schemas
//! are derived only with the `openapi` feature (the server's), so clients build without utoipa.
//! Answers a client reads never deny unknown fields; requests the server reads may.

pub mod accounts;
pub mod agents;
pub mod alerts;
pub mod assets;
pub mod audit;
pub mod calendars;
pub mod changes;
pub mod deferrals;
pub mod findings;
pub mod policies;
pub mod problem;
pub mod rollouts;

use serde::{Deserialize, Serialize};

/// The empty object (`{}`), for actions whose request carries nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}
