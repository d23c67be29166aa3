-- Calendars: maintenance windows, freezes and freeze exceptions.
--
-- Windows and freezes are stored by name with their definition as written (`record`, the JSON
-- of the stored item; sluice-core parses the rule again on every read). Exceptions are numbered
-- (`FEX-<n>`) and keep their decision in `state` (requested, approved, rejected) as well as in
-- the record. Times are RFC 3339 UTC with six fractional digits, so they compare as text.

CREATE TABLE maintenance_windows (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    record     TEXT NOT NULL
);

CREATE TABLE freezes (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    record     TEXT NOT NULL
);

CREATE TABLE freeze_exceptions (
    id         TEXT PRIMARY KEY,
    number     BIGINT NOT NULL UNIQUE,
    freeze_name TEXT NOT NULL,
    state      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    record     TEXT NOT NULL
);
CREATE INDEX freeze_exceptions_by_freeze ON freeze_exceptions (freeze_name, number);
