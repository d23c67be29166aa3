//! Change governance stories on a fake clock: each test walks a change through the state machine
//! the way the server will (decide with `transition`, apply, move the clock) and checks what the
//! people involved would see: the state, the quorum, the reasons for every refusal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use sluice_core::access::{Actor, Role};
use sluice_core::change::itsm::{self, JiraOptions, ServiceNowOptions};
use sluice_core::change::model::ReviewOutcome;
use sluice_core::change::state::{self, next_actions};
use sluice_core::change::{
    Action, BundleItem, BundleSource, CabPolicy, ChangeOrigin, ChangeRequest, ChangeState,
    ChangeType, Effect, History, NewChange, Plan, Refusal, RefusalKind, RetrospectiveStatus,
    RiskLevel, RollbackCriteria, Schedule, ScheduleConflict, ScopeFacts, Transition, UpdateClass,
    Vote, VoteDecision, assess, escalation_due, evaluate_votes, retrospective_status, transition,
};
use sluice_core::cmdb::{Asset, Selector, Service};
use sluice_core::deferral::{
    Deferral, DeferralError, DeferralKind, DeferralPolicy, DeferralRequest, DeferralTarget,
    FindingRef, Standing, standing,
};
use sluice_core::ecosystem::{Distro, EcosystemKey};

/// A clock the test moves by hand.
struct Clock(Timestamp);

impl Clock {
    fn start() -> Self {
        Self("2026-11-02T09:00:00Z".parse().unwrap())
    }

    fn now(&self) -> Timestamp {
        self.0
    }

    fn advance(&mut self, hours: i64) {
        self.0 = self
            .0
            .checked_add(SignedDuration::from_hours(hours))
            .unwrap();
    }
}

fn hours_from(t: Timestamp, hours: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_hours(hours)).unwrap()
}

fn person(user: &str, roles: &[Role], groups: &[&str]) -> Actor {
    Actor::new(user, roles.iter().copied(), groups.iter().copied())
}

/// The requester: an operator who is also a CAB member (which must not let her approve).
fn alice() -> Actor {
    person("alice", &[Role::Operator, Role::Approver], &["cab"])
}

fn ops() -> Actor {
    person("olga", &[Role::Operator], &[])
}

fn fleet() -> (Vec<Asset>, Vec<Service>) {
    let mut assets = Vec::new();
    for (name, pairs) in [
        ("web1", "env=prod,criticality=3,exposure=internet,tags=web"),
        ("web2", "env=prod,criticality=3,exposure=internet,tags=web"),
        ("db1", "env=prod,criticality=5,exposure=internal,tags=db"),
        ("build1", "env=dev,criticality=2,exposure=isolated,tags=ci"),
        ("tz1", "env=dev,criticality=1,exposure=internal,tags=tz"),
    ] {
        let mut asset = Asset::new(name).unwrap();
        asset.set_pairs(pairs.split(',')).unwrap();
        assets.push(asset);
    }
    let service = |name: &str, tier: u8, members: &[&str]| Service {
        name: name.to_owned(),
        tier: Some(tier),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        depends_on: BTreeSet::new(),
        disruption_budget: None,
    };
    let services = vec![
        service("shop", 2, &["web1", "web2"]),
        service("payments", 1, &["db1"]),
        service("ci", 4, &["build1"]),
    ];
    (assets, services)
}

fn debian() -> EcosystemKey {
    EcosystemKey::new(Distro::Debian, "12").unwrap()
}

fn openssl(kev: bool) -> BundleItem {
    BundleItem {
        package: "openssl".to_owned(),
        ecosystem: Some(debian()),
        target_version: "3.0.15-1~deb12u1".to_owned(),
        source: BundleSource::LowestFixing,
        advisories: vec!["DSA-5800-1".to_owned()],
        kev,
    }
}

fn plan() -> Plan {
    Plan {
        implementation: vec![
            "drain the host from the load balancer".to_owned(),
            "upgrade the packages".to_owned(),
            "restart services using libssl".to_owned(),
        ],
        verification: vec!["TLS probe on :443 answers with the new library".to_owned()],
        rollback_criteria: RollbackCriteria {
            max_failed_check_share: 0.1,
            max_latency_factor: Some(1.5),
            custom_check: Some("checkout-smoke".to_owned()),
            detection_window: SignedDuration::from_mins(15),
        },
    }
}

fn draft(
    kind: ChangeType,
    bundle: Vec<BundleItem>,
    update_types: &[UpdateClass],
    scope: &str,
    clock: &Clock,
) -> ChangeRequest {
    let input = NewChange {
        title: format!("{} update on {scope}", bundle[0].package),
        kind,
        origin: ChangeOrigin::Findings {
            filter: Some("kev=true".to_owned()),
            ids: Vec::new(),
        },
        bundle,
        scope: Selector::parse(scope).unwrap(),
        update_types: update_types.iter().copied().collect(),
        justification: None,
        template: None,
        plan: plan(),
    };
    ChangeRequest::new("CHG-1", input, "alice", clock.now()).unwrap()
}

/// Assesses a draft against the fixture fleet with a good track record.
fn assessed(change: ChangeRequest, policy: &CabPolicy, clock: &Clock) -> ChangeRequest {
    let history = History {
        similar_changes: 20,
        failed: 0,
    };
    assessed_with(change, history, policy, clock)
}

fn assessed_with(
    mut change: ChangeRequest,
    history: History,
    policy: &CabPolicy,
    clock: &Clock,
) -> ChangeRequest {
    let (assets, services) = fleet();
    let facts = ScopeFacts::collect(&change.scope, &assets, &services);
    let assessment = assess(&change, &facts, false, history, policy, clock.now());
    change.set_assessment(assessment).unwrap();
    change
}

/// Decides and, when allowed, applies: what the server does in one database transaction.
fn act(
    change: &mut ChangeRequest,
    action: Action,
    actor: &Actor,
    policy: &CabPolicy,
    clock: &Clock,
) -> Result<Transition, Refusal> {
    let decided = transition(change, &action, actor, policy, clock.now())?;
    change.apply(&decided).unwrap();
    assert_eq!(change.state, decided.to);
    Ok(decided)
}

fn approve() -> Action {
    Action::Approve { comment: None }
}

fn refused(result: Result<Transition, Refusal>, kind: RefusalKind, words: &str) -> Refusal {
    let refusal = result.expect_err("expected a refusal");
    assert_eq!(refusal.kind, kind, "{}", refusal.reason);
    assert!(
        refusal.reason.contains(words),
        "{:?} should mention {words:?}",
        refusal.reason
    );
    refusal
}

#[test]
fn emergency_change_with_its_retrospective_review_going_overdue() {
    let policy = CabPolicy::default();
    let mut clock = Clock::start();
    let change = draft(
        ChangeType::Emergency,
        vec![openssl(true)],
        &[UpdateClass::Security],
        "env=prod",
        &clock,
    );
    let mut change = assessed(change, &policy, &clock);
    assert_eq!(change.risk(), Some(RiskLevel::High));
    assert!(change.assessment.as_ref().unwrap().peer_review.required);

    act(&mut change, Action::Submit, &alice(), &policy, &clock).unwrap();
    // db1 has criticality 5, but emergency changes go to the e-CAB without waiting for a peer.
    let review = act(&mut change, Action::StartReview, &ops(), &policy, &clock).unwrap();
    assert!(review.effects.iter().any(|e| matches!(e,
        Effect::Notify { groups, .. } if groups == &["ecab"])));
    assert_eq!(change.approval_rule.as_ref().unwrap().name, "emergency");
    assert_eq!(change.policy_version, Some(1));

    let erin = person("erin", &[Role::Approver], &["ecab"]);
    clock.advance(1);
    let approved = act(&mut change, approve(), &erin, &policy, &clock).unwrap();
    assert_eq!(approved.to, ChangeState::Approved);
    let due = hours_from(clock.now(), 48);
    assert_eq!(change.retrospective_due, Some(due));
    assert_eq!(
        retrospective_status(&change, clock.now()),
        RetrospectiveStatus::Due { by: due }
    );

    // Implementation may start at once, without a schedule.
    let started = act(
        &mut change,
        Action::StartImplementation,
        &ops(),
        &policy,
        &clock,
    )
    .unwrap();
    // Starting carries no effect: the rollout service starts the change itself.
    assert!(started.effects.is_empty());
    clock.advance(2);
    act(&mut change, Action::Complete, &ops(), &policy, &clock).unwrap();

    clock.advance(47);
    assert_eq!(
        retrospective_status(&change, clock.now()),
        RetrospectiveStatus::Overdue {
            by: due,
            overdue_by: SignedDuration::from_hours(1)
        }
    );
    let json = serde_json::to_value(retrospective_status(&change, clock.now())).unwrap();
    assert_eq!(json["status"], "overdue");
    assert_eq!(json["overdue_by"], "1h");

    // The retrospective is the full CAB's, never the requester's.
    refused(
        act(
            &mut change,
            Action::Review {
                outcome: ReviewOutcome::Successful,
                notes: "fine".into(),
            },
            &person("erin", &[Role::Approver], &["ecab"]),
            &policy,
            &clock,
        ),
        RefusalKind::Forbidden,
        "full CAB (cab, security)",
    );
    refused(
        act(
            &mut change,
            Action::Review {
                outcome: ReviewOutcome::Successful,
                notes: "fine".into(),
            },
            &alice(),
            &policy,
            &clock,
        ),
        RefusalKind::Forbidden,
        "cannot review",
    );
    let carl = person("carl", &[Role::Approver], &["cab"]);
    act(
        &mut change,
        Action::Review {
            outcome: ReviewOutcome::SuccessfulWithIssues,
            notes: "one host needed a second restart".into(),
        },
        &carl,
        &policy,
        &clock,
    )
    .unwrap();
    assert_eq!(
        retrospective_status(&change, clock.now()),
        RetrospectiveStatus::Done {
            at: clock.now(),
            by: due,
            late: true
        }
    );
    act(&mut change, Action::Close, &ops(), &policy, &clock).unwrap();
    assert!(change.state.is_final());
    let actions: Vec<&str> = change.history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "submit",
            "start-review",
            "approve",
            "start-implementation",
            "complete",
            "review",
            "close"
        ]
    );
}

/// A normal change of high risk: rule normal-high (cab + security, k = 3, one of each).
fn high_risk_in_review(policy: &CabPolicy, clock: &Clock) -> ChangeRequest {
    let change = draft(
        ChangeType::Normal,
        vec![openssl(false)],
        &[UpdateClass::Security],
        "env=prod",
        clock,
    );
    let mut change = assessed(change, policy, clock);
    assert_eq!(change.risk(), Some(RiskLevel::High));
    act(&mut change, Action::Submit, &alice(), policy, clock).unwrap();
    act(
        &mut change,
        Action::SignOffPlan { comment: None },
        &person("pete", &[Role::Operator], &[]),
        policy,
        clock,
    )
    .unwrap();
    act(&mut change, Action::StartReview, &ops(), policy, clock).unwrap();
    assert_eq!(change.approval_rule.as_ref().unwrap().name, "normal-high");
    change
}

#[test]
fn quorum_not_met_until_k_and_every_group_minimum() {
    let policy = CabPolicy::default();
    let mut clock = Clock::start();
    let mut change = high_risk_in_review(&policy, &clock);

    // The requester is a CAB member and still never votes.
    refused(
        act(&mut change, approve(), &alice(), &policy, &clock),
        RefusalKind::Forbidden,
        "requester never votes",
    );
    // An approver outside the groups, and a CAB member without the approver role.
    refused(
        act(
            &mut change,
            approve(),
            &person("dan", &[Role::Approver], &["dba"]),
            &policy,
            &clock,
        ),
        RefusalKind::Forbidden,
        "not in an approver group for change CHG-1 (cab, security)",
    );
    refused(
        act(
            &mut change,
            approve(),
            &person("vera", &[Role::Viewer], &["cab"]),
            &policy,
            &clock,
        ),
        RefusalKind::Forbidden,
        "approve needs the role approver; vera has viewer",
    );

    let bob = person("bob", &[Role::Approver], &["cab"]);
    clock.advance(1);
    let first = act(&mut change, approve(), &bob, &policy, &clock).unwrap();
    assert_eq!(first.to, ChangeState::InReview);
    let status = first.quorum.unwrap();
    assert!(!status.approved);
    assert_eq!((status.approvals, status.quorum), (1, 3));
    assert_eq!(status.missing_overall, 2);
    assert_eq!(status.missing, [("security".to_owned(), 1)].into());
    assert!(
        status
            .reasons
            .contains(&"1 of 3 approvals (rule normal-high)".to_owned())
    );
    assert!(
        status
            .reasons
            .contains(&"security: 0 of the 1 approvals it must give".to_owned())
    );

    refused(
        act(&mut change, approve(), &bob, &policy, &clock),
        RefusalKind::Conflict,
        "one person, one vote",
    );

    // Two more CAB members: k = 3 is reached but security has not approved.
    for name in ["cleo", "cyd"] {
        clock.advance(1);
        let step = act(
            &mut change,
            approve(),
            &person(name, &[Role::Approver], &["cab"]),
            &policy,
            &clock,
        )
        .unwrap();
        assert_eq!(step.to, ChangeState::InReview);
    }
    let status = evaluate_votes(&change, &change.votes, clock.now());
    assert_eq!(status.approvals, 3);
    assert_eq!(status.missing_overall, 0);
    assert_eq!(status.missing, [("security".to_owned(), 1)].into());
    assert!(!status.approved);

    // Someone in both groups fills the security seat.
    clock.advance(1);
    let sam = person(
        "sam",
        &[Role::Approver, Role::Security],
        &["cab", "security"],
    );
    let last = act(&mut change, approve(), &sam, &policy, &clock).unwrap();
    assert_eq!(last.to, ChangeState::Approved);
    let status = last.quorum.unwrap();
    assert!(status.approved, "{:?}", status.reasons);
    let sam_counted = status.counted.iter().find(|c| c.voter == "sam").unwrap();
    assert_eq!(sam_counted.group, "security");
    assert_eq!(change.retrospective_due, None, "normal changes have none");
}

#[test]
fn a_person_in_two_groups_and_repeated_votes_count_once() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let mut change = high_risk_in_review(&policy, &clock);
    let vote = |voter: &str, groups: &[&str], minutes: i64| Vote {
        voter: voter.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        decision: VoteDecision::Approve,
        at: clock
            .now()
            .checked_add(SignedDuration::from_mins(minutes))
            .unwrap(),
        comment: None,
    };
    // Votes as a store might hold them (written by an older server, or imported): sam twice,
    // the requester once.
    change.votes = vec![
        vote("sam", &["cab", "security"], 1),
        vote("sam", &["cab", "security"], 2),
        vote("alice", &["cab"], 3),
        vote("bob", &["cab"], 4),
    ];
    let now = hours_from(clock.now(), 1);
    let status = evaluate_votes(&change, &change.votes, now);
    assert_eq!(status.approvals, 2, "{:?}", status.reasons);
    assert!(
        status.missing.is_empty(),
        "sam covers security, bob covers cab"
    );
    assert_eq!(status.missing_overall, 1);
    assert!(!status.approved);
    let ignored: Vec<(&str, &str)> = status
        .ignored
        .iter()
        .map(|i| (i.voter.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(
        ignored,
        [
            ("sam", "voted before; one person, one vote"),
            (
                "alice",
                "requested the change; the requester never approves"
            ),
        ]
    );
}

#[test]
fn a_reject_by_an_eligible_member_rejects() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let mut change = high_risk_in_review(&policy, &clock);
    let sec = person("sid", &[Role::Approver], &["security"]);
    refused(
        act(
            &mut change,
            Action::Reject { reason: " ".into() },
            &sec,
            &policy,
            &clock,
        ),
        RefusalKind::Invalid,
        "reason for rejecting is required",
    );
    let rejected = act(
        &mut change,
        Action::Reject {
            reason: "rollback criteria too loose for payments".into(),
        },
        &sec,
        &policy,
        &clock,
    )
    .unwrap();
    assert_eq!(rejected.to, ChangeState::Rejected);
    assert_eq!(rejected.quorum.unwrap().rejected_by, ["sid"]);
    assert_eq!(
        change.outcome_reason.as_deref(),
        Some("rollback criteria too loose for payments")
    );
}

#[test]
fn escalation_after_the_timeout_widens_who_may_vote() {
    let policy = CabPolicy::default();
    let mut clock = Clock::start();
    // Web hosts (criticality 3, internet-facing, one service) and little history: medium risk.
    let change = draft(
        ChangeType::Normal,
        vec![openssl(false)],
        &[UpdateClass::Security],
        "tag=web",
        &clock,
    );
    let history = History {
        similar_changes: 2,
        failed: 0,
    };
    let mut change = assessed_with(change, history, &policy, &clock);
    assert_eq!(
        change.risk(),
        Some(RiskLevel::Medium),
        "{:?}",
        change.assessment
    );
    act(&mut change, Action::Submit, &alice(), &policy, &clock).unwrap();
    act(&mut change, Action::StartReview, &ops(), &policy, &clock).unwrap();
    let started = clock.now();

    clock.advance(1);
    let bob = person("bob", &[Role::Approver], &["cab"]);
    act(&mut change, approve(), &bob, &policy, &clock).unwrap();
    assert_eq!(change.state, ChangeState::InReview);

    let chair = person("cora", &[Role::Approver], &["cab-chairs"]);
    clock.advance(22);
    assert!(escalation_due(&change, clock.now()).is_empty());
    refused(
        act(&mut change, approve(), &chair, &policy, &clock),
        RefusalKind::Forbidden,
        "(cab)",
    );

    clock.advance(1);
    let due = escalation_due(&change, clock.now());
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].group, "cab-chairs");
    assert_eq!(due[0].step, 1);
    assert_eq!(due[0].due_at, hours_from(started, 24));
    change.record_escalation(&due[0], clock.now()).unwrap();
    change.record_escalation(&due[0], clock.now()).unwrap();
    assert_eq!(
        change.escalations.len(),
        1,
        "recording twice changes nothing"
    );
    assert!(escalation_due(&change, clock.now()).is_empty());

    let approved = act(&mut change, approve(), &chair, &policy, &clock).unwrap();
    assert_eq!(approved.to, ChangeState::Approved);
    let status = approved.quorum.unwrap();
    assert_eq!(
        status
            .counted
            .iter()
            .map(|c| (c.voter.as_str(), c.group.as_str()))
            .collect::<Vec<_>>(),
        [("bob", "cab"), ("cora", "cab-chairs")]
    );
    clock.advance(100);
    assert!(escalation_due(&change, clock.now()).is_empty(), "decided");
}

#[test]
fn escalation_never_waives_a_group_minimum() {
    let policy = CabPolicy::default();
    let mut clock = Clock::start();
    let mut change = high_risk_in_review(&policy, &clock);
    clock.advance(48);
    let due: Vec<String> = escalation_due(&change, clock.now())
        .into_iter()
        .map(|e| e.group)
        .collect();
    assert_eq!(due, ["cab-chairs", "change-management"]);
    for (name, group) in [
        ("bob", "cab"),
        ("cora", "cab-chairs"),
        ("max", "change-management"),
    ] {
        act(
            &mut change,
            approve(),
            &person(name, &[Role::Approver], &[group]),
            &policy,
            &clock,
        )
        .unwrap();
    }
    let status = evaluate_votes(&change, &change.votes, clock.now());
    assert_eq!(status.approvals, 3);
    assert_eq!(status.missing, [("security".to_owned(), 1)].into());
    assert_eq!(change.state, ChangeState::InReview);
}

#[test]
fn peer_review_blocks_cab_review_until_someone_else_signs_off() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let change = draft(
        ChangeType::Normal,
        vec![openssl(false)],
        &[UpdateClass::Security],
        "tag=db",
        &clock,
    );
    let mut change = assessed(change, &policy, &clock);
    let need = &change.assessment.as_ref().unwrap().peer_review;
    assert!(need.required);
    assert_eq!(
        need.reasons,
        [
            "1 host(s) with criticality 4 or more: db1",
            "service payments is tier 1"
        ]
    );
    act(&mut change, Action::Submit, &alice(), &policy, &clock).unwrap();
    refused(
        act(&mut change, Action::StartReview, &ops(), &policy, &clock),
        RefusalKind::Conflict,
        "needs a peer's sign-off of its plan before CAB review (1 host(s) with criticality 4 or more: db1; service payments is tier 1); nobody other than alice has signed off",
    );
    refused(
        act(
            &mut change,
            Action::SignOffPlan { comment: None },
            &alice(),
            &policy,
            &clock,
        ),
        RefusalKind::Forbidden,
        "alice wrote change CHG-1's plan and cannot sign it off",
    );
    let pete = person("pete", &[Role::Operator], &[]);
    act(
        &mut change,
        Action::SignOffPlan {
            comment: Some("rollback tested on staging".into()),
        },
        &pete,
        &policy,
        &clock,
    )
    .unwrap();
    refused(
        act(
            &mut change,
            Action::SignOffPlan { comment: None },
            &pete,
            &policy,
            &clock,
        ),
        RefusalKind::Conflict,
        "already signed off",
    );
    act(&mut change, Action::StartReview, &ops(), &policy, &clock).unwrap();
    assert_eq!(change.state, ChangeState::InReview);

    // Revising sends it back to draft and drops sign-offs and the adopted rule.
    act(
        &mut change,
        Action::Revise {
            reason: "add the replica".into(),
        },
        &alice(),
        &policy,
        &clock,
    )
    .unwrap();
    assert_eq!(change.state, ChangeState::Draft);
    assert!(change.sign_offs.is_empty() && change.approval_rule.is_none());
}

#[test]
fn every_disallowed_transition_gives_a_reason() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    // Someone who holds every role and group, so only the state machine can say no.
    let everyone = person(
        "root",
        &[Role::Operator, Role::Approver, Role::Security, Role::Admin],
        &["cab", "security", "ecab", "cab-chairs"],
    );
    let actions = [
        Action::Submit,
        Action::SignOffPlan { comment: None },
        Action::StartReview,
        Action::Revise { reason: "r".into() },
        approve(),
        Action::Reject { reason: "r".into() },
        Action::Schedule {
            window: Schedule {
                start: hours_from(clock.now(), 1),
                end: hours_from(clock.now(), 3),
            },
            conflicts: Vec::new(),
        },
        Action::StartImplementation,
        Action::Complete,
        Action::Fail { reason: "r".into() },
        Action::RollBack { reason: "r".into() },
        Action::Review {
            outcome: ReviewOutcome::Successful,
            notes: "n".into(),
        },
        Action::Close,
        Action::Cancel { reason: "r".into() },
    ];
    let mut refusals = 0;
    for kind in ChangeType::ALL {
        let base = draft(
            kind,
            vec![openssl(true)],
            &[UpdateClass::Security],
            "tag=web",
            &clock,
        );
        for state in ChangeState::ALL {
            let allowed = next_actions(kind, state);
            for action in &actions {
                let mut change = base.clone();
                change.state = state;
                let result = transition(&change, action, &everyone, &policy, clock.now());
                if allowed.contains(&action.kind()) {
                    continue;
                }
                let refusal = result.expect_err("the table has no such transition");
                refusals += 1;
                assert_eq!(refusal.kind, RefusalKind::Conflict, "{}", refusal.reason);
                assert_eq!(refusal.http_status(), 409);
                assert!(
                    refusal.reason.contains(state.as_str())
                        && refusal.reason.contains(action.kind().as_str()),
                    "{kind} {state} {}: {}",
                    action.kind(),
                    refusal.reason
                );
            }
        }
    }
    assert!(refusals > 400, "{refusals}");

    let mut closed = draft(
        ChangeType::Normal,
        vec![openssl(false)],
        &[UpdateClass::Security],
        "tag=web",
        &clock,
    );
    closed.state = ChangeState::Closed;
    let refusal = transition(
        &closed,
        &Action::Cancel { reason: "x".into() },
        &everyone,
        &policy,
        clock.now(),
    )
    .unwrap_err();
    assert_eq!(
        refusal.reason,
        "cannot cancel change CHG-1: it is closed, a final state"
    );
    let mut approved = closed.clone();
    approved.state = ChangeState::Approved;
    let refusal = transition(
        &approved,
        &Action::StartImplementation,
        &everyone,
        &policy,
        clock.now(),
    )
    .unwrap_err();
    assert_eq!(
        refusal.reason,
        "cannot start-implementation change CHG-1: start-implementation does not apply to normal changes while approved"
    );
    let refusal = transition(&approved, &approve(), &everyone, &policy, clock.now()).unwrap_err();
    assert_eq!(
        refusal.reason,
        "cannot approve change CHG-1: it is approved; approve applies to normal changes that are in-review; from approved it can: schedule, cancel"
    );
}

#[test]
fn roles_are_checked_before_anything_else() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let change = draft(
        ChangeType::Normal,
        vec![openssl(false)],
        &[UpdateClass::Security],
        "tag=web",
        &clock,
    );
    let admin = person("ada", &[Role::Admin], &["cab"]);
    let refusal = transition(&change, &Action::Submit, &admin, &policy, clock.now()).unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::Forbidden);
    assert_eq!(refusal.http_status(), 403);
    assert_eq!(
        refusal.reason,
        "submit needs the role operator; ada has admin"
    );
    // Someone else's change: an operator may not cancel it, an approver may.
    let other = person("otto", &[Role::Operator], &[]);
    refused(
        transition(
            &change,
            &Action::Cancel {
                reason: "dup".into(),
            },
            &other,
            &policy,
            clock.now(),
        ),
        RefusalKind::Forbidden,
        "only the requester (alice) or an approver may cancel",
    );
    let approver = person("bob", &[Role::Approver], &[]);
    let cancelled = transition(
        &change,
        &Action::Cancel {
            reason: "dup".into(),
        },
        &approver,
        &policy,
        clock.now(),
    )
    .unwrap();
    assert_eq!(cancelled.to, ChangeState::Cancelled);
}

#[test]
fn submission_names_everything_missing() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let mut change = draft(
        ChangeType::Normal,
        vec![openssl(false)],
        &[],
        "tag=web",
        &clock,
    );
    change.plan.verification.clear();
    refused(
        act(&mut change, Action::Submit, &alice(), &policy, &clock),
        RefusalKind::Conflict,
        "cannot submit change CHG-1: no update type is named; the plan says nothing about verification; the risk has not been assessed",
    );
}

#[test]
fn update_type_rules_decide_which_changes_may_be_emergencies() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let submit = |kev: bool, classes: &[UpdateClass]| {
        let change = draft(
            ChangeType::Emergency,
            vec![openssl(kev)],
            classes,
            "tag=web",
            &clock,
        );
        let mut change = assessed(change, &policy, &clock);
        act(&mut change, Action::Submit, &alice(), &policy, &clock)
    };
    let refusal = refused(
        submit(true, &[UpdateClass::Enhancement]),
        RefusalKind::Conflict,
        "a emergency change is not allowed for these updates",
    );
    assert!(
        refusal
            .reason
            .contains("enhancement allows standard, normal (update_type_rule 4)"),
        "{}",
        refusal.reason
    );
    refused(
        submit(false, &[UpdateClass::Security]),
        RefusalKind::Conflict,
        "security allows standard, normal (update_type_rule 2)",
    );
    refused(
        submit(true, &[UpdateClass::Security, UpdateClass::Bugfix]),
        RefusalKind::Conflict,
        "bugfix allows standard, normal",
    );
    assert_eq!(
        submit(true, &[UpdateClass::Security]).unwrap().to,
        ChangeState::Submitted
    );
    assert_eq!(
        submit(true, &[UpdateClass::Security, UpdateClass::Kernel])
            .unwrap()
            .to,
        ChangeState::Submitted
    );
}

fn tzdata_change(policy: &CabPolicy, clock: &Clock, package: &str) -> ChangeRequest {
    let mut change = draft(
        ChangeType::Standard,
        vec![BundleItem::pinned(
            package,
            Some(debian()),
            "2026a-0+deb12u1",
        )],
        &[UpdateClass::Bugfix],
        "tag=tz",
        clock,
    );
    change.template = Some("tzdata".to_owned());
    assessed(change, policy, clock)
}

#[test]
fn standard_template_skips_the_cab_and_a_freeze_blocks_until_an_exception() {
    let policy = CabPolicy::default();
    let mut clock = Clock::start();
    let mut change = tzdata_change(&policy, &clock, "tzdata");
    assert_eq!(change.risk(), Some(RiskLevel::Low));
    let submitted = act(&mut change, Action::Submit, &alice(), &policy, &clock).unwrap();
    assert_eq!(
        submitted.to,
        ChangeState::Approved,
        "no CAB for a standard change"
    );
    assert!(submitted.effects.contains(&Effect::PreApproved {
        template: "tzdata".to_owned()
    }));
    assert_eq!(submitted.audit_action(), "change.submit");
    refused(
        act(&mut change, Action::StartReview, &ops(), &policy, &clock),
        RefusalKind::Conflict,
        "it is approved",
    );

    let window = Schedule {
        start: hours_from(clock.now(), 24),
        end: hours_from(clock.now(), 28),
    };
    let freeze = ScheduleConflict {
        description: "freeze \"month-end\" 2026-11-03T00:00Z..2026-11-05T00:00Z".to_owned(),
        exception: None,
    };
    let schedule = |conflicts: Vec<ScheduleConflict>| Action::Schedule { window, conflicts };
    refused(
        act(
            &mut change,
            schedule(vec![freeze.clone()]),
            &ops(),
            &policy,
            &clock,
        ),
        RefusalKind::Conflict,
        "freeze \"month-end\" 2026-11-03T00:00Z..2026-11-05T00:00Z; an approved freeze exception is needed",
    );
    assert_eq!(change.state, ChangeState::Approved);

    // The freeze exception is approved (in the calendar); the calendar now reports it covered.
    let excepted = ScheduleConflict {
        exception: Some("FX-7".to_owned()),
        ..freeze
    };
    let scheduled = act(
        &mut change,
        schedule(vec![excepted]),
        &ops(),
        &policy,
        &clock,
    )
    .unwrap();
    assert_eq!(
        scheduled.effects,
        [Effect::SetSchedule {
            window,
            exceptions: vec!["FX-7".to_owned()]
        }]
    );
    assert_eq!(change.schedule, Some(window));

    refused(
        act(
            &mut change,
            Action::StartImplementation,
            &ops(),
            &policy,
            &clock,
        ),
        RefusalKind::Conflict,
        "window opens at",
    );
    clock.advance(25);
    act(
        &mut change,
        Action::StartImplementation,
        &ops(),
        &policy,
        &clock,
    )
    .unwrap();
    assert_eq!(change.state, ChangeState::Implementing);
}

#[test]
fn standard_changes_must_fit_their_template() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let mut change = tzdata_change(&policy, &clock, "openssl");
    refused(
        act(&mut change, Action::Submit, &alice(), &policy, &clock),
        RefusalKind::Conflict,
        "package openssl is not covered by template tzdata (tzdata)",
    );
    let mut risky = tzdata_change(&policy, &clock, "tzdata");
    risky.state = ChangeState::Draft;
    let mut assessment = risky.assessment.clone().unwrap();
    assessment.risk.level = RiskLevel::High;
    risky.set_assessment(assessment).unwrap();
    refused(
        act(&mut risky, Action::Submit, &alice(), &policy, &clock),
        RefusalKind::Conflict,
        "risk high is above template tzdata's maximum medium",
    );
    let mut nameless = tzdata_change(&policy, &clock, "tzdata");
    nameless.template = Some("tz".to_owned());
    refused(
        act(&mut nameless, Action::Submit, &alice(), &policy, &clock),
        RefusalKind::Conflict,
        "no standard template \"tz\" in policy version 1",
    );
}

#[test]
fn schedules_are_checked() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let mut change = tzdata_change(&policy, &clock, "tzdata");
    act(&mut change, Action::Submit, &alice(), &policy, &clock).unwrap();
    let backwards = Action::Schedule {
        window: Schedule {
            start: hours_from(clock.now(), 5),
            end: hours_from(clock.now(), 4),
        },
        conflicts: Vec::new(),
    };
    refused(
        act(&mut change, backwards, &ops(), &policy, &clock),
        RefusalKind::Invalid,
        "before it starts",
    );
    let past = Action::Schedule {
        window: Schedule {
            start: hours_from(clock.now(), -5),
            end: hours_from(clock.now(), -4),
        },
        conflicts: Vec::new(),
    };
    refused(
        act(&mut change, past, &ops(), &policy, &clock),
        RefusalKind::Invalid,
        "before now",
    );
}

#[test]
fn risk_levels_come_with_their_reasons() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let level = |scope: &str, classes: &[UpdateClass], similar_changes: u32, failed: u32| {
        let change = draft(
            ChangeType::Normal,
            vec![openssl(false)],
            classes,
            scope,
            &clock,
        );
        let history = History {
            similar_changes,
            failed,
        };
        let change = assessed_with(change, history, &policy, &clock);
        change.assessment.unwrap().risk
    };
    let low = level("tag=tz", &[UpdateClass::Security], 20, 0);
    assert_eq!((low.level, low.score), (RiskLevel::Low, 0));
    assert_eq!(low.reasons, ["0 of 20 similar changes failed: -10"]);

    let web = level("tag=web", &[UpdateClass::Security], 20, 0);
    assert_eq!((web.level, web.score), (RiskLevel::Low, 15));
    assert_eq!(
        web.reasons,
        [
            "highest asset criticality 3: +10",
            "1 services: +5",
            "2 internet-facing host(s): +10",
            "0 of 20 similar changes failed: -10"
        ]
    );
    // The same scope with a poor track record.
    let shaky = level("tag=web", &[UpdateClass::Security], 20, 5);
    assert_eq!((shaky.level, shaky.score), (RiskLevel::Medium, 45));
    assert!(
        shaky
            .reasons
            .contains(&"5 of 20 similar changes failed: +20".to_owned())
    );

    let very_high = level(
        "env=prod",
        &[UpdateClass::Kernel, UpdateClass::Enhancement],
        20,
        0,
    );
    assert_eq!(
        very_high.level,
        RiskLevel::VeryHigh,
        "{:?}",
        very_high.reasons
    );
    assert!(
        very_high
            .reasons
            .contains(&"hosts must reboot: +10".to_owned())
    );
    assert!(
        very_high
            .reasons
            .contains(&"1 tier-1 service(s) touched: +10".to_owned())
    );
}

#[test]
fn deferral_expiry_makes_the_finding_due_again() {
    let policy = DeferralPolicy::default();
    let mut clock = Clock::start();
    let finding = FindingRef {
        id: "F-42".to_owned(),
        host: "pos1".to_owned(),
        package: "openssl".to_owned(),
    };
    let alice = person("alice", &[Role::Operator], &[]);
    let bob = person("bob", &[Role::Approver], &[]);
    let mut record = Deferral::request(
        "D-1",
        DeferralRequest {
            target: DeferralTarget::Finding {
                id: "F-42".to_owned(),
            },
            kind: DeferralKind::Deferral,
            justification: "the vendor's certified build ships next month".to_owned(),
            expires_at: hours_from(clock.now(), 24 * 30),
        },
        &alice,
        &policy,
        clock.now(),
    )
    .unwrap();
    assert_eq!(
        standing(&finding, std::slice::from_ref(&record), clock.now()),
        Standing::Pending {
            deferral: "D-1".to_owned()
        }
    );
    record.approve(&bob, &policy, clock.now()).unwrap();
    let deferred = standing(&finding, std::slice::from_ref(&record), clock.now());
    assert!(!deferred.due());
    assert_eq!(
        serde_json::to_value(&deferred).unwrap()["standing"],
        "deferred"
    );

    clock.advance(24 * 30);
    let again = standing(&finding, std::slice::from_ref(&record), clock.now());
    assert_eq!(
        again,
        Standing::DueAgain {
            deferral: "D-1".to_owned(),
            expired_at: clock.now()
        }
    );
    assert!(again.due());
    assert!(matches!(
        record.approve(&bob, &policy, clock.now()),
        Err(DeferralError::Expired { .. })
    ));

    // Renewals, by someone other than the requester, up to the policy's maximum.
    assert!(matches!(
        record.renew(
            &alice,
            hours_from(clock.now(), 24),
            None,
            &policy,
            clock.now()
        ),
        Err(DeferralError::SelfApproval { .. })
    ));
    for _ in 0..2 {
        record
            .renew(
                &bob,
                hours_from(clock.now(), 24 * 30),
                None,
                &policy,
                clock.now(),
            )
            .unwrap();
        assert!(!standing(&finding, std::slice::from_ref(&record), clock.now()).due());
    }
    assert_eq!(record.renewals, 2);
    let err = record
        .renew(
            &bob,
            hours_from(clock.now(), 24 * 30),
            None,
            &policy,
            clock.now(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "deferral D-1 has been renewed 2 times, the policy's maximum; fix the finding or request a new record"
    );
    record
        .revoke(&alice, "fixed upstream", clock.now())
        .unwrap();
    assert_eq!(
        standing(&finding, std::slice::from_ref(&record), clock.now()),
        Standing::Open
    );
}

#[test]
fn exports_use_the_itsm_tools_field_names() {
    let policy = CabPolicy::default();
    let mut clock = Clock::start();
    let mut change = tzdata_change(&policy, &clock, "tzdata");
    let record = itsm::to_servicenow(&change, &ServiceNowOptions::default());
    assert_eq!(record["state"], "-5");
    assert_eq!(record["type"], "standard");
    assert_eq!(record["approval"], "not requested");
    assert_eq!(record["risk"], "4");
    act(&mut change, Action::Submit, &alice(), &policy, &clock).unwrap();
    let window = Schedule {
        start: hours_from(clock.now(), 2),
        end: hours_from(clock.now(), 4),
    };
    act(
        &mut change,
        Action::Schedule {
            window,
            conflicts: Vec::new(),
        },
        &ops(),
        &policy,
        &clock,
    )
    .unwrap();
    clock.advance(3);
    act(
        &mut change,
        Action::StartImplementation,
        &ops(),
        &policy,
        &clock,
    )
    .unwrap();

    let options = ServiceNowOptions {
        assignment_group: Some("Linux Ops".to_owned()),
        cmdb_ci: Some("tz1".to_owned()),
        ..ServiceNowOptions::default()
    };
    let record = itsm::to_servicenow(&change, &options);
    assert_eq!(record["short_description"], "tzdata update on tag=tz");
    assert_eq!(record["state"], "-1");
    assert_eq!(record["approval"], "approved");
    assert_eq!(record["impact"], "3");
    assert_eq!(record["start_date"], "2026-11-02 11:00:00");
    assert_eq!(record["end_date"], "2026-11-02 13:00:00");
    assert_eq!(record["work_start"], "2026-11-02 12:00:00");
    assert_eq!(record["assignment_group"], "Linux Ops");
    assert_eq!(record["cmdb_ci"], "tz1");
    assert_eq!(record["correlation_id"], "CHG-1");
    assert_eq!(
        record["implementation_plan"],
        "1. drain the host from the load balancer\n2. upgrade the packages\n3. restart services using libssl"
    );
    let backout = record["backout_plan"].as_str().unwrap();
    assert!(
        backout.contains("- more than 10% of checks fail"),
        "{backout}"
    );
    assert!(backout.contains("- probe latency above 1.5x the pre-update baseline"));
    assert!(backout.contains("- judged during 15m after each host and each batch"));
    assert!(
        record["description"]
            .as_str()
            .unwrap()
            .contains("tzdata (Debian:12) -> 2026a-0+deb12u1")
    );

    let issue = itsm::to_jira(&change, &JiraOptions::new("OPS"));
    let fields = &issue["fields"];
    assert_eq!(fields["project"]["key"], "OPS");
    assert_eq!(fields["issuetype"]["name"], "Change");
    assert_eq!(fields["priority"]["name"], "Low");
    assert_eq!(fields["duedate"], "2026-11-02");
    assert_eq!(
        fields["labels"],
        serde_json::json!([
            "sluice",
            "change-standard",
            "state-implementing",
            "risk-low"
        ])
    );
    let doc = &fields["description"];
    assert_eq!(
        (doc["type"].as_str(), doc["version"].as_i64()),
        (Some("doc"), Some(1))
    );
    let kinds: Vec<&str> = doc["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"orderedList") && kinds.contains(&"heading"),
        "{kinds:?}"
    );
    // ADF forbids empty text nodes anywhere.
    fn no_empty_text(node: &serde_json::Value) {
        if node["type"] == "text" {
            assert!(!node["text"].as_str().unwrap().is_empty());
        }
        for child in node["content"].as_array().into_iter().flatten() {
            no_empty_text(child);
        }
    }
    no_empty_text(doc);

    let mut odd = change.clone();
    odd.plan.rollback_criteria.max_failed_check_share = 0.07;
    let backout = itsm::to_servicenow(&odd, &options)["backout_plan"].clone();
    assert!(
        backout.as_str().unwrap().contains("more than 7% of checks"),
        "{backout}"
    );

    let mut cancelled = change.clone();
    cancelled.state = ChangeState::Cancelled;
    assert_eq!(itsm::to_servicenow(&cancelled, &options)["state"], "4");
}

#[test]
fn stale_transitions_are_refused_on_apply() {
    let policy = CabPolicy::default();
    let clock = Clock::start();
    let change = tzdata_change(&policy, &clock, "tzdata");
    let mut copy = change.clone();
    let submit = transition(&change, &Action::Submit, &alice(), &policy, clock.now()).unwrap();
    copy.apply(&submit).unwrap();
    let err = copy.apply(&submit).unwrap_err();
    assert!(err.to_string().contains("decide again"), "{err}");
    // A submitted change's content is frozen.
    let mut frozen = copy.clone();
    let assessment = frozen.assessment.clone().unwrap();
    assert!(frozen.set_assessment(assessment).is_err());
}

#[test]
fn docs_show_the_table_the_code_uses() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/change.md"))
            .unwrap();
    let diagram = state::mermaid_diagram();
    let table = state::markdown_table();
    assert!(
        docs.contains(&diagram),
        "docs/change.md must contain the generated diagram:\n{diagram}"
    );
    assert!(
        docs.contains(&table),
        "docs/change.md must contain the generated table:\n{table}"
    );
    assert!(
        docs.contains(sluice_core::change::DEFAULT_CAB_POLICY_TOML),
        "docs/change.md must show the default CAB policy"
    );
    assert!(
        docs.contains(sluice_core::deferral::DEFAULT_DEFERRAL_POLICY_TOML),
        "docs/change.md must show the default deferral policy"
    );
    // The request example parses as the API will read it.
    let example = docs
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let input: NewChange = serde_json::from_str(example).unwrap();
    input.validate().unwrap();
    assert_eq!(
        input.plan.rollback_criteria.detection_window,
        SignedDuration::from_mins(15)
    );
    assert_eq!(input.scope.to_string(), "env=prod,tag=web");
}

#[test]
fn a_change_record_round_trips_through_json() {
    let policy = CabPolicy::default();
    let mut clock = Clock::start();
    let mut change = high_risk_in_review(&policy, &clock);
    clock.advance(1);
    act(
        &mut change,
        approve(),
        &person("bob", &[Role::Approver], &["cab"]),
        &policy,
        &clock,
    )
    .unwrap();
    let json = serde_json::to_value(&change).unwrap();
    assert_eq!(json["type"], "normal");
    assert_eq!(json["state"], "in-review");
    assert_eq!(json["scope"], "env=prod");
    assert_eq!(json["plan"]["rollback_criteria"]["detection_window"], "15m");
    assert_eq!(json["approval_rule"]["escalation"][0]["after"], "24h");
    let back: ChangeRequest = serde_json::from_value(json).unwrap();
    assert_eq!(back, change);
    let unknown = serde_json::json!({
        "title": "x", "type": "normal", "origin": {"from": "packages"}, "bundle": [],
        "scope": "", "update_types": [], "plan": {"rollback_criteria": {
            "max_failed_check_share": 0.1, "detection_window": "10m"}},
        "priority": "high"
    });
    let err = serde_json::from_value::<NewChange>(unknown).unwrap_err();
    assert!(err.to_string().contains("priority"), "{err}");
}
