//! What both binaries share: where authkeep's files live, the common
//! `authkeep token` command line read without clap, and how a served token is
//! printed.
//!
//! `authkeep` itself is a small front binary (`front.rs`) that serves the warm
//! path of that common invocation (a file read and a decision) and hands every
//! other command line to the full binary, `authkeep-main` (`main.rs`). Both
//! compile this module; the front links nothing else of the CLI.

use std::ffi::OsString;
use std::io::Write as _;

use authkeep::{AccessToken, SessionKey};
use jiff::Timestamp;

use crate::names;

// Both binaries choose the profile and policy with these library functions, so
// the front serves exactly when the full binary would not refresh; the full
// binary reaches them through `authkeep::config::Settings`.
#[allow(unused_imports)]
pub use authkeep::config::{Home, profile_name, refresh_policy};

/// The variables that set `token` arguments; while one is set, the command line
/// is left to clap.
pub const SETTING_VARIABLES: [&str; 9] = [
    names::ENV_PROFILE,
    names::ENV_REFRESH_THRESHOLD,
    names::ENV_REFRESH_FRACTION,
    names::ENV_LOCK_TIMEOUT,
    names::ENV_CONNECT_TIMEOUT,
    names::ENV_TIMEOUT,
    names::ENV_STORE,
    names::ENV_KEY_FILE,
    names::ENV_INSECURE_KEYRING_FALLBACK,
];

/// The common `authkeep token` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonToken {
    /// `--profile`, when given.
    pub profile: Option<String>,
    /// `--json`.
    pub json: bool,
    /// `-v`.
    pub verbose: bool,
    /// `-q`.
    pub quiet: bool,
}

impl CommonToken {
    /// Reads the common invocation without clap: `token` with any of `--json`,
    /// `--profile NAME` (`-p NAME`, `--profile=NAME`), `-v`/`--verbose` or
    /// `-q`/`--quiet`, each at most once, and none of the setting variables in the
    /// environment (`is_set` says which are). Anything else is `None`, for clap.
    ///
    /// Written by hand because on the warm path clap is the largest body of code
    /// the process would touch: building and running its parser costs more than
    /// reading the record. A unit test holds it to clap's result for every form.
    pub fn read(args: &[OsString], is_set: impl Fn(&str) -> bool) -> Option<Self> {
        if SETTING_VARIABLES.iter().any(|name| is_set(name)) {
            return None;
        }
        let mut profile = None;
        let (mut json, mut verbose, mut quiet) = (false, false, false);
        let mut rest = args.iter().map(|a| a.to_str());
        if rest.next()? != Some("token") {
            return None;
        }
        while let Some(arg) = rest.next() {
            let seen = match arg? {
                "--json" => std::mem::replace(&mut json, true),
                "-v" | "--verbose" => std::mem::replace(&mut verbose, true),
                "-q" | "--quiet" => std::mem::replace(&mut quiet, true),
                "-p" | "--profile" => {
                    let value = rest.next()??;
                    profile.replace(value.to_owned()).is_some() || value.starts_with('-')
                }
                other => {
                    let value = other.strip_prefix("--profile=")?;
                    profile.replace(value.to_owned()).is_some()
                }
            };
            if seen || (verbose && quiet) {
                return None;
            }
        }
        Some(Self {
            profile,
            json,
            verbose,
            quiet,
        })
    }
}

/// Prints a served token on stdout: the bare token and a newline, or with
/// `json` the object `{"access_token","token_type","expires_at","expired","profile"}`
/// (never the refresh token).
pub fn print_token(
    access_token: &AccessToken,
    token_type: &str,
    expires_at: Option<Timestamp>,
    profile: &SessionKey,
    now: Timestamp,
    json: bool,
) -> std::io::Result<()> {
    let line = if json {
        serde_json::json!({
            "access_token": access_token.expose_secret(),
            "token_type": token_type,
            "expires_at": expires_at.map(instant),
            "expired": expires_at.is_some_and(|at| now >= at),
            "profile": profile.as_str(),
        })
        .to_string()
    } else {
        access_token.expose_secret().to_owned()
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush())
}

/// Writes an error on stderr: one line, or with `json` one JSON object
/// `{"error": CLASS, "message": TEXT}`.
pub fn report_error(json: bool, class: &str, message: &str) {
    let line = if json {
        serde_json::json!({ "error": class, "message": message }).to_string()
    } else {
        format!("authkeep: error: {message}")
    };
    stderr_line(&line);
}

/// Writes a line on stderr. stderr is where errors go: when it cannot be
/// written there is nowhere left to say so, and the exit code still tells.
pub fn stderr_line(line: &str) {
    writeln!(std::io::stderr().lock(), "{line}").ok();
}

/// The warning that the stored token is served although a refresh was due.
pub fn serving_stored(key: &SessionKey, why: &str) -> String {
    format!("{key}: warning: serving the stored token: {why}")
}

/// The warning that the stored token is served because another process held
/// the session's lock for the whole wait.
pub fn lock_timeout_warning(key: &SessionKey, waited: std::time::Duration) -> String {
    let timeout = authkeep::StoreError::LockTimeout {
        key: key.to_string(),
        waited,
    };
    serving_stored(
        key,
        &format!(
            "it is still valid, but {}",
            with_lock_timeout_hint(&timeout.to_string())
        ),
    )
}

/// A lock time-out's message with what to do about it.
pub fn with_lock_timeout_hint(message: &str) -> String {
    format!(
        "{message}; raise --lock-timeout ({}) if that is expected",
        names::ENV_LOCK_TIMEOUT
    )
}

/// An instant as authkeep prints it: RFC 3339 UTC, to the second.
pub fn instant(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}
