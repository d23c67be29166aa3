//! `sluice login`, `sluice whoami`, `sluice token …`, `sluice users …` (including containing an
//! account: disable, enable, reset-password, unlock).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use sluice_core::access::{Role, Roles};
use sluice_protocol::Empty;
use sluice_protocol::accounts::{
    ClearedLock, CreateToken, CreateUser, IssuedToken, LoginLock, LoginRequest, PasswordReset,
    ResetPassword, TokenView, UserChange, UserView, WhoAmI,
};

use super::client::{
    Client, Credentials, ServerArgs, load_credentials, print_table, save_credentials,
};

/// Output formats of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns for people.
    Table,
    /// JSON.
    Json,
}

/// Arguments of `sluice login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// User name.
    #[arg(long, default_value = "admin")]
    username: String,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

/// Runs `sluice login`.
pub fn login(args: LoginArgs) -> Result<ExitCode> {
    let server = args
        .server
        .server
        .clone()
        .context("which server? pass --server http://HOST:8470")?;
    let password = if args.password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        rpassword::prompt_password(format!("Password for {}: ", args.username))?
    };
    if password.is_empty() {
        bail!("no password given");
    }
    let client = Client::new(&ServerArgs {
        server: Some(server),
    })?;
    let answer: IssuedToken = client.post_as(
        "/api/v1/login",
        &LoginRequest {
            username: args.username.clone(),
            password,
            token_name: Some("cli login".to_owned()),
            expires_in: None,
            roles: None,
        },
    )?;
    let credentials = Credentials {
        server: client.base().to_owned(),
        username: args.username.clone(),
        token: answer.token,
        expires_at: answer.record.expires_at,
    };
    let path = save_credentials(&credentials)?;
    eprintln!(
        "logged in to {} as {}; token stored in {} (expires {})",
        credentials.server,
        credentials.username,
        path.display(),
        credentials.expires_at
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `sluice whoami`.
pub fn whoami(server: ServerArgs) -> Result<ExitCode> {
    let me: WhoAmI = Client::new(&server)?.get_as("/api/v1/whoami")?;
    println!("{} ({})", me.username, roles_of(&me.roles));
    Ok(ExitCode::SUCCESS)
}

fn roles_of(roles: &Roles) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Roles as given on the command line (`--role viewer,operator`); none: the server's default.
fn parse_role_list(given: &[String]) -> Result<Option<Vec<Role>>> {
    if given.is_empty() {
        return Ok(None);
    }
    given
        .iter()
        .map(|r| r.parse::<Role>().with_context(|| format!("--role {r:?}")))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Subcommands of `sluice token`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token for automation; the secret is printed once.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// What it is for.
        #[arg(long, default_value = "automation")]
        name: String,
        /// Roles (comma-separated), at most your own; default all of yours.
        #[arg(long, value_delimiter = ',')]
        role: Vec<String>,
        /// Lifetime, e.g. 30d or 12h. A token made with your login token expires with it at the
        /// latest; use --password-stdin for a longer-lived one.
        #[arg(long, default_value = "30d")]
        expires: String,
        /// Make the token with your password (first line of standard input) instead of your
        /// token, so it may outlive your login session.
        #[arg(long)]
        password_stdin: bool,
        /// With --password-stdin: whose token (default: the user you logged in as).
        #[arg(long, requires = "password_stdin")]
        username: Option<String>,
    },
    /// List your tokens (all users' with --all, or one user's with --user; admin only).
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Every user's tokens.
        #[arg(long, conflicts_with = "user")]
        all: bool,
        /// One user's tokens.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Revoke a token by id, and every token made with it; they stop working at once.
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        /// Token id.
        id: String,
    },
}

/// Runs `sluice token …`.
pub fn token(command: TokenCommand) -> Result<ExitCode> {
    match command {
        TokenCommand::Create {
            server,
            name,
            role,
            expires,
            password_stdin,
            username,
        } => {
            let client = Client::new(&server)?;
            let answer = if password_stdin {
                let username = match username {
                    Some(username) => username,
                    None => load_credentials()?
                        .map(|c| c.username)
                        .context("whose token? pass --username NAME")?,
                };
                let password = first_line_of_stdin()?;
                let body = LoginRequest {
                    username,
                    password,
                    token_name: Some(name),
                    expires_in: Some(expires),
                    roles: parse_role_list(&role)?,
                };
                client.post_as::<_, IssuedToken>("/api/v1/login", &body)?
            } else {
                let body = CreateToken {
                    name,
                    roles: parse_role_list(&role)?,
                    expires_in: expires.clone(),
                };
                let answer: IssuedToken = client.post_as("/api/v1/tokens", &body)?;
                if expires_sooner_than_asked(&answer, &expires) {
                    eprintln!(
                        "note: capped at the expiry of the token that made it; use --password-stdin for a longer-lived one"
                    );
                }
                answer
            };
            eprintln!(
                "token {} for {} ({}), expires {}; the secret is shown this once:",
                answer.record.id,
                answer.record.username,
                roles_of(&answer.record.roles),
                answer.record.expires_at
            );
            println!("{}", answer.token);
        }
        TokenCommand::List {
            server,
            all,
            user,
            output,
        } => {
            let path = match (&user, all) {
                (Some(user), _) => format!("/api/v1/users/{}/tokens", encode(user)),
                (None, true) => "/api/v1/tokens?all=true".to_owned(),
                (None, false) => "/api/v1/tokens".to_owned(),
            };
            let client = Client::new(&server)?;
            if output == Output::Json {
                let tokens = client.get(&path)?;
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                let tokens: Vec<TokenView> = client.get_as(&path)?;
                let rows: Vec<Vec<String>> = tokens
                    .into_iter()
                    .map(|t| {
                        vec![
                            t.id,
                            t.username,
                            t.name,
                            roles_of(&t.roles),
                            t.expires_at,
                            t.revoked_at.unwrap_or_else(|| "-".to_owned()),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "USER", "NAME", "ROLES", "EXPIRES", "REVOKED"],
                    &rows,
                );
            }
        }
        TokenCommand::Revoke { server, id } => {
            let token: TokenView = Client::new(&server)?.call(
                reqwest::Method::DELETE,
                &format!("/api/v1/tokens/{}", encode(&id)),
                None::<&()>,
            )?;
            eprintln!(
                "revoked token {} at {}",
                id,
                token.revoked_at.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Subcommands of `sluice users`.
#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Create a user (admin); the password is read from standard input.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// User name.
        username: String,
        /// Roles, comma-separated: viewer, operator, approver, security, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        role: Vec<String>,
        /// Groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        group: Vec<String>,
    },
    /// List users (admin).
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Disable a user (admin): they cannot log in and every token of theirs is revoked.
    Disable {
        #[command(flatten)]
        server: ServerArgs,
        /// User name.
        username: String,
    },
    /// Enable a disabled user again (admin); their old tokens stay revoked.
    Enable {
        #[command(flatten)]
        server: ServerArgs,
        /// User name.
        username: String,
    },
    /// Set a user's password (admin), read from standard input, or chosen by the server with
    /// --generate and printed once; every token of theirs is revoked.
    ResetPassword {
        #[command(flatten)]
        server: ServerArgs,
        /// User name.
        username: String,
        /// Let the server choose the password and print it.
        #[arg(long)]
        generate: bool,
    },
    /// Login limits reached now (admin).
    Locks {
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Lift a login lock (admin): forget the failed logins of an account, of an address
    /// (--address), or of an account from an address.
    Unlock {
        #[command(flatten)]
        server: ServerArgs,
        /// User name.
        username: Option<String>,
        /// Client address, as `sluice users locks` shows it.
        #[arg(long, value_name = "ADDR")]
        address: Option<String>,
    },
}

/// The first line of standard input, or a prompt on a terminal.
fn first_line_of_stdin() -> Result<String> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        bail!("no password given");
    }
    Ok(password)
}

/// Whether a new token expires more than a minute before the lifetime asked for.
fn expires_sooner_than_asked(answer: &IssuedToken, asked: &str) -> bool {
    let Ok(lifetime) = sluice_server::settings::parse_duration("expires", asked) else {
        return false;
    };
    let Ok(expires) = answer.record.expires_at.parse::<jiff::Timestamp>() else {
        return false;
    };
    let asked_for = jiff::SignedDuration::try_from(lifetime)
        .ok()
        .and_then(|span| jiff::Timestamp::now().checked_add(span).ok());
    asked_for.is_some_and(|at| expires.duration_until(at).as_secs() > 60)
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `sluice users …`.
pub fn users(command: UsersCommand) -> Result<ExitCode> {
    match command {
        UsersCommand::Create {
            server,
            username,
            role,
            group,
        } => {
            let password = if std::io::stdin().is_terminal() {
                rpassword::prompt_password(format!("Password for the new user {username}: "))?
            } else {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim_end_matches(['\n', '\r']).to_owned()
            };
            let user: UserView = Client::new(&server)?.post_as(
                "/api/v1/users",
                &CreateUser {
                    username,
                    password,
                    roles: parse_role_list(&role)?.unwrap_or_default(),
                    groups: group.into_iter().collect(),
                },
            )?;
            eprintln!("created user {} ({})", user.username, roles_of(&user.roles));
        }
        UsersCommand::List { server, output } => {
            let client = Client::new(&server)?;
            if output == Output::Json {
                let users = client.get("/api/v1/users")?;
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                let users: Vec<UserView> = client.get_as("/api/v1/users")?;
                let rows: Vec<Vec<String>> = users
                    .into_iter()
                    .map(|u| {
                        vec![
                            u.username,
                            roles_of(&u.roles),
                            u.groups.into_iter().collect::<Vec<_>>().join(","),
                            u.created_at,
                            if u.disabled { "disabled" } else { "enabled" }.to_owned(),
                        ]
                    })
                    .collect();
                print_table(&["USER", "ROLES", "GROUPS", "CREATED", "STATE"], &rows);
            }
        }
        UsersCommand::Disable { server, username } => {
            let change: UserChange = Client::new(&server)?.post_as(
                &format!("/api/v1/users/{}/disable", encode(&username)),
                &Empty {},
            )?;
            eprintln!(
                "disabled user {username}; {} token(s) revoked",
                change.revoked_tokens.len()
            );
        }
        UsersCommand::Enable { server, username } => {
            Client::new(&server)?.post_as::<_, UserChange>(
                &format!("/api/v1/users/{}/enable", encode(&username)),
                &Empty {},
            )?;
            eprintln!("enabled user {username}");
        }
        UsersCommand::ResetPassword {
            server,
            username,
            generate,
        } => {
            let body = ResetPassword {
                password: if generate {
                    None
                } else {
                    Some(first_line_of_stdin()?)
                },
            };
            let reset: PasswordReset = Client::new(&server)?.post_as(
                &format!("/api/v1/users/{}/password", encode(&username)),
                &body,
            )?;
            eprintln!(
                "password of {username} reset; {} token(s) revoked",
                reset.revoked_tokens.len()
            );
            if let Some(password) = reset.password {
                eprintln!("the new password, shown this once:");
                println!("{password}");
            }
        }
        UsersCommand::Locks { server, output } => {
            let client = Client::new(&server)?;
            if output == Output::Json {
                let locks = client.get("/api/v1/login-locks")?;
                println!("{}", serde_json::to_string_pretty(&locks)?);
            } else {
                let locks: Vec<LoginLock> = client.get_as("/api/v1/login-locks")?;
                let text = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
                let rows: Vec<Vec<String>> = locks
                    .into_iter()
                    .map(|l| {
                        vec![
                            l.scope,
                            text(l.account),
                            text(l.address),
                            format!("{}/{}", l.failures, l.limit),
                            l.last_failure_at,
                        ]
                    })
                    .collect();
                print_table(
                    &["LIMIT", "ACCOUNT", "ADDRESS", "FAILURES", "LAST FAILURE"],
                    &rows,
                );
            }
        }
        UsersCommand::Unlock {
            server,
            username,
            address,
        } => {
            let mut query = Vec::new();
            if let Some(username) = &username {
                query.push(format!("account={}", encode(username)));
            }
            if let Some(address) = &address {
                query.push(format!("address={}", encode(address)));
            }
            if query.is_empty() {
                bail!("name a user, an --address, or both");
            }
            let cleared: ClearedLock = Client::new(&server)?.call(
                reqwest::Method::DELETE,
                &format!("/api/v1/login-locks?{}", query.join("&")),
                None::<&()>,
            )?;
            eprintln!("forgot {} failed login(s)", cleared.failures_cleared);
        }
    }
    Ok(ExitCode::SUCCESS)
}
