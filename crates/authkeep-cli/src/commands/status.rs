//! `authkeep status`: every session (or one) with issuer, expiry, whether it can
//! renew itself and its health. Never a secret.

use anyhow::Result;
use authkeep::keeper::human_signed;
use authkeep::oauth::display_url;
use authkeep::store::Store as _;
use authkeep::token::format_instant;
use authkeep::{Policy, Record, SessionKey};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::common::{Home, default_policy};
use crate::config::{self, session_key};
use crate::exit;
use crate::exit::NeedsLogin;
use crate::names::{NetworkArgs, OptionalProfileArg, PolicyArgs};
use crate::printer::{self, Level};

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
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let home = Home::locate()?;
    let store = home.store();
    let keys = match &args.profile.profile {
        Some(name) => vec![session_key(name)?],
        None => crate::runtime()?.block_on(store.list())?,
    };
    let now = Timestamp::now();
    // A broken configuration file must not hide the sessions: their state is
    // then judged by the default policy, with a warning.
    let policy = match config::settings(&args.policy, &NetworkArgs::default()) {
        Ok((_, settings)) => settings.policy,
        Err(e) => {
            printer::status(
                Level::Normal,
                Level::Normal,
                &format!(
                    "warning: {}; judging with the default refresh policy",
                    exit::one_line(&e)
                ),
            );
            default_policy()
        }
    };
    let mut rows = Vec::new();
    let mut unreadable = None;
    for key in &keys {
        match store.load_with_skew_blocking(key) {
            Ok(Some(v)) => rows.push(describe(key, Some(&v.record), &policy, now)),
            Ok(None) => rows.push(describe(key, None, &policy, now)),
            Err(e) => {
                rows.push(json!({ "profile": key.as_str(), "state": "unreadable", "error": e.to_string() }));
                unreadable.get_or_insert(e);
            }
        }
    }
    if args.json {
        printer::json(&json!({ "profiles": rows }))?;
    } else if rows.is_empty() {
        printer::out("no sessions; store one with `authkeep login`")?;
    } else {
        for row in &rows {
            printer::out(&human_row(row, now))?;
        }
    }
    if let Some(e) = unreadable {
        return Err(e.into());
    }
    // One profile asked for that needs a login: exit 3, as `token` would.
    if let (Some(name), [row]) = (&args.profile.profile, rows.as_slice()) {
        let what = match row["state"].as_str() {
            Some("none") => "there is no session for",
            Some("ended") => "the provider ended the session of",
            _ if row["needs_login"] == true => "a new login is needed for",
            _ => return Ok(()),
        };
        return Err(NeedsLogin(format!(
            "{what} profile {name}; log in with `authkeep login --profile {name}`"
        ))
        .into());
    }
    Ok(())
}

fn describe(key: &SessionKey, record: Option<&Record>, policy: &Policy, now: Timestamp) -> Value {
    let state = policy.state(record, now);
    let Some(record) = record else {
        return json!({ "profile": key.as_str(), "state": state.as_str(), "needs_login": true });
    };
    let tokens = record.tokens.as_ref();
    let expires_at = tokens.and_then(|t| t.expires_at);
    let health = &record.health;
    let refresh_alive = tokens
        .and_then(|t| t.refresh_expires_at)
        .is_none_or(|at| now < at);
    json!({
        "profile": key.as_str(),
        "state": state.as_str(),
        "needs_login": state.needs_login(),
        "issuer": record.client.as_ref().map(|c| display_url(&c.issuer)),
        "client_id": record.client.as_ref().map(|c| c.client_id.as_str()),
        "scope": tokens.and_then(|t| t.scope.as_deref()),
        "expires_at": expires_at.map(format_instant),
        "expired": tokens.is_some_and(|t| t.is_expired(now)),
        "remaining_seconds": expires_at.map(|at| at.as_second() - now.as_second()),
        "can_renew": record.can_renew() && refresh_alive,
        "refresh_expires_at": tokens.and_then(|t| t.refresh_expires_at).map(format_instant),
        "obtained_at": tokens.map(|t| format_instant(t.obtained_at)),
        "last_success_at": health.last_success_at.map(format_instant),
        "last_error": health.last_error.as_ref().map(|e| json!({
            "class": e.class.as_str(),
            "message": e.message,
            "at": format_instant(e.at),
        })),
        "consecutive_failures": health.consecutive_failures,
        "next_attempt_at": health.next_attempt_at.map(format_instant),
    })
}

fn human_row(row: &Value, now: Timestamp) -> String {
    let text = |k: &str| row[k].as_str().unwrap_or("-").to_owned();
    let profile = text("profile");
    let state = text("state");
    if state == "none" || state == "unreadable" {
        let detail = row["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return format!(
            "{profile}: {}{detail}",
            if state == "none" {
                "no session"
            } else {
                "unreadable"
            }
        );
    }
    let mut parts = vec![format!("{profile}: {}", state.replace('_', " "))];
    parts.push(format!("issuer {}", text("issuer")));
    match row["expires_at"].as_str() {
        Some(at) => {
            let remaining = row["remaining_seconds"].as_i64().unwrap_or(0);
            if remaining > 0 {
                parts.push(format!(
                    "expires {at} (in {})",
                    human_signed(jiff::SignedDuration::from_secs(remaining))
                ));
            } else {
                parts.push(format!("expired {at}"));
            }
        }
        None if state != "ended" => parts.push("expiry unknown".into()),
        None => {}
    }
    parts.push(if row["can_renew"] == true {
        "renews itself".into()
    } else {
        "cannot renew itself".into()
    });
    if let Some(error) = row["last_error"].as_object() {
        let at = error["at"].as_str().unwrap_or("-");
        parts.push(format!(
            "last error {} at {at}: {}",
            error["class"].as_str().unwrap_or("-"),
            error["message"].as_str().unwrap_or("-")
        ));
    }
    if let Some(next) = row["next_attempt_at"].as_str()
        && next.parse::<Timestamp>().is_ok_and(|t| t > now)
    {
        parts.push(format!("next refresh attempt after {next}"));
    }
    if row["needs_login"] == true {
        parts.push(format!(
            "log in again with `authkeep login --profile {profile}`"
        ));
    }
    parts.join("; ")
}
