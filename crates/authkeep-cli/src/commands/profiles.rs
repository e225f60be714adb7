//! `authkeep profiles`: the profiles of `config.toml` and the stored sessions
//! that have no table there, with the default marked; `authkeep profiles default
//! NAME` chooses the default. Never a secret: where a client secret comes from
//! is not shown either.

use std::collections::BTreeMap;

use anyhow::Result;
use authkeep::oauth::display_url;
use authkeep::store::Store as _;
use serde::Serialize;

use crate::common::Home;
use crate::config::{self, ConfigFile, LoginMethod, session_key};
use crate::exit::usage;
use crate::names::DEFAULT_PROFILE;
use crate::printer::{self, Level};

/// What `authkeep profiles --help` says after the options.
pub const AFTER_HELP: &str = "\
Profiles live in config.toml in $AUTHKEEP_HOME (default: the platform's config directory). \
A setting comes from its flag, else its environment variable, else the profile's table, \
else the file's top level, else the default. For example:

    default_profile = \"work\"
    refresh_threshold = \"5m\"

    [profiles.work]
    issuer = \"https://login.example.com\"
    client_id = \"cli\"
    client_secret_env = \"WORK_CLIENT_SECRET\"   # or client_secret_file; never the secret
    scopes = [\"openid\", \"offline_access\"]
    login = \"browser\"                          # browser, device, client-credentials, token
    refresh_threshold = \"10m\"

Other keys of a profile: client_auth (basic, post), audience, authorization_params \
(a table of extra parameters), redirect_uri, token_endpoint, refresh_fraction, \
insecure_allow_http. Top level: lock_timeout, connect_timeout, timeout, refresh_fraction.";

/// List the profiles (configured and stored), or choose the default one.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Print {"default": NAME, "profiles": [...]} as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Use NAME when no --profile or AUTHKEEP_PROFILE is given (sets default_profile in config.toml).
    Default {
        /// A configured profile or a stored session.
        name: String,
    },
}

/// What `profiles` shows of one profile.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    default: bool,
    /// Whether config.toml has a table for it.
    configured: bool,
    /// Whether a session is stored for it.
    session: bool,
    issuer: Option<String>,
    client_id: Option<String>,
    login: Option<LoginMethod>,
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let home = Home::locate()?;
    let path = home.config_file();
    let file = ConfigFile::read(&path)?;
    let stored = crate::runtime()?.block_on(home.store().list())?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let default = file.default_profile().unwrap_or(DEFAULT_PROFILE);
    for (name, profile) in file.profiles() {
        rows.insert(
            name.to_owned(),
            Row {
                name: name.to_owned(),
                default: name == default,
                configured: true,
                session: false,
                issuer: profile.issuer.as_deref().map(display_url),
                client_id: profile.client_id.clone(),
                login: profile.login,
            },
        );
    }
    for key in &stored {
        let row = rows.entry(key.to_string()).or_insert_with(|| Row {
            name: key.to_string(),
            default: key.as_str() == default,
            configured: false,
            session: true,
            issuer: None,
            client_id: None,
            login: None,
        });
        row.session = true;
        if row.issuer.is_none() || row.client_id.is_none() {
            // What the session was stored with; an unreadable record adds nothing
            // here (`status` says what is wrong with it).
            let client = home
                .store()
                .load_with_skew_blocking(key)
                .ok()
                .flatten()
                .and_then(|v| v.record.client);
            if let Some(client) = client {
                row.issuer
                    .get_or_insert_with(|| display_url(&client.issuer));
                row.client_id.get_or_insert(client.client_id);
            }
        }
    }
    match args.action {
        Some(Action::Default { name }) => {
            session_key(&name)?;
            if !rows.contains_key(&name) {
                let known: Vec<&str> = rows.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none yet; add a [profiles.NAME] table or log in with `authkeep login`"
                        .to_owned()
                } else {
                    known.join(", ")
                };
                return Err(usage(format!(
                    "unknown profile {name:?}; known profiles: {known}"
                )));
            }
            config::set_default_profile(&path, &name)?;
            printer::status(
                level,
                Level::Normal,
                &format!("{name} is now the default profile ({})", path.display()),
            );
            Ok(())
        }
        None if args.json => {
            let rows: Vec<&Row> = rows.values().collect();
            printer::json(&serde_json::json!({ "default": default, "profiles": rows }))
        }
        None if rows.is_empty() => printer::out(&format!(
            "no profiles; add a [profiles.NAME] table to {} or log in with `authkeep login`",
            path.display()
        )),
        None => {
            for row in rows.values() {
                printer::out(&line(row))?;
            }
            Ok(())
        }
    }
}

/// One line for people.
fn line(row: &Row) -> String {
    let name = if row.default {
        format!("{} (default)", row.name)
    } else {
        row.name.clone()
    };
    let mut parts = vec![format!("issuer {}", row.issuer.as_deref().unwrap_or("-"))];
    parts.push(format!(
        "client {}",
        row.client_id.as_deref().unwrap_or("-")
    ));
    if let Some(login) = row.login {
        parts.push(format!("login {}", login.as_str()));
    }
    parts.push(
        match (row.configured, row.session) {
            (true, true) => "session stored",
            (true, false) => "no session",
            (false, _) => "session stored, not in config.toml",
        }
        .to_owned(),
    );
    format!("{name}: {}", parts.join("; "))
}
