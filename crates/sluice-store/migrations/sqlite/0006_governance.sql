-- Change governance: change requests, versioned policies (CAB, deferral) and deferrals.
--
-- A change and a deferral are stored whole as JSON (`record`, what sluice-core reads back); the
-- other columns are copies kept for listing and filtering. `version` rises by one with every
-- write: a write made against an older version is refused (optimistic concurrency). Times are
-- RFC 3339 UTC with six fractional digits, so they compare as text.

CREATE TABLE changes (
    id                TEXT PRIMARY KEY,
    number            INTEGER NOT NULL UNIQUE,
    state             TEXT NOT NULL,
    kind              TEXT NOT NULL,
    requester         TEXT NOT NULL,
    risk              TEXT,
    retrospective_due TEXT,
    reviewed_at       TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    version           INTEGER NOT NULL,
    record            TEXT NOT NULL
);
CREATE INDEX changes_by_state ON changes (state, number);
CREATE INDEX changes_by_requester ON changes (requester, number);
CREATE INDEX changes_retrospective ON changes (retrospective_due) WHERE reviewed_at IS NULL;

-- Every version of every policy document; the current one is the highest version of its kind.
CREATE TABLE policies (
    kind       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    document   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (kind, version)
);

CREATE TABLE deferrals (
    id           TEXT PRIMARY KEY,
    number       INTEGER NOT NULL UNIQUE,
    finding_id   TEXT,
    hostname     TEXT,
    package      TEXT,
    kind         TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approved     INTEGER NOT NULL,
    revoked      INTEGER NOT NULL,
    expires_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    record       TEXT NOT NULL
);
CREATE INDEX deferrals_by_finding ON deferrals (finding_id);
CREATE INDEX deferrals_by_host ON deferrals (hostname, package);
