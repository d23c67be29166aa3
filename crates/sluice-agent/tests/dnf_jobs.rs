//! Jobs end to end on real dnf and rpm (Debian's own packages), each test in its own private
//! install root fed from a local repository of `.rpm` files built at test time (see
//! `common/rpm.rs`). Every test ends by checking that the machine's own rpm database and dpkg
//! status did not change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/rpm.rs"]
mod rpm;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use rpm::{RpmFixture, rpm_job};
use sluice_agent::root::{PackageCommand, Program};
use sluice_agent::{Executor, PackageRoot};
use sluice_core::inventory::host::PackageManager;
use sluice_core::job::{Check, JobKind, JobOutcome, JobReport, StepName, StepResult, StepStatus};

fn step(report: &JobReport, name: StepName) -> &StepResult {
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

fn health_check(fx: &RpmFixture) -> Check {
    Check::Command {
        argv: vec![fx.health()],
        timeout_secs: 10,
    }
}

#[test]
fn an_exact_version_is_installed_verified_and_inventoried() {
    let started = Instant::now();
    let fx = RpmFixture::new();
    let mut job = rpm_job("upgrade", &[("sluice-demo", "1.1-1")]);
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    job.checks = vec![health_check(&fx)];
    let fixture_time = started.elapsed();
    let report = fx.executor().run(&job);
    let job_time = started.elapsed() - fixture_time;
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
    // Pre-flight ran dnf check and tested rpm's lock.
    let preflight = &step(&report, StepName::Preflight).detail;
    let checks: Vec<&str> = preflight
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"dnf check"), "{checks:?}");
    assert!(checks.contains(&"package manager locks"), "{checks:?}");
    // The dry run's plan, parsed from dnf's own table.
    let dry = step(&report, StepName::DryRun);
    assert_eq!(
        dry.detail["actions"],
        serde_json::json!([{
            "action": "upgrade", "package": "sluice-demo", "from": "0:1.0-1", "to": "1.1-1"
        }]),
        "{dry:#?}"
    );
    assert!(
        dry.message
            .contains("dnf would install: sluice-demo 0:1.0-1 -> 1.1-1"),
        "{}",
        dry.message
    );
    assert!(
        step(&report, StepName::Apply)
            .message
            .starts_with("dnf installed sluice-demo-1.1-1"),
        "{report:#?}"
    );
    let verify = step(&report, StepName::Verify);
    assert!(
        verify.message.contains("rpm -V: files intact"),
        "{}",
        verify.message
    );
    assert_eq!(
        version(&report.versions_before, "sluice-demo").as_deref(),
        Some("0:1.0-1")
    );
    assert_eq!(
        version(&report.versions_after, "sluice-demo").as_deref(),
        Some("0:1.1-1")
    );
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.1-1"));
    assert_eq!(fx.quiesce_calls(), ["stop", "start"]);
    // The inventory reads the root's own rpm database.
    let inventory = sluice_agent::inventory::collect(&fx.root, &[]).unwrap();
    assert_eq!(inventory.package_manager, PackageManager::Rpm);
    assert_eq!(inventory.os_release.id, "almalinux");
    let demo: Vec<_> = inventory
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_deref()))
        .collect();
    assert_eq!(demo, [("sluice-demo", "0:1.1-1", Some("noarch"))]);
    fx.host.assert_untouched();
    let steps: Vec<String> = report
        .steps
        .iter()
        .map(|s| {
            let took = s
                .finished_at
                .map(|end| end.duration_since(s.started_at).as_secs_f64())
                .unwrap_or_default();
            format!("{} {took:.2}s", s.step)
        })
        .collect();
    eprintln!(
        "timing: fixture (packages, repository, root, sluice-demo 1.0-1) {fixture_time:.2?}, job {job_time:.2?}: {}",
        steps.join(", ")
    );
}

#[test]
fn an_already_compliant_host_runs_no_dnf() {
    let fx = RpmFixture::new();
    let runs = fx.dnf_runs();
    assert!(runs > 0, "the fixture's own dnf run is not in the log");
    let cache = fx.root_dir.join("var/cache/dnf");
    let cache_entries = fs::read_dir(&cache).unwrap().count();
    for (id, version) in [("plain", "1.0-1"), ("epoch", "0:1.0-1")] {
        let mut job = rpm_job(id, &[("sluice-demo", version)]);
        job.preflight.quiesce = vec![fx.quiesce_hook()];
        let report = fx.executor().run(&job);
        assert_eq!(report.outcome, JobOutcome::AlreadyCompliant, "{report:#?}");
        assert_eq!(names(&report), ["inspect:ok"]);
    }
    assert_eq!(fx.dnf_runs(), runs, "dnf ran");
    assert_eq!(
        fs::read_dir(&cache).unwrap().count(),
        cache_entries,
        "dnf refreshed its metadata"
    );
    assert!(fx.quiesce_calls().is_empty(), "nothing to quiesce for");
    fx.host.assert_untouched();
}

#[test]
fn a_removal_in_the_dry_run_is_refused_before_anything_changes() {
    let fx = RpmFixture::new();
    fx.dnf(&["-y", "install", "sluice-legacy-1.0-1"]);
    let transactions = fx.rpm_transactions();
    assert_eq!(transactions, 2, "the fixture installed two packages");
    // sluice-next obsoletes sluice-legacy: dnf would remove it.
    let report = fx
        .executor()
        .run(&rpm_job("obsoletes", &[("sluice-next", "1.0-1")]));
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    let dry = step(&report, StepName::DryRun);
    assert_eq!(dry.status, StepStatus::Failed);
    assert!(
        dry.message
            .contains("dnf would remove sluice-legacy; the job does not ask for removals"),
        "{}",
        dry.message
    );
    assert_eq!(
        dry.detail["actions"],
        serde_json::json!([
            {"action": "install", "package": "sluice-next", "to": "1.0-1"},
            {"action": "remove", "package": "sluice-legacy", "from": "1.0-1"},
        ])
    );
    assert!(!report.steps.iter().any(|s| s.step == StepName::Apply));
    assert_eq!(fx.installed("sluice-legacy").as_deref(), Some("0:1.0-1"));
    assert_eq!(fx.installed("sluice-next"), None);
    assert_eq!(fx.rpm_transactions(), transactions);

    // A version the repository does not have fails the dry run with dnf's own words.
    let missing = fx
        .executor()
        .run(&rpm_job("missing", &[("sluice-demo", "9.9-1")]));
    assert_eq!(missing.outcome, JobOutcome::Failed);
    let dry = step(&missing, StepName::DryRun);
    assert!(
        dry.message.contains(
            "dnf --assumeno: exit status 1: Error: Unable to find a match: sluice-demo-9.9-1"
        ),
        "{}",
        dry.message
    );
    assert!(
        dry.message
            .contains("dnf said: No match for argument: sluice-demo-9.9-1"),
        "{}",
        dry.message
    );
    fx.host.assert_untouched();
}

#[test]
fn a_failing_check_rolls_back_to_the_recorded_version_and_configuration() {
    let fx = RpmFixture::new();
    // The operator's local edit, which must survive the failed update.
    let local = "# sluice-demo configuration\nversion=1.0\nlocal=edited by the operator\n";
    fs::write(fx.conffile(), local).unwrap();
    let mut job = rpm_job("bad-release", &[("sluice-demo", "1.2-1")]);
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    job.checks = vec![health_check(&fx)];
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::RolledBack, "{report:#?}");
    let checks = step(&report, StepName::Checks);
    assert_eq!(checks.status, StepStatus::Failed);
    assert!(
        checks.message.contains("health check failed"),
        "{}",
        checks.message
    );
    let rollback = step(&report, StepName::Rollback);
    assert_eq!(rollback.status, StepStatus::Ok, "{rollback:#?}");
    assert!(
        rollback
            .message
            .contains("dnf restored sluice-demo-0:1.0-1"),
        "{}",
        rollback.message
    );
    assert!(
        rollback.detail["request"]["install"] == serde_json::json!(["sluice-demo-0:1.0-1"]),
        "{rollback:#?}"
    );
    assert_eq!(
        step(&report, StepName::RollbackChecks).status,
        StepStatus::Ok
    );
    assert_eq!(
        version(&report.versions_after, "sluice-demo").as_deref(),
        Some("0:1.0-1")
    );
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.0-1"));
    // rpm kept the edit and wrote 1.2's file as .rpmnew; the rollback removed that and put
    // the saved copy back.
    assert!(
        step(&report, StepName::Apply).message.contains(".rpmnew"),
        "{report:#?}"
    );
    assert_eq!(fs::read_to_string(fx.conffile()).unwrap(), local);
    assert!(
        !fx.root_dir
            .join("etc/sluice-demo/demo.conf.rpmnew")
            .exists()
    );
    assert!(
        rollback
            .message
            .contains("removed 1 .rpmnew/.rpmsave files"),
        "{}",
        rollback.message
    );
    assert_eq!(fx.quiesce_calls(), ["stop", "start"]);
    fx.host.assert_untouched();
}

#[test]
fn a_locally_changed_noreplace_config_gets_an_rpmnew_and_is_reported() {
    let fx = RpmFixture::new();
    let local = "# sluice-demo configuration\nversion=1.0\nworkers=16\n";
    fs::write(fx.conffile(), local).unwrap();
    let report = fx
        .executor()
        .run(&rpm_job("rpmnew", &[("sluice-demo", "1.1-1")]));
    assert_eq!(report.outcome, JobOutcome::Succeeded, "{report:#?}");
    let apply = step(&report, StepName::Apply);
    assert!(
        apply.message.contains(
            "rpm kept the locally changed /etc/sluice-demo/demo.conf and wrote the package's version as /etc/sluice-demo/demo.conf.rpmnew"
        ),
        "{}",
        apply.message
    );
    assert_eq!(
        apply.detail["config_files"],
        serde_json::json!([{
            "path": "/etc/sluice-demo/demo.conf",
            "kind": "rpmnew",
            "saved_as": "/etc/sluice-demo/demo.conf.rpmnew",
            "created": true,
        }])
    );
    assert_eq!(fs::read_to_string(fx.conffile()).unwrap(), local);
    assert_eq!(
        fs::read_to_string(fx.root_dir.join("etc/sluice-demo/demo.conf.rpmnew")).unwrap(),
        "# sluice-demo configuration\nversion=1.1\n"
    );
    // rpm -V sees the edit; a configuration file's edit is not damage.
    let verify = step(&report, StepName::Verify);
    assert!(
        verify
            .message
            .contains("locally changed configuration: /etc/sluice-demo/demo.conf"),
        "{}",
        verify.message
    );

    // A rollback job of that job puts the saved file back and removes the .rpmnew.
    fs::write(fx.conffile(), "changed after the update\n").unwrap();
    let mut back = rpm_job("back", &[("sluice-demo", "1.0-1")]);
    back.kind = JobKind::Rollback {
        of_job: Some("rpmnew".into()),
    };
    let report = fx.executor().run(&back);
    assert_eq!(report.outcome, JobOutcome::Succeeded, "{report:#?}");
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.0-1"));
    assert_eq!(fs::read_to_string(fx.conffile()).unwrap(), local);
    assert!(
        !fx.root_dir
            .join("etc/sluice-demo/demo.conf.rpmnew")
            .exists()
    );
    let dry = step(&report, StepName::DryRun);
    assert_eq!(dry.detail["actions"][0]["action"], "downgrade", "{dry:#?}");
    fx.host.assert_untouched();
}

#[test]
fn a_job_for_the_other_family_is_refused() {
    let fx = RpmFixture::new();
    let runs = fx.dnf_runs();
    let mut job = rpm_job("for-debian", &[("sluice-demo", "1.1")]);
    job.package_manager = Some(PackageManager::Dpkg);
    let report = fx.executor().run(&job);
    assert_eq!(report.outcome, JobOutcome::Failed, "{report:#?}");
    assert_eq!(names(&report), ["inspect:failed"]);
    let message = &step(&report, StepName::Inspect).message;
    assert!(
        message.contains("is for dpkg (apt) hosts, but this host is rpm (dnf)"),
        "{message}"
    );
    assert_eq!(fx.dnf_runs(), runs, "dnf ran");
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.0-1"));

    // A Debian root refuses an rpm job before running anything.
    let debian = tempfile::tempdir().unwrap();
    fs::create_dir_all(debian.path().join("etc")).unwrap();
    fs::write(
        debian.path().join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    let root = PackageRoot::private(debian.path()).unwrap();
    let exec = Executor::new(root, debian.path().join("state"), Default::default()).unwrap();
    let report = exec.run(&rpm_job("for-alma", &[("sluice-demo", "1.1-1")]));
    assert_eq!(names(&report), ["inspect:failed"]);
    let message = &step(&report, StepName::Inspect).message;
    assert!(
        message.contains("is for rpm (dnf) hosts, but this host is dpkg (apt)"),
        "{message}"
    );
    // A distribution of neither family refuses every job.
    let arch = tempfile::tempdir().unwrap();
    fs::create_dir_all(arch.path().join("etc")).unwrap();
    fs::write(arch.path().join("etc/os-release"), "ID=arch\n").unwrap();
    let root = PackageRoot::private(arch.path()).unwrap();
    let exec = Executor::new(root, arch.path().join("state"), Default::default()).unwrap();
    let mut job = rpm_job("anything", &[("sluice-demo", "1.1-1")]);
    job.package_manager = None;
    let report = exec.run(&job);
    assert_eq!(report.outcome, JobOutcome::Failed);
    assert!(
        step(&report, StepName::Inspect)
            .message
            .contains("ID=arch ID_LIKE=(none) is neither"),
        "{report:#?}"
    );
    fx.host.assert_untouched();
}

#[test]
fn a_private_rpm_root_refuses_unconfined_commands() {
    let fx = RpmFixture::new();
    let dir = fx.root_dir.display().to_string();
    let cases: Vec<(PackageCommand, &str)> = vec![
        (
            PackageCommand::new(Program::Dnf).args(["-y", "install", "sluice-demo-1.1-1"]),
            "--installroot=",
        ),
        (
            fx.root
                .dnf()
                .args(["--setopt=reposdir=/etc/yum.repos.d", "-y", "install", "x"]),
            "points outside the root",
        ),
        (
            fx.root
                .dnf()
                .args(["--installroot=/", "-y", "install", "x"]),
            "would leave the root",
        ),
        (
            fx.root
                .dnf()
                .args(["-c", "/etc/dnf/dnf.conf", "install", "x"]),
            "would leave the root",
        ),
        (
            fx.root.dnf().env("HOME", "/root").args(["install", "x"]),
            "HOME=",
        ),
        (
            PackageCommand::new(Program::Rpm).args([format!("--root={dir}"), "-qa".into()]),
            "--dbpath=/var/lib/rpm",
        ),
        (
            fx.root.rpm().args(["--dbpath=/var/lib/rpm-host", "-qa"]),
            "could move rpm out of the root",
        ),
        (
            fx.root
                .rpm()
                .args(["--define", "_dbpath /var/lib/rpm", "-qa"]),
            "could move rpm out of the root",
        ),
    ];
    for (command, expected) in cases {
        let err = fx
            .root
            .run(&command, Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("refusing to run"), "{err}");
        assert!(err.contains(expected), "{err} should say {expected}");
    }
    // The host root refuses dnf and rpm pointed at another root.
    for command in [
        PackageRoot::Host.dnf().arg(format!("--installroot={dir}")),
        PackageRoot::Host.rpm().arg(format!("--root={dir}")),
    ] {
        let err = PackageRoot::Host
            .run(&command, Duration::from_secs(10))
            .unwrap_err();
        assert!(err.to_string().contains("another root"), "{err}");
    }
    // A tampered .rpmmacros is refused until prepare writes it back.
    let macros = fx.root_dir.join("rpm-home/.rpmmacros");
    fs::write(&macros, "%_dbpath /root/.rpmdb\n").unwrap();
    let err = fx
        .root
        .run(&fx.root.dnf().arg("check"), Duration::from_secs(10))
        .unwrap_err();
    assert!(err.to_string().contains("%_dbpath /var/lib/rpm"), "{err}");
    fx.root.prepare_rpm().unwrap();
    fx.dnf(&["check"]);
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.0-1"));
    fx.host.assert_untouched();
}

#[test]
fn a_damaged_file_of_a_target_fails_verify_and_the_change_is_rolled_back() {
    let fx = RpmFixture::new();
    fx.dnf(&["-y", "install", "sluice-legacy-1.0-1"]);
    // Someone changed a file the package installed (not a configuration file).
    fs::write(
        fx.root_dir.join("usr/share/sluice-legacy/version"),
        "tampered with\n",
    )
    .unwrap();
    let report = fx.executor().run(&rpm_job(
        "damaged",
        &[("sluice-demo", "1.1-1"), ("sluice-legacy", "1.0-1")],
    ));
    assert_eq!(report.outcome, JobOutcome::RolledBack, "{report:#?}");
    let verify = step(&report, StepName::Verify);
    assert_eq!(verify.status, StepStatus::Failed);
    assert!(
        verify.message.starts_with(
            "rpm -V: installed files differ from the packages: /usr/share/sluice-legacy/version (S.5"
        ),
        "{}",
        verify.message
    );
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.0-1"));
    assert_eq!(fx.installed("sluice-legacy").as_deref(), Some("0:1.0-1"));
    fx.host.assert_untouched();
}

#[test]
fn two_versions_in_rpm_block_the_job_at_inspect_and_preflight() {
    let fx = RpmFixture::new();
    // What a transaction cut short leaves: both versions in the database.
    let rpm_file = fx.repo.join("sluice-demo-1.1-1.noarch.rpm");
    let command = fx.root.rpm().args([
        "-i".to_owned(),
        "--replacefiles".to_owned(),
        "--nodeps".to_owned(),
        rpm_file.display().to_string(),
    ]);
    let done = fx.root.run(&command, Duration::from_secs(60)).unwrap();
    assert!(done.success(), "{}", done.describe());
    let transactions = fx.rpm_transactions();

    let report = fx
        .executor()
        .run(&rpm_job("on-duplicate", &[("sluice-demo", "1.1-1")]));
    assert_eq!(names(&report), ["inspect:failed"]);
    let message = &step(&report, StepName::Inspect).message;
    assert!(
        message.contains(
            "rpm left sluice-demo (duplicated 0:1.0-1 and 0:1.1-1) unfinished; repair it (dnf remove --duplicates)"
        ),
        "{message}"
    );
    assert_eq!(
        report.unsettled.get("sluice-demo").map(String::as_str),
        Some("duplicated 0:1.0-1 and 0:1.1-1")
    );
    assert_eq!(version(&report.versions_after, "sluice-demo"), None);

    // Another package: dnf check still finds the duplicate, and pre-flight stops the job.
    let report = fx
        .executor()
        .run(&rpm_job("elsewhere", &[("sluice-legacy", "1.0-1")]));
    assert_eq!(
        names(&report),
        ["inspect:ok", "preflight:failed"],
        "{report:#?}"
    );
    let message = &step(&report, StepName::Preflight).message;
    assert!(
        message.contains("dnf check: exit status 1")
            && message
                .contains("sluice-demo-1.0-1.noarch is a duplicate with sluice-demo-1.1-1.noarch"),
        "{message}"
    );
    assert_eq!(fx.rpm_transactions(), transactions);
    fx.host.assert_untouched();
}

/// The environment variables that make this test's own binary the agent to kill.
const CHILD_ROOT: &str = "SLUICE_TEST_DNF_CRASH_ROOT";
const CHILD_STATE: &str = "SLUICE_TEST_DNF_CRASH_STATE";
const CHILD_JOB: &str = "SLUICE_TEST_DNF_CRASH_JOB";

/// In the child (this test re-run by itself with a failpoint): run the job, which the
/// failpoint kills. In the parent: the crash and its recovery.
#[test]
fn a_crash_mid_job_is_recovered_with_the_versions_rpm_has() {
    if let (Ok(root), Ok(state), Ok(job)) = (
        std::env::var(CHILD_ROOT),
        std::env::var(CHILD_STATE),
        std::env::var(CHILD_JOB),
    ) {
        let root = PackageRoot::private(root).unwrap();
        let job = serde_json::from_str(&fs::read_to_string(job).unwrap()).unwrap();
        let report = Executor::new(root, state, Default::default())
            .unwrap()
            .run(&job);
        panic!("the failpoint did not stop the job: {report:#?}");
    }
    let fx = RpmFixture::new();
    let crash = |id: &str, point: &str| {
        let mut job = rpm_job(id, &[("sluice-demo", "1.1-1")]);
        job.preflight.quiesce = vec![fx.quiesce_hook()];
        let job_file = fx.tmp.path().join(format!("{id}.json"));
        fs::write(&job_file, serde_json::to_string(&job).unwrap()).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_crash_mid_job_is_recovered_with_the_versions_rpm_has",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROOT, &fx.root_dir)
            .env(CHILD_STATE, &fx.state)
            .env(CHILD_JOB, &job_file)
            .env("SLUICE_AGENT_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            child.status.signal(),
            Some(9),
            "{point}: the agent was not killed: {}\n{}",
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
        let reports = fx.executor().recover_all().unwrap();
        assert_eq!(reports.len(), 1, "{point}: {reports:#?}");
        reports.into_iter().next().unwrap()
    };

    // Killed as apply starts: nothing installed yet, and the report says so.
    let report = crash("before-apply", "apply:before");
    assert_eq!(report.outcome, JobOutcome::Interrupted, "{report:#?}");
    assert_eq!(report.interrupted_at, Some(StepName::Apply));
    let interrupted = step(&report, StepName::Apply);
    assert_eq!(interrupted.status, StepStatus::Interrupted);
    assert!(
        interrupted.message.contains("read from rpm now"),
        "{}",
        interrupted.message
    );
    assert_eq!(
        version(&report.versions_after, "sluice-demo").as_deref(),
        Some("0:1.0-1")
    );
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.0-1"));
    // What quiesce stopped, the recovery started again.
    assert_eq!(fx.quiesce_calls(), ["stop", "start"]);

    // Killed as verify starts: dnf had installed 1.1-1, and the report says that.
    let report = crash("before-verify", "verify:before");
    assert_eq!(report.outcome, JobOutcome::Interrupted, "{report:#?}");
    assert_eq!(report.interrupted_at, Some(StepName::Verify));
    assert_eq!(step(&report, StepName::Apply).status, StepStatus::Ok);
    assert_eq!(
        version(&report.versions_before, "sluice-demo").as_deref(),
        Some("0:1.0-1")
    );
    assert_eq!(
        version(&report.versions_after, "sluice-demo").as_deref(),
        Some("0:1.1-1")
    );
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.1-1"));
    assert!(report.unsettled.is_empty(), "{:?}", report.unsettled);
    assert_eq!(fx.quiesce_calls(), ["stop", "start", "stop", "start"]);
    fx.host.assert_untouched();
}
