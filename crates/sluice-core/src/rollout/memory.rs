//! The memory of rolled-back versions: a target version that was rolled back in a scope is not
//! offered to that scope again unless someone overrides it on purpose.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// (scope, package, version) triples that were rolled back. The scope is whatever the server
/// rolls out to (a ring's environment, a service, a change's selector); it is compared as text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolledBackVersions {
    entries: BTreeSet<(String, String, String)>,
}

impl RolledBackVersions {
    /// Remembers that `version` of `package` was rolled back in `scope`.
    pub fn record(&mut self, scope: &str, package: &str, version: &str) {
        self.entries
            .insert((scope.to_owned(), package.to_owned(), version.to_owned()));
    }

    /// Whether `version` of `package` was rolled back in `scope`.
    pub fn was_rolled_back(&self, scope: &str, package: &str, version: &str) -> bool {
        self.entries
            .contains(&(scope.to_owned(), package.to_owned(), version.to_owned()))
    }

    /// Whether `version` of `package` may be offered to `scope`: not if it was rolled back
    /// there, unless `override_` says a person decided to try again.
    pub fn offered(&self, scope: &str, package: &str, version: &str, override_: bool) -> bool {
        override_ || !self.was_rolled_back(scope, package, version)
    }

    /// Every remembered (scope, package, version), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.entries
            .iter()
            .map(|(s, p, v)| (s.as_str(), p.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolled_back_version_is_not_offered_to_its_scope_again() {
        let mut memory = RolledBackVersions::default();
        assert!(memory.offered("prod", "openssl", "3.0.2-1", false));
        memory.record("prod", "openssl", "3.0.2-1");
        assert!(!memory.offered("prod", "openssl", "3.0.2-1", false));
        assert!(memory.offered("prod", "openssl", "3.0.2-1", true));
        assert!(memory.offered("staging", "openssl", "3.0.2-1", false));
        assert!(memory.offered("prod", "openssl", "3.0.2-2", false));
        assert!(memory.offered("prod", "libssl3", "3.0.2-1", false));
        let json = serde_json::to_string(&memory).unwrap();
        assert_eq!(
            serde_json::from_str::<RolledBackVersions>(&json).unwrap(),
            memory
        );
        assert_eq!(memory.iter().count(), 1);
    }
}
