//! `sluice login`, `sluice whoami`, `sluice token …`, `sluice users …`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::client::{Client, Credentials, ServerArgs, print_table, save_credentials};

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
        /// Lifetime, e.g. 30d or 12h.
        #[arg(long, default_value = "30d")]
        expires: String,
    },
    /// List your tokens (all users' with --all, admin only).
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Every user's tokens.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Revoke a token by id; it stops working at once.
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
        } => {
            let mut body = json!({"name": name, "expires_in": expires});
            if !role.is_empty() {
                body["roles"] = json!(role);
            }
            let answer = Client::new(&server)?.post("/api/v1/tokens", &body)?;
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
            output,
        } => {
            let path = if all {
                "/api/v1/tokens?all=true"
            } else {
                "/api/v1/tokens"
            };
            let tokens = Client::new(&server)?.get(path)?;
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
            let token = Client::new(&server)?.delete(&format!("/api/v1/tokens/{id}"))?;
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
                        ]
                    })
                    .collect();
                print_table(&["USER", "ROLES", "GROUPS", "CREATED"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
