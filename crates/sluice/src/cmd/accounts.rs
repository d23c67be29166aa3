//! `sluice login`, `sluice whoami`, `sluice token …`, `sluice users …` (including containing an
//! account: disable, enable, reset-password, unlock).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

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
    let answer = client.post(
        "/api/v1/login",
        &json!({"username": args.username, "password": password, "token_name": "cli login"}),
    )?;
    let credentials = Credentials {
        server: client.base().to_owned(),
        username: args.username.clone(),
        token: answer["token"]
            .as_str()
            .context("the server sent no token")?
            .to_owned(),
        expires_at: answer["record"]["expires_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
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
    let me = Client::new(&server)?.get("/api/v1/whoami")?;
    println!(
        "{} ({})",
        me["username"].as_str().unwrap_or("?"),
        roles_of(&me["roles"])
    );
    Ok(ExitCode::SUCCESS)
}

fn roles_of(value: &Value) -> String {
    value
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
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
                let mut body = json!({"username": username, "password": password,
                                      "token_name": name, "expires_in": expires});
                if !role.is_empty() {
                    body["roles"] = json!(role);
                }
                client.post("/api/v1/login", &body)?
            } else {
                let mut body = json!({"name": name, "expires_in": expires});
                if !role.is_empty() {
                    body["roles"] = json!(role);
                }
                let answer = client.post("/api/v1/tokens", &body)?;
                if expires_sooner_than_asked(&answer, &expires) {
                    eprintln!(
                        "note: capped at the expiry of the token that made it; use --password-stdin for a longer-lived one"
                    );
                }
                answer
            };
            eprintln!(
                "token {} for {} ({}), expires {}; the secret is shown this once:",
                answer["record"]["id"].as_str().unwrap_or("?"),
                answer["record"]["username"].as_str().unwrap_or("?"),
                roles_of(&answer["record"]["roles"]),
                answer["record"]["expires_at"].as_str().unwrap_or("?")
            );
            println!("{}", answer["token"].as_str().unwrap_or_default());
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
            let tokens = Client::new(&server)?.get(&path)?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        vec![
                            t["id"].as_str().unwrap_or_default().to_owned(),
                            t["username"].as_str().unwrap_or_default().to_owned(),
                            t["name"].as_str().unwrap_or_default().to_owned(),
                            roles_of(&t["roles"]),
                            t["expires_at"].as_str().unwrap_or_default().to_owned(),
                            t["revoked_at"].as_str().unwrap_or("-").to_owned(),
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
            let token = Client::new(&server)?.delete(&format!("/api/v1/tokens/{}", encode(&id)))?;
            eprintln!(
                "revoked token {} at {}",
                id,
                token["revoked_at"].as_str().unwrap_or("?")
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
fn expires_sooner_than_asked(answer: &Value, asked: &str) -> bool {
    let Ok(lifetime) = sluice_server::settings::parse_duration("expires", asked) else {
        return false;
    };
    let Some(expires) = answer["record"]["expires_at"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
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
            let user = Client::new(&server)?.post(
                "/api/v1/users",
                &json!({"username": username, "password": password, "roles": role, "groups": group}),
            )?;
            eprintln!(
                "created user {} ({})",
                user["username"].as_str().unwrap_or("?"),
                roles_of(&user["roles"])
            );
        }
        UsersCommand::List { server, output } => {
            let users = Client::new(&server)?.get("/api/v1/users")?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                let rows: Vec<Vec<String>> = users
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        vec![
                            u["username"].as_str().unwrap_or_default().to_owned(),
                            roles_of(&u["roles"]),
                            roles_of(&u["groups"]),
                            u["created_at"].as_str().unwrap_or_default().to_owned(),
                            if u["disabled"] == true {
                                "disabled"
                            } else {
                                "enabled"
                            }
                            .to_owned(),
                        ]
                    })
                    .collect();
                print_table(&["USER", "ROLES", "GROUPS", "CREATED", "STATE"], &rows);
            }
        }
        UsersCommand::Disable { server, username } => {
            let change = Client::new(&server)?.post(
                &format!("/api/v1/users/{}/disable", encode(&username)),
                &json!({}),
            )?;
            eprintln!(
                "disabled user {username}; {} token(s) revoked",
                change["revoked_tokens"].as_array().map_or(0, Vec::len)
            );
        }
        UsersCommand::Enable { server, username } => {
            Client::new(&server)?.post(
                &format!("/api/v1/users/{}/enable", encode(&username)),
                &json!({}),
            )?;
            eprintln!("enabled user {username}");
        }
        UsersCommand::ResetPassword {
            server,
            username,
            generate,
        } => {
            let body = if generate {
                json!({})
            } else {
                json!({"password": first_line_of_stdin()?})
            };
            let reset = Client::new(&server)?.post(
                &format!("/api/v1/users/{}/password", encode(&username)),
                &body,
            )?;
            eprintln!(
                "password of {username} reset; {} token(s) revoked",
                reset["revoked_tokens"].as_array().map_or(0, Vec::len)
            );
            if let Some(password) = reset["password"].as_str() {
                eprintln!("the new password, shown this once:");
                println!("{password}");
            }
        }
        UsersCommand::Locks { server, output } => {
            let locks = Client::new(&server)?.get("/api/v1/login-locks")?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&locks)?);
            } else {
                let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
                let rows: Vec<Vec<String>> = locks
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| {
                        vec![
                            text(&l["scope"]),
                            text(&l["account"]),
                            text(&l["address"]),
                            format!("{}/{}", l["failures"], l["limit"]),
                            text(&l["last_failure_at"]),
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
            let cleared = Client::new(&server)?
                .delete(&format!("/api/v1/login-locks?{}", query.join("&")))?;
            eprintln!(
                "forgot {} failed login(s)",
                cleared["failures_cleared"].as_u64().unwrap_or(0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
