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
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use authkeep::{AccessToken, FileStore, Policy, SessionKey};
use jiff::{SignedDuration, Timestamp};

use crate::names;

/// The directories authkeep uses.
#[derive(Clone, Debug)]
pub struct Home {
    /// Holds `config.toml`.
    pub config_dir: PathBuf,
    /// Holds sessions and caches.
    pub state_dir: PathBuf,
    /// Whether a session store that other users may read or change is used
    /// rather than refused (`--insecure-permissions` and its variable and key;
    /// `locate` leaves it off).
    pub insecure_permissions: bool,
}

impl Home {
    /// `AUTHKEEP_HOME` for both, else the platform's configuration and state
    /// directories.
    pub fn locate() -> Result<Self> {
        if let Some(home) = std::env::var_os(names::ENV_HOME).filter(|h| !h.is_empty()) {
            let home = PathBuf::from(home);
            return Ok(Self {
                config_dir: home.clone(),
                state_dir: home,
                insecure_permissions: false,
            });
        }
        let config = dirs::config_dir().ok_or_else(|| {
            anyhow!(
                "cannot find a configuration directory; set {}",
                names::ENV_HOME
            )
        })?;
        let state = dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .ok_or_else(|| anyhow!("cannot find a state directory; set {}", names::ENV_HOME))?;
        Ok(Self {
            config_dir: config.join("authkeep"),
            state_dir: state.join("authkeep"),
            insecure_permissions: false,
        })
    }

    /// The configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The session store, refusing files and a directory that other users may
    /// use unless `insecure_permissions` allows them.
    pub fn store(&self) -> FileStore {
        FileStore::new(self.state_dir.join("sessions"))
            .with_insecure_permissions(self.insecure_permissions)
    }
}

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

/// The profile to use: the one asked for (`--profile`, else `AUTHKEEP_PROFILE`),
/// else the configuration's `default_profile`, else `default`. Both binaries
/// choose with this function.
pub fn profile_name<'a>(asked: Option<&'a str>, default_profile: Option<&'a str>) -> &'a str {
    asked.or(default_profile).unwrap_or(names::DEFAULT_PROFILE)
}

/// The refresh policy: what was asked for (a flag, else its environment
/// variable), else the profile's setting, else the top level's, else the
/// default. `layers` are the configuration's (threshold, fraction) pairs, the
/// profile's first. Both binaries decide with this function, so the front
/// serves exactly when the full binary would not refresh. The error says which
/// value is wrong, without saying where it came from.
pub fn refresh_policy(
    threshold: Option<SignedDuration>,
    fraction: Option<f64>,
    layers: [(Option<&str>, Option<f64>); 2],
) -> Result<Policy, String> {
    let defaults = Policy::default();
    let threshold = match threshold {
        Some(asked) => asked,
        None => match layers.iter().find_map(|(t, _)| *t) {
            Some(text) => names::parse_duration(text)?,
            None => defaults.threshold,
        },
    };
    let fraction = fraction
        .or_else(|| layers.iter().find_map(|(_, f)| *f))
        .unwrap_or(defaults.fraction);
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!(
            "invalid share {fraction}: a number from 0 to 1, such as 0.5"
        ));
    }
    Ok(defaults.with_threshold(threshold).with_fraction(fraction))
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
