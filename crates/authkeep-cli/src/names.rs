//! Every name a user types: flags, their environment variables and defaults
//! (docs/DESIGN.md §7). Commands take these argument groups rather than declaring
//! their own, so a name means the same everywhere.

use clap::Args;
use jiff::SignedDuration;

/// `AUTHKEEP_HOME`: one directory holding configuration and state.
pub const ENV_HOME: &str = "AUTHKEEP_HOME";
/// `AUTHKEEP_PROFILE`: the session to use.
pub const ENV_PROFILE: &str = "AUTHKEEP_PROFILE";
/// `AUTHKEEP_REFRESH_THRESHOLD`: refresh window ceiling.
pub const ENV_REFRESH_THRESHOLD: &str = "AUTHKEEP_REFRESH_THRESHOLD";
/// `AUTHKEEP_REFRESH_FRACTION`: the window as a share of the token's lifetime.
pub const ENV_REFRESH_FRACTION: &str = "AUTHKEEP_REFRESH_FRACTION";
/// `AUTHKEEP_LOCK_TIMEOUT`: longest wait for another process's refresh.
pub const ENV_LOCK_TIMEOUT: &str = "AUTHKEEP_LOCK_TIMEOUT";
/// `AUTHKEEP_CONNECT_TIMEOUT`: per connection.
pub const ENV_CONNECT_TIMEOUT: &str = "AUTHKEEP_CONNECT_TIMEOUT";
/// `AUTHKEEP_TIMEOUT`: a whole network step.
pub const ENV_TIMEOUT: &str = "AUTHKEEP_TIMEOUT";
/// `AUTHKEEP_CLIENT_SECRET`: a client secret for `login`, instead of a file.
pub const ENV_CLIENT_SECRET: &str = "AUTHKEEP_CLIENT_SECRET";
/// `--store`.
pub const ENV_STORE: &str = "AUTHKEEP_STORE";
/// `--key-file`.
pub const ENV_KEY_FILE: &str = "AUTHKEEP_KEY_FILE";
/// `--insecure-keyring-fallback`.
pub const ENV_INSECURE_KEYRING_FALLBACK: &str = "AUTHKEEP_INSECURE_KEYRING_FALLBACK";

/// `AUTHKEEP_INSECURE_PERMISSIONS`: use a session store that other users may
/// read or change (`1`), instead of refusing it.
pub const ENV_INSECURE_PERMISSIONS: &str = "AUTHKEEP_INSECURE_PERMISSIONS";

/// `KUBERNETES_EXEC_INFO`: what kubectl tells `authkeep kubectl` (set by kubectl).
pub const ENV_KUBERNETES_EXEC_INFO: &str = "KUBERNETES_EXEC_INFO";
/// `authkeep exec`: the variable that hands the child its token, by default.
pub const DEFAULT_TOKEN_VARIABLE: &str = "AUTHKEEP_ACCESS_TOKEN";
/// `authkeep exec --token-file`: the variable that tells the child the file's path.
pub const ENV_TOKEN_FILE: &str = "AUTHKEEP_TOKEN_FILE";

/// The keys of `config.toml`'s top level.
pub const CONFIG_KEYS: [&str; 11] = [
    "default_profile",
    "refresh_threshold",
    "refresh_fraction",
    "lock_timeout",
    "connect_timeout",
    "timeout",
    "store",
    "key_file",
    "insecure_keyring_fallback",
    "insecure_permissions",
    "profiles",
];

/// The keys of a `[profiles.NAME]` table in `config.toml`.
pub const PROFILE_KEYS: [&str; 18] = [
    "issuer",
    "client_id",
    "client_secret_file",
    "client_secret_env",
    "client_auth",
    "scopes",
    "audience",
    "authorization_params",
    "login",
    "redirect_uri",
    "token_endpoint",
    "refresh_threshold",
    "refresh_fraction",
    "insecure_allow_http",
    "store",
    "credential_hosts",
    "credential_username",
    "credential_on_erase",
];

/// The profile used when none is named. Every other default is the library's
/// (`authkeep::Policy::default()`, `authkeep::Network::default()`,
/// `authkeep::DEFAULT_LOCK_TIMEOUT`); `--help` repeats them in each flag's text.
pub const DEFAULT_PROFILE: &str = "default";
/// The database of `agent`, `clients` and `accounts`, in the state directory.
pub const DEFAULT_DB_FILE: &str = "accounts.db";
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

/// A store backend, as `--store` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// One JSON file per session, secrets in plain text (0600).
    #[default]
    File,
    /// The same files with the secrets encrypted (XChaCha20-Poly1305).
    EncryptedFile,
    /// The secrets in the OS keyring, the rest in the files.
    Keyring,
}

impl Backend {
    /// The name users type.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::EncryptedFile => "encrypted-file",
            Backend::Keyring => "keyring",
        }
    }

    /// Reads a `--store` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "file" => Ok(Backend::File),
            "encrypted-file" => Ok(Backend::EncryptedFile),
            "keyring" => Ok(Backend::Keyring),
            t if t.starts_with("sqlite:")
                || t.starts_with("postgres://")
                || t.starts_with("postgresql://") =>
            {
                Err(format!(
                    "the store {:?} is for many accounts (the agent), not yet available to the command; use file, encrypted-file or keyring",
                    t.split(':').next().unwrap_or(t)
                ))
            }
            _ => Err(format!(
                "unknown store {text:?}: use file, encrypted-file or keyring"
            )),
        }
    }

    /// What a sealed record's `"kind"` says about where its secrets are.
    pub fn of_kind(kind: Option<&str>) -> Option<Self> {
        match kind {
            None => Some(Backend::File),
            Some("encrypted") => Some(Backend::EncryptedFile),
            Some("keyring") => Some(Backend::Keyring),
            Some(_) => None,
        }
    }
}

/// Where secrets are kept, and what the session store may be.
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Where the profile's secrets are kept: file (plain, 0600), encrypted-file or keyring (the
    /// OS keyring) [default: store in config.toml, else file]
    #[arg(long, env = ENV_STORE, value_name = "STORE", value_parser = Backend::parse)]
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

/// Reads a yes/no variable: `1`, `true`, `yes`, `on` are yes; `0`, `false`,
/// `no`, `off`, empty or unset are no (any case); anything else is an error
/// naming the variable, which never repeats a long or unprintable value.
pub fn switch_variable(name: &str) -> Result<bool, String> {
    let value = match std::env::var(name) {
        Ok(value) => value,
        Err(std::env::VarError::NotPresent) => return Ok(false),
        Err(std::env::VarError::NotUnicode(_)) => String::from("\u{fffd}"),
    };
    parse_switch(&value).map_err(|e| format!("{e} (in {name})"))
}

/// Parses a yes/no value as [`switch_variable`] reads it.
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "invalid value {}: write 1 or 0 (true or false)",
            quoted(text)
        )),
    }
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

/// The longest duration any setting takes: 100 years (of 365.25 days), far above
/// any real use, and far below where instants stop being representable.
pub const MAX_DURATION: SignedDuration = SignedDuration::from_hours(876_600);

/// Parses `30s`, `5m`, `1h30m` (or ISO 8601 `PT5M`); negative durations and
/// durations over 100 years ([`MAX_DURATION`]) are refused.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let shown = quoted(text);
    let parsed: SignedDuration = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {shown}: write it like 30s, 5m or 1h30m"))?;
    if parsed.is_negative() {
        return Err(format!("invalid duration {shown}: must not be negative"));
    }
    if parsed > MAX_DURATION {
        return Err(format!(
            "invalid duration {shown}: at most 876600h (100 years)"
        ));
    }
    Ok(parsed)
}

/// Parses a share from 0 to 1 (`0.5`).
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "invalid share {}: a number from 0 to 1, such as 0.5",
            quoted(text)
        )),
    }
}

/// A value the user typed, quoted for an error message if it is short and
/// printable; anything else is not echoed.
fn quoted(text: &str) -> String {
    if text.chars().count() <= 40 && !text.chars().any(char::is_control) {
        format!("{text:?}")
    } else {
        "given".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_are_read_exactly() {
        assert_eq!(Backend::parse("file"), Ok(Backend::File));
        assert_eq!(Backend::parse("encrypted-file"), Ok(Backend::EncryptedFile));
        assert_eq!(Backend::parse("keyring"), Ok(Backend::Keyring));
        assert!(
            Backend::parse("sqlite:/x.db")
                .unwrap_err()
                .contains("many accounts")
        );
        assert!(
            Backend::parse("Keyring")
                .unwrap_err()
                .contains("unknown store")
        );
        for backend in [Backend::File, Backend::EncryptedFile, Backend::Keyring] {
            assert_eq!(Backend::parse(backend.as_str()), Ok(backend));
        }
    }

    #[test]
    fn durations_as_people_write_them() {
        assert_eq!(
            parse_duration("30s").unwrap(),
            SignedDuration::from_secs(30)
        );
        assert_eq!(parse_duration("5m").unwrap(), SignedDuration::from_mins(5));
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert!(parse_duration("90").is_err());
        assert_eq!(parse_duration("876600h").unwrap(), MAX_DURATION);
        for too_long in ["876601h", "3000000000000s", "9999999999999999999s"] {
            let error = parse_duration(too_long).unwrap_err();
            assert!(error.starts_with("invalid duration"), "{error}");
        }
        assert!(parse_duration("-5m").is_err());
        assert!(parse_fraction("1.5").is_err());
        assert_eq!(parse_fraction("0.25").unwrap(), 0.25);
    }

    #[test]
    fn switches_read_yes_and_no_and_refuse_anything_else() {
        for yes in ["1", "true", "TRUE", "yes", "on", " 1 "] {
            assert_eq!(parse_switch(yes), Ok(true), "{yes}");
        }
        for no in ["", "0", "false", "No", "off"] {
            assert_eq!(parse_switch(no), Ok(false), "{no}");
        }
        let error = parse_switch("maybe").unwrap_err();
        assert_eq!(
            error,
            "invalid value \"maybe\": write 1 or 0 (true or false)"
        );
        assert!(!parse_switch(&"x".repeat(60)).unwrap_err().contains("xxx"));
    }
}
