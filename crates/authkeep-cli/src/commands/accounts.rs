//! `authkeep clients` and `authkeep accounts`: the OAuth clients many
//! accounts share, and the accounts' logins, in a database store (the one
//! the agent serves). Client secrets are read once (from a file or stdin,
//! never argv) and stored sealed, so every agent on the database has them.
//! Listings never show a secret.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use authkeep::{Client, ClientAuth, ClientSecret, SessionKey, TokenResponse};
use authkeep_db::{AccountFilter, AccountLogin, AccountState, DbOptions, NewClient};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::common::Home;
use crate::database::{DbArgs, db_error, open};
use crate::exit::{RetryLater, usage};
use crate::printer;

/// `authkeep clients`.
#[derive(Args, Debug)]
pub struct ClientsArgs {
    #[command(subcommand)]
    command: ClientsCommand,
}

#[derive(Subcommand, Debug)]
enum ClientsCommand {
    /// Add an OAuth client under a name, for accounts to share.
    Add {
        /// The client's name (1 to 256 printable ASCII characters, not /).
        name: String,
        /// The provider's issuer URL (discovery finds its token endpoint).
        #[arg(long, value_name = "URL")]
        issuer: String,
        /// The client id registered at the provider.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// A file holding the client secret, or - for stdin (never a flag value).
        #[arg(long, value_name = "PATH")]
        client_secret_file: Option<PathBuf>,
        /// Send the secret in the request body instead of HTTP Basic.
        #[arg(long, requires = "client_secret_file")]
        secret_in_body: bool,
        /// A scope the client asks for (repeat for more).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// The token endpoint, for providers without discovery.
        #[arg(long, value_name = "URL")]
        token_endpoint: Option<String>,
        /// Replace a client of the same name (its issuer and id only while no account uses it).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the clients (never their secrets).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a client no account uses.
    Remove {
        /// The client's name.
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `authkeep accounts`.
#[derive(Args, Debug)]
pub struct AccountsArgs {
    #[command(subcommand)]
    command: AccountsCommand,
}

#[derive(Subcommand, Debug)]
enum AccountsCommand {
    /// Store many logins: JSON lines {"id": ..., plus the token response fields} from FILE or stdin.
    Import {
        /// The client the accounts belong to.
        #[arg(long, value_name = "NAME")]
        client: String,
        /// The file of JSON lines, or - for stdin [default: -].
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Store one account's login from a token response (JSON).
    Add {
        /// The account id (1 to 256 printable ASCII characters, not /).
        id: String,
        /// The client the account belongs to.
        #[arg(long, value_name = "NAME")]
        client: String,
        /// The token response (JSON) file, or - for stdin.
        #[arg(long, value_name = "FILE")]
        from_json: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List accounts with their state and health (never a secret).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only accounts in this state: active, failing, cannot_renew, needs_login.
        #[arg(long, value_name = "STATE", value_parser = parse_state)]
        state: Option<AccountState>,
        /// Only accounts of this client.
        #[arg(long, value_name = "NAME")]
        client: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove an account's session (waiting for a refresh in progress).
    Remove {
        /// The account id.
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn parse_state(text: &str) -> Result<AccountState, String> {
    AccountState::parse(text)
        .ok_or_else(|| "use one of active, failing, cannot_renew, needs_login".to_owned())
}

fn account_id(id: &str) -> Result<SessionKey> {
    SessionKey::account(id).map_err(|e| usage(e.to_string()))
}

/// Runs `authkeep clients`.
pub fn run_clients(args: ClientsArgs) -> Result<()> {
    let home = Home::locate()?;
    crate::runtime()?.block_on(async {
        match args.command {
            ClientsCommand::Add {
                name,
                issuer,
                client_id,
                client_secret_file,
                secret_in_body,
                scopes,
                token_endpoint,
                replace,
                db,
            } => {
                url::Url::parse(&issuer).map_err(|_| usage("--issuer is not a URL"))?;
                let mut client = Client::new(issuer, client_id);
                if let Some(path) = client_secret_file {
                    let auth = if secret_in_body {
                        ClientAuth::ClientSecretPost
                    } else {
                        ClientAuth::ClientSecretBasic
                    };
                    client = client.with_secret(read_secret(&path)?, auth);
                }
                if !scopes.is_empty() {
                    client = client.with_scope(scopes.join(" "));
                }
                if let Some(endpoint) = token_endpoint {
                    client = client.with_token_endpoint(endpoint);
                }
                let store = open(&db, &home, DbOptions::default()).await?;
                let mut new = NewClient::new(name.clone(), client);
                if replace {
                    new = new.replacing();
                }
                let added = store.add_client(new).await.map_err(db_error);
                store.close().await;
                added?;
                printer::out(&format!("client {name:?} stored"))
            }
            ClientsCommand::List { json, db } => {
                let store = open(&db, &home, DbOptions::default()).await?;
                let clients = store.clients().await.map_err(db_error);
                store.close().await;
                for named in clients? {
                    let c = &named.client;
                    if json {
                        printer::json(&json!({
                            "name": named.name,
                            "issuer": c.issuer,
                            "client_id": c.client_id,
                            "has_secret": c.client_secret.is_some(),
                            "scope": c.scope,
                        }))?;
                    } else {
                        printer::out(&format!(
                            "{}\t{}\t{}{}",
                            named.name,
                            c.issuer,
                            c.client_id,
                            if c.client_secret.is_some() {
                                "\t(secret stored)"
                            } else {
                                ""
                            }
                        ))?;
                    }
                }
                Ok(())
            }
            ClientsCommand::Remove { name, db } => {
                let store = open(&db, &home, DbOptions::default()).await?;
                let removed = store.remove_client(&name).await.map_err(db_error);
                store.close().await;
                if removed? {
                    printer::out(&format!("client {name:?} removed"))
                } else {
                    Err(usage(format!("no client named {name:?}")))
                }
            }
        }
    })
}

/// Runs `authkeep accounts`.
pub fn run_accounts(args: AccountsArgs) -> Result<()> {
    let home = Home::locate()?;
    crate::runtime()?.block_on(async {
        match args.command {
            AccountsCommand::Import { client, file, db } => {
                let path = file.unwrap_or_else(|| PathBuf::from("-"));
                let logins = read_lines(&path, &client)?;
                let store = open(&db, &home, DbOptions::default()).await?;
                let now = jiff::Timestamp::now();
                let done = store.put_accounts(logins, now).await.map_err(db_error);
                store.close().await;
                let done = done?;
                printer::out(&format!("{} account(s) stored", done.written.len()))?;
                if !done.busy.is_empty() {
                    return Err(RetryLater(format!(
                        "{} account(s) were being refreshed and were left as they were; import them again",
                        done.busy.len()
                    ))
                    .into());
                }
                Ok(())
            }
            AccountsCommand::Add {
                id,
                client,
                from_json,
                db,
            } => {
                let key = account_id(&id)?;
                let response = read_response(&from_json)?;
                let store = open(&db, &home, DbOptions::default()).await?;
                let now = jiff::Timestamp::now();
                let stored = store.put_account(&key, &client, response, now).await.map_err(db_error);
                store.close().await;
                let generation = stored?;
                printer::out(&format!("account {id:?} stored (generation {generation})"))
            }
            AccountsCommand::List {
                json,
                state,
                client,
                db,
            } => {
                let mut filter = AccountFilter::all();
                if let Some(state) = state {
                    filter = filter.state(state);
                }
                if let Some(client) = client {
                    filter = filter.client(client);
                }
                let store = open(&db, &home, DbOptions::default()).await?;
                let accounts = store.accounts(&filter).await.map_err(db_error);
                store.close().await;
                for summary in accounts? {
                    if json {
                        printer::json(&authkeep_agent::summary_json(&summary))?;
                    } else {
                        let error = summary.last_error_class.map_or_else(String::new, |class| {
                            format!(
                                "\tlast error {}{}",
                                class.as_str(),
                                summary
                                    .last_error_code
                                    .as_deref()
                                    .map(|c| format!(" ({c})"))
                                    .unwrap_or_default()
                            )
                        });
                        let when = |t: Option<jiff::Timestamp>| t.map_or("-".to_owned(), |t| t.to_string());
                        printer::out(&format!(
                            "{}\t{}\t{}\texpires {}\tnext {}{error}",
                            summary.key,
                            summary.state.as_str(),
                            summary.client.as_deref().unwrap_or("-"),
                            when(summary.expires_at),
                            when(summary.due_at),
                        ))?;
                    }
                }
                Ok(())
            }
            AccountsCommand::Remove { id, db } => {
                let key = account_id(&id)?;
                let store = open(&db, &home, DbOptions::default()).await?;
                let removed = store.remove_account(&key).await.map_err(db_error);
                store.close().await;
                if removed? {
                    printer::out(&format!("account {id:?} removed"))
                } else {
                    Err(usage(format!("no account {id:?}")))
                }
            }
        }
    })
}

/// Reads a whole input: a file, or stdin for `-`.
fn read_input(path: &Path, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {what} from stdin"))?;
    } else {
        bytes = std::fs::read(path)
            .with_context(|| format!("cannot read {what} from {}", path.display()))?;
    }
    Ok(bytes)
}

fn read_secret(path: &Path) -> Result<ClientSecret> {
    let bytes = zeroize::Zeroizing::new(read_input(path, "the client secret")?);
    let text = std::str::from_utf8(&bytes).map_err(|_| usage("the client secret is not text"))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(usage("the client secret is empty"));
    }
    Ok(ClientSecret::new(secret))
}

/// A token response as a login: at least an access or a refresh token.
/// Errors never quote the input.
fn login_fields(map: &serde_json::Map<String, Value>, place: &str) -> Result<TokenResponse> {
    let response = TokenResponse::from_fields(map);
    if response.access_token.is_empty() && response.refresh_token.is_none() {
        return Err(usage(format!(
            "{place} holds neither an access_token nor a refresh_token"
        )));
    }
    Ok(response)
}

fn read_response(path: &Path) -> Result<TokenResponse> {
    let bytes = zeroize::Zeroizing::new(read_input(path, "the token response")?);
    let place = path.display().to_string();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => login_fields(&map, &place),
        _ => Err(usage(format!(
            "{place} must hold a JSON object with access_token or refresh_token"
        ))),
    }
}

fn read_lines(path: &Path, client: &str) -> Result<Vec<AccountLogin>> {
    let bytes = zeroize::Zeroizing::new(read_input(path, "the accounts")?);
    let text = std::str::from_utf8(&bytes).map_err(|_| usage("the accounts are not UTF-8 text"))?;
    let mut logins = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("line {line_no}");
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(line) else {
            return Err(usage(format!(
                "{place} is not a JSON object {{\"id\": ..., <token response fields>}}"
            )));
        };
        let Some(Value::String(id)) = map.remove("id") else {
            return Err(usage(format!("{place} has no \"id\" string")));
        };
        let key = SessionKey::account(&id).map_err(|e| usage(format!("{place}: {e}")))?;
        if !seen.insert(id) {
            return Err(usage(format!(
                "{place} repeats an account id of an earlier line"
            )));
        }
        logins.push(AccountLogin::new(key, client, login_fields(&map, &place)?));
    }
    if logins.is_empty() {
        return Err(usage("no accounts to import"));
    }
    Ok(logins)
}
