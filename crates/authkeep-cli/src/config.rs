//! `config.toml`, and how a setting is chosen: a flag, then its environment
//! variable, then the profile's table in the configuration file, then the file's
//! top level, then the default.
//!
//! The file holds global keys and one `[profiles.NAME]` table per profile. It is
//! validated whole when read: an unknown key, a value of the wrong type, a bad
//! duration or a secret written into the file is an error naming the file, line,
//! column and key. It never holds a client secret, only where to find one (a file
//! or an environment variable). Edits (`write_profile`, `set_default_profile`)
//! go through `toml_edit`, so every other key, table and comment survives, and
//! replace the file atomically.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use authkeep::{
    DEFAULT_LOCK_TIMEOUT, FileStore, Keeper, KeeperBuilder, Network, Policy, SessionKey,
};
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use crate::common::{self, Home};
use crate::exit::usage;
use crate::names::{self, CONFIG_KEYS, NetworkArgs, PROFILE_KEYS, PolicyArgs, ProfileArg};
use crate::stores::{AnySealer, Backend, KeySource};

/// How a profile logs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// HTTP Basic (client_secret_basic).
    Basic,
    /// In the request body (client_secret_post).
    Post,
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

/// The configuration file's settings; every key is optional.
#[derive(Debug, Default, Deserialize)]
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
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Validates `text`, the content of the file at `path`.
    fn parse(text: &str, path: &Path) -> Result<Self> {
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
    fn check_values(&self, source: &Source<'_>, entries: &[Entry]) -> Result<()> {
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
            crate::commands::credential::check_profile(profile)
                .map_err(|(key, e)| fail(&path(key), e))?;
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

    /// The (threshold, fraction) layers of `profile`, for
    /// [`common::refresh_policy`].
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
    /// A usage error `FILE:LINE:COLUMN: message` (`FILE: message` without an offset).
    fn error(&self, at: Option<usize>, message: impl Display) -> anyhow::Error {
        let file = self.path.display();
        match at {
            Some(offset) => {
                let (line, column) = line_and_column(self.text, offset);
                usage(format!("{file}:{line}:{column}: {message}"))
            }
            None => usage(format!("{file}: {message}")),
        }
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
fn check_key(source: &Source<'_>, entry: &Entry) -> Result<()> {
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

/// Creates or replaces one profile's table, keeping every other key, table and
/// comment (and the comments on this profile's keys whose values stay).
pub fn write_profile(path: &Path, name: &str, profile: &Profile) -> Result<()> {
    crate::config::session_key(name)?;
    let rendered = toml::to_string(profile).context("cannot render the profile as TOML")?;
    let mut fresh: toml_edit::DocumentMut = rendered
        .parse()
        .context("cannot read back the rendered profile")?;
    edit(path, |document| {
        let profiles = document
            .entry("profiles")
            .or_insert_with(|| {
                let mut table = toml_edit::Table::new();
                table.set_implicit(true);
                toml_edit::Item::Table(table)
            })
            .as_table_mut()
            .ok_or_else(|| usage("\"profiles\" is not a table of [profiles.NAME] tables"))?;
        let table = profiles
            .entry(name)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_mut()
            .ok_or_else(|| usage(format!("profiles.{name} is not a table")))?;
        let stale: Vec<String> = table
            .iter()
            .map(|(key, _)| key.to_owned())
            .filter(|key| !fresh.contains_key(key))
            .collect();
        for key in stale {
            table.remove(&key);
        }
        for (key, item) in fresh.as_table_mut().iter_mut() {
            let Some(mut value) = item_value(std::mem::take(item)) else {
                continue;
            };
            match table.get_mut(&key).and_then(toml_edit::Item::as_value_mut) {
                Some(old) => {
                    // Keep the comment after the old value.
                    *value.decor_mut() = old.decor().clone();
                    *old = value;
                }
                None => {
                    table.insert(&key, toml_edit::Item::Value(value));
                }
            }
        }
        Ok(())
    })
}

/// A rendered profile's item as one value: a subtable (the extra authorization
/// parameters) becomes an inline table, so the profile stays one table.
fn item_value(item: toml_edit::Item) -> Option<toml_edit::Value> {
    match item {
        toml_edit::Item::Value(value) => Some(value),
        toml_edit::Item::Table(table) => {
            Some(toml_edit::Value::InlineTable(table.into_inline_table()))
        }
        toml_edit::Item::None | toml_edit::Item::ArrayOfTables(_) => None,
    }
}

/// Sets `default_profile`, keeping everything else.
pub fn set_default_profile(path: &Path, name: &str) -> Result<()> {
    crate::config::session_key(name)?;
    set_top_level(path, "default_profile", name)
}

/// Sets a top-level string key, keeping its comment.
pub fn set_top_level(path: &Path, key: &str, value: &str) -> Result<()> {
    edit(path, |document| {
        match document
            .get_mut(key)
            .and_then(toml_edit::Item::as_value_mut)
        {
            Some(old) => {
                let decor = old.decor().clone();
                *old = toml_edit::Value::from(value);
                *old.decor_mut() = decor;
            }
            None => {
                // A value of the root table: written before every [table].
                document.insert(key, toml_edit::value(value));
            }
        }
        Ok(())
    })
}

/// Applies `change` to the file (an empty document when it does not exist),
/// checks that the result is a valid configuration, and replaces the file
/// atomically.
fn edit(path: &Path, change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<()>) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut document: toml_edit::DocumentMut =
        text.parse().map_err(|e: toml_edit::TomlError| {
            let source = Source { path, text: &text };
            source.error(e.span().map(|s| s.start), e.message())
        })?;
    change(&mut document)?;
    let updated = document.to_string();
    ConfigFile::parse(&updated, path)
        .with_context(|| format!("{} was left unchanged", path.display()))?;
    write_atomically(path, updated.as_bytes())
}

/// Replaces `path` with `bytes`: a private temporary file beside it, fsync,
/// rename, fsync of the directory. Creates the directory (0700) if needed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // tempfile creates the file 0600 with O_EXCL.
    let mut temp = tempfile::Builder::new()
        .prefix(".config.toml.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(())
}

/// Resolves one duration setting: the flag (or its variable), else the
/// configuration file, else the library's default.
fn pick(
    flag: Option<SignedDuration>,
    file: Option<&str>,
    default: Duration,
    name: &str,
    path: &Path,
) -> Result<Duration> {
    let value = match (flag, file) {
        (Some(v), _) => v,
        (None, Some(text)) => names::parse_duration(text)
            .map_err(|e| usage(format!("{e} (setting {name} in {})", path.display())))?,
        (None, None) => return Ok(default),
    };
    // `parse_duration` refuses negative values, so this cannot fail.
    Ok(Duration::try_from(value).unwrap_or(Duration::ZERO))
}

/// What a command runs with, resolved from flags, environment, configuration
/// file and the library's defaults.
#[derive(Debug)]
pub struct Settings {
    /// Where configuration and state live.
    pub home: Home,
    /// When to refresh.
    pub policy: Policy,
    /// The longest wait for another process's refresh.
    pub lock_timeout: Duration,
    /// How the network is used.
    pub network: Network,
    /// The session: `--profile`, else `AUTHKEEP_PROFILE`, else the file's
    /// `default_profile`, else `default`.
    pub key: SessionKey,
    /// The session's `[profiles.NAME]` table, if the file has one.
    pub profile: Option<Profile>,
    /// The configuration file (which may not exist).
    pub config_path: PathBuf,
    /// The whole file, to judge other sessions by their own profiles.
    file: ConfigFile,
    /// The refresh settings asked for on the command line or in the environment.
    asked: PolicyArgs,
    /// Where this profile's secrets are written: `--store`, else the
    /// profile's `store`, else the file's, else the plain file store.
    pub backend: Backend,
    /// Where the encrypted store's key comes from.
    pub key_source: KeySource,
    /// Whether the keyring store may fall back to plain files.
    pub keyring_fallback: bool,
}

impl Settings {
    /// Resolves every setting; a broken configuration file is an error.
    pub fn resolve(
        profile: &ProfileArg,
        policy: &PolicyArgs,
        network: &NetworkArgs,
    ) -> Result<Self> {
        let home = Home::locate()?;
        let path = home.config_file();
        let file = ConfigFile::read(&path)?;
        Self::with_file(home, path, file, profile, policy, network)
    }

    /// Like [`Settings::resolve`], but a configuration file that cannot be read
    /// or is invalid is returned as a warning and ignored (defaults are used):
    /// for `logout` and `status`, which a configuration error must never block.
    /// Errors are the command line's own (an invalid `--profile`).
    pub fn resolve_lenient(
        profile: &ProfileArg,
        policy: &PolicyArgs,
        network: &NetworkArgs,
    ) -> Result<(Self, Option<String>)> {
        let home = Home::locate()?;
        let path = home.config_file();
        let (file, warning) = match ConfigFile::read(&path) {
            Ok(file) => (file, None),
            Err(e) => (ConfigFile::default(), Some(crate::exit::one_line(&e))),
        };
        let settings = Self::with_file(home, path, file, profile, policy, network)?;
        Ok((settings, warning))
    }

    fn with_file(
        mut home: Home,
        path: PathBuf,
        file: ConfigFile,
        profile: &ProfileArg,
        policy: &PolicyArgs,
        network: &NetworkArgs,
    ) -> Result<Self> {
        let name = common::profile_name(profile.profile.as_deref(), file.default_profile());
        let key = session_key(name)?;
        let own = file.profile(name).cloned();
        let lock_timeout = pick(
            network.lock_timeout,
            file.lock_timeout.as_deref(),
            DEFAULT_LOCK_TIMEOUT,
            "lock_timeout",
            &path,
        )?;
        let asked_store = network.store.clone();
        home.insecure_permissions = network.store.insecure_permissions
            || names::switch_variable(names::ENV_INSECURE_PERMISSIONS).map_err(usage)?
            || file.insecure_permissions == Some(true);
        let default_network = Network::default();
        let insecure = network.insecure_allow_http
            || own.as_ref().and_then(|p| p.insecure_allow_http) == Some(true);
        let network = Network::default()
            .with_connect_timeout(pick(
                network.connect_timeout,
                file.connect_timeout.as_deref(),
                default_network.connect_timeout,
                "connect_timeout",
                &path,
            )?)
            .with_timeout(pick(
                network.timeout,
                file.timeout.as_deref(),
                default_network.timeout,
                "timeout",
                &path,
            )?)
            .with_insecure_http_allowed(insecure);
        let backend = asked_store
            .store
            .or(own.as_ref().and_then(|p| p.store))
            .or(file.store)
            .unwrap_or_default();
        let key_source = match (&asked_store.key_file, &file.key_file) {
            (Some(path), _) => KeySource::File(path.clone()),
            // A relative path in the file is relative to the file's directory.
            (None, Some(path)) => KeySource::File(home.config_dir.join(path)),
            (None, None) => KeySource::Keyring,
        };
        let keyring_fallback =
            asked_store.insecure_keyring_fallback || file.insecure_keyring_fallback == Some(true);
        let mut settings = Self {
            backend,
            key_source,
            keyring_fallback,
            policy: Policy::default(),
            lock_timeout,
            network,
            home,
            key,
            profile: own,
            config_path: path,
            file,
            asked: policy.clone(),
        };
        settings.policy = settings.policy_of(&settings.key)?;
        Ok(settings)
    }

    /// The refresh policy of any session: what was asked for, else that
    /// profile's settings, else the file's top level, else the default.
    pub fn policy_of(&self, key: &SessionKey) -> Result<Policy> {
        common::refresh_policy(
            self.asked.refresh_threshold,
            self.asked.refresh_fraction,
            self.file.layers(key.as_str()),
        )
        .map_err(|e| usage(format!("{e} (refresh settings of profile {key})")))
    }

    /// A coordinator over the file store with these settings, to finish
    /// building (events) and build.
    pub fn keeper(&self) -> KeeperBuilder<FileStore> {
        Keeper::builder(self.store())
            .policy(self.policy)
            .lock_timeout(self.lock_timeout)
            .network(self.network.clone())
            .discovery_cache(self.home.state_dir.join("cache").join("discovery"))
    }
}

impl Settings {
    /// The session store, writing this profile's secrets where it asks and
    /// opening whatever any record holds.
    pub fn store(&self) -> FileStore {
        self.store_writing(self.backend)
    }

    /// The session store, writing secrets to `backend`.
    pub fn store_writing(&self, backend: Backend) -> FileStore {
        let plain = self.home.store();
        let backend = if backend == Backend::Keyring && self.keyring_fallback {
            self.keyring_or_fallback(&plain)
        } else {
            backend
        };
        let sealer = AnySealer::new(backend, self.key_source.clone(), plain.dir());
        plain.with_sealer(std::sync::Arc::new(sealer))
    }

    /// Checks, before a login or a move writes to it, that the chosen store can
    /// keep secrets: a keyring that does not answer is an error naming the
    /// choices (unless falling back is allowed, which [`Settings::store`] does).
    pub fn check_store(&self, backend: Backend) -> Result<()> {
        if backend != Backend::Keyring || self.keyring_fallback {
            return Ok(());
        }
        self.vault()
            .probe_blocking()
            .map_err(|e| usage(crate::stores::keyring_message(&e)))
    }

    /// The OS keyring of this home's store.
    pub fn vault(&self) -> authkeep::store::Vault {
        crate::stores::vault_for(self.home.store().dir())
    }

    /// The keyring, if one answers; else, as `--insecure-keyring-fallback`
    /// allows, the plain file store, with a warning.
    fn keyring_or_fallback(&self, plain: &FileStore) -> Backend {
        match self.vault().probe_blocking() {
            Ok(()) => Backend::Keyring,
            Err(e) => {
                common::stderr_line(&format!(
                    "authkeep: warning: {}; --insecure-keyring-fallback: keeping the secrets in plain files in {} instead",
                    crate::stores::keyring_failure(&e),
                    plain.dir().display()
                ));
                Backend::File
            }
        }
    }
}

/// The warning of a command that goes on without the configuration file.
pub fn ignored_warning(error: &str) -> String {
    format!("warning: {error}; going on without the configuration file")
}

/// Validates a profile name.
pub fn session_key(profile: &str) -> Result<SessionKey> {
    SessionKey::new(profile).map_err(|e| usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile> {
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
    fn the_example_in_the_help_is_a_valid_file() {
        let example: String = crate::commands::profiles::AFTER_HELP
            .lines()
            .filter_map(|line| line.strip_prefix("    "))
            .map(|line| format!("{line}\n"))
            .collect();
        let file = parse(&example).unwrap();
        assert_eq!(file.default_profile(), Some("work"));
        assert_eq!(
            file.profile("work").unwrap().login,
            Some(LoginMethod::Browser)
        );
    }

    #[test]
    fn asked_beats_profile_beats_top_level_beats_default() {
        let file = parse(EVERY_KEY).unwrap();
        let minutes = SignedDuration::from_mins;
        // The profile's own settings.
        let policy = common::refresh_policy(None, None, file.layers("work")).unwrap();
        assert_eq!((policy.threshold, policy.fraction), (minutes(10), 1.0));
        // A profile without them takes the top level's.
        let policy = common::refresh_policy(None, None, file.layers("home")).unwrap();
        assert_eq!((policy.threshold, policy.fraction), (minutes(2), 0.25));
        // What was asked for (a flag or its variable) beats both.
        let policy =
            common::refresh_policy(Some(minutes(1)), Some(0.5), file.layers("work")).unwrap();
        assert_eq!((policy.threshold, policy.fraction), (minutes(1), 0.5));
        // Nothing anywhere: the library's defaults.
        let empty = ConfigFile::default();
        let policy = common::refresh_policy(None, None, empty.layers("work")).unwrap();
        assert_eq!(policy, Policy::default());
        // The profile: asked, else default_profile, else "default".
        assert_eq!(common::profile_name(Some("a"), file.default_profile()), "a");
        assert_eq!(common::profile_name(None, file.default_profile()), "work");
        assert_eq!(
            common::profile_name(None, empty.default_profile()),
            "default"
        );
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

    #[test]
    fn write_profile_keeps_comments_and_other_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let original = "# my settings\nrefresh_threshold = \"2m\" # early\n\n# the office\n[profiles.work]\nissuer = \"https://work.example\"\n# keep this one\nclient_id = \"cli\" # the CLI's\nscopes = [\"a\"]\n\n[profiles.other]\nissuer = \"https://other.example\"\n";
        std::fs::write(&path, original).unwrap();
        let mut work = ConfigFile::read(&path)
            .unwrap()
            .profile("work")
            .unwrap()
            .clone();
        work.scopes = vec!["openid".into(), "email".into()];
        work.login = Some(LoginMethod::Browser);
        work.authorization_params
            .insert("prompt".into(), "login".into());
        write_profile(&path, "work", &work).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for kept in [
            "# my settings\n",
            "refresh_threshold = \"2m\" # early\n",
            "# the office\n[profiles.work]\n",
            "# keep this one\nclient_id = \"cli\" # the CLI's\n",
            "[profiles.other]\nissuer = \"https://other.example\"\n",
        ] {
            assert!(text.contains(kept), "{kept:?} lost:\n{text}");
        }
        let file = ConfigFile::read(&path).unwrap();
        assert_eq!(file.profile("work"), Some(&work));
        assert_eq!(
            file.profile("other").unwrap().issuer.as_deref(),
            Some("https://other.example")
        );
        // A new profile, and one key dropped from an existing one.
        let new = Profile {
            issuer: Some("https://new.example".into()),
            refresh_fraction: Some(0.5),
            ..Profile::default()
        };
        write_profile(&path, "new", &new).unwrap();
        work.scopes.clear();
        write_profile(&path, "work", &work).unwrap();
        let file = ConfigFile::read(&path).unwrap();
        assert_eq!(file.profile("new"), Some(&new));
        assert_eq!(file.profile("work"), Some(&work));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("# keep this one\n")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.toml"]);
    }

    #[test]
    fn writes_start_a_missing_file_and_refuse_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.toml");
        let profile = Profile {
            client_id: Some("c".into()),
            ..Profile::default()
        };
        write_profile(&path, "a", &profile).unwrap();
        set_default_profile(&path, "a").unwrap();
        let file = ConfigFile::read(&path).unwrap();
        assert_eq!(file.default_profile(), Some("a"));
        assert_eq!(file.profile("a"), Some(&profile));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.find("default_profile").unwrap() < text.find("[profiles.a]").unwrap(),
            "{text}"
        );
        // Not a valid name.
        assert!(write_profile(&path, "../a", &profile).is_err());
        // A file that is not TOML is never overwritten.
        std::fs::write(&path, "[profiles.a\n").unwrap();
        let message = format!("{:#}", set_default_profile(&path, "a").unwrap_err());
        assert!(message.contains("config.toml:1:"), "{message}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[profiles.a\n");
        // Nor is a result that would not read back.
        let both = Profile {
            client_secret_file: Some("/s".into()),
            client_secret_env: Some("S".into()),
            ..Profile::default()
        };
        std::fs::write(&path, "# mine\n").unwrap();
        let message = format!("{:#}", write_profile(&path, "a", &both).unwrap_err());
        assert!(message.contains("left unchanged"), "{message}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");
    }

    #[test]
    fn set_default_profile_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "# top\ndefault_profile = \"a\" # was a\ntimeout = \"9s\"\n\n[profiles.a]\n[profiles.b]\nclient_id = \"b\"\n",
        )
        .unwrap();
        set_default_profile(&path, "b").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# top\ndefault_profile = \"b\" # was a\ntimeout = \"9s\"\n\n[profiles.a]\n[profiles.b]\nclient_id = \"b\"\n"
        );
    }
}
