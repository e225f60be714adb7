//! `authkeep status`: every session (or one) with issuer, expiry, whether it can
//! renew itself and its health. Never a secret. Each session becomes a typed
//! [`Row`], printed as JSON or as one line; its state is the library's.

use anyhow::Result;
use authkeep::oauth::display_url;
use authkeep::store::Store as _;
use authkeep::{FailureClass, Policy, Record, SessionKey, SessionState};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::common::instant;
use crate::config;
use crate::exit::NeedsLogin;
use crate::names::{NetworkArgs, OptionalProfileArg, PolicyArgs, ProfileArg, StoreArgs};
use crate::printer::{self, Level};
use crate::stores::Backend;

/// Show every session (or one): issuer, client, expiry, remaining time, whether it
/// can renew itself, and its health (last success, last error, next attempt).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: OptionalProfileArg,
    /// Print {"profiles": [...]} as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// What `status` shows of one session.
#[derive(Debug, Serialize)]
struct Row {
    profile: String,
    /// The library's state, or `unreadable`.
    state: &'static str,
    needs_login: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Where the session's secrets live: `file`, `encrypted-file` or
    /// `keyring`; absent without a session file.
    #[serde(skip_serializing_if = "Option::is_none")]
    secrets: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    session: Option<Details>,
}

/// What a readable record adds.
#[derive(Debug, Serialize)]
struct Details {
    issuer: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    expires_at: Option<String>,
    expired: bool,
    remaining_seconds: Option<i64>,
    can_renew: bool,
    refresh_expires_at: Option<String>,
    obtained_at: Option<String>,
    last_success_at: Option<String>,
    last_error: Option<LastError>,
    consecutive_failures: u32,
    next_attempt_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct LastError {
    class: FailureClass,
    message: String,
    at: String,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    // A broken configuration file must not hide the sessions: their state is
    // then judged by the default policy, with a warning.
    let asked = ProfileArg {
        profile: args.profile.profile.clone(),
    };
    let network = NetworkArgs {
        store: args.store.clone(),
        ..NetworkArgs::default()
    };
    let (settings, warning) = config::Settings::resolve_lenient(&asked, &args.policy, &network)?;
    if let Some(warning) = warning {
        printer::status(
            Level::Normal,
            Level::Normal,
            &config::ignored_warning(&warning),
        );
    }
    let store = settings.store();
    let keys = match &args.profile.profile {
        Some(_) => vec![settings.key.clone()],
        None => crate::runtime()?.block_on(store.list())?,
    };
    let now = Timestamp::now();
    let mut rows = Vec::new();
    let mut unreadable = None;
    for key in &keys {
        let policy = settings.policy_of(key)?;
        let secrets = store
            .sealed_kind_blocking(key)
            .ok()
            .and_then(|kind| Backend::of_kind(kind.as_deref()))
            .map(Backend::as_str);
        match store.load_with_skew_blocking(key) {
            Ok(loaded) => {
                let mut row = row(key, loaded.map(|v| v.record).as_ref(), &policy, now);
                row.secrets = secrets.filter(|_| row.session.is_some());
                rows.push(row);
            }
            Err(e) => {
                rows.push(Row {
                    profile: key.to_string(),
                    state: "unreadable",
                    needs_login: false,
                    error: Some(e.to_string()),
                    secrets,
                    session: None,
                });
                unreadable.get_or_insert(e);
            }
        }
    }
    if args.json {
        printer::json(&serde_json::json!({ "profiles": rows }))?;
    } else if rows.is_empty() {
        printer::out("no sessions; store one with `authkeep login`")?;
    } else {
        for row in &rows {
            printer::out(&line(row))?;
        }
    }
    if let Some(e) = unreadable {
        return Err(e.into());
    }
    // One profile asked for that needs a login: exit 3, as `token` would.
    if let (Some(name), [row]) = (&args.profile.profile, rows.as_slice()) {
        let what = match row.state {
            "none" => "there is no session for",
            "ended" => "the provider ended the session of",
            _ if row.needs_login => "a new login is needed for",
            _ => return Ok(()),
        };
        return Err(NeedsLogin(format!(
            "{what} profile {name}; log in with `authkeep login --profile {name}`"
        ))
        .into());
    }
    Ok(())
}

fn row(key: &SessionKey, record: Option<&Record>, policy: &Policy, now: Timestamp) -> Row {
    let state = policy.state(record, now);
    let session = record.map(|record| {
        let tokens = record.tokens.as_ref();
        let expires_at = tokens.and_then(|t| t.expires_at);
        let health = &record.health;
        let refresh_alive = tokens
            .and_then(|t| t.refresh_expires_at)
            .is_none_or(|at| now < at);
        Details {
            issuer: record.client.as_ref().map(|c| display_url(&c.issuer)),
            client_id: record.client.as_ref().map(|c| c.client_id.clone()),
            scope: tokens.and_then(|t| t.scope.clone()),
            expires_at: expires_at.map(instant),
            expired: tokens.is_some_and(|t| t.is_expired(now)),
            remaining_seconds: expires_at.map(|at| at.as_second().saturating_sub(now.as_second())),
            can_renew: record.can_renew() && refresh_alive,
            refresh_expires_at: tokens.and_then(|t| t.refresh_expires_at).map(instant),
            obtained_at: tokens.map(|t| instant(t.obtained_at)),
            last_success_at: health.last_success_at.map(instant),
            last_error: health.last_error.as_ref().map(|e| LastError {
                class: e.class,
                message: e.message.clone(),
                at: instant(e.at),
            }),
            consecutive_failures: health.consecutive_failures,
            next_attempt_at: health.next_attempt_at.filter(|at| *at > now).map(instant),
        }
    });
    Row {
        profile: key.to_string(),
        state: state.as_str(),
        needs_login: state.needs_login(),
        error: None,
        secrets: None,
        session: session.filter(|_| state != SessionState::None),
    }
}

/// One line for people.
fn line(row: &Row) -> String {
    let profile = &row.profile;
    let Some(details) = row.session.as_ref() else {
        return match &row.error {
            Some(error) => format!("{profile}: unreadable: {error}"),
            None => format!("{profile}: no session"),
        };
    };
    let mut parts = vec![format!("{profile}: {}", row.state.replace('_', " "))];
    parts.push(format!(
        "issuer {}",
        details.issuer.as_deref().unwrap_or("-")
    ));
    match (&details.expires_at, details.remaining_seconds) {
        (Some(at), Some(remaining)) if remaining > 0 => parts.push(format!(
            "expires {at} (in {})",
            printer::duration(SignedDuration::from_secs(remaining))
        )),
        (Some(at), _) => parts.push(format!("expired {at}")),
        (None, _) if row.state != "ended" => parts.push("expiry unknown".into()),
        (None, _) => {}
    }
    parts.push(if details.can_renew {
        "renews itself".into()
    } else {
        "cannot renew itself".into()
    });
    if let Some(secrets) = row.secrets {
        parts.push(match secrets {
            "keyring" => "secrets in the OS keyring".into(),
            "encrypted-file" => "secrets encrypted in its file".into(),
            _ => "secrets in its file (plain text, 0600)".into(),
        });
    }
    if let Some(error) = &details.last_error {
        parts.push(format!(
            "last error {} at {}: {}",
            error.class, error.at, error.message
        ));
    }
    if let Some(next) = &details.next_attempt_at {
        parts.push(format!("next refresh attempt after {next}"));
    }
    if row.needs_login {
        parts.push(format!(
            "log in again with `authkeep login --profile {profile}`"
        ));
    }
    parts.join("; ")
}
