//! The configuration every authkeep program shares: `config.toml`, the
//! environment variables, and how a setting is chosen from them, so that a
//! program built on the library (a binding for another language, say) sees the
//! same profiles, policies and stores as the `authkeep` command.
//!
//! A setting comes from what the program was asked (the command's flag, else
//! its environment variable: [`Asked`]), then the profile's table in the
//! configuration file, then the file's top level, then the library's default
//! ([`Settings::resolve`]).
//!
//! The file holds global keys and one `[profiles.NAME]` table per profile. It is
//! validated whole when read ([`ConfigFile::read`]): an unknown key, a value of
//! the wrong type, a bad duration or a secret written into the file is an error
//! naming the file, line, column and key. It never holds a client secret, only
//! where to find one (a file or an environment variable). Editing the file is
//! the `authkeep` command's business; this module only reads it.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::session::SessionKey;

mod home;
pub mod names;
mod settings;
mod stores;

pub use home::Home;
pub use settings::{Asked, KeyringFallback, Settings, profile_name, refresh_policy};
pub use stores::{
    AnySealer, Backend, KEY_ENTRY, KeySource, NEXT_KEY_ENTRY, StoreChoice, is_database_url,
};
#[cfg(feature = "keyring")]
pub use stores::{KEYRING_TIMEOUT, keyring_advice, keyring_failure, vault_for};

use names::{CONFIG_KEYS, PROFILE_KEYS};

/// Why the configuration cannot be used. None carries a secret.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is invalid: the message names the file, line, column and key,
    /// or the variable or setting at fault.
    #[error("{0}")]
    Invalid(String),
    /// The configuration file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Neither `AUTHKEEP_HOME` nor the platform names a directory to use.
    #[error("{0}")]
    NoHome(String),
}

impl ConfigError {
    /// Whether the user's settings are at fault (rather than the system).
    pub fn is_invalid(&self) -> bool {
        matches!(self, ConfigError::Invalid(_))
    }
}

/// How a profile logs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginMethod {
    /// The authorization code flow with PKCE in a browser.
    Browser,
    /// The device authorization grant: a code to enter on another device.
    Device,
    /// The client credentials grant: a service logging in as itself.
    ClientCredentials,
    /// Importing a token response or record.
    Token,
}

impl LoginMethod {
    /// The name as written in `config.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Device => "device",
            Self::ClientCredentials => "client-credentials",
            Self::Token => "token",
        }
    }
}

/// How the client secret is presented to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// HTTP Basic (client_secret_basic).
    Basic,
    /// In the request body (client_secret_post).
    Post,
}

/// What `erase` from git or docker (a server rejected the credential) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnErase {
    /// Nothing: one rejected request must not end or churn a session.
    #[default]
    Ignore,
    /// Renew the token if the session still holds the rejected one (the 401 path).
    Refresh,
}

/// One `[profiles.NAME]` table; every key is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The provider's issuer URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The OAuth client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A file holding the client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// The name of an environment variable holding the client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// How the client secret is presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<AuthMethod>,
    /// Scopes asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The `audience` parameter some providers want.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Extra parameters of the authorization request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorization_params: BTreeMap<String, String>,
    /// How `authkeep login` logs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginMethod>,
    /// The redirect URI of the browser login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// The token endpoint, for providers without discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// This profile's refresh window ceiling (a duration such as `10m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_threshold: Option<String>,
    /// This profile's window as a share of the token's lifetime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_fraction: Option<f64>,
    /// Allow plain http to hosts other than loopback, for this profile only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_allow_http: Option<bool>,
    /// Where this profile's secrets are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<Backend>,
    /// Hosts (`host[:port][/path]`) whose git and registry credentials this
    /// profile's token is (`authkeep credential`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_hosts: Vec<String>,
    /// The user name handed out with the token [default: `x-access-token`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_username: Option<String>,
    /// What a credential helper's `erase` does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_on_erase: Option<OnErase>,
}

/// The configuration file's settings; every key is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    default_profile: Option<String>,
    refresh_threshold: Option<String>,
    refresh_fraction: Option<f64>,
    lock_timeout: Option<String>,
    connect_timeout: Option<String>,
    timeout: Option<String>,
    store: Option<Backend>,
    key_file: Option<PathBuf>,
    insecure_keyring_fallback: Option<bool>,
    /// Use a session store that other users may read or change.
    insecure_permissions: Option<bool>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

impl ConfigFile {
    /// The store key file it names (relative to the file's directory).
    pub fn key_file(&self) -> Option<&Path> {
        self.key_file.as_deref()
    }

    /// Reads and validates the file; a missing file is an empty configuration.
    /// Errors name the file, line, column and key.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ConfigError::Unreadable {
                path: path.to_owned(),
                source: Arc::new(e),
            }),
        }
    }

    /// Validates `text`, the content of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let source = Source { path, text };
        let document = toml::de::DeTable::parse(text)
            .map_err(|e| source.error(e.span().map(|s| s.start), e.message()))?;
        let mut entries = Vec::new();
        collect_entries(document.get_ref(), &mut Vec::new(), &mut entries);
        entries.sort_by_key(|e| e.key.start);
        for entry in &entries {
            check_key(&source, entry)?;
        }
        let file: Self = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| s.start);
            match at.and_then(|at| innermost(&entries, at)) {
                Some(entry) => source.error(
                    at,
                    format!(
                        "wrong value for {:?} {}: {}",
                        entry.key_name(),
                        entry.table_name(),
                        e.message()
                    ),
                ),
                None => source.error(at, e.message()),
            }
        })?;
        file.check_values(&source, &entries)?;
        Ok(file)
    }

    /// What `read` checks beyond types: durations, shares, names, and that a
    /// secret has one source.
    fn check_values(&self, source: &Source<'_>, entries: &[Entry]) -> Result<(), ConfigError> {
        let at = |path: &[&str]| {
            entries
                .iter()
                .find(|e| e.path.iter().map(String::as_str).eq(path.iter().copied()))
        };
        let fail = |path: &[&str], what: String| {
            let entry = at(path);
            let table = entry.map_or_else(String::new, |e| format!(" {}", e.table_name()));
            let key = path.last().copied().unwrap_or_default();
            source.error(
                entry.map(|e| e.value.start),
                format!("bad value for {key:?}{table}: {what}"),
            )
        };
        let top = [
            ("refresh_threshold", &self.refresh_threshold),
            ("lock_timeout", &self.lock_timeout),
            ("connect_timeout", &self.connect_timeout),
            ("timeout", &self.timeout),
        ];
        for (key, value) in top {
            if let Some(text) = value {
                names::parse_duration(text).map_err(|e| fail(&[key], e))?;
            }
        }
        if let Some(fraction) = self.refresh_fraction {
            check_fraction(fraction).map_err(|e| fail(&["refresh_fraction"], e))?;
        }
        if let Some(name) = &self.default_profile {
            SessionKey::new(name).map_err(|e| fail(&["default_profile"], e.to_string()))?;
        }
        for (name, profile) in &self.profiles {
            let path = |key| ["profiles", name.as_str(), key];
            if let Some(text) = &profile.refresh_threshold {
                names::parse_duration(text).map_err(|e| fail(&path("refresh_threshold"), e))?;
            }
            if let Some(fraction) = profile.refresh_fraction {
                check_fraction(fraction).map_err(|e| fail(&path("refresh_fraction"), e))?;
            }
            check_credential_keys(profile).map_err(|(key, e)| fail(&path(key), e))?;
            if let Some(variable) = &profile.client_secret_env {
                if variable.is_empty() || variable.contains(['=', '\0']) {
                    return Err(fail(
                        &path("client_secret_env"),
                        "the name of an environment variable that holds the secret, such as WORK_CLIENT_SECRET".into(),
                    ));
                }
                if profile.client_secret_file.is_some() {
                    return Err(fail(
                        &path("client_secret_env"),
                        "give client_secret_file or client_secret_env, not both".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The profile named `name`, if the file has a table for it.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// Every profile in the file, by name.
    pub fn profiles(&self) -> impl Iterator<Item = (&str, &Profile)> {
        self.profiles.iter().map(|(name, p)| (name.as_str(), p))
    }

    /// `default_profile`, if set.
    pub fn default_profile(&self) -> Option<&str> {
        self.default_profile.as_deref()
    }

    /// The (threshold, fraction) layers of `profile`, for [`refresh_policy`]:
    /// the profile's own, then the top level's.
    pub fn layers(&self, profile: &str) -> [(Option<&str>, Option<f64>); 2] {
        let own = self.profiles.get(profile);
        [
            (
                own.and_then(|p| p.refresh_threshold.as_deref()),
                own.and_then(|p| p.refresh_fraction),
            ),
            (self.refresh_threshold.as_deref(), self.refresh_fraction),
        ]
    }

    /// The (threshold, fraction) of the top level alone, for sessions that
    /// are not profiles (the accounts of a database store).
    pub fn top_level_layers(&self) -> [(Option<&str>, Option<f64>); 2] {
        [
            (None, None),
            (self.refresh_threshold.as_deref(), self.refresh_fraction),
        ]
    }
}

/// Checks a profile's credential keys, as `config.toml` is read: the key at
/// fault and what is wrong with it.
pub fn check_credential_keys(profile: &Profile) -> Result<(), (&'static str, String)> {
    for host in &profile.credential_hosts {
        CredentialHost::parse(host).map_err(|e| ("credential_hosts", e))?;
    }
    if let Some(name) = &profile.credential_username
        && (name.is_empty() || name.chars().count() > 256 || name.contains(char::is_control))
    {
        return Err((
            "credential_username",
            "a user name of 1 to 256 characters without control characters, such as oauth2".into(),
        ));
    }
    Ok(())
}

/// One entry of a profile's `credential_hosts`: a host, its port if one was
/// written, and the path segments a request's path must start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialHost {
    host: String,
    port: Option<u16>,
    path: Vec<String>,
}

impl CredentialHost {
    /// Reads `host[:port][/path]`; the message never repeats the entry.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = |why: &str| {
            Err(format!(
                "{why}: write host[:port][/path], such as \"git.example.com\" or \"git.example.com/org\""
            ))
        };
        if text.contains("://") {
            return refuse("a host without a scheme");
        }
        if text.is_empty()
            || text.starts_with('/')
            || text.contains(|c: char| c.is_whitespace() || c.is_control() || "@?#\\".contains(c))
        {
            return refuse("not a host");
        }
        let Ok(url) = Url::parse(&format!("https://{text}")) else {
            return refuse("not a host");
        };
        let Some(host) = url.host_str() else {
            return refuse("not a host");
        };
        Ok(Self {
            host: host.to_owned(),
            // A port written as https's own (443) reads as none; keep it.
            port: url.port().or_else(|| has_port(text).then_some(443)),
            path: segments(&url),
        })
    }

    /// How well `url` matches: `None` if it does not, else the number of path
    /// segments the entry required (more is more specific). Without a port the
    /// entry matches the URL scheme's default port only.
    pub fn score(&self, url: &Url) -> Option<usize> {
        let port_matches = match self.port {
            None => url.port().is_none(),
            Some(port) => url.port_or_known_default() == Some(port),
        };
        let path = segments(url);
        (url.host_str() == Some(self.host.as_str())
            && port_matches
            && path.len() >= self.path.len()
            && path.iter().zip(&self.path).all(|(a, b)| a == b))
        .then_some(self.path.len())
    }
}

/// Whether `host[:port][/path]` names a port.
fn has_port(text: &str) -> bool {
    let authority = text.split('/').next().unwrap_or_default();
    let after_host = authority
        .rsplit_once(']')
        .map_or(authority, |(_, rest)| rest);
    after_host.contains(':')
}

/// The non-empty segments of a URL's path.
fn segments(url: &Url) -> Vec<String> {
    url.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_fraction(fraction: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(format!(
            "{fraction} is not a share from 0 to 1, such as 0.5"
        ))
    }
}

/// The text of the file being read, to turn offsets into places.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// An invalid setting `FILE:LINE:COLUMN: message` (`FILE: message` without an offset).
    fn error(&self, at: Option<usize>, message: impl Display) -> ConfigError {
        error_at(self.path, self.text, at, message)
    }
}

/// An invalid setting in `text`, the content of the file at `path`:
/// `FILE:LINE:COLUMN: message` for a byte offset `at`, else `FILE: message`.
pub fn error_at(path: &Path, text: &str, at: Option<usize>, message: impl Display) -> ConfigError {
    let file = path.display();
    match at {
        Some(offset) => {
            let (line, column) = line_and_column(text, offset);
            ConfigError::Invalid(format!("{file}:{line}:{column}: {message}"))
        }
        None => ConfigError::Invalid(format!("{file}: {message}")),
    }
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// One key of the document with where it sits.
#[derive(Debug)]
struct Entry {
    /// The keys from the top, e.g. `["profiles", "work", "issuer"]`.
    path: Vec<String>,
    key: Range<usize>,
    value: Range<usize>,
}

impl Entry {
    /// Whether this is a key of a `[profiles.NAME]` table or below.
    fn in_profile(&self) -> bool {
        self.path.len() >= 3 && self.path[0] == "profiles"
    }

    /// The key as written in its table, e.g. `issuer` or `authorization_params.prompt`.
    fn key_name(&self) -> String {
        let from = if self.in_profile() { 2 } else { 0 };
        self.path[from..].join(".")
    }

    /// Where the key sits, for a message: `in [profiles.work]` or `at the top level`.
    fn table_name(&self) -> String {
        if self.in_profile() {
            format!("in [profiles.{}]", self.path[1])
        } else if self.path.len() == 2 && self.path[0] == "profiles" {
            "in [profiles]".to_owned()
        } else {
            "at the top level".to_owned()
        }
    }
}

/// Every key of `table` and of the tables inside it.
fn collect_entries(table: &toml::de::DeTable<'_>, prefix: &mut Vec<String>, out: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        prefix.push(key.get_ref().to_string());
        out.push(Entry {
            path: prefix.clone(),
            key: key.span(),
            value: value.span(),
        });
        if let Some(inner) = value.get_ref().as_table() {
            collect_entries(inner, prefix, out);
        }
        prefix.pop();
    }
}

/// The deepest key whose key or value holds the offset.
fn innermost(entries: &[Entry], at: usize) -> Option<&Entry> {
    entries
        .iter()
        .filter(|e| e.key.contains(&at) || e.value.contains(&at))
        .max_by_key(|e| e.path.len())
}

/// Refuses a key the file may not hold, naming the ones it may.
fn check_key(source: &Source<'_>, entry: &Entry) -> Result<(), ConfigError> {
    let (known, depth): (&[&str], usize) = match entry.path.as_slice() {
        [_] => (&CONFIG_KEYS, 1),
        [profiles, name] if profiles == "profiles" => {
            return SessionKey::new(name)
                .map(drop)
                .map_err(|e| source.error(Some(entry.key.start), format!("{e}, in [profiles]")));
        }
        [profiles, _, _] if profiles == "profiles" => (&PROFILE_KEYS, 3),
        _ => return Ok(()),
    };
    let key = &entry.path[depth - 1];
    if known.contains(&key.as_str()) {
        return Ok(());
    }
    let message = if key.contains("secret") {
        format!(
            "{key:?} {} is refused: a secret does not belong in the configuration file; \
             set client_secret_file (a file holding it) or client_secret_env (the name of a variable holding it)",
            entry.table_name()
        )
    } else {
        format!(
            "unknown key {key:?} {} (expected one of {})",
            entry.table_name(),
            known.join(", ")
        )
    };
    Err(source.error(Some(entry.key.start), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use jiff::SignedDuration;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(text, Path::new("config.toml"))
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    const EVERY_KEY: &str = r#"# settings for everyone
default_profile = "work"
refresh_threshold = "2m"
refresh_fraction = 0.25
lock_timeout = "10s"
connect_timeout = "3s"
timeout = "20s"
insecure_permissions = false

[profiles.work]
issuer = "https://login.example.com"
client_id = "cli"
client_secret_env = "WORK_SECRET"
client_auth = "post"
scopes = ["openid", "offline_access"]
audience = "api://work"
authorization_params = { prompt = "consent", acr_values = "mfa" }
login = "client-credentials"
redirect_uri = "http://127.0.0.1:8400/callback"
token_endpoint = "https://login.example.com/token"
refresh_threshold = "10m"
refresh_fraction = 1
insecure_allow_http = true
credential_hosts = ["git.example.com", "git.example.com/org"]
credential_username = "oauth2"
credential_on_erase = "refresh"

[profiles.home]
client_secret_file = "/run/secrets/home"
login = "device"
"#;

    #[test]
    fn every_key_is_read() {
        let file = parse(EVERY_KEY).unwrap();
        assert_eq!(file.default_profile(), Some("work"));
        assert_eq!(file.lock_timeout.as_deref(), Some("10s"));
        assert_eq!(file.connect_timeout.as_deref(), Some("3s"));
        assert_eq!(file.timeout.as_deref(), Some("20s"));
        assert_eq!(file.insecure_permissions, Some(false));
        let work = file.profile("work").unwrap();
        let expected = Profile {
            issuer: Some("https://login.example.com".into()),
            client_id: Some("cli".into()),
            client_secret_file: None,
            client_secret_env: Some("WORK_SECRET".into()),
            client_auth: Some(AuthMethod::Post),
            scopes: vec!["openid".into(), "offline_access".into()],
            audience: Some("api://work".into()),
            authorization_params: [("acr_values", "mfa"), ("prompt", "consent")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            login: Some(LoginMethod::ClientCredentials),
            redirect_uri: Some("http://127.0.0.1:8400/callback".into()),
            token_endpoint: Some("https://login.example.com/token".into()),
            refresh_threshold: Some("10m".into()),
            refresh_fraction: Some(1.0),
            insecure_allow_http: Some(true),
            store: None,
            credential_hosts: vec!["git.example.com".into(), "git.example.com/org".into()],
            credential_username: Some("oauth2".into()),
            credential_on_erase: Some(OnErase::Refresh),
        };
        assert_eq!(work, &expected);
        let home = file.profile("home").unwrap();
        assert_eq!(
            home.client_secret_file,
            Some(PathBuf::from("/run/secrets/home"))
        );
        assert_eq!(home.login, Some(LoginMethod::Device));
        let names: Vec<&str> = file.profiles().map(|(name, _)| name).collect();
        assert_eq!(names, ["home", "work"]);
        assert!(file.profile("other").is_none());
        for (method, name) in [
            (LoginMethod::Browser, "browser"),
            (LoginMethod::Token, "token"),
            (LoginMethod::ClientCredentials, "client-credentials"),
        ] {
            let text = format!("[profiles.x]\nlogin = \"{name}\"\nclient_auth = \"basic\"\n");
            let profile = parse(&text).unwrap().profiles.remove("x").unwrap();
            assert_eq!(profile.login, Some(method));
            assert_eq!(profile.client_auth, Some(AuthMethod::Basic));
            assert_eq!(method.as_str(), name);
        }
        assert!(parse("").unwrap().profiles.is_empty());
    }

    #[test]
    fn asked_beats_profile_beats_top_level_beats_default() {
        let file = parse(EVERY_KEY).unwrap();
        let minutes = SignedDuration::from_mins;
        // The profile's own settings.
        let policy = refresh_policy(None, None, file.layers("work")).unwrap();
        assert_eq!((policy.threshold, policy.fraction), (minutes(10), 1.0));
        // A profile without them takes the top level's.
        let policy = refresh_policy(None, None, file.layers("home")).unwrap();
        assert_eq!((policy.threshold, policy.fraction), (minutes(2), 0.25));
        // What was asked for (a flag or its variable) beats both.
        let policy = refresh_policy(Some(minutes(1)), Some(0.5), file.layers("work")).unwrap();
        assert_eq!((policy.threshold, policy.fraction), (minutes(1), 0.5));
        // Nothing anywhere: the library's defaults.
        let empty = ConfigFile::default();
        let policy = refresh_policy(None, None, empty.layers("work")).unwrap();
        assert_eq!(policy, Policy::default());
        // The profile: asked, else default_profile, else "default".
        assert_eq!(profile_name(Some("a"), file.default_profile()), "a");
        assert_eq!(profile_name(None, file.default_profile()), "work");
        assert_eq!(profile_name(None, empty.default_profile()), "default");
    }

    #[test]
    fn errors_name_the_file_line_column_and_key() {
        let text =
            "timeout = \"5s\"\n\n[profiles.work]\nissuer = \"https://x\"\nisuer = \"https://y\"\n";
        let message = error(text);
        assert!(
            message.starts_with(
                "config.toml:5:1: unknown key \"isuer\" in [profiles.work] (expected one of issuer, client_id,"
            ),
            "{message}"
        );
        let message = error("refresh_treshold = \"10m\"\n");
        assert!(
            message.starts_with("config.toml:1:1: unknown key \"refresh_treshold\" at the top level (expected one of default_profile,"),
            "{message}"
        );
        let message = error("[profiles.work]\nscopes = \"openid\"\n");
        assert!(
            message.starts_with("config.toml:2:10: wrong value for \"scopes\" in [profiles.work]: invalid type: string \"openid\", expected a sequence"),
            "{message}"
        );
        let message = error("[profiles.work]\nlogin = \"magic\"\n");
        assert!(
            message.starts_with("config.toml:2:9: wrong value for \"login\" in [profiles.work]: unknown variant `magic`"),
            "{message}"
        );
        let message = error("[profiles.a]\nauthorization_params = { prompt = 1 }\n");
        assert!(
            message.starts_with(
                "config.toml:2:35: wrong value for \"authorization_params.prompt\" in [profiles.a]"
            ),
            "{message}"
        );
        let message = error("lock_timeout = 30\n");
        assert!(
            message
                .starts_with("config.toml:1:16: wrong value for \"lock_timeout\" at the top level"),
            "{message}"
        );
        let message = error("[profiles.work]\nrefresh_threshold = \"soon\"\n");
        assert_eq!(
            message,
            "config.toml:2:21: bad value for \"refresh_threshold\" in [profiles.work]: invalid duration \"soon\": write it like 30s, 5m or 1h30m"
        );
        let message = error("x = 1\ntimeout = \"99999999h\"\n");
        assert!(
            message.starts_with("config.toml:1:1: unknown key \"x\""),
            "{message}"
        );
        let message = error("timeout = \"99999999h\"\n");
        assert!(
            message.starts_with(
                "config.toml:1:11: bad value for \"timeout\" at the top level: invalid duration"
            ) && message.ends_with("at most 876600h (100 years)"),
            "{message}"
        );
        let message = error("refresh_fraction = 1.5\n");
        assert!(
            message.starts_with("config.toml:1:20: bad value for \"refresh_fraction\""),
            "{message}"
        );
        let message = error("[profiles.\"a/b\"]\n");
        assert!(
            message.starts_with("config.toml:1:11: invalid profile name \"a/b\""),
            "{message}"
        );
        let message = error("default_profile = \"../x\"\n");
        assert!(
            message.starts_with("config.toml:1:19: bad value for \"default_profile\""),
            "{message}"
        );
        let message =
            error("[profiles.a]\nclient_secret_file = \"/s\"\nclient_secret_env = \"S\"\n");
        assert!(message.starts_with("config.toml:3:21: bad value for \"client_secret_env\" in [profiles.a]: give client_secret_file or client_secret_env, not both"), "{message}");
        let message = error("[profiles.a]\nclient_secret_env = \"\"\n");
        assert!(
            message.contains("the name of an environment variable"),
            "{message}"
        );
        // Not TOML at all.
        let message = error("[profiles.a\n");
        assert!(message.starts_with("config.toml:1:"), "{message}");
    }

    #[test]
    fn a_secret_in_the_file_is_refused_without_repeating_it() {
        for text in [
            "[profiles.work]\nclient_id = \"cli\"\nclient_secret = \"hunter2-secret-value\"\n",
            "client_secret = \"hunter2-secret-value\"\n",
        ] {
            let message = error(text);
            assert!(message.contains("\"client_secret\""), "{message}");
            assert!(message.contains("client_secret_file"), "{message}");
            assert!(message.contains("client_secret_env"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        assert!(
            error("[profiles.w]\nclient_secret = \"x\"\n")
                .starts_with("config.toml:2:1: \"client_secret\" in [profiles.w] is refused")
        );
    }
}
