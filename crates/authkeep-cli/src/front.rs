//! `authkeep`: the front of the command.
//!
//! The warm path of `authkeep token` is a file read and a decision, yet a binary
//! that carries an HTTP stack, TLS and a full argument parser spends more time
//! paging itself in than doing that. So `authkeep` is small: it serves the common
//! invocation (`authkeep token [--profile NAME] [--json] [-q]`) when the stored
//! token is valid and outside its refresh window, also after waiting for another
//! process's refresh; and it hands every other command line, unchanged, to the
//! full binary `authkeep-main` installed beside it, which decides everything again.
//!
//! `authkeep kubectl [--profile NAME] [--login] [-q]` is served alike, with the
//! token printed as kubectl's `ExecCredential` (`kube.rs`).
//!
//! It reads `config.toml` itself, only the keys that change the decision
//! (`default_profile`, `insecure_permissions`, the refresh threshold and fraction
//! at the top level and in the profile's table), and chooses the profile and policy with the same
//! functions as the full binary (`common::profile_name`, `common::refresh_policy`),
//! so it serves exactly when the full binary would not refresh. Whatever it cannot
//! read or parse, it leaves to the full binary, which validates the whole file.
//! A session store that other users may read or change is refused by the same
//! library check as in the full binary; the front then hands over, and the full
//! binary reports it.

use std::collections::BTreeMap;
use std::env::VarError;
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use authkeep::policy::UseReason;
use authkeep::{
    Clock as _, DEFAULT_LOCK_TIMEOUT, Decision, Demand, Record, SessionKey, StoreError,
    SystemClock, TokenSet,
};
use common::CommonToken;
use jiff::Timestamp;
use serde::Deserialize;
use serde::de::IgnoredAny;

mod common;
mod handover;
mod kube;
// The front uses only the names of the settings; the full binary uses the rest.
#[allow(dead_code)]
mod names;

/// What the front reads of `config.toml`: the keys that can change the warm
/// path's decision. Every other key the file may hold is skipped unread (the full
/// binary validates those); a key the file may not hold (a typo, a secret) fails
/// the parse, so the full binary reports it. A unit test holds the names to
/// [`names::CONFIG_KEYS`] and [`names::PROFILE_KEYS`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "the skipped keys are only named, never read")]
struct QuickConfig {
    default_profile: Option<String>,
    refresh_threshold: Option<String>,
    refresh_fraction: Option<f64>,
    lock_timeout: Option<IgnoredAny>,
    connect_timeout: Option<IgnoredAny>,
    timeout: Option<IgnoredAny>,
    store: Option<IgnoredAny>,
    key_file: Option<std::path::PathBuf>,
    insecure_keyring_fallback: Option<IgnoredAny>,
    insecure_permissions: Option<bool>,
    #[serde(default)]
    profiles: BTreeMap<String, QuickProfile>,
}

/// What the front reads of one `[profiles.NAME]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "the skipped keys are only named, never read")]
struct QuickProfile {
    refresh_threshold: Option<String>,
    refresh_fraction: Option<f64>,
    issuer: Option<IgnoredAny>,
    client_id: Option<IgnoredAny>,
    client_secret_file: Option<IgnoredAny>,
    client_secret_env: Option<IgnoredAny>,
    client_auth: Option<IgnoredAny>,
    scopes: Option<IgnoredAny>,
    audience: Option<IgnoredAny>,
    authorization_params: Option<IgnoredAny>,
    login: Option<IgnoredAny>,
    redirect_uri: Option<IgnoredAny>,
    token_endpoint: Option<IgnoredAny>,
    insecure_allow_http: Option<IgnoredAny>,
    store: Option<IgnoredAny>,
    credential_hosts: Option<IgnoredAny>,
    credential_username: Option<IgnoredAny>,
    credential_on_erase: Option<IgnoredAny>,
}

impl QuickConfig {
    /// The (threshold, fraction) layers of `profile`, for [`common::refresh_policy`].
    fn layers(&self, profile: &str) -> [(Option<&str>, Option<f64>); 2] {
        let own = self.profiles.get(profile);
        [
            (
                own.and_then(|p| p.refresh_threshold.as_deref()),
                own.and_then(|p| p.refresh_fraction),
            ),
            (self.refresh_threshold.as_deref(), self.refresh_fraction),
        ]
    }
}

/// What the front prints when it serves a token.
#[derive(Clone, Copy)]
enum Output {
    /// `authkeep token`: the token, or its JSON object.
    Token,
    /// `authkeep kubectl`: an `ExecCredential` of this API version.
    Credential(&'static str),
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match serve_warm(&args) {
        Some(code) => code,
        None => {
            let program = args.first().cloned().unwrap_or_else(|| "authkeep".into());
            handover::run_full(program, args.get(1..).unwrap_or_default())
        }
    }
}

/// Serves the stored token when the common invocation finds it valid and outside
/// its window, and returns the exit code. When the token is due for refresh and
/// another process holds the session's lock (it is refreshing), waits for it to
/// let go and reads its result: N processes that start together cost one full
/// start and N small ones. Anything else (other flags, `-v`, a setting it cannot
/// read, a refresh to make, no session, an unreadable file) returns `None` and is
/// left to the full binary.
fn serve_warm(args: &[OsString]) -> Option<ExitCode> {
    // The front reads the setting variables itself (below), so none of them
    // sends the command line to clap; the timeouts cannot change the decision.
    let rest = args.get(1..).unwrap_or_default();
    let (invocation, output) = match common::CommonToken::read(rest, |_| false) {
        Some(invocation) => (invocation, Output::Token),
        None => {
            let (invocation, api) = kube::read_common(rest, kube::ExecInfo::from_environment)?;
            (invocation, Output::Credential(api))
        }
    };
    if invocation.verbose {
        return None;
    }
    let lock_timeout = match variable(names::ENV_LOCK_TIMEOUT)? {
        Some(text) => Duration::try_from(names::parse_duration(&text).ok()?).ok()?,
        None => DEFAULT_LOCK_TIMEOUT,
    };
    let mut home = common::Home::locate().ok()?;
    let config = quick_config(&home.config_file())?;
    home.insecure_permissions = names::switch_variable(names::ENV_INSECURE_PERMISSIONS).ok()?
        || config.insecure_permissions == Some(true);
    let from_environment = variable(names::ENV_PROFILE)?;
    let name = common::profile_name(
        invocation
            .profile
            .as_deref()
            .or(from_environment.as_deref()),
        config.default_profile.as_deref(),
    );
    let key = SessionKey::new(name).ok()?;
    let threshold = match variable(names::ENV_REFRESH_THRESHOLD)? {
        Some(text) => Some(names::parse_duration(&text).ok()?),
        None => None,
    };
    let fraction = match variable(names::ENV_REFRESH_FRACTION)? {
        Some(text) => Some(names::parse_fraction(&text).ok()?),
        None => None,
    };
    let policy = common::refresh_policy(threshold, fraction, config.layers(name)).ok()?;
    // Records sealed with a key file open here too; any other sealing (the
    // keyring) fails to decode below and is left to the full binary.
    let key_file = match variable(names::ENV_KEY_FILE)? {
        Some(path) => Some(std::path::PathBuf::from(path)),
        None => config.key_file.as_ref().map(|p| home.config_dir.join(p)),
    };
    let mut store = home.store();
    if let Some(path) = key_file {
        let key = authkeep::store::StoreKey::read_file(&path).ok()?;
        let sealer = authkeep::store::Encrypting::new(key);
        store = store.with_sealer(std::sync::Arc::new(sealer));
    }
    let clock = SystemClock;
    let (mut loaded, mut decision) = store.warm(&key, &policy, Demand::new(), clock.now()).ok()?;
    if matches!(decision, Decision::Refresh { .. }) && store.is_locked_blocking(&key).ok()? {
        if !store.wait_for_release_blocking(&key, lock_timeout).ok()? {
            let record = loaded.map(|v| v.record).unwrap_or_default();
            return Some(lock_timed_out(
                &invocation,
                output,
                &key,
                &record,
                lock_timeout,
            ));
        }
        (loaded, decision) = store.warm(&key, &policy, Demand::new(), clock.now()).ok()?;
    }
    let tokens = loaded.as_ref().and_then(|v| v.record.tokens.as_ref());
    let (Decision::UseStored(UseReason::Valid), Some(tokens)) = (decision, tokens) else {
        return None;
    };
    Some(print(&invocation, output, &key, tokens, clock.now()))
}

/// A setting variable: `Some(None)` when unset, `Some(Some(value))` when set;
/// `None` (leave it to the full binary) when set but empty or not Unicode, whose
/// reading is clap's to apply.
fn variable(name: &str) -> Option<Option<String>> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(Some(value)),
        Err(VarError::NotPresent) => Some(None),
        Ok(_) | Err(VarError::NotUnicode(_)) => None,
    }
}

/// The keys of `config.toml` that the warm path needs: empty when there is no
/// file; `None` (leave it to the full binary) when it cannot be read or parsed.
fn quick_config(path: &Path) -> Option<QuickConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(QuickConfig::default()),
        Err(_) => None,
    }
}

/// Prints the token and returns the exit code.
fn print(
    invocation: &CommonToken,
    output: Output,
    key: &SessionKey,
    tokens: &TokenSet,
    now: Timestamp,
) -> ExitCode {
    let printed = match output {
        Output::Token => common::print_token(
            &tokens.access_token,
            &tokens.token_type,
            tokens.expires_at,
            key,
            now,
            invocation.json,
        ),
        Output::Credential(api) => {
            kube::print_credential(api, &tokens.access_token, tokens.expires_at)
        }
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away: nothing was delivered, and nobody is listening.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(1),
        Err(e) => {
            let message = format!("cannot write to standard output: {e}");
            common::report_error(invocation.json, "unexpected", &message);
            ExitCode::from(1)
        }
    }
}

/// Another process held the session's lock for the whole lock wait: the stored
/// token if it is still valid, with a warning, else retry later (exit 4), as the
/// full binary says it.
fn lock_timed_out(
    invocation: &CommonToken,
    output: Output,
    key: &SessionKey,
    record: &Record,
    waited: Duration,
) -> ExitCode {
    let now = Timestamp::now();
    match record.tokens.as_ref().filter(|t| t.is_usable(now)) {
        Some(tokens) => {
            if !invocation.quiet {
                let warning = common::lock_timeout_warning(key, waited);
                common::stderr_line(&format!("authkeep: {warning}"));
            }
            print(invocation, output, key, tokens, now)
        }
        None => {
            let timeout = StoreError::LockTimeout {
                key: key.to_string(),
                waited,
            };
            let message = common::with_lock_timeout_hint(&timeout.to_string());
            common::report_error(invocation.json, timeout.class_name(), &message);
            ExitCode::from(4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(text: &str) -> Option<QuickConfig> {
        toml::from_str(text).ok()
    }

    #[test]
    fn the_front_knows_every_key_of_the_file_and_no_other() {
        let value = |key: &str| match key {
            "refresh_fraction" => "0.5",
            "insecure_permissions" => "true",
            _ => "\"5m\"",
        };
        for key in names::CONFIG_KEYS.iter().filter(|k| **k != "profiles") {
            let text = format!("{key} = {}\n", value(key));
            assert!(quick(&text).is_some(), "{key}");
        }
        for key in names::PROFILE_KEYS {
            let text = format!("[profiles.a]\n{key} = {}\n", value(key));
            assert!(quick(&text).is_some(), "{key}");
        }
        for unknown in [
            "isuer = \"x\"\n",
            "client_secret = \"x\"\n",
            "[profiles.a]\nclient_secret = \"x\"\n",
            "[profiles.a]\nisuer = \"x\"\n",
        ] {
            assert!(quick(unknown).is_none(), "{unknown}");
        }
        // A key it skips may hold anything; one it reads must have its type.
        assert!(
            quick("[profiles.a]\nscopes = [\"a\"]\nauthorization_params = { p = \"q\" }\n")
                .is_some()
        );
        assert!(quick("refresh_fraction = \"0.5\"\n").is_none());
        assert!(quick("insecure_permissions = 1\n").is_none());
        let allowed = quick("insecure_permissions = true\n").unwrap();
        assert_eq!(allowed.insecure_permissions, Some(true));
        let config = quick(
            "default_profile = \"a\"\nrefresh_threshold = \"1m\"\n[profiles.a]\nrefresh_fraction = 1\n",
        )
        .unwrap();
        assert_eq!(config.default_profile.as_deref(), Some("a"));
        assert_eq!(config.layers("a"), [(None, Some(1.0)), (Some("1m"), None)]);
        assert_eq!(config.layers("b"), [(None, None), (Some("1m"), None)]);
    }
}
