//! The names of the settings a user types (docs/DESIGN.md §7): environment
//! variables, the keys of `config.toml`, and how their values are written.
//! The `authkeep` command adds its flags beside these; every program that reads
//! the configuration reads it with these names.

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
/// `AUTHKEEP_STORE`: where secrets are kept (`file`, `encrypted-file`,
/// `keyring`), or a database of accounts (`sqlite:PATH`, `postgres://…`).
pub const ENV_STORE: &str = "AUTHKEEP_STORE";
/// `AUTHKEEP_KEY_FILE`: the store key file.
pub const ENV_KEY_FILE: &str = "AUTHKEEP_KEY_FILE";
/// `AUTHKEEP_INSECURE_KEYRING_FALLBACK`: keep the keyring store's secrets in
/// plain files where no OS keyring answers.
pub const ENV_INSECURE_KEYRING_FALLBACK: &str = "AUTHKEEP_INSECURE_KEYRING_FALLBACK";
/// `AUTHKEEP_INSECURE_PERMISSIONS`: use a session store that other users may
/// read or change (`1`), instead of refusing it.
pub const ENV_INSECURE_PERMISSIONS: &str = "AUTHKEEP_INSECURE_PERMISSIONS";

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
/// ([`crate::Policy::default()`], [`crate::Network::default()`],
/// [`crate::DEFAULT_LOCK_TIMEOUT`]).
pub const DEFAULT_PROFILE: &str = "default";
/// The database of accounts, in the state directory.
pub const DEFAULT_DB_FILE: &str = "accounts.db";

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

/// A value the user typed, quoted for an error message if it is short and
/// printable; anything else is not echoed.
pub(crate) fn quoted(text: &str) -> String {
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
