//! Who may do what: roles and the checks that routes and commands make.
//!
//! Roles are additive and deliberately not hierarchical: `admin` manages accounts and settings
//! but is not an approver, so separation of duties cannot be bypassed by holding one big role.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role a user (or token) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything that is not a secret.
    Viewer,
    /// Runs operations: inventories, feeds, rollouts.
    Operator,
    /// Approves changes (CAB member).
    Approver,
    /// Owns advisories, priorities and risk acceptance.
    Security,
    /// Manages users, tokens and settings.
    Admin,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Security,
        Role::Admin,
    ];

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Approver => "approver",
            Self::Security => "security",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| AccessError::UnknownRole(s.trim().to_owned()))
    }
}

/// A set of roles.
pub type Roles = BTreeSet<Role>;

/// Parses a comma-separated list of roles (`viewer,operator`).
pub fn parse_roles(text: &str) -> Result<Roles, AccessError> {
    let roles = text
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::parse)
        .collect::<Result<Roles, _>>()?;
    if roles.is_empty() {
        return Err(AccessError::NoRole);
    }
    Ok(roles)
}

/// Writes roles as a comma-separated list.
pub fn format_roles(roles: &Roles) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Who is acting: the user, the roles their token carries, and the organisational groups they
/// belong to (CAB groups such as `cab` or `ecab`).
///
/// Roles say what kind of action someone may take; groups say on which changes their vote counts.
/// Decisions in core take an `Actor` built by the server from the authenticated principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user name, as recorded in audit events and votes.
    pub user: String,
    /// The roles held.
    pub roles: Roles,
    /// Group memberships.
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

impl Actor {
    /// An actor with these roles and groups.
    pub fn new<'g>(
        user: &str,
        roles: impl IntoIterator<Item = Role>,
        groups: impl IntoIterator<Item = &'g str>,
    ) -> Self {
        Self {
            user: user.to_owned(),
            roles: roles.into_iter().collect(),
            groups: groups.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Whether the actor holds at least one of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    /// The roles, for messages (`viewer,operator`, or `no role`).
    pub fn roles_text(&self) -> String {
        if self.roles.is_empty() {
            "no role".to_owned()
        } else {
            format_roles(&self.roles)
        }
    }
}

/// What an action requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Any authenticated principal (every role can read).
    Authenticated,
    /// At least one of these roles.
    AnyOf(&'static [Role]),
}

impl Requirement {
    /// Whether a principal holding `roles` meets the requirement.
    pub fn allows(self, roles: &Roles) -> bool {
        match self {
            Self::Authenticated => !roles.is_empty(),
            Self::AnyOf(needed) => needed.iter().any(|r| roles.contains(r)),
        }
    }
}

/// Why a role text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Not a role.
    #[error("unknown role {0:?}: roles are viewer, operator, approver, security, admin")]
    UnknownRole(String),
    /// An empty list.
    #[error("at least one role is needed")]
    NoRole,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        let roles = parse_roles("operator, viewer").unwrap();
        assert_eq!(format_roles(&roles), "viewer,operator");
        assert!(
            parse_roles("root")
                .unwrap_err()
                .to_string()
                .contains("root")
        );
        assert_eq!(parse_roles(" , "), Err(AccessError::NoRole));
    }

    #[test]
    fn admin_is_not_an_approver() {
        let admin: Roles = [Role::Admin].into();
        assert!(!Requirement::AnyOf(&[Role::Approver]).allows(&admin));
        assert!(Requirement::AnyOf(&[Role::Admin]).allows(&admin));
        assert!(Requirement::Authenticated.allows(&admin));
        assert!(!Requirement::Authenticated.allows(&Roles::new()));
    }
}
