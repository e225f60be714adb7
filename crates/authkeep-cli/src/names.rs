//! Every name a user types: flags, their environment variables and defaults
//! (docs/DESIGN.md §7). Commands take these argument groups rather than declaring
//! their own, so a name means the same everywhere.

use clap::Args;
use jiff::SignedDuration;

pub use authkeep::config::Backend;
// The library's names (every program reading the configuration reads these);
// each binary, and the tests, use a part of them.
#[allow(unused_imports)]
pub use authkeep::config::names::{
    CONFIG_KEYS, DEFAULT_DB_FILE, DEFAULT_PROFILE, ENV_CONNECT_TIMEOUT, ENV_HOME,
    ENV_INSECURE_KEYRING_FALLBACK, ENV_INSECURE_PERMISSIONS, ENV_KEY_FILE, ENV_LOCK_TIMEOUT,
    ENV_PROFILE, ENV_REFRESH_FRACTION, ENV_REFRESH_THRESHOLD, ENV_STORE, ENV_TIMEOUT, MAX_DURATION,
    PROFILE_KEYS, parse_duration, parse_fraction, parse_switch, switch_variable,
};

/// `AUTHKEEP_CLIENT_SECRET`: a client secret for `login`, instead of a file.
pub const ENV_CLIENT_SECRET: &str = "AUTHKEEP_CLIENT_SECRET";

/// `KUBERNETES_EXEC_INFO`: what kubectl tells `authkeep kubectl` (set by kubectl).
pub const ENV_KUBERNETES_EXEC_INFO: &str = "KUBERNETES_EXEC_INFO";
/// `authkeep exec`: the variable that hands the child its token, by default.
pub const DEFAULT_TOKEN_VARIABLE: &str = "AUTHKEEP_ACCESS_TOKEN";
/// `authkeep exec --token-file`: the variable that tells the child the file's path.
pub const ENV_TOKEN_FILE: &str = "AUTHKEEP_TOKEN_FILE";

/// The agent's unix socket, in the state directory.
pub const DEFAULT_AGENT_SOCKET: &str = "agent.sock";

/// `--profile`.
#[derive(Args, Debug, Clone, Default)]
pub struct ProfileArg {
    /// Which session: a name of 1–64 characters from A-Z a-z 0-9 . _ - [default:
    /// default_profile in config.toml, else "default"]
    #[arg(long, short = 'p', env = ENV_PROFILE, value_name = "NAME")]
    pub profile: Option<String>,
}

/// `--profile` where leaving it out means "every profile". `AUTHKEEP_PROFILE`
/// does not narrow it: a variable exported for other commands must not hide
/// sessions from an overview.
#[derive(Args, Debug, Clone)]
pub struct OptionalProfileArg {
    /// Show only this session (default: every profile, whatever AUTHKEEP_PROFILE says).
    #[arg(long, short = 'p', value_name = "NAME")]
    pub profile: Option<String>,
}

/// How early to refresh.
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Refresh when less than this remains (the window's ceiling) [default: 5m]
    #[arg(long, env = ENV_REFRESH_THRESHOLD, value_name = "DURATION", value_parser = parse_duration)]
    pub refresh_threshold: Option<SignedDuration>,
    /// The window as a share of the token's lifetime, 0 to 1 [default: 0.5]
    #[arg(long, env = ENV_REFRESH_FRACTION, value_name = "SHARE", value_parser = parse_fraction)]
    pub refresh_fraction: Option<f64>,
}

/// Bounds on waiting and on the network.
#[derive(Args, Debug, Clone, Default)]
pub struct NetworkArgs {
    /// Longest wait for another process that is refreshing the same session [default: 30s]
    #[arg(long, env = ENV_LOCK_TIMEOUT, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_timeout: Option<SignedDuration>,
    /// Time-out for each connection to the provider [default: 5s]
    #[arg(long, env = ENV_CONNECT_TIMEOUT, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<SignedDuration>,
    /// Time-out for a whole network step (discovery and request) [default: 15s]
    #[arg(long, env = ENV_TIMEOUT, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<SignedDuration>,
    /// Allow sending credentials over plain http to hosts other than loopback. Dangerous: anyone on the path can steal them.
    #[arg(long)]
    pub insecure_allow_http: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Reads a `--store` value: a file store backend (a database of accounts is
/// for the `agent`, `clients` and `accounts` commands).
pub fn parse_backend(text: &str) -> Result<Backend, String> {
    if let Some(backend) = Backend::from_name(text) {
        return Ok(backend);
    }
    if authkeep::config::is_database_url(text) {
        return Err(format!(
            "the store {:?} is for many accounts (the agent), not yet available to the command; use file, encrypted-file or keyring",
            text.split(':').next().unwrap_or(text)
        ));
    }
    Err(format!(
        "unknown store {text:?}: use file, encrypted-file or keyring"
    ))
}

/// Where secrets are kept, and what the session store may be.
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Where the profile's secrets are kept: file (plain, 0600), encrypted-file or keyring (the
    /// OS keyring) [default: store in config.toml, else file]
    #[arg(long, env = ENV_STORE, value_name = "STORE", value_parser = parse_backend)]
    pub store: Option<Backend>,
    /// The encrypted store's key file (made with `authkeep store keygen`) [default: key_file in
    /// config.toml, else the key kept in the OS keyring]
    #[arg(long, env = ENV_KEY_FILE, value_name = "PATH")]
    pub key_file: Option<std::path::PathBuf>,
    /// Where no OS keyring is available, keep the keyring store's secrets in plain files instead
    /// of failing (with a warning). Insecure: the secrets are then readable by anyone who can
    /// read the files.
    #[arg(
        long,
        env = ENV_INSECURE_KEYRING_FALLBACK,
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_keyring_fallback: bool,
    /// Use session files and a sessions directory that other users may read or change, instead of
    /// refusing them (also AUTHKEEP_INSECURE_PERMISSIONS=1, or insecure_permissions = true in
    /// config.toml). Dangerous: they can read or replace your tokens.
    #[arg(long)]
    pub insecure_permissions: bool,
}

/// `-v` / `-q`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct VerbosityArgs {
    /// Show every step on stderr.
    // After each command's own options, whichever command shows them.
    #[arg(
        long,
        short = 'v',
        global = true,
        conflicts_with = "quiet",
        display_order = 900
    )]
    pub verbose: bool,
    /// Show nothing on stderr but errors.
    #[arg(long, short = 'q', global = true, display_order = 901)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_are_read_exactly() {
        assert_eq!(parse_backend("file"), Ok(Backend::File));
        assert_eq!(parse_backend("encrypted-file"), Ok(Backend::EncryptedFile));
        assert_eq!(parse_backend("keyring"), Ok(Backend::Keyring));
        assert!(
            parse_backend("sqlite:/x.db")
                .unwrap_err()
                .contains("many accounts")
        );
        assert!(
            parse_backend("Keyring")
                .unwrap_err()
                .contains("unknown store")
        );
        for backend in [Backend::File, Backend::EncryptedFile, Backend::Keyring] {
            assert_eq!(parse_backend(backend.as_str()), Ok(backend));
        }
    }
}
