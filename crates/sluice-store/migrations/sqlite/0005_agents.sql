-- Agents: one-time enrollment tokens, enrolled agents with their Ed25519 public keys, signed
-- challenges, short-lived agent access tokens, and the jobs agents claim and report on.
CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    used_by     TEXT
);

CREATE TABLE agents (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL UNIQUE,
    public_key   TEXT NOT NULL,
    labels       TEXT NOT NULL DEFAULT '{}',
    enrolled_at  TEXT NOT NULL,
    last_seen_at TEXT,
    revoked_at   TEXT,
    -- Set when an operator asks for a fresh inventory; cleared by the next one the agent sends.
    inventory_requested_at TEXT
);

CREATE TABLE agent_challenges (
    nonce      TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL REFERENCES agents(id),
    expires_at TEXT NOT NULL
);

CREATE TABLE agent_tokens (
    token_hash TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL REFERENCES agents(id),
    expires_at TEXT NOT NULL
);
CREATE INDEX agent_tokens_agent ON agent_tokens(agent_id);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents(id),
    hostname        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    spec            TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    claimed_at      TEXT,
    finished_at     TEXT,
    report          TEXT
);
CREATE INDEX jobs_agent_state ON jobs(agent_id, state, created_at);
