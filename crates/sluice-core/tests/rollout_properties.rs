//! Property tests of the rollout engine: seeded random fleets (three environments, three time
//! zones, services with budgets, maintenance windows, freezes) driven by a fake clock and a
//! simulated agent with random durations and failures. After every step the invariants hold:
//! concurrency and budgets are never exceeded, no host starts outside its window or inside a
//! freeze, the breaker trips exactly at its threshold, a paused rollout starts nothing, and
//! every host ends succeeded, rolled back, failed, or untouched after a trip.

// A test binary: its helpers fail loudly on purpose, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use jiff::civil::{date, time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use sluice_core::calendar::freeze::ExceptionDecision;
use sluice_core::calendar::{
    Freeze, FreezeCalendar, FreezeException, FreezeRule, MaintenanceWindow, RecurrenceRule,
    Schedule, Scope, TimeRange,
};
use sluice_core::rollout::{
    Action, BreakerThresholds, HostInfo, HostStatus, Observation, OnTrip, Plan, RolloutPolicy,
    RolloutState, Service, Size, next_actions, plan,
};

/// SplitMix64: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const ZONES: [&str; 3] = ["UTC", "America/New_York", "Asia/Tokyo"];
const ENVS: [&str; 3] = ["dev", "staging", "prod"];
const SERVICES: [&str; 3] = ["web", "db", "cache"];

fn start() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn size(rng: &mut Rng, count: (i64, i64), percent: (i64, i64)) -> Size {
    if rng.chance(50) {
        Size::Count(rng.range(count.0, count.1) as u32)
    } else {
        Size::Percent(rng.range(percent.0, percent.1) as u8)
    }
}

struct Fleet {
    plan: Plan,
    calendar: FreezeCalendar,
}

fn fleet(rng: &mut Rng) -> Fleet {
    let n = rng.range(4, 16);
    let mut hosts = Vec::new();
    for i in 0..n {
        let zone = *rng.pick(&ZONES);
        let tz = TimeZone::get(zone).unwrap();
        let mut windows = Vec::new();
        if rng.chance(60) {
            let window = MaintenanceWindow::new(
                Schedule::Rrule {
                    rule: RecurrenceRule::parse("FREQ=DAILY").unwrap(),
                    dtstart: date(2026, 1, 1),
                },
                time(rng.range(0, 23) as i8, 0, 0, 0),
                SignedDuration::from_hours(rng.range(2, 8)),
                tz.clone(),
            )
            .unwrap()
            .with_cutoff(SignedDuration::from_mins(rng.range(0, 60)))
            .unwrap();
            windows.push(window);
        }
        let services = SERVICES
            .iter()
            .filter(|_| rng.chance(40))
            .map(|s| (*s).to_owned())
            .collect();
        let mut versions = BTreeMap::new();
        versions.insert(
            "openssl".to_owned(),
            if rng.chance(90) { "3.0.2-1" } else { "3.0.2-2" }.to_owned(),
        );
        hosts.push(HostInfo {
            name: format!("h{i:02}"),
            environment: (*rng.pick(&ENVS)).to_owned(),
            services,
            time_zone: tz,
            windows,
            os: if rng.chance(95) {
                "Ubuntu:22.04"
            } else {
                "Ubuntu:24.04"
            }
            .to_owned(),
            versions,
        });
    }
    let services: Vec<Service> = SERVICES
        .iter()
        .map(|name| Service {
            name: (*name).to_owned(),
            budget: size(rng, (1, 3), (10, 60)),
        })
        .collect();
    let policy = RolloutPolicy {
        ring_order: ENVS.map(str::to_owned).to_vec(),
        canary: match rng.below(3) {
            0 => None,
            1 => Some(Size::Count(1)),
            _ => Some(Size::Percent(rng.range(5, 30) as u8)),
        },
        batch: size(rng, (1, 4), (20, 60)),
        max_concurrency: rng.range(1, 5) as u32,
        breaker: BreakerThresholds {
            per_batch: size(rng, (1, 3), (30, 100)),
            per_ring: size(rng, (2, 5), (20, 80)),
        },
        on_trip: *rng.pick(&[
            OnTrip::Pause,
            OnTrip::RollbackFailed,
            OnTrip::RollbackBatch,
            OnTrip::RollbackRing,
        ]),
        soak: SignedDuration::from_mins(rng.range(0, 120)),
        manual_gate: rng.chance(30),
        follow_the_sun: rng.chance(50),
    };
    let mut plan = plan(hosts, &services, &policy, start()).unwrap();
    if rng.chance(30) {
        plan.detection_window = SignedDuration::from_mins(rng.range(5, 30));
    }

    let mut calendar = FreezeCalendar::default();
    if rng.chance(50) {
        let from = start() + SignedDuration::from_hours(rng.range(0, 48));
        let until = from + SignedDuration::from_hours(rng.range(1, 24));
        let scope = if rng.chance(50) {
            Scope::Everything
        } else {
            Scope::Hosts(
                plan.hosts
                    .keys()
                    .filter(|_| rng.chance(50))
                    .cloned()
                    .collect(),
            )
        };
        let range = TimeRange::new(from, until).unwrap();
        calendar
            .freezes
            .push(Freeze::new("release", FreezeRule::Range(range), TimeZone::UTC, scope).unwrap());
        if rng.chance(50) {
            let lifted = plan
                .hosts
                .keys()
                .filter(|_| rng.chance(30))
                .cloned()
                .collect();
            calendar.exceptions.push(FreezeException {
                freeze: "release".into(),
                scope: Scope::Hosts(lifted),
                range,
                justification: "exploited".into(),
                requested_by: "olivia".into(),
                decision: ExceptionDecision::Approved {
                    by: "cab".into(),
                    at: start(),
                },
            });
        }
    }
    Fleet { plan, calendar }
}

/// What the simulated world will report, and when.
enum Event {
    Finish { host: String, outcome: Outcome },
    RolledBack { host: String },
    AlertResolved,
    Resume,
    ResetBreaker,
    ApproveGate(usize),
    Retry(Vec<String>),
}

#[derive(Clone, Copy)]
enum Outcome {
    Succeed,
    RebootThenSucceed,
    Fail,
    AgentRollsBack,
}

fn check_invariants(seed: u64, plan: &Plan, state: &RolloutState) {
    let in_flight = state
        .hosts
        .values()
        .filter(|r| r.status.in_flight())
        .count();
    assert!(
        in_flight <= plan.policy.max_concurrency as usize,
        "seed {seed}: {in_flight} in flight > {}",
        plan.policy.max_concurrency
    );
    for (service, budget) in &plan.budgets {
        let down = plan
            .hosts
            .values()
            .filter(|h| h.services.contains(service) && state.status(&h.name).unavailable())
            .count();
        assert!(
            down <= *budget,
            "seed {seed}: service {service}: {down} unavailable > budget {budget}"
        );
    }
}

/// Whether a failure of `host` should trip the breaker now, computed without the engine.
fn expected_trip(plan: &Plan, failed: &BTreeMap<String, bool>, host: &str) -> bool {
    let (r, b) = plan.position(host).unwrap();
    let ring = &plan.rings[r];
    let batch = &ring.batches[b];
    let count = |hosts: Vec<&String>| hosts.iter().filter(|h| failed[h.as_str()]).count();
    count(batch.hosts.iter().collect())
        >= plan
            .policy
            .breaker
            .per_batch
            .threshold_of(batch.hosts.len())
        || count(ring.hosts().collect()) >= plan.policy.breaker.per_ring.threshold_of(ring.len())
}

/// How a simulated rollout ended, to check that the seeds cover every road.
#[derive(Default)]
struct Coverage {
    completed: usize,
    tripped: usize,
    rolled_back: usize,
    waited_for_window: usize,
    waited_for_parity: usize,
    promoted: usize,
    /// Retries the engine accepted (a host set back to pending), not retries asked for.
    retried: usize,
}

fn simulate(seed: u64, coverage: &mut Coverage) {
    let mut rng = Rng(seed);
    let Fleet { plan, calendar } = fleet(&mut rng);
    let mut state = RolloutState::new(&plan);
    let mut now = start();
    let mut events: Vec<(Timestamp, Event)> = Vec::new();
    let mut failed: BTreeMap<String, bool> =
        plan.hosts.keys().map(|h| (h.clone(), false)).collect();
    let mut completed = false;
    let mut tripped_ever = false;
    let mut awaiting_person = false;
    let deadline = start() + SignedDuration::from_hours(24 * 10);

    for step in 0..3000 {
        // Deliver everything due.
        events.sort_by_key(|(at, _)| *at);
        while events.first().is_some_and(|(at, _)| *at <= now) {
            let (at, event) = events.remove(0);
            let observation = match event {
                Event::Finish { host, outcome } => match outcome {
                    Outcome::Succeed => Observation::HostSucceeded { host, at },
                    Outcome::RebootThenSucceed => {
                        events.push((
                            at + SignedDuration::from_mins(rng.range(5, 30)),
                            Event::Finish {
                                host: host.clone(),
                                outcome: Outcome::Succeed,
                            },
                        ));
                        Observation::HostPendingReboot { host, at }
                    }
                    Outcome::Fail => Observation::HostFailed { host, at },
                    Outcome::AgentRollsBack => Observation::HostRolledBack { host, at },
                },
                Event::RolledBack { host } => Observation::HostRolledBack { host, at },
                Event::AlertResolved => Observation::AlertResolved {
                    alert: "latency".into(),
                },
                Event::Resume => Observation::Resume { by: "sre".into() },
                Event::ResetBreaker => {
                    awaiting_person = false;
                    Observation::ResetBreaker { by: "sre".into() }
                }
                Event::Retry(hosts) => {
                    awaiting_person = false;
                    for host in hosts {
                        // The host may have moved on since the retry was decided (a breaker's
                        // rollback, a promotion): the engine must refuse exactly when it is no
                        // longer a failed or rolled-back host of the current ring.
                        let status = state.status(&host);
                        let retryable = state.aborted.is_none()
                            && matches!(status, HostStatus::Failed | HostStatus::RolledBack)
                            && plan.position(&host).map(|(ring, _)| ring) == Some(state.ring);
                        let answer = state.apply(
                            &plan,
                            &Observation::Retry {
                                host: host.clone(),
                                by: "sre".into(),
                            },
                        );
                        match answer {
                            Ok(()) => {
                                assert!(retryable, "seed {seed}: retry of {status} {host} taken");
                                assert_eq!(state.status(&host), HostStatus::Pending, "seed {seed}");
                                coverage.retried += 1;
                            }
                            Err(e) => {
                                assert!(!retryable, "seed {seed}: retry of {host} refused: {e}")
                            }
                        }
                    }
                    check_invariants(seed, &plan, &state);
                    continue;
                }
                Event::ApproveGate(to_ring) => {
                    awaiting_person = false;
                    Observation::ApproveGate {
                        to_ring,
                        by: "cab".into(),
                    }
                }
            };
            let failure = match &observation {
                Observation::HostFailed { host, .. } => Some(host.clone()),
                Observation::HostRolledBack { host, .. } if state.status(host).in_flight() => {
                    Some(host.clone())
                }
                _ => None,
            };
            let was_tripped = state.breaker.is_some();
            if let Some(host) = &failure {
                failed.insert(host.clone(), true);
            }
            match state.apply(&plan, &observation) {
                Ok(()) => {}
                // A resume while the alert still fires is refused; try again later.
                Err(_) if matches!(observation, Observation::Resume { .. }) => {
                    events.push((now + SignedDuration::from_mins(30), Event::Resume));
                }
                Err(e) => panic!("seed {seed}: {observation:?}: {e}"),
            }
            if let Some(host) = &failure
                && !was_tripped
            {
                assert_eq!(
                    state.breaker.is_some(),
                    expected_trip(&plan, &failed, host),
                    "seed {seed}: failure of {host}: breaker {:?}",
                    state.breaker
                );
            }
            if failure.is_none()
                && !was_tripped
                && !matches!(observation, Observation::ResetBreaker { .. })
            {
                assert!(
                    state.breaker.is_none(),
                    "seed {seed}: tripped without a failure"
                );
            }
            tripped_ever |= state.breaker.is_some();
            check_invariants(seed, &plan, &state);
        }

        // Now and then an operator pauses or an alert fires.
        if rng.chance(2) && state.aborted.is_none() {
            if rng.chance(50) {
                state
                    .apply(
                        &plan,
                        &Observation::Pause {
                            by: "sre".into(),
                            reason: "looking".into(),
                        },
                    )
                    .unwrap();
            } else {
                state
                    .apply(
                        &plan,
                        &Observation::AlertFiring {
                            alert: "latency".into(),
                        },
                    )
                    .unwrap();
                events.push((
                    now + SignedDuration::from_mins(rng.range(10, 90)),
                    Event::AlertResolved,
                ));
            }
            events.push((
                now + SignedDuration::from_mins(rng.range(20, 120)),
                Event::Resume,
            ));
        }

        let paused = state.pause_reason().is_some();
        let halted = state.breaker.is_some() || state.aborted.is_some();
        let actions = next_actions(&plan, &state, &calendar, now);
        // Pure: the same inputs give the same actions, also after a trip through storage.
        if step % 64 == 0 {
            let stored: RolloutState =
                serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
            assert_eq!(stored, state, "seed {seed}");
            assert_eq!(
                next_actions(&plan, &stored, &calendar, now),
                actions,
                "seed {seed}"
            );
        }
        let mut until = None;
        for action in &actions {
            match action {
                Action::StartHosts(hosts) => {
                    assert!(!paused, "seed {seed}: paused rollout started {hosts:?}");
                    assert!(!halted, "seed {seed}: halted rollout started {hosts:?}");
                    assert!(!hosts.is_empty(), "seed {seed}: empty start");
                    for host in hosts {
                        let info = &plan.hosts[host];
                        assert_eq!(state.status(host), HostStatus::Pending, "seed {seed}");
                        assert!(
                            info.windows.is_empty()
                                || info.windows.iter().any(|w| w.may_start(now)),
                            "seed {seed}: {host} started outside its window at {now}"
                        );
                        assert!(
                            calendar.blocking(host, now).is_none(),
                            "seed {seed}: {host} started in a freeze at {now}"
                        );
                        let (r, b) = plan.position(host).unwrap();
                        assert_eq!(
                            r, state.ring,
                            "seed {seed}: {host} outside the current ring"
                        );
                        let fresh = plan.rings[r].batches[b]
                            .hosts
                            .iter()
                            .all(|h| state.status(h) == HostStatus::Pending);
                        if fresh && b > 0 {
                            let watched = plan.rings[r].batches[b - 1]
                                .hosts
                                .iter()
                                .filter_map(|h| state.hosts[h].finished_at)
                                .max();
                            if let Some(done) = watched {
                                assert!(
                                    now >= done + plan.detection_window,
                                    "seed {seed}: batch {b} started inside the detection window"
                                );
                            }
                        }
                        for earlier in &plan.rings[r].batches[..b] {
                            for h in &earlier.hosts {
                                let s = state.status(h);
                                assert!(
                                    s != HostStatus::Pending && !s.in_flight(),
                                    "seed {seed}: {host} started before batch of {h} finished"
                                );
                            }
                        }
                        state
                            .apply(
                                &plan,
                                &Observation::HostStarted {
                                    host: host.clone(),
                                    at: now,
                                },
                            )
                            .unwrap();
                        let outcome = match rng.below(100) {
                            0..=7 => Outcome::Fail,
                            8..=12 => Outcome::AgentRollsBack,
                            13..=22 => Outcome::RebootThenSucceed,
                            _ => Outcome::Succeed,
                        };
                        events.push((
                            now + SignedDuration::from_mins(rng.range(5, 120)),
                            Event::Finish {
                                host: host.clone(),
                                outcome,
                            },
                        ));
                    }
                    check_invariants(seed, &plan, &state);
                }
                Action::RollBack(hosts) => {
                    assert!(
                        state.breaker.is_some(),
                        "seed {seed}: rollback without a trip"
                    );
                    for host in hosts {
                        if !events
                            .iter()
                            .any(|(_, e)| matches!(e, Event::RolledBack { host: h } if h == host))
                        {
                            events.push((
                                now + SignedDuration::from_mins(rng.range(5, 30)),
                                Event::RolledBack { host: host.clone() },
                            ));
                        }
                    }
                }
                Action::TripBreaker {
                    failed: count,
                    threshold,
                    ..
                } => {
                    assert!(count >= threshold, "seed {seed}: tripped below threshold");
                    let trip = state.breaker.unwrap();
                    assert_eq!((trip.failed, trip.threshold), (*count, *threshold));
                }
                Action::Pause(_) => {
                    assert_eq!(plan.policy.on_trip, OnTrip::Pause, "seed {seed}");
                    // A person looks and, half the time, resets the breaker.
                    if !awaiting_person && rng.chance(50) {
                        awaiting_person = true;
                        events.push((now + SignedDuration::from_hours(1), Event::ResetBreaker));
                    }
                }
                Action::Promote { to_ring } => {
                    coverage.promoted += 1;
                    assert!(!paused && !halted, "seed {seed}: promoted while stopped");
                    state
                        .apply(&plan, &Observation::Promoted { to_ring: *to_ring })
                        .unwrap();
                }
                Action::Wait { until: u, reason } => {
                    assert!(!reason.is_empty(), "seed {seed}: wait without a reason");
                    if let Some(u) = u {
                        assert!(*u > now, "seed {seed}: wait until the past: {reason}");
                    }
                    until = *u;
                    if reason.contains("maintenance windows") {
                        coverage.waited_for_window += 1;
                    }
                    if reason.contains("not validated") {
                        coverage.waited_for_parity += 1;
                    }
                    if reason.contains("did not succeed")
                        && state.breaker.is_none()
                        && !awaiting_person
                        && rng.chance(60)
                    {
                        awaiting_person = true;
                        let hosts = plan.rings[state.ring]
                            .hosts()
                            .filter(|h| {
                                matches!(
                                    state.status(h),
                                    HostStatus::Failed | HostStatus::RolledBack
                                )
                            })
                            .cloned()
                            .collect();
                        events.push((now + SignedDuration::from_hours(1), Event::Retry(hosts)));
                    }
                    if reason.contains("approval") && !awaiting_person {
                        awaiting_person = true;
                        events.push((
                            now + SignedDuration::from_hours(1),
                            Event::ApproveGate(state.ring + 1),
                        ));
                    }
                }
                Action::Complete => {
                    assert!(
                        state
                            .hosts
                            .values()
                            .all(|r| r.status == HostStatus::Succeeded),
                        "seed {seed}: complete with unfinished hosts"
                    );
                    completed = true;
                }
            }
        }
        if completed {
            break;
        }
        let progressed = actions
            .iter()
            .any(|a| matches!(a, Action::StartHosts(_) | Action::Promote { .. }));
        if progressed {
            continue;
        }
        // Advance the fake clock to the next thing that may change the answer.
        let next_event = events.iter().map(|(at, _)| *at).min();
        let step = now + SignedDuration::from_mins(30);
        let next = [next_event, until, Some(step)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(step);
        if next_event.is_none() && now > deadline {
            break;
        }
        now = next.max(now + SignedDuration::from_secs(1));
    }

    coverage.completed += usize::from(completed);
    coverage.tripped += usize::from(tripped_ever);
    coverage.rolled_back += usize::from(
        state
            .hosts
            .values()
            .any(|r| r.status == HostStatus::RolledBack),
    );

    // Every host ends succeeded, rolled back, failed, or untouched (after a trip or a stall).
    for (host, run) in &state.hosts {
        assert!(
            !run.status.in_flight() || !events.is_empty(),
            "seed {seed}: {host} left {}",
            run.status
        );
        if completed {
            assert_eq!(run.status, HostStatus::Succeeded, "seed {seed}: {host}");
        }
    }
    if tripped_ever
        && let Some(trip) = state.breaker
        && events.is_empty()
    {
        // A rollback policy leaves no failed host in the tripped ring.
        if matches!(
            plan.policy.on_trip,
            OnTrip::RollbackFailed | OnTrip::RollbackRing
        ) {
            let ring = match trip.scope {
                sluice_core::rollout::BreakerScope::Batch { ring, .. }
                | sluice_core::rollout::BreakerScope::Ring { ring, .. } => ring,
            };
            for h in plan.rings[ring].hosts() {
                assert_ne!(state.status(h), HostStatus::Failed, "seed {seed}: {h}");
            }
        }
    }
}

#[test]
fn random_fleets_keep_the_invariants() {
    let mut coverage = Coverage::default();
    for seed in 0..1500 {
        simulate(seed, &mut coverage);
    }
    // The seeds reach every road: completion, trips, rollbacks, closed windows, parity.
    let Coverage {
        completed,
        tripped,
        rolled_back,
        waited_for_window,
        waited_for_parity,
        promoted,
        retried,
    } = coverage;
    eprintln!(
        "completed {completed}, tripped {tripped}, rolled back {rolled_back}, \
         window waits {waited_for_window}, parity waits {waited_for_parity}, promotions {promoted}, retries {retried}"
    );
    for (what, count) in [
        ("completed", completed),
        ("tripped", tripped),
        ("rolled back", rolled_back),
        ("window waits", waited_for_window),
        ("parity waits", waited_for_parity),
        ("promotions", promoted),
        ("retries", retried),
    ] {
        assert!(count > 10, "only {count} runs {what}");
    }
}

#[test]
fn the_policy_example_in_the_docs_parses() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/rollout.md"
    ))
    .unwrap();
    let example = docs
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let policy: RolloutPolicy = serde_json::from_str(example).unwrap();
    assert_eq!(policy.on_trip, OnTrip::RollbackBatch);
    assert_eq!(policy.soak, SignedDuration::from_hours(2));
    assert!(policy.manual_gate);
}
