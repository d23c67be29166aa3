//! Calendars from the command line against a real `sluice server` process on SQLite: a window
//! and a freeze stored and listed, a bad rule refused naming the field, an exception requested,
//! refused to its own requester and approved by another approver.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{PASSWORD, Person, Running, ok, sluice};

#[test]
fn windows_freezes_and_exceptions_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let server = Running::start(&["--data-dir", &dir]);
    let url = server.url.clone();
    let admin = Person::login(&url, "admin", PASSWORD);
    for (name, roles) in [("alice", "operator,approver"), ("bob", "approver")] {
        ok(&sluice(
            admin.config.path(),
            &["users", "create", name, "--role", roles],
            Some("a long enough password\n"),
        ));
    }
    let alice = Person::login(&url, "alice", "a long enough password");
    let bob = Person::login(&url, "bob", "a long enough password");

    let added = alice.ok(&[
        "window",
        "add",
        "db-nights",
        "--scope",
        "group=db",
        "--rrule",
        "FREQ=MONTHLY;BYDAY=2TU",
        "--offset-days",
        "3",
        "--start",
        "22:00",
        "--duration",
        "4h",
        "--cutoff",
        "30m",
        "--tz",
        "Europe/Berlin",
    ]);
    assert!(
        added.contains("window db-nights created for group=db"),
        "{added}"
    );
    let bad = alice.refused(&[
        "window",
        "add",
        "bad",
        "--rrule",
        "FREQ=HOURLY",
        "--start",
        "22:00",
        "--duration",
        "4h",
        "--tz",
        "UTC",
    ]);
    assert!(
        bad.contains("422") && bad.contains("definition.rrule"),
        "{bad}"
    );
    let listed = alice.ok(&["window", "list"]);
    assert!(
        listed.contains("db-nights")
            && listed
                .contains("FREQ=MONTHLY;BYDAY=2TU 22:00 +3d for 4h (cutoff 30m) Europe/Berlin"),
        "{listed}"
    );

    bob.ok(&[
        "freeze",
        "add",
        "release",
        "--from",
        "2027-12-01",
        "--until",
        "2027-12-08",
    ]);
    bob.ok(&[
        "freeze",
        "add",
        "month-end",
        "--last-business-days",
        "3",
        "--tz",
        "Europe/Berlin",
    ]);
    let freezes = alice.ok(&["freeze", "list"]);
    assert!(
        freezes.contains("release") && freezes.contains("last 3 business days"),
        "{freezes}"
    );
    let requested = alice.ok(&[
        "freeze",
        "exception",
        "request",
        "release",
        "--from",
        "2027-12-02T20:00:00Z",
        "--until",
        "2027-12-03T02:00:00Z",
        "--scope",
        "group=db",
        "--justification",
        "an actively exploited flaw",
    ]);
    assert!(requested.contains("FEX-1 requested"), "{requested}");
    let own = alice.refused(&["freeze", "exception", "approve", "FEX-1"]);
    assert!(
        own.contains("403") && own.contains("another approver"),
        "{own}"
    );
    let approved = bob.ok(&["freeze", "exception", "approve", "FEX-1"]);
    assert!(approved.contains("FEX-1: approved"), "{approved}");
    let exceptions = alice.ok(&["freeze", "exception", "list", "release"]);
    assert!(
        exceptions.contains("approved") && exceptions.contains("bob"),
        "{exceptions}"
    );

    bob.ok(&["freeze", "delete", "month-end"]);
    admin.ok(&["window", "delete", "db-nights"]);
    assert!(!alice.ok(&["window", "list"]).contains("db-nights"));
    server.stop();
}
