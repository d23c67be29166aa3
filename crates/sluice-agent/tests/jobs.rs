//! Jobs end to end on real apt and dpkg, each test in its own private root fed from a local
//! repository of packages built at test time (see `common`). Every test ends by checking that
//! the machine's own dpkg database did not change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Fixture, http_server, job};
use sluice_agent::root::{PackageCommand, Program};
use sluice_core::job::{
    BackupCheck, Check, FileBaseline, FreeSpace, JobKind, JobOutcome, JobReport, OnFailure,
    StepName, StepStatus,
};

fn step(report: &JobReport, name: StepName) -> &sluice_core::job::StepResult {
    report
        .steps
        .iter()
        .rev()
        .find(|s| s.step == name)
        .unwrap_or_else(|| panic!("no {name} step in {:#?}", report.steps))
}

fn names(report: &JobReport) -> Vec<String> {
    report
        .steps
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s.step,
                serde_json::to_string(&s.status).unwrap().trim_matches('"')
            )
        })
        .collect()
}

fn version(versions: &sluice_core::job::Versions, package: &str) -> Option<String> {
    versions.get(package).cloned().flatten()
}

#[test]
fn upgrade_to_the_fix_succeeds_with_every_kind_of_check() {
    let fx = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = listener.local_addr().unwrap().to_string();
    let url = http_server(200, "healthy and well");
    let backup = fx.tmp.path().join("backup.tar");
    fs::write(&backup, b"snapshot").unwrap();
    let mut job = job("upgrade", &[("sluice-demo", "1.1")]);
    job.preflight.free_space = vec![FreeSpace {
        path: "/var".into(),
        min_bytes: 1024,
    }];
    job.preflight.backup_check = Some(BackupCheck {
        command: vec!["/bin/echo".into(), backup.display().to_string()],
        path: None,
        max_age_hours: 24,
        timeout_secs: 10,
    });
    job.preflight.watched_files = vec![FileBaseline {
        path: "/etc/sluice-demo/demo.conf".into(),
        sha256: sluice_agent::inventory::baseline(&fx.root, "/etc/sluice-demo/demo.conf".as_ref())
            .unwrap(),
    }];
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    job.checks = vec![
        Check::Command {
            argv: vec![fx.health()],
            timeout_secs: 10,
        },
        Check::Tcp {
            addr: tcp,
            timeout_secs: 5,
        },
        Check::Http {
            url,
            expect_status: 200,
            body_contains: Some("healthy".into()),
            timeout_secs: 5,
        },
    ];
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::Succeeded, "{report:#?}");
    assert_eq!(
        names(&report),
        [
            "inspect:ok",
            "preflight:ok",
            "measure-before:ok",
            "quiesce:ok",
            "dry-run:ok",
            "save-config:ok",
            "apply:ok",
            "verify:ok",
            "unquiesce:ok",
            "checks:ok",
            "measure-after:ok",
        ]
    );
    assert_eq!(
        version(&report.versions_before, "sluice-demo").as_deref(),
        Some("1.0")
    );
    assert_eq!(
        version(&report.versions_after, "sluice-demo").as_deref(),
        Some("1.1")
    );
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.1"));
    assert_eq!(fx.quiesce_calls(), ["stop", "start"]);
    let before = report.measurements_before.as_ref().unwrap();
    let after = report.measurements_after.as_ref().unwrap();
    assert_eq!(before.probes.len(), 2, "TCP and HTTP probes are timed");
    assert!(after.probes.iter().all(|p| p.millis.is_some()), "{after:?}");
    assert!(
        step(&report, StepName::DryRun)
            .message
            .contains("sluice-demo 1.0 -> 1.1")
    );
    drop(listener);
    fx.host.assert_untouched();
}

#[test]
fn an_already_compliant_host_runs_no_apt() {
    let fx = Fixture::new();
    let dpkg_lines = fx.dpkg_log_lines();
    let history = fx.apt_history_lines();
    let lists = fs::metadata(fx.root_dir.join("var/lib/apt/lists"))
        .unwrap()
        .modified()
        .unwrap();
    let mut job = job("compliant", &[("sluice-demo", "0:1.0")]);
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::AlreadyCompliant, "{report:#?}");
    assert_eq!(names(&report), ["inspect:ok"]);
    assert_eq!(fx.dpkg_log_lines(), dpkg_lines, "dpkg ran");
    assert_eq!(fx.apt_history_lines(), history, "apt changed something");
    assert_eq!(
        fs::metadata(fx.root_dir.join("var/lib/apt/lists"))
            .unwrap()
            .modified()
            .unwrap(),
        lists,
        "apt-get update ran"
    );
    assert!(fx.quiesce_calls().is_empty(), "nothing to quiesce for");
    fx.host.assert_untouched();
}

#[test]
fn a_failing_health_check_rolls_back_versions_and_configuration() {
    let fx = Fixture::new();
    // The operator's local edit, which must survive the failed update.
    let local = "# sluice-demo configuration\nversion=1.0\nlocal=edited by the operator\n";
    fs::write(fx.conffile(), local).unwrap();
    let marker = fx.tmp.path().join("snapshot-reverted");
    let mut job = job("bad-release", &[("sluice-demo", "1.2")]);
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    job.checks = vec![Check::Command {
        argv: vec![fx.health()],
        timeout_secs: 10,
    }];
    job.rollback.snapshot_revert = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("touch {}", marker.display()),
    ]);
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::RolledBack, "{report:#?}");
    let checks = step(&report, StepName::Checks);
    assert_eq!(checks.status, StepStatus::Failed);
    assert!(
        checks.message.contains("health check failed"),
        "{}",
        checks.message
    );
    assert_eq!(step(&report, StepName::Rollback).status, StepStatus::Ok);
    assert_eq!(
        step(&report, StepName::RollbackChecks).status,
        StepStatus::Ok
    );
    assert_eq!(
        version(&report.versions_after, "sluice-demo").as_deref(),
        Some("1.0")
    );
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    // 1.2's postinst appended to the conffile; the rollback put the saved copy back.
    assert_eq!(fs::read_to_string(fx.conffile()).unwrap(), local);
    assert!(marker.exists(), "the snapshot-revert command ran");
    assert_eq!(fx.quiesce_calls(), ["stop", "start"]);
    fx.host.assert_untouched();
}

#[test]
fn a_failing_postinst_is_rolled_back_from_a_half_configured_state() {
    let fx = Fixture::new();
    let report = fx
        .executor()
        .run(&job("postinst", &[("sluice-demo", "1.3")]));
    assert_eq!(report.outcome, JobOutcome::RolledBack, "{report:#?}");
    let apply = step(&report, StepName::Apply);
    assert_eq!(apply.status, StepStatus::Failed);
    assert!(
        apply
            .message
            .contains("post-installation script subprocess returned error exit status 1"),
        "{}",
        apply.message
    );
    let tail = apply.detail["stdout_tail"].as_str().unwrap();
    assert!(tail.contains("postinst failed on purpose"), "{tail}");
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    assert!(report.unsettled.is_empty(), "{:?}", report.unsettled);
    fx.host.assert_untouched();
}

#[test]
fn with_policy_leave_a_failure_is_reported_not_rolled_back() {
    let fx = Fixture::new();
    let mut job = job("leave", &[("sluice-demo", "1.3")]);
    job.rollback.on_failure = OnFailure::Leave;
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    // Nothing half-done goes unreported: dpkg left 1.3 half-configured, and the report says so.
    assert_eq!(version(&report.versions_after, "sluice-demo"), None);
    assert_eq!(
        report.unsettled.get("sluice-demo").map(String::as_str),
        Some("half-configured 1.3"),
        "{report:#?}"
    );
    fx.host.assert_untouched();
}

#[test]
fn a_version_that_does_not_exist_fails_with_apts_message() {
    let fx = Fixture::new();
    let mut job = job("missing", &[("sluice-demo", "9.9")]);
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    let dry = step(&report, StepName::DryRun);
    assert_eq!(dry.status, StepStatus::Failed);
    assert!(
        dry.message
            .contains("E: Version '9.9' for 'sluice-demo' was not found"),
        "{}",
        dry.message
    );
    assert!(!report.steps.iter().any(|s| s.step == StepName::Apply));
    assert_eq!(step(&report, StepName::Unquiesce).status, StepStatus::Ok);
    assert_eq!(fx.quiesce_calls(), ["stop", "start"]);
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    fx.host.assert_untouched();
}

#[test]
fn a_broken_repository_fails_with_apts_message() {
    let fx = Fixture::new();
    fx.corrupt_repository();
    let report = fx
        .executor()
        .run(&job("broken-repo", &[("sluice-demo", "1.1")]));
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    let dry = step(&report, StepName::DryRun);
    assert!(
        dry.message.starts_with("apt-get update: exit status 100"),
        "{}",
        dry.message
    );
    assert!(dry.message.contains("E: "), "{}", dry.message);
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    fx.host.assert_untouched();
}

#[test]
fn a_held_package_fails_instead_of_being_skipped() {
    let fx = Fixture::new();
    fx.dpkg_stdin(&["--set-selections"], "sluice-demo hold\n");
    let report = fx.executor().run(&job("held", &[("sluice-demo", "1.1")]));
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    let dry = step(&report, StepName::DryRun);
    assert!(dry.message.contains("held"), "{}", dry.message);
    assert!(dry.message.contains("sluice-demo"), "{}", dry.message);
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    fx.host.assert_untouched();
}

#[test]
fn a_full_disk_fails_preflight_before_anything_runs() {
    let fx = Fixture::new();
    let mut job = job("full", &[("sluice-demo", "1.1")]);
    job.preflight.free_space = vec![FreeSpace {
        path: "/".into(),
        min_bytes: u64::MAX / 2,
    }];
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::Failed);
    assert_eq!(names(&report), ["inspect:ok", "preflight:failed"]);
    assert!(
        step(&report, StepName::Preflight)
            .message
            .contains("bytes free"),
        "{report:#?}"
    );
    assert!(fx.quiesce_calls().is_empty());
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    fx.host.assert_untouched();
}

#[test]
fn a_hanging_check_times_out_and_unquiesce_still_runs() {
    let fx = Fixture::new();
    let mut job = job("hang", &[("sluice-demo", "1.1")]);
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    job.checks = vec![Check::Command {
        argv: vec!["/bin/sh".into(), "-c".into(), "sleep 60; sleep 60".into()],
        timeout_secs: 1,
    }];
    job.rollback.on_failure = OnFailure::Leave;
    let started = Instant::now();
    let report = fx.executor().run(&job);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    let checks = step(&report, StepName::Checks);
    assert!(
        checks.message.contains("timed out after"),
        "{}",
        checks.message
    );
    assert_eq!(step(&report, StepName::Unquiesce).status, StepStatus::Ok);
    assert_eq!(fx.quiesce_calls(), ["stop", "start"]);
    fx.host.assert_untouched();
}

#[test]
fn a_dependency_and_a_rollback_job() {
    let fx = Fixture::new();
    let exec = fx.executor();
    let first = job("with-dep", &[("sluice-dep", "1.0"), ("sluice-demo", "1.1")]);
    let report = exec.run(&first);
    assert_eq!(report.outcome, JobOutcome::Succeeded, "{report:#?}");
    assert_eq!(fx.installed("sluice-dep").as_deref(), Some("1.0"));
    assert_eq!(version(&report.versions_before, "sluice-dep"), None);

    // An update job may not go down…
    let down = job("down", &[("sluice-demo", "1.0")]);
    let refused = exec.run(&down);
    assert_eq!(refused.outcome, JobOutcome::Failed);
    assert!(
        step(&refused, StepName::Inspect)
            .message
            .contains("only a rollback job")
    );

    // …a rollback job may. sluice-dep needs demo >= 1.1, so it goes too.
    let mut back = job("back", &[("sluice-demo", "1.0")]);
    back.kind = JobKind::Rollback {
        of_job: Some("with-dep".into()),
    };
    let report = exec.run(&back);
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    assert!(
        step(&report, StepName::DryRun)
            .message
            .contains("apt would remove sluice-dep"),
        "{report:#?}"
    );
    let mut back = job("back-all", &[("sluice-demo", "1.0"), ("sluice-dep", "1.0")]);
    back.kind = JobKind::Rollback { of_job: None };
    let report = exec.run(&back);
    // sluice-dep 1.0 cannot live with demo 1.0: apt would remove it, and the dry run refuses.
    assert!(
        step(&report, StepName::DryRun)
            .message
            .contains("apt would remove sluice-dep"),
        "{report:#?}"
    );
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.1"));
    fx.host.assert_untouched();
}

#[test]
fn a_rollback_job_downgrades_and_restores_the_saved_configuration() {
    let fx = Fixture::new();
    let exec = fx.executor();
    let local = "# sluice-demo configuration\nversion=1.0\nlocal=tuned\n";
    fs::write(fx.conffile(), local).unwrap();
    let report = exec.run(&job("up", &[("sluice-demo", "1.1")]));
    assert_eq!(report.outcome, JobOutcome::Succeeded, "{report:#?}");
    fs::write(fx.conffile(), "changed after the update\n").unwrap();
    let mut back = job("back", &[("sluice-demo", "1.0")]);
    back.kind = JobKind::Rollback {
        of_job: Some("up".into()),
    };
    let report = exec.run(&back);
    assert_eq!(report.outcome, JobOutcome::Succeeded, "{report:#?}");
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    assert_eq!(fs::read_to_string(fx.conffile()).unwrap(), local);
    let apply = step(&report, StepName::Apply);
    assert!(
        apply
            .message
            .contains("restored 1 configuration files saved before job up"),
        "{}",
        apply.message
    );
    fx.host.assert_untouched();
}

#[test]
fn the_same_idempotency_key_runs_once() {
    let fx = Fixture::new();
    let exec = fx.executor();
    let job = job("once", &[("sluice-demo", "1.1")]);
    let first = exec.run(&job);
    assert_eq!(first.outcome, JobOutcome::Succeeded);
    let lines = fx.dpkg_log_lines();
    let again = exec.run(&job);
    assert_eq!(again, first);
    assert_eq!(fx.dpkg_log_lines(), lines);
    fx.host.assert_untouched();
}

#[test]
fn private_root_refuses_unconfined_package_commands() {
    let fx = Fixture::new();
    let deb = fx
        .repo
        .join("sluice-demo_1.1_all.deb")
        .display()
        .to_string();
    for command in [
        PackageCommand::new(Program::Dpkg).args(["-i", deb.as_str()]),
        PackageCommand::new(Program::AptGet).args(["install", "-y", "sluice-demo=1.1"]),
        fx.root
            .apt_get()
            .args(["-o", "Dir=/", "install", "-y", "sluice-demo=1.1"]),
    ] {
        let err = fx.root.run(&command, Duration::from_secs(10)).unwrap_err();
        assert!(err.to_string().starts_with("refusing to run"), "{err}");
    }
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    fx.host.assert_untouched();
}

#[test]
fn inventory_of_the_private_root() {
    let fx = Fixture::new();
    fs::write(fx.root_dir.join("var/run/reboot-required"), "").unwrap();
    fs::write(
        fx.root_dir.join("var/run/reboot-required.pkgs"),
        "sluice-demo\n",
    )
    .unwrap();
    let inventory = sluice_agent::inventory::collect(
        &fx.root,
        &["/etc/sluice-demo/demo.conf".into(), "/etc/missing".into()],
    )
    .unwrap();
    assert_eq!(inventory.os_release.id, "debian");
    assert_eq!(inventory.packages.len(), 1);
    assert_eq!(inventory.packages[0].name, "sluice-demo");
    assert_eq!(inventory.packages[0].version, "1.0");
    assert_eq!(inventory.packages[0].source_name, "sluice-demo");
    assert!(inventory.reboot_required);
    assert_eq!(inventory.reboot_required_packages, ["sluice-demo"]);
    assert!(!inventory.kernel.is_empty());
    assert!(!inventory.arch.is_empty());
    assert!(inventory.watched_files[0].sha256.is_some());
    assert!(inventory.watched_files[1].error.is_some());
    fx.host.assert_untouched();
}

#[test]
fn a_rollback_removes_what_the_job_installed() {
    let fx = Fixture::new();
    let mut job = job(
        "new-package",
        &[("sluice-dep", "1.0"), ("sluice-demo", "1.1")],
    );
    job.checks = vec![Check::Command {
        argv: vec!["/bin/false".into()],
        timeout_secs: 5,
    }];
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::RollbackFailed, "{report:#?}");
    // The rollback itself worked; the check still fails afterwards, so the host is not
    // verified working: rollback-failed, not rolled-back.
    assert_eq!(step(&report, StepName::Rollback).status, StepStatus::Ok);
    assert_eq!(
        step(&report, StepName::RollbackChecks).status,
        StepStatus::Failed
    );
    assert!(
        step(&report, StepName::Rollback)
            .message
            .contains("sluice-dep (removed)"),
        "{report:#?}"
    );
    assert_eq!(fx.installed("sluice-dep"), None);
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.0"));
    assert_eq!(version(&report.versions_after, "sluice-dep"), None);
    fx.host.assert_untouched();
}

#[test]
fn inventory_of_an_rpm_root() {
    // A root without a dpkg database is an rpm host: `rpm --root DIR -qa` (empty here).
    let host = common::HostDpkg::snapshot();
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(
        dir.path().join("etc/os-release"),
        "ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
    )
    .unwrap();
    let root = sluice_agent::PackageRoot::private(dir.path()).unwrap();
    let inventory = sluice_agent::inventory::collect(&root, &[]).unwrap();
    assert_eq!(
        inventory.package_manager,
        sluice_core::inventory::host::PackageManager::Rpm
    );
    assert!(inventory.packages.is_empty());
    assert_eq!(inventory.os_release.id, "almalinux");
    host.assert_untouched();
}

#[test]
fn the_job_in_docs_agent_md_parses() {
    let doc = include_str!("../../../docs/agent.md");
    let start = doc.find("```json\n").unwrap() + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let job: sluice_core::job::Job = serde_json::from_str(&doc[start..end]).unwrap();
    assert_eq!(job.targets.len(), 2);
    assert_eq!(job.checks.len(), 4);
    assert_eq!(job.preflight.quiesce.len(), 2);
}
