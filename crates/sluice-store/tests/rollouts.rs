//! Rollout storage on both backends: creation numbers rollouts and refuses a second open one
//! for a change; an advance is written whole or not at all, against the version it read; jobs
//! are queued once per idempotency key however often an advance is retried; observed jobs,
//! cancelled jobs, events and remembered rollbacks are kept; every write is audited.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::json;
use sluice_core::job::{Job, JobKind, Target};
use sluice_core::rollout::{OutcomeKind, RolloutPhase};
use sluice_store::{Actor, NewRollout, NewRolloutEvent, RolloutWrite, StoreError};

use common::TestDb;

fn job(id: &str, key: &str) -> Job {
    Job {
        id: id.into(),
        idempotency_key: key.into(),
        kind: JobKind::Update,
        targets: vec![Target {
            package: "openssl".into(),
            version: "3.0.2-1".into(),
        }],
        preflight: Default::default(),
        checks: Vec::new(),
        rollback: Default::default(),
        package_manager: None,
    }
}

fn new_rollout(change: &str) -> NewRollout {
    NewRollout {
        change_id: change.into(),
        spec: json!({"change": change}),
        plan: json!({"rings": []}),
        state: json!({"ring": 0}),
        runtime: json!({}),
        phase: RolloutPhase::Planned,
    }
}

fn event(kind: &str) -> NewRolloutEvent {
    NewRolloutEvent {
        kind: kind.into(),
        detail: json!({"kind": kind}),
        audit: true,
    }
}

async fn rollouts_are_advanced_whole_once_per_version(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::named("olga", Some("req-1"));
    store
        .create_enrollment_token("hash-1", "2999-01-01T00:00:00.000000Z", &actor)
        .await
        .unwrap();
    store
        .enroll_agent(
            "hash-1",
            "web1",
            &"ab".repeat(32),
            &Default::default(),
            "2026-11-26T00:00:00.000000Z",
            None,
        )
        .await
        .unwrap()
        .unwrap();

    let created = store
        .create_rollout(&new_rollout("CHG-1"), &[event("start")], &actor)
        .await
        .unwrap();
    assert_eq!(created.id, "RO-1");
    assert_eq!(created.version, 1);
    // One open rollout per change.
    let twice = store
        .create_rollout(&new_rollout("CHG-1"), &[], &actor)
        .await
        .unwrap_err();
    assert!(
        matches!(twice, StoreError::Conflict(ref m) if m.contains("RO-1")),
        "{twice}"
    );

    // An advance queues a job and logs; a retry of the same decision (a crash between the
    // write and its effects, then the same decision again) queues nothing twice.
    let write = RolloutWrite {
        state: json!({"ring": 0, "started": ["web1"]}),
        runtime: json!({"attempts": {"web1": 1}}),
        phase: RolloutPhase::Running,
        outcome: None,
        jobs: vec![(
            "web1".into(),
            "update".into(),
            job("RO-1-web1-u1", "rollout:RO-1:web1:update:1"),
        )],
        observed: Vec::new(),
        events: vec![event("hosts-started")],
        rolled_back: Vec::new(),
    };
    let system = Actor::system();
    let advanced = store
        .advance_rollout("RO-1", 1, &write, &system)
        .await
        .unwrap();
    assert_eq!(advanced.version, 2);
    assert_eq!(advanced.phase, RolloutPhase::Running);
    // The same write against the old version is refused, and nothing of it is written.
    let stale = store
        .advance_rollout("RO-1", 1, &write, &system)
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale}");
    assert_eq!(store.rollout_events("RO-1", 0).await.unwrap().len(), 2);
    // Against the current version, the job is not queued again.
    store
        .advance_rollout("RO-1", 2, &write, &system)
        .await
        .unwrap();
    let jobs = store.rollout_jobs("RO-1", false).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job.state, "queued");
    assert_eq!(store.jobs(None, 100).await.unwrap().len(), 1);

    // A job for a host without an agent refuses the whole advance.
    let mut orphan = write.clone();
    orphan.jobs = vec![(
        "db9".into(),
        "update".into(),
        job("RO-1-db9-u1", "rollout:RO-1:db9:update:1"),
    )];
    let refused = store
        .advance_rollout("RO-1", 3, &orphan, &system)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Invalid(ref m) if m.contains("db9")),
        "{refused}"
    );
    assert_eq!(store.rollout("RO-1").await.unwrap().unwrap().version, 3);

    // Cancelled before any agent took it; folded in; finished with a remembered rollback.
    assert!(store.cancel_job("RO-1-web1-u1", &system).await.unwrap());
    assert!(
        !store.cancel_job("RO-1-web1-u1", &system).await.unwrap(),
        "once"
    );
    let finish = RolloutWrite {
        state: json!({"ring": 0}),
        runtime: json!({}),
        phase: RolloutPhase::Halted,
        outcome: Some(OutcomeKind::RolledBack),
        jobs: Vec::new(),
        observed: vec!["RO-1-web1-u1".into()],
        events: vec![event("finish")],
        rolled_back: vec![("prod".into(), "openssl".into(), "3.0.2-1".into())],
    };
    let finished = store
        .advance_rollout("RO-1", 3, &finish, &system)
        .await
        .unwrap();
    assert_eq!(finished.outcome, Some(OutcomeKind::RolledBack));
    assert!(finished.finished_at.is_some());
    assert!(store.rollout_jobs("RO-1", true).await.unwrap().is_empty());
    assert_eq!(
        store.rolled_back_versions().await.unwrap(),
        vec![(
            "prod".to_owned(),
            "openssl".to_owned(),
            "3.0.2-1".to_owned()
        )]
    );
    assert!(store.rollouts(None, true).await.unwrap().is_empty());
    assert_eq!(store.rollouts(Some("CHG-1"), false).await.unwrap().len(), 1);
    // A finished rollout frees the change for another.
    let next = store
        .create_rollout(&new_rollout("CHG-1"), &[], &actor)
        .await
        .unwrap();
    assert_eq!(next.id, "RO-2");

    let events: Vec<String> = store
        .rollout_events("RO-1", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        events,
        ["start", "hosts-started", "hosts-started", "finish"]
    );
    let after: Vec<i64> = store
        .rollout_events("RO-1", 2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(after, [3, 4]);
    assert!(store.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn rollouts_on_both_backends() {
    on_both!(rollouts_are_advanced_whole_once_per_version);
}
