//! Accounts on the server: logging in (behind the failed-login limits), users, API tokens, and
//! containing an account (disabling or enabling it, resetting its password, lifting login locks).
//!
//! The limits' decision is [`LoginLimiter`](crate::auth::LoginLimiter)'s, the credentials
//! (argon2id hashes, token secrets) are `crate::auth`'s, and the store writes and audits each
//! step. Times here are the system clock's, passed in: token expiry and login windows are
//! physical time, checked by the authentication middleware against the same clock. This module
//! knows nothing of HTTP: `crate::error` maps [`AccountError`] to problem documents.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sluice_core::access::{Role, Roles};
use sluice_core::audit::NewAuditEvent;
use sluice_protocol::accounts::{ClearedLock, CreateToken, CreateUser, LoginRequest};
use sluice_store::{Actor, NewToken, NewUser, StoreError, Token, User};

use crate::auth::{self, CredentialError, CurrentLock, LockScope, LoginAttempt, Principal};
use crate::settings::parse_duration;
use crate::state::AppState;

/// Longest lifetime of a token made with `POST /api/v1/tokens` or asked for at login.
const MAX_TOKEN_DAYS: u64 = 366;

/// What went wrong with an account, a token or a login.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No such user or token.
    #[error("{0}")]
    NotFound(String),
    /// A value is refused: a field's when one is to blame, the request's otherwise.
    #[error("{detail}")]
    Invalid {
        /// The field's JSON path, when one is to blame.
        field: Option<String>,
        /// Why.
        detail: String,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The credentials are wrong, or the user is disabled (the two are not told apart).
    #[error("{0}")]
    Unauthorized(String),
    /// A login limit is reached; it lifts in `retry_after` seconds.
    #[error("too many failed logins; try again later")]
    TooManyAttempts {
        /// Seconds until an attempt is counted again.
        retry_after: u64,
    },
    /// Making a secret or a password hash failed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// A token's expiry is out of the clock's range.
    #[error("token expiry: {0}")]
    Expiry(jiff::Error),
    /// The store failed, or refused a write (a taken name, the last admin, a password reset
    /// during the login).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccountError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.to_owned()),
            detail: detail.into(),
        }
    }
}

/// A token just made: the secret, shown this once, and its record.
#[derive(Debug)]
pub struct Issued {
    /// The secret (`slc_…`); only its hash is stored.
    pub secret: String,
    /// The stored token.
    pub token: Token,
}

/// One containment step on a user, by an admin.
#[derive(Debug)]
pub enum Containment {
    /// The user cannot log in, and every token of theirs is revoked.
    Disable,
    /// A disabled user may log in again; their old tokens stay revoked.
    Enable,
    /// A new password, given or (with `None`) chosen by the server; every token is revoked.
    ResetPassword(Option<String>),
}

/// A user after a containment step.
#[derive(Debug)]
pub struct Contained {
    /// The user as it stands now.
    pub user: User,
    /// The tokens the step revoked.
    pub revoked: Vec<Token>,
    /// The password the server chose, for a reset without one.
    pub generated_password: Option<String>,
}

/// A name from the request as it may be shown: whole when short, cut otherwise.
fn shown(name: &str) -> String {
    const LONGEST: usize = 64;
    if name.chars().count() <= LONGEST {
        name.to_owned()
    } else {
        format!("{}…", name.chars().take(LONGEST).collect::<String>())
    }
}

/// The expiry `duration` after `now`, as the store writes times.
fn expiry_after(now: Timestamp, duration: Duration) -> Result<String, AccountError> {
    let span = SignedDuration::try_from(duration).map_err(AccountError::Expiry)?;
    let at = now.checked_add(span).map_err(AccountError::Expiry)?;
    Ok(at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// A requested token lifetime, checked.
fn token_lifetime(expires_in: &str) -> Result<Duration, AccountError> {
    let lifetime = parse_duration("expires_in", expires_in)
        .map_err(|e| AccountError::invalid("expires_in", e.0))?;
    if lifetime.as_secs() > MAX_TOKEN_DAYS * 86_400 {
        return Err(AccountError::invalid("expires_in", "at most 366 days"));
    }
    Ok(lifetime)
}

/// The roles a new token carries: those requested, which `holder` must all hold, or all of
/// the holder's.
fn token_roles(
    requested: Option<Vec<Role>>,
    holder: &Roles,
    holder_name: &str,
) -> Result<Roles, AccountError> {
    let roles: Roles = match requested {
        None => holder.clone(),
        Some(roles) => roles.into_iter().collect(),
    };
    if roles.is_empty() {
        return Err(AccountError::invalid("roles", "at least one role"));
    }
    if let Some(extra) = roles.iter().find(|r| !holder.contains(r)) {
        return Err(AccountError::invalid(
            "roles",
            format!("a token cannot carry the role {extra}, which {holder_name} does not hold"),
        ));
    }
    Ok(roles)
}

/// A user or group name: 1 to 64 lower-case letters, digits, `.`, `_` or `-`.
fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// A password that passes the password rule.
fn checked_password(password: &str) -> Result<(), AccountError> {
    auth::check_password(password).map_err(|why| AccountError::invalid("password", why))
}

/// An argon2id hash of a random password, verified against when the user does not exist.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    auth::new_password()
        .and_then(|p| auth::hash_password(&p))
        .unwrap_or_default()
});

/// Exchanges a user name and password for a session token, from `client` (its address, when
/// known). Failed attempts are limited per account and client address (docs/security.md) and
/// audited with the client's address; a success forgets this account's failures from there.
pub async fn login(
    state: &AppState,
    request: LoginRequest,
    client: Option<IpAddr>,
    request_id: Option<&str>,
    now: Timestamp,
) -> Result<Issued, AccountError> {
    let lifetime = match &request.expires_in {
        Some(text) => token_lifetime(text)?,
        None => state.settings.session_ttl,
    };
    let attempt = LoginAttempt::new(&request.username, client);
    let failure = |reason: &str, limit: Option<LockScope>| {
        let mut after = serde_json::json!({
            "reason": reason,
            "client": client.map(|ip| ip.to_string()),
        });
        if let Some(limit) = limit {
            after["limit"] = limit.as_str().into();
        }
        NewAuditEvent {
            actor: "anonymous".to_owned(),
            action: "login.failure".to_owned(),
            object: format!("user:{}", shown(&request.username)),
            before: None,
            after: Some(after),
            request_id: request_id.map(str::to_owned),
        }
    };
    if let Err(lock) = state.limiter.admit(&state.store, &attempt, now).await? {
        state
            .store
            .record(failure("rate limited", Some(lock.scope)))
            .await?;
        metrics::counter!("sluice_login_failures_total", "reason" => "rate_limited").increment(1);
        return Err(AccountError::TooManyAttempts {
            retry_after: lock.retry_after,
        });
    }
    let found = state.store.user_with_hash(&request.username).await?;
    let verified = match &found {
        // The hash is checked for a disabled user too, so timing does not tell disabled users.
        Some((_, hash)) => auth::verify_password(&request.password, hash),
        None => {
            // Spend the same time as a real check, so timing does not reveal user names.
            let _ = auth::verify_password(&request.password, &DUMMY_HASH);
            false
        }
    };
    let (user, hash) = match found {
        Some((user, hash)) if verified && !user.disabled => (user, hash),
        _ => {
            let reason = if verified {
                "user disabled"
            } else {
                "bad credentials"
            };
            // The attempt was counted when admitted; it stays counted.
            state.store.record(failure(reason, None)).await?;
            metrics::counter!("sluice_login_failures_total", "reason" => "bad_credentials")
                .increment(1);
            return Err(AccountError::Unauthorized(
                "wrong user name or password".to_owned(),
            ));
        }
    };
    state.limiter.succeed(&state.store, &attempt, now).await?;
    let roles = token_roles(request.roles, &user.roles, "the user")?;
    let (secret, token_hash) = auth::new_token()?;
    let token = state
        .store
        .create_login_token(
            NewToken {
                user_id: user.id.clone(),
                name: request.token_name.unwrap_or_else(|| "login".to_owned()),
                token_hash,
                roles,
                expires_at: expiry_after(now, lifetime)?,
            },
            &hash,
            &Actor::named(&user.username, request_id),
        )
        .await?;
    Ok(Issued { secret, token })
}

/// All users.
pub async fn users(state: &AppState) -> Result<Vec<User>, AccountError> {
    Ok(state.store.list_users().await?)
}

/// Creates a user as `principal` (an admin).
pub async fn create_user(
    state: &AppState,
    principal: &Principal,
    request: CreateUser,
) -> Result<User, AccountError> {
    if !valid_name(&request.username) {
        return Err(AccountError::invalid(
            "username",
            "use 1 to 64 lower-case letters, digits, '.', '_' or '-'",
        ));
    }
    checked_password(&request.password)?;
    if request.roles.is_empty() {
        return Err(AccountError::invalid("roles", "at least one role"));
    }
    if let Some(bad) = request.groups.iter().find(|g| !valid_name(g)) {
        return Err(AccountError::invalid(
            "groups",
            format!("group {bad:?}: use lower-case letters, digits, '.', '_' or '-'"),
        ));
    }
    let user = state
        .store
        .create_user(
            NewUser {
                username: request.username,
                password_hash: auth::hash_password(&request.password)?,
                roles: request.roles.into_iter().collect(),
                groups: request.groups,
            },
            &principal.actor(),
        )
        .await?;
    Ok(user)
}

/// Tokens: `principal`'s own, or with `all` everyone's (admin only).
pub async fn tokens(
    state: &AppState,
    principal: &Principal,
    all: bool,
) -> Result<Vec<Token>, AccountError> {
    if all && !principal.has(Role::Admin) {
        return Err(AccountError::Forbidden(
            "listing every user's tokens needs the admin role".to_owned(),
        ));
    }
    let owner = (!all).then_some(principal.user_id.as_str());
    Ok(state.store.list_tokens(owner).await?)
}

/// Makes a token for `principal` with the token it called with: at most that token's roles,
/// expiring no later than it, revoked with it.
pub async fn create_token(
    state: &AppState,
    principal: &Principal,
    request: CreateToken,
    now: Timestamp,
) -> Result<Issued, AccountError> {
    if request.name.trim().is_empty() || request.name.len() > 100 {
        return Err(AccountError::invalid("name", "1 to 100 characters"));
    }
    let lifetime = token_lifetime(&request.expires_in)?;
    let roles = token_roles(request.roles, &principal.roles, "the token creating it")?;
    let (secret, hash) = auth::new_token()?;
    let token = state
        .store
        .mint_token(
            NewToken {
                user_id: principal.user_id.clone(),
                name: request.name,
                token_hash: hash,
                roles,
                expires_at: expiry_after(now, lifetime)?,
            },
            &principal.token_id,
            &principal.actor(),
        )
        .await?;
    Ok(Issued { secret, token })
}

/// Revokes token `id` and every token made with it: `principal`'s own, or anyone's for an
/// admin. A token the caller may not see is not found.
pub async fn revoke_token(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Token, AccountError> {
    let owner = (!principal.has(Role::Admin)).then_some(principal.user_id.as_str());
    let visible = state.store.list_tokens(owner).await?;
    if !visible.iter().any(|t| t.id == id) {
        return Err(AccountError::NotFound(format!(
            "token {} not found",
            shown(id)
        )));
    }
    Ok(state.store.revoke_token(id, &principal.actor()).await?)
}

/// The user `name`, or not found.
async fn named_user(state: &AppState, name: &str) -> Result<User, AccountError> {
    state
        .store
        .user(name)
        .await?
        .ok_or_else(|| AccountError::NotFound(format!("user {} not found", shown(name))))
}

/// User `name`'s tokens, live, expired and revoked, newest first.
pub async fn user_tokens(state: &AppState, name: &str) -> Result<Vec<Token>, AccountError> {
    let user = named_user(state, name).await?;
    Ok(state.store.list_tokens(Some(&user.id)).await?)
}

/// Takes a containment `step` on user `name` as `principal` (an admin). The store refuses
/// disabling the last enabled admin, and a step that changes nothing.
pub async fn contain(
    state: &AppState,
    principal: &Principal,
    name: &str,
    step: Containment,
) -> Result<Contained, AccountError> {
    /// What the store is asked to write.
    enum Write {
        Disabled(bool),
        Password { password: String, generated: bool },
    }
    // A refused password is told before an unknown user, as it always was.
    let write = match step {
        Containment::Disable => Write::Disabled(true),
        Containment::Enable => Write::Disabled(false),
        Containment::ResetPassword(Some(password)) => {
            checked_password(&password)?;
            Write::Password {
                password,
                generated: false,
            }
        }
        Containment::ResetPassword(None) => Write::Password {
            password: auth::new_password()?,
            generated: true,
        },
    };
    named_user(state, name).await?;
    let actor = principal.actor();
    let ((user, revoked), generated_password) = match write {
        Write::Disabled(disabled) => (
            state
                .store
                .set_user_disabled(name, disabled, &actor)
                .await?,
            None,
        ),
        Write::Password {
            password,
            generated,
        } => {
            let hash = auth::hash_password(&password)?;
            let changed = state.store.reset_password(name, &hash, &actor).await?;
            (changed, generated.then_some(password))
        }
    };
    Ok(Contained {
        user,
        revoked,
        generated_password,
    })
}

/// The login limits reached at `now`: which accounts, addresses, or accounts from an address
/// are refused, with their failures in the window.
pub async fn login_locks(
    state: &AppState,
    now: Timestamp,
) -> Result<Vec<CurrentLock>, AccountError> {
    let since = state.limiter.since(now);
    let groups = state.store.login_failure_groups(since).await?;
    Ok(state.limiter.locks(&groups))
}

/// The key of an address as given: an address, or an IPv6 /64 as listings show it.
fn address_key(text: &str) -> Result<String, AccountError> {
    let text = text.trim();
    let ip = text
        .strip_suffix("/64")
        .filter(|network| network.contains(':'))
        .unwrap_or(text);
    ip.parse::<IpAddr>().map(auth::address_key).map_err(|_| {
        AccountError::invalid(
            "address",
            format!(
                "{:?} is not an address such as 203.0.113.9 or 2001:db8:1:2::/64",
                shown(text)
            ),
        )
    })
}

/// Lifts a login lock as `principal` (an admin) by forgetting the failures of `account`, of
/// `address`, or of the account from the address; audited as `login.unlock`.
pub async fn clear_login_lock(
    state: &AppState,
    principal: &Principal,
    account: Option<&str>,
    address: Option<&str>,
) -> Result<ClearedLock, AccountError> {
    let account = account.map(auth::account_key);
    let address = address.map(address_key).transpose()?;
    if account.is_none() && address.is_none() {
        return Err(AccountError::Invalid {
            field: None,
            detail: "name an account, an address or both (?account=NAME&address=ADDR)".to_owned(),
        });
    }
    let failures_cleared = state
        .store
        .clear_login_failures(account.as_deref(), address.as_deref(), &principal.actor())
        .await?;
    Ok(ClearedLock {
        account,
        address,
        failures_cleared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_whole_or_cut() {
        assert_eq!(shown("alice"), "alice");
        let long = "x".repeat(100);
        assert_eq!(shown(&long).chars().count(), 65);
        assert!(shown(&long).ends_with('…'));
    }

    #[test]
    fn token_lifetimes_are_bounded() {
        assert_eq!(
            token_lifetime("30d").ok(),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert!(matches!(
            token_lifetime("367d"),
            Err(AccountError::Invalid { field: Some(f), .. }) if f == "expires_in"
        ));
        assert!(token_lifetime("soon").is_err());
    }

    #[test]
    fn a_token_carries_at_most_its_holders_roles() {
        let holder: Roles = [Role::Operator].into_iter().collect();
        assert_eq!(
            token_roles(None, &holder, "the user").ok(),
            Some(holder.clone())
        );
        assert!(token_roles(Some(vec![]), &holder, "the user").is_err());
        let refused = token_roles(Some(vec![Role::Admin]), &holder, "the user");
        assert!(
            matches!(refused, Err(AccountError::Invalid { detail, .. }) if detail.contains("admin"))
        );
    }

    #[test]
    fn addresses_are_keyed_as_listed() {
        assert_eq!(
            address_key(" 203.0.113.9 ").ok().as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            address_key("2001:db8:1:2::/64").ok().as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert!(address_key("10.0.0.0/64").is_err());
        assert!(valid_name("web-01.prod_a") && !valid_name("Web") && !valid_name(""));
    }
}
