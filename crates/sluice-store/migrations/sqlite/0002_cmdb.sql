-- The CMDB (assets, groups, services) and the Idempotency-Key record of mutating requests.
--
-- Each record is stored whole as canonical JSON (`record`, what the API serves); the other
-- columns are copies kept for lookups and constraints. The record is the truth.

CREATE TABLE assets (
    hostname    TEXT PRIMARY KEY,
    environment TEXT,
    criticality INTEGER NOT NULL CHECK (criticality BETWEEN 1 AND 5),
    -- '|a|b|': the asset's groups, so "who is in group a" needs no JSON parsing.
    group_names TEXT NOT NULL DEFAULT '',
    record      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX assets_environment ON assets(environment);

CREATE TABLE asset_groups (
    name        TEXT PRIMARY KEY,
    description TEXT,
    updated_at  TEXT NOT NULL
);

CREATE TABLE services (
    name       TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A service's members must be known hosts: an asset cannot be deleted while a service needs it.
CREATE TABLE service_members (
    service  TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    hostname TEXT NOT NULL REFERENCES assets(hostname),
    PRIMARY KEY (service, hostname)
);
CREATE INDEX service_members_hostname ON service_members(hostname);

-- The first answer to a mutating request carrying an Idempotency-Key, replayed for retries.
-- status is NULL while the first request is still running.
CREATE TABLE idempotency_keys (
    user_id      TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       INTEGER,
    content_type TEXT,
    body         BLOB,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
