-- Rollouts: a change carried to its hosts ring by ring (docs/rollout.md).
--
-- `plan`, `state` and `runtime` are JSON: the plan and the engine's state are sluice-core's
-- (`rollout::Plan`, `rollout::RolloutState`), `runtime` is what the server keeps beside them
-- (attempts, jobs' before-versions, breaker trips recorded, outcome). `version` rises by one with
-- every write; a write against an older version is refused, so two servers never both advance
-- the same rollout from the same state.
CREATE TABLE rollouts (
    id          TEXT PRIMARY KEY,
    change_id   TEXT NOT NULL,
    spec        TEXT NOT NULL,
    plan        TEXT NOT NULL,
    state       TEXT NOT NULL,
    runtime     TEXT NOT NULL,
    phase       TEXT NOT NULL,
    outcome     TEXT,
    version     INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX rollouts_change ON rollouts(change_id);
CREATE INDEX rollouts_open ON rollouts(finished_at);

-- The jobs a rollout queued; `observed_at` is set when the job's report was folded into the
-- rollout's state, in the same transaction.
CREATE TABLE rollout_jobs (
    job_id      TEXT PRIMARY KEY,
    rollout_id  TEXT NOT NULL REFERENCES rollouts(id),
    hostname    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    observed_at TEXT
);
CREATE INDEX rollout_jobs_open ON rollout_jobs(rollout_id, observed_at);

-- What happened, in order, for `sluice rollout watch` and the events stream.
CREATE TABLE rollout_events (
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    seq        INTEGER NOT NULL,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    PRIMARY KEY (rollout_id, seq)
);

-- Versions a breaker's rollback undid: not offered to the scope again without an override.
CREATE TABLE rolled_back_versions (
    scope      TEXT NOT NULL,
    package    TEXT NOT NULL,
    version    TEXT NOT NULL,
    rollout_id TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (scope, package, version)
);

-- A pending reboot, as the host's latest inventory reported it.
ALTER TABLE inventories ADD COLUMN reboot_required BOOLEAN NOT NULL DEFAULT FALSE;
