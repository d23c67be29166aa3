-- Advisory feeds, inventories (packages stored once, hosts reference them) and findings.
CREATE TABLE feeds (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    source           TEXT NOT NULL,
    interval_seconds INTEGER,
    created_at       TEXT NOT NULL,
    last_sync_at     TEXT,
    last_status      TEXT,
    last_error       TEXT,
    content_hash     TEXT,
    records          INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE feed_content (
    feed_id    TEXT PRIMARY KEY REFERENCES feeds(id),
    content    BLOB NOT NULL,
    fetched_at TEXT NOT NULL
);

CREATE TABLE packages (
    id             INTEGER PRIMARY KEY,
    ecosystem      TEXT NOT NULL,
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    arch           TEXT NOT NULL,
    source_name    TEXT NOT NULL,
    source_version TEXT NOT NULL,
    UNIQUE (ecosystem, name, version, arch, source_name, source_version)
);

CREATE TABLE inventories (
    hostname     TEXT PRIMARY KEY,
    ecosystem    TEXT NOT NULL,
    package_ids  TEXT NOT NULL,
    package_hash TEXT NOT NULL,
    os_release   TEXT,
    received_at  TEXT NOT NULL
);

CREATE TABLE findings (
    id             INTEGER PRIMARY KEY,
    hostname       TEXT NOT NULL,
    package        TEXT NOT NULL,
    advisory       TEXT NOT NULL,
    installed      TEXT NOT NULL,
    fixed          TEXT,
    decision       TEXT NOT NULL,
    score          REAL NOT NULL,
    due            TEXT NOT NULL,
    kev            INTEGER NOT NULL,
    record         TEXT NOT NULL,
    first_seen     TEXT NOT NULL,
    resolved_at    TEXT
);
CREATE UNIQUE INDEX findings_open_identity ON findings (hostname, package, advisory) WHERE resolved_at IS NULL;
CREATE INDEX findings_open_by_score ON findings (score DESC, id) WHERE resolved_at IS NULL;
CREATE INDEX findings_by_host ON findings (hostname, resolved_at);
