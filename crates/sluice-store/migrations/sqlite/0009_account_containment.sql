-- Containing a compromised account (docs/security.md, "Login limits and account containment").
--
-- `parent_id` is the token a token was minted with (`POST /api/v1/tokens` authenticated by a
-- token); login tokens have none. Revoking a token revokes every token below it.
ALTER TABLE tokens ADD COLUMN parent_id TEXT REFERENCES tokens(id);
CREATE INDEX tokens_parent ON tokens(parent_id);

-- One row per failed login, shared by every replica. `account` is the lower-cased user name
-- tried; `address` the client's address key (an IPv4 address or an IPv6 /64), '' when unknown.
-- A row is written before the password is checked (so concurrent guesses are counted before any
-- of them is let through) and removed if the attempt is refused or succeeds. Rows older than the
-- login window are pruned as new attempts arrive.
CREATE TABLE login_failures (
    id      TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    address TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX login_failures_account ON login_failures(account, at);
CREATE INDEX login_failures_address ON login_failures(address, at);
CREATE INDEX login_failures_at ON login_failures(at);

-- Addresses each account last logged in from successfully: the account-wide and address-wide
-- limits spare them, so failures from elsewhere cannot lock the owner out.
CREATE TABLE login_known_addresses (
    account         TEXT NOT NULL,
    address         TEXT NOT NULL,
    last_success_at TEXT NOT NULL,
    PRIMARY KEY (account, address)
);
