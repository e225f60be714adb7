//! The one place that writes to stdout, and the status lines on stderr.
//!
//! stdout carries only what a command was asked for (a token, JSON, a table), so
//! `$(authkeep token)` stays clean. Status lines go to stderr: by default only
//! when something went wrong, every step with `-v`, nothing but errors with `-q`.

#![allow(clippy::print_stdout)]

use std::io::Write as _;

use authkeep::oauth::Cause;
use authkeep::policy::{LoginReason, RefreshReason};
use authkeep::{Event, FailureClass, Stored, Unrecorded};
use jiff::{SignedDuration, Timestamp};

use crate::common::{instant, lock_timeout_warning, serving_stored};

use crate::names::VerbosityArgs;

/// Writes a line to stdout. A failed write is an error: a command whose output
/// did not arrive has not succeeded.
pub fn out(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// Writes bytes to stdout as they are (a response body), flushed at once.
pub fn bytes(data: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(data)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// Writes a JSON value to stdout on one line.
pub fn json(value: &serde_json::Value) -> anyhow::Result<()> {
    out(&value.to_string())
}

/// What a failed write to stdout means: a reader that went away (`| head -c0`)
/// ends the command quietly, anything else with a message.
pub fn stdout_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        crate::exit::StdoutClosed.into()
    } else {
        anyhow::Error::new(error).context("cannot write to standard output")
    }
}

/// How much to say on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors only.
    Quiet,
    /// Warnings and errors.
    Normal,
    /// Every step.
    Verbose,
}

impl From<VerbosityArgs> for Level {
    fn from(args: VerbosityArgs) -> Self {
        if args.quiet {
            Level::Quiet
        } else if args.verbose {
            Level::Verbose
        } else {
            Level::Normal
        }
    }
}

/// Writes a status line on stderr if `level` allows it.
pub fn status(level: Level, needed: Level, line: &str) {
    if level >= needed {
        crate::common::stderr_line(&format!("authkeep: {line}"));
    }
}

/// A duration as people write it, to the second: `1m30s`, `-5s`.
pub fn duration(d: SignedDuration) -> String {
    use jiff::fmt::friendly::{Designator, Spacing, SpanPrinter};
    SpanPrinter::new()
        .designator(Designator::Compact)
        .spacing(Spacing::None)
        .duration_to_string(&SignedDuration::from_secs(d.as_secs()))
}

/// An event as a status line, with the level it needs to be shown.
pub fn describe(event: &Event, now: Timestamp) -> (Level, String) {
    use Level::{Normal, Verbose};
    let until = |at: &Option<Timestamp>| match at {
        Some(at) => format!(
            "valid until {} ({} left)",
            instant(*at),
            duration(at.duration_since(now))
        ),
        None => "expiry unknown".to_owned(),
    };
    match event {
        Event::Valid { key, expires_at } => (
            Verbose,
            format!(
                "{key}: stored token is {}; no network needed",
                until(expires_at)
            ),
        ),
        Event::ServedStored {
            key,
            expires_at,
            reason,
        } => {
            let level = if reason.is_warning() { Normal } else { Verbose };
            let line = match reason {
                Stored::LockTimeout { waited } => lock_timeout_warning(key, *waited),
                Stored::AfterFailure {
                    class,
                    cause,
                    message,
                } => format!(
                    "{key}: warning: refresh failed ({class}): {}; serving the stored token, still {}{}",
                    with_cause_hint(message, *cause),
                    until(expires_at),
                    match class {
                        FailureClass::InteractionRequired => format!(
                            "; log in again with `authkeep login --profile {key}` before it expires"
                        ),
                        FailureClass::Misconfiguration => "; check the client configuration".into(),
                        _ => String::new(),
                    }
                ),
                Stored::CannotRenew => format!(
                    "{key}: serving the stored token: the session cannot renew itself (no usable refresh token)"
                ),
                Stored::NoExpiryFromProvider => format!(
                    "{key}: serving the stored token: the provider gives no expiry for this token"
                ),
                Stored::CannotRenewForced => serving_stored(
                    key,
                    "a refresh was forced, but the session cannot renew itself (no usable refresh token)",
                ),
                Stored::CannotRenewShort => serving_stored(
                    key,
                    "it does not stay valid as long as asked, but the session cannot renew itself (no usable refresh token)",
                ),
                Stored::BackingOff { until } => serving_stored(
                    key,
                    &format!(
                        "a refresh is due but the last one failed; next attempt after {}",
                        instant(*until)
                    ),
                ),
                other => serving_stored(key, &format!("{other:?}")),
            };
            (level, line)
        }
        Event::WaitingForLock { key } => (
            Verbose,
            format!("{key}: another process is refreshing; waiting for it"),
        ),
        Event::UsedNewerSession { key } => (
            Verbose,
            format!("{key}: another process refreshed the session moments ago; using its result"),
        ),
        Event::Refreshing { key, reason } => (
            Verbose,
            format!("{key}: refreshing: {}", reason_text(*reason)),
        ),
        Event::Refreshed {
            key,
            expires_at,
            rotated,
        } => (
            Verbose,
            format!(
                "{key}: refreshed; new token {}{}",
                until(expires_at),
                if *rotated {
                    "; rotated refresh token saved"
                } else {
                    ""
                }
            ),
        ),
        // Shown by default only as part of what follows it: the warning that the
        // stored token was served, or the error that ends the command.
        Event::RefreshFailed {
            key,
            class,
            cause,
            message,
            next_attempt_at,
        } => (
            Verbose,
            format!(
                "{key}: refresh failed ({class}): {}{}",
                with_cause_hint(message, *cause),
                next_attempt_at
                    .map(|at| format!("; next attempt after {}", instant(at)))
                    .unwrap_or_default()
            ),
        ),
        Event::ShorterThanAsked { key, expires_at } => (
            Normal,
            format!(
                "{key}: warning: the token does not stay valid as long as --min-valid asks (the provider's lifetime is shorter); token {}",
                until(expires_at)
            ),
        ),
        Event::SessionEnded { key } => (
            Verbose,
            format!("{key}: the provider ended the session; tokens removed"),
        ),
        Event::LoginRequired { key, reason } => (
            Verbose,
            format!("{key}: login required: {}", login_text(*reason)),
        ),
        // The error that ends the command says it in full.
        Event::NotSaved { key, message } => (
            Verbose,
            format!("{key}: the refreshed tokens could not be saved: {message}"),
        ),
        Event::NotRecorded { key, what, message } => (
            Normal,
            format!(
                "{key}: warning: could not record {}: {message}",
                match what {
                    Unrecorded::Failure => "the failed refresh",
                    Unrecorded::ClockSkew => "the issuer's clock skew",
                    _ => "advisory state",
                }
            ),
        ),
        Event::CacheNotWritten { message } => (
            Verbose,
            format!("could not cache the provider's metadata: {message}"),
        ),
        Event::WaitingForProvider { key, until } => (
            Verbose,
            format!(
                "{key}: the provider asked not to be contacted before {}",
                instant(*until)
            ),
        ),
        _ => (Verbose, format!("{event:?}")),
    }
}

/// A failure's one line with what this command's user can do about its cause.
pub fn with_cause_hint(message: &str, cause: Cause) -> String {
    match cause {
        Cause::TimedOut => format!("{message} (--timeout)"),
        Cause::InsecureEndpoint => {
            format!("{message}; to send it over plain http anyway, pass --insecure-allow-http")
        }
        _ => message.to_owned(),
    }
}

fn reason_text(reason: RefreshReason) -> &'static str {
    match reason {
        RefreshReason::NoAccessToken => "no access token stored",
        RefreshReason::NearExpiry => "the token is inside the refresh window",
        RefreshReason::MinValid => "the token would not stay valid for --min-valid",
        RefreshReason::Expired => "the token has expired",
        RefreshReason::UnknownExpiry => "the token's expiry is unknown",
        RefreshReason::MaxAge => "the token has reached its maximum age",
        RefreshReason::Forced => "forced",
        _ => "due",
    }
}

fn login_text(reason: LoginReason) -> &'static str {
    match reason {
        LoginReason::NoSession => "no session",
        LoginReason::SessionEnded => "the provider ended the session",
        LoginReason::TokenRejected => "a server rejected the token and it cannot be renewed",
        LoginReason::ExpiredCannotRenew => "the token expired and cannot be renewed",
        LoginReason::RefreshTokenExpired => "the refresh token expired",
        LoginReason::InteractionRequired => "the provider requires a new sign-in",
        _ => "a new login is needed",
    }
}
