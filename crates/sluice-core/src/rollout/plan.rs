//! Rollout planning: an approved change's hosts cut into rings, a canary and batches.
//!
//! Owns the order in which hosts are offered and the limits the engine enforces (concurrency,
//! disruption budgets, breaker thresholds). Never decides *when* a host starts: that is the
//! engine's business, against the clock and the calendar.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::memory::RolledBackVersions;
use crate::calendar::{MaintenanceWindow, TimeRange};
use crate::change::{ChangeRequest, ChangeState};

/// A number of hosts, absolute or as a share of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Size {
    /// This many hosts.
    Count(u32),
    /// This percentage (1–100) of the group.
    Percent(u8),
}

impl Size {
    /// How many of `total` hosts this size takes, rounded up and at least one of a non-empty
    /// group, never more than the group: a 10% batch of 5 hosts is 1 host, not 0.
    pub fn of(self, total: usize) -> usize {
        if total == 0 {
            return 0;
        }
        let n = match self {
            Size::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Size::Percent(p) => (total * usize::from(p)).div_ceil(100),
        };
        n.clamp(1, total)
    }

    /// The failures among `total` hosts that trip a breaker: a count as given (a threshold of
    /// 3 on a 2-host canary cannot trip there), a percentage rounded up and at least one.
    pub fn threshold_of(self, total: usize) -> usize {
        match self {
            Size::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Size::Percent(p) => (total * usize::from(p)).div_ceil(100).max(1),
        }
    }

    /// How many of `total` hosts may be unavailable under this budget: percentages round
    /// *down* (a budget is a ceiling), but at least one host so that a rollout can progress.
    pub fn budget_of(self, total: usize) -> usize {
        let n = match self {
            Size::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Size::Percent(p) => total * usize::from(p) / 100,
        };
        n.max(1)
    }

    fn check(self, field: &'static str) -> Result<(), PlanError> {
        match self {
            Size::Count(0) => Err(PlanError::Size {
                field,
                reason: "a count must be at least 1".to_owned(),
            }),
            Size::Percent(p) if p == 0 || p > 100 => Err(PlanError::Size {
                field,
                reason: format!("{p}% is not a percentage from 1 to 100"),
            }),
            _ => Ok(()),
        }
    }
}

/// What the engine does when the circuit breaker trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTrip {
    /// Start nothing more and wait for a person.
    Pause,
    /// Roll back the hosts that failed.
    RollbackFailed,
    /// Roll back every host the tripped batch changed.
    RollbackBatch,
    /// Roll back every host the tripped ring changed.
    RollbackRing,
}

impl OnTrip {
    /// The kebab-case name used in JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            OnTrip::Pause => "pause",
            OnTrip::RollbackFailed => "rollback-failed",
            OnTrip::RollbackBatch => "rollback-batch",
            OnTrip::RollbackRing => "rollback-ring",
        }
    }
}

/// Failure thresholds: the breaker trips when failures reach one (`>=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerThresholds {
    /// Failures within one batch (the canary is a batch).
    pub per_batch: Size,
    /// Failures within one ring.
    pub per_ring: Size,
}

/// How a change rolls out. Stored with the change; the defaults suit a small fleet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPolicy {
    /// Environments in ring order; every host's environment must be listed.
    #[serde(default = "default_ring_order")]
    pub ring_order: Vec<String>,
    /// The first batch of each ring; `None` for no canary.
    #[serde(default)]
    pub canary: Option<Size>,
    /// The batches after the canary, as a share of the ring.
    pub batch: Size,
    /// Hosts in flight at once, over the whole rollout.
    pub max_concurrency: u32,
    /// When the breaker trips.
    pub breaker: BreakerThresholds,
    /// What a trip does.
    pub on_trip: OnTrip,
    /// How long a finished ring must run before the next ring starts.
    #[serde(with = "crate::change::friendly_duration")]
    pub soak: SignedDuration,
    /// Whether a person must approve each gate between rings.
    #[serde(default)]
    pub manual_gate: bool,
    /// Order hosts east to west by UTC offset, so that work follows the night around the world.
    #[serde(default)]
    pub follow_the_sun: bool,
}

/// dev → test → staging → prod.
pub fn default_ring_order() -> Vec<String> {
    ["dev", "test", "staging", "prod"]
        .map(str::to_owned)
        .to_vec()
}

/// What the planner and the engine need to know about one host of the change's scope.
#[derive(Clone, Debug, PartialEq)]
pub struct HostInfo {
    /// The host name.
    pub name: String,
    /// Its environment (`dev`, `prod`, ...): which ring it falls in.
    pub environment: String,
    /// The services it belongs to (each with a disruption budget).
    pub services: Vec<String>,
    /// Its time zone, for follow-the-sun order.
    pub time_zone: TimeZone,
    /// Its maintenance windows; none means any time (see docs/calendar.md).
    pub windows: Vec<MaintenanceWindow>,
    /// Its OS release (`Ubuntu:22.04`).
    pub os: String,
    /// Installed versions of the bundle's packages, by package name.
    pub versions: BTreeMap<String, String>,
}

/// A service and its disruption budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The service name.
    pub name: String,
    /// At most this many (or this share) of its hosts unavailable at once.
    pub budget: Size,
}

/// One group of hosts started together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Whether this is the ring's canary.
    pub canary: bool,
    /// Host names in start order.
    pub hosts: Vec<String>,
}

/// The hosts of one environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    /// The environment.
    pub environment: String,
    /// The canary (if any) then the batches.
    pub batches: Vec<Batch>,
}

impl Ring {
    /// Every host of the ring, in order.
    pub fn hosts(&self) -> impl Iterator<Item = &String> {
        self.batches.iter().flat_map(|b| b.hosts.iter())
    }

    /// How many hosts the ring holds.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.hosts.len()).sum()
    }

    /// Whether the ring holds no host (a plan never has one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A planned rollout: the rings and everything the engine checks against.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The rings in order.
    pub rings: Vec<Ring>,
    /// The hosts by name.
    pub hosts: BTreeMap<String, HostInfo>,
    /// Per service: how many of its hosts may be unavailable at once.
    pub budgets: BTreeMap<String, usize>,
    /// The policy the plan was made with.
    pub policy: RolloutPolicy,
    /// The change's implementation window: no host starts outside it. `None`: no limit.
    pub implementation: Option<TimeRange>,
    /// How long to watch a finished batch before the next starts (the change's rollback
    /// criteria); zero for none.
    pub detection_window: SignedDuration,
}

impl Plan {
    /// Where `host` sits: (ring, batch).
    pub fn position(&self, host: &str) -> Option<(usize, usize)> {
        self.rings.iter().enumerate().find_map(|(r, ring)| {
            ring.batches
                .iter()
                .position(|b| b.hosts.iter().any(|h| h == host))
                .map(|b| (r, b))
        })
    }
}

/// Why a plan could not be made. Each names the host, service or policy field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The change's scope resolved to no host.
    #[error("the rollout's scope holds no host")]
    EmptyScope,
    /// A host whose environment the ring order does not list.
    #[error(
        "host \"{host}\": environment \"{environment}\" is not in the ring order ({order}); \
         add it to ring_order"
    )]
    UnknownEnvironment {
        /// The host.
        host: String,
        /// Its environment.
        environment: String,
        /// The ring order, comma-separated.
        order: String,
    },
    /// The same host twice.
    #[error("host \"{0}\" is listed twice")]
    DuplicateHost(String),
    /// A host in a service nobody gave a budget.
    #[error("host \"{host}\": service \"{service}\" has no disruption budget")]
    UnknownService {
        /// The host.
        host: String,
        /// The service.
        service: String,
    },
    /// A size in the policy that makes no sense.
    #[error("rollout policy {field}: {reason}")]
    Size {
        /// The policy field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The change is not scheduled (or implementing), so there is nothing to roll out yet.
    #[error("change {id} is {state}: only a scheduled change rolls out")]
    ChangeNotScheduled {
        /// The change.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// A bundle version that was rolled back in a ring's environment, offered again without
    /// an override.
    #[error(
        "{package} {version} was rolled back in {scope}: it is offered again only with an \
         explicit override"
    )]
    RolledBack {
        /// The ring's environment.
        scope: String,
        /// The package.
        package: String,
        /// The target version.
        version: String,
    },
    /// Any other policy field at fault.
    #[error("rollout policy {field}: {reason}")]
    Policy {
        /// The policy field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Plans a rollout of `hosts`. `starts_at` is the scheduled start: follow-the-sun order uses
/// each zone's UTC offset at that instant (offsets move with daylight saving).
pub fn plan(
    hosts: Vec<HostInfo>,
    services: &[Service],
    policy: &RolloutPolicy,
    starts_at: Timestamp,
) -> Result<Plan, PlanError> {
    if hosts.is_empty() {
        return Err(PlanError::EmptyScope);
    }
    if let Some(canary) = policy.canary {
        canary.check("canary")?;
    }
    policy.batch.check("batch")?;
    policy.breaker.per_batch.check("breaker.per_batch")?;
    policy.breaker.per_ring.check("breaker.per_ring")?;
    if policy.max_concurrency == 0 {
        return Err(PlanError::Policy {
            field: "max_concurrency",
            reason: "must be at least 1".to_owned(),
        });
    }
    if policy.soak < SignedDuration::ZERO {
        return Err(PlanError::Policy {
            field: "soak",
            reason: "must not be negative".to_owned(),
        });
    }
    let mut seen = BTreeSet::new();
    for env in &policy.ring_order {
        if !seen.insert(env.as_str()) {
            return Err(PlanError::Policy {
                field: "ring_order",
                reason: format!("environment \"{env}\" is listed twice"),
            });
        }
    }
    let budgets_by_name: BTreeMap<&str, Size> = services
        .iter()
        .map(|s| (s.name.as_str(), s.budget))
        .collect();
    for service in services {
        service.budget.check("service budget")?;
    }

    let mut by_name = BTreeMap::new();
    let mut members: BTreeMap<String, usize> = BTreeMap::new();
    for host in hosts {
        if !policy.ring_order.contains(&host.environment) {
            return Err(PlanError::UnknownEnvironment {
                host: host.name,
                environment: host.environment,
                order: policy.ring_order.join(", "),
            });
        }
        for service in &host.services {
            if !budgets_by_name.contains_key(service.as_str()) {
                return Err(PlanError::UnknownService {
                    host: host.name,
                    service: service.clone(),
                });
            }
            *members.entry(service.clone()).or_default() += 1;
        }
        if by_name.contains_key(&host.name) {
            return Err(PlanError::DuplicateHost(host.name));
        }
        by_name.insert(host.name.clone(), host);
    }

    let mut rings = Vec::new();
    for env in &policy.ring_order {
        let mut ring: Vec<&HostInfo> = by_name.values().filter(|h| &h.environment == env).collect();
        if ring.is_empty() {
            continue;
        }
        if policy.follow_the_sun {
            // East first: the largest UTC offset reaches its night first. Ties by name.
            ring.sort_by_key(|h| {
                (
                    std::cmp::Reverse(h.time_zone.to_offset(starts_at).seconds()),
                    h.name.clone(),
                )
            });
        }
        let names: Vec<String> = ring.iter().map(|h| h.name.clone()).collect();
        rings.push(Ring {
            environment: env.clone(),
            batches: cut(&names, policy.canary, policy.batch),
        });
    }
    let budgets = members
        .into_iter()
        .filter_map(|(name, count)| {
            budgets_by_name
                .get(name.as_str())
                .map(|size| (name.clone(), size.budget_of(count)))
        })
        .collect();
    Ok(Plan {
        rings,
        hosts: by_name,
        budgets,
        policy: policy.clone(),
        implementation: None,
        detection_window: SignedDuration::ZERO,
    })
}

/// Plans the rollout of a scheduled change: [`plan`] at the schedule's start, limited to its
/// implementation window, with hosts' versions narrowed to the bundle's packages (what staging
/// parity compares). A bundle version that was rolled back in a ring's environment is refused
/// unless `override_rolled_back` says a person decided to offer it again.
pub fn plan_change(
    change: &ChangeRequest,
    mut hosts: Vec<HostInfo>,
    services: &[Service],
    policy: &RolloutPolicy,
    rolled_back: &RolledBackVersions,
    override_rolled_back: bool,
) -> Result<Plan, PlanError> {
    let schedule = match (&change.schedule, change.state) {
        (Some(schedule), ChangeState::Scheduled | ChangeState::Implementing) => schedule,
        _ => {
            return Err(PlanError::ChangeNotScheduled {
                id: change.id.clone(),
                state: change.state.as_str(),
            });
        }
    };
    let packages: BTreeSet<&str> = change.bundle.iter().map(|b| b.package.as_str()).collect();
    for host in &mut hosts {
        host.versions
            .retain(|package, _| packages.contains(package.as_str()));
    }
    let mut planned = plan(hosts, services, policy, schedule.start)?;
    for ring in &planned.rings {
        for item in &change.bundle {
            if !rolled_back.offered(
                &ring.environment,
                &item.package,
                &item.target_version,
                override_rolled_back,
            ) {
                return Err(PlanError::RolledBack {
                    scope: ring.environment.clone(),
                    package: item.package.clone(),
                    version: item.target_version.clone(),
                });
            }
        }
    }
    planned.implementation = TimeRange::new(schedule.start, schedule.end);
    planned.detection_window = change.plan.rollback_criteria.detection_window;
    Ok(planned)
}

/// A ring's hosts cut into the canary and batches; sizes are shares of the whole ring.
fn cut(names: &[String], canary: Option<Size>, batch: Size) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut rest = names;
    if let Some(canary) = canary {
        let (first, tail) = rest.split_at(canary.of(names.len()).min(rest.len()));
        out.push(Batch {
            canary: true,
            hosts: first.to_vec(),
        });
        rest = tail;
    }
    let step = batch.of(names.len()).max(1);
    for chunk in rest.chunks(step) {
        out.push(Batch {
            canary: false,
            hosts: chunk.to_vec(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn host(name: &str, env: &str, zone: &str) -> HostInfo {
        HostInfo {
            name: name.to_owned(),
            environment: env.to_owned(),
            services: vec![],
            time_zone: TimeZone::get(zone).unwrap(),
            windows: vec![],
            os: "Ubuntu:22.04".to_owned(),
            versions: BTreeMap::new(),
        }
    }

    pub(crate) fn policy() -> RolloutPolicy {
        RolloutPolicy {
            ring_order: default_ring_order(),
            canary: Some(Size::Count(1)),
            batch: Size::Percent(25),
            max_concurrency: 10,
            breaker: BreakerThresholds {
                per_batch: Size::Count(1),
                per_ring: Size::Count(2),
            },
            on_trip: OnTrip::Pause,
            soak: SignedDuration::from_hours(1),
            manual_gate: false,
            follow_the_sun: false,
        }
    }

    fn t0() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn sizes_round_up_to_at_least_one() {
        assert_eq!(Size::Percent(10).of(5), 1);
        assert_eq!(Size::Percent(10).of(11), 2);
        assert_eq!(Size::Percent(100).of(7), 7);
        assert_eq!(Size::Percent(50).of(0), 0);
        assert_eq!(Size::Count(20).of(3), 3);
        assert_eq!(Size::Count(3).threshold_of(2), 3);
        assert_eq!(Size::Percent(10).threshold_of(5), 1);
        assert_eq!(Size::Percent(50).threshold_of(5), 3);
        assert_eq!(Size::Percent(10).budget_of(5), 1);
        assert_eq!(Size::Percent(25).budget_of(9), 2);
        assert_eq!(Size::Count(3).budget_of(2), 3);
    }

    #[test]
    fn rings_in_order_canary_then_batches() {
        let mut hosts: Vec<HostInfo> = (0..9)
            .map(|i| host(&format!("p{i}"), "prod", "UTC"))
            .collect();
        hosts.push(host("d1", "dev", "UTC"));
        hosts.push(host("d0", "dev", "UTC"));
        let plan = plan(hosts, &[], &policy(), t0()).unwrap();
        assert_eq!(plan.rings.len(), 2);
        assert_eq!(plan.rings[0].environment, "dev");
        assert_eq!(
            plan.rings[0].batches,
            [
                Batch {
                    canary: true,
                    hosts: vec!["d0".into()]
                },
                Batch {
                    canary: false,
                    hosts: vec!["d1".into()]
                }
            ]
        );
        // 9 hosts: canary 1, then batches of ceil(25% of 9) = 3.
        let sizes: Vec<usize> = plan.rings[1]
            .batches
            .iter()
            .map(|b| b.hosts.len())
            .collect();
        assert_eq!(sizes, [1, 3, 3, 2]);
        assert!(plan.rings[1].batches[0].canary);
        assert_eq!(plan.position("p4"), Some((1, 2)));
        assert_eq!(plan.rings[1].len(), 9);
    }

    #[test]
    fn no_canary_and_tiny_percentages() {
        let mut p = policy();
        p.canary = None;
        p.batch = Size::Percent(1);
        let hosts = (0..3)
            .map(|i| host(&format!("h{i}"), "test", "UTC"))
            .collect();
        let plan = plan(hosts, &[], &p, t0()).unwrap();
        assert!(plan.rings[0].batches.iter().all(|b| b.hosts.len() == 1));
        assert!(plan.rings[0].batches.iter().all(|b| !b.canary));
    }

    #[test]
    fn follow_the_sun_goes_east_to_west() {
        let mut p = policy();
        p.canary = None;
        p.batch = Size::Count(1);
        p.follow_the_sun = true;
        let hosts = vec![
            host("a-ny", "prod", "America/New_York"),
            host("b-tokyo", "prod", "Asia/Tokyo"),
            host("c-berlin", "prod", "Europe/Berlin"),
        ];
        let plan = plan(hosts, &[], &p, t0()).unwrap();
        let order: Vec<&String> = plan.rings[0].hosts().collect();
        assert_eq!(order, ["b-tokyo", "c-berlin", "a-ny"]);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(
            plan(vec![], &[], &policy(), t0()),
            Err(PlanError::EmptyScope)
        );
        let err = plan(vec![host("x", "qa", "UTC")], &[], &policy(), t0())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"x\"") && err.contains("\"qa\"") && err.contains("dev, test"));
        let mut h = host("x", "dev", "UTC");
        h.services = vec!["db".into()];
        let err = plan(vec![h], &[], &policy(), t0()).unwrap_err().to_string();
        assert!(err.contains("\"db\""), "{err}");
        let err = plan(
            vec![host("x", "dev", "UTC"), host("x", "dev", "UTC")],
            &[],
            &policy(),
            t0(),
        );
        assert_eq!(err, Err(PlanError::DuplicateHost("x".into())));
        let mut p = policy();
        p.batch = Size::Percent(0);
        let err = plan(vec![host("x", "dev", "UTC")], &[], &p, t0())
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch") && err.contains("0%"), "{err}");
    }

    fn scheduled_change() -> ChangeRequest {
        let input: crate::change::NewChange = serde_json::from_str(
            r#"{"title": "openssl on web", "type": "normal",
                "origin": {"from": "findings", "filter": "kev=true"},
                "bundle": [{"package": "openssl", "ecosystem": "Debian:12",
                            "target_version": "3.0.15-1", "source": "lowest-fixing",
                            "advisories": [], "kev": true}],
                "scope": "tag=web", "update_types": ["security"],
                "plan": {"implementation": ["upgrade"], "verification": ["probe"],
                         "rollback_criteria": {"max_failed_check_share": 0.1,
                                               "detection_window": "15m"}}}"#,
        )
        .unwrap();
        let mut change = ChangeRequest::new("CHG-7", input, "alice", t0()).unwrap();
        change.state = ChangeState::Scheduled;
        change.schedule = Some(crate::change::Schedule {
            start: t0(),
            end: "2026-06-02T00:00:00Z".parse().unwrap(),
        });
        change
    }

    #[test]
    fn a_scheduled_change_plans_within_its_window() {
        let change = scheduled_change();
        let mut h = host("w1", "prod", "UTC");
        h.versions = [
            ("openssl".to_owned(), "3.0.11-1".to_owned()),
            ("bash".to_owned(), "5.2".to_owned()),
        ]
        .into();
        let memory = RolledBackVersions::default();
        let planned =
            plan_change(&change, vec![h.clone()], &[], &policy(), &memory, false).unwrap();
        assert_eq!(
            planned.implementation.map(|r| r.start),
            change.schedule.as_ref().map(|s| s.start)
        );
        assert_eq!(planned.detection_window, SignedDuration::from_mins(15));
        // Only the bundle's packages count for staging parity.
        assert_eq!(planned.hosts["w1"].versions.len(), 1);

        let mut memory = RolledBackVersions::default();
        memory.record("prod", "openssl", "3.0.15-1");
        let err = plan_change(&change, vec![h.clone()], &[], &policy(), &memory, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("openssl 3.0.15-1 was rolled back in prod"),
            "{err}"
        );
        assert!(plan_change(&change, vec![h.clone()], &[], &policy(), &memory, true).is_ok());

        let mut draft = change.clone();
        draft.state = ChangeState::Approved;
        let err = plan_change(&draft, vec![h], &[], &policy(), &memory, true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "change CHG-7 is approved: only a scheduled change rolls out"
        );
    }

    #[test]
    fn budgets_per_service() {
        let services = [Service {
            name: "web".into(),
            budget: Size::Percent(50),
        }];
        let hosts = (0..5)
            .map(|i| {
                let mut h = host(&format!("w{i}"), "prod", "UTC");
                h.services = vec!["web".into()];
                h
            })
            .collect();
        let plan = plan(hosts, &services, &policy(), t0()).unwrap();
        assert_eq!(plan.budgets["web"], 2);
    }

    #[test]
    fn policy_json_is_kebab_case_and_strict() {
        let json = r#"{"batch":{"percent":20},"canary":{"count":1},"max_concurrency":5,
            "breaker":{"per_batch":{"count":1},"per_ring":{"percent":10}},
            "on_trip":"rollback-batch","soak":"2h"}"#;
        let p: RolloutPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(p.on_trip, OnTrip::RollbackBatch);
        assert_eq!(p.ring_order, default_ring_order());
        assert_eq!(p.soak, SignedDuration::from_hours(2));
        let round: RolloutPolicy =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(round, p);
        let bad = json.replace("\"soak\"", "\"soke\":\"1h\",\"soak\"");
        assert!(serde_json::from_str::<RolloutPolicy>(&bad).is_err());
    }
}
