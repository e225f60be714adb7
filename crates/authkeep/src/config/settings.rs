//! How each setting is chosen: what was asked (a flag, else its environment
//! variable), then the profile's table in the configuration file, then the
//! file's top level, then the library's default.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;

use super::names::{self, ENV_INSECURE_PERMISSIONS};
use super::stores::{AnySealer, Backend, KeySource, StoreChoice};
use super::{ConfigError, ConfigFile, Home, Profile};
use crate::http::Network;
use crate::keeper::{DEFAULT_LOCK_TIMEOUT, Keeper, KeeperBuilder};
use crate::policy::Policy;
use crate::session::SessionKey;
use crate::store::FileStore;

/// What a program was asked, above the configuration file: the `authkeep`
/// command's flags (clap reads their variables), or what [`Asked::from_env`]
/// reads from the environment for programs without flags.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Asked {
    /// The session (`AUTHKEEP_PROFILE`).
    pub profile: Option<String>,
    /// The refresh window's ceiling (`AUTHKEEP_REFRESH_THRESHOLD`).
    pub refresh_threshold: Option<SignedDuration>,
    /// The window as a share of the token's lifetime (`AUTHKEEP_REFRESH_FRACTION`).
    pub refresh_fraction: Option<f64>,
    /// The longest wait for another process's refresh (`AUTHKEEP_LOCK_TIMEOUT`).
    pub lock_timeout: Option<SignedDuration>,
    /// Per connection (`AUTHKEEP_CONNECT_TIMEOUT`).
    pub connect_timeout: Option<SignedDuration>,
    /// A whole network step (`AUTHKEEP_TIMEOUT`).
    pub timeout: Option<SignedDuration>,
    /// Allow plain http to hosts other than loopback.
    pub insecure_allow_http: bool,
    /// The store (`AUTHKEEP_STORE`).
    pub store: Option<StoreChoice>,
    /// The store key file (`AUTHKEEP_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// Keep the keyring store's secrets in plain files where no keyring answers
    /// (`AUTHKEEP_INSECURE_KEYRING_FALLBACK`).
    pub insecure_keyring_fallback: bool,
    /// Use a session store that other users may read or change
    /// (`AUTHKEEP_INSECURE_PERMISSIONS` is read by [`Settings::resolve`] itself).
    pub insecure_permissions: bool,
}

impl Asked {
    /// Nothing asked: the configuration file and the defaults decide.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the environment variables of docs/DESIGN.md §7 ask, for a program
    /// without flags: the same variables the `authkeep` command reads. An
    /// empty variable is unset; a bad value is an error naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let text = |name: &str| -> Result<Option<String>, ConfigError> {
            match std::env::var(name) {
                Ok(value) if value.is_empty() => Ok(None),
                Ok(value) => Ok(Some(value)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(ConfigError::Invalid(format!("{name} is not valid UTF-8")))
                }
            }
        };
        let duration = |name: &'static str| -> Result<Option<SignedDuration>, ConfigError> {
            text(name)?
                .map(|t| names::parse_duration(&t).map_err(invalid(name)))
                .transpose()
        };
        let switch = |name: &str| names::switch_variable(name).map_err(ConfigError::Invalid);
        Ok(Self {
            profile: text(names::ENV_PROFILE)?,
            refresh_threshold: duration(names::ENV_REFRESH_THRESHOLD)?,
            refresh_fraction: text(names::ENV_REFRESH_FRACTION)?
                .map(|t| names::parse_fraction(&t).map_err(invalid(names::ENV_REFRESH_FRACTION)))
                .transpose()?,
            lock_timeout: duration(names::ENV_LOCK_TIMEOUT)?,
            connect_timeout: duration(names::ENV_CONNECT_TIMEOUT)?,
            timeout: duration(names::ENV_TIMEOUT)?,
            insecure_allow_http: false,
            store: text(names::ENV_STORE)?
                .map(|t| StoreChoice::parse(&t).map_err(invalid(names::ENV_STORE)))
                .transpose()?,
            key_file: text(names::ENV_KEY_FILE)?.map(PathBuf::from),
            insecure_keyring_fallback: switch(names::ENV_INSECURE_KEYRING_FALLBACK)?,
            insecure_permissions: false,
        })
    }
}

/// A bad value of the environment variable `name`.
fn invalid(name: &'static str) -> impl Fn(String) -> ConfigError {
    move |e| ConfigError::Invalid(format!("{e} (in {name})"))
}

/// The keyring store was chosen and `insecure_keyring_fallback` allowed the
/// plain file store, which is used instead because no keyring answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringFallback {
    /// Why the keyring cannot be used.
    pub why: String,
    /// Where the secrets are kept instead.
    pub dir: PathBuf,
}

/// What a program runs with, resolved from what was asked, the configuration
/// file and the library's defaults, for one session (a profile).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// Where configuration and state live.
    pub home: Home,
    /// When to refresh.
    pub policy: Policy,
    /// The longest wait for another process's refresh.
    pub lock_timeout: Duration,
    /// How the network is used.
    pub network: Network,
    /// The session: the profile asked for, else the file's `default_profile`,
    /// else `default`.
    pub key: SessionKey,
    /// The session's `[profiles.NAME]` table, if the file has one.
    pub profile: Option<Profile>,
    /// The configuration file (which may not exist).
    pub config_path: PathBuf,
    /// Where this profile's secrets are written: what was asked, else the
    /// profile's `store`, else the file's, else the plain file store.
    pub backend: Backend,
    /// A database of accounts asked for instead of the file store.
    pub database: Option<String>,
    /// Where the encrypted store's key comes from (a database store's too).
    pub key_source: KeySource,
    /// Whether the keyring store may fall back to plain files.
    pub keyring_fallback: bool,
    /// The whole file, to judge other sessions by their own profiles.
    file: ConfigFile,
    /// What was asked.
    asked: Asked,
}

impl Settings {
    /// Resolves every setting in `home`; a broken configuration file is an
    /// error.
    pub fn resolve(home: Home, asked: &Asked) -> Result<Self, ConfigError> {
        let path = home.config_file();
        let file = ConfigFile::read(&path)?;
        Self::from_file(home, path, file, asked)
    }

    /// Like [`Settings::resolve`], but a configuration file that cannot be read
    /// or is invalid is returned beside the settings and ignored (defaults are
    /// used): for logging out and status, which a configuration error must
    /// never block. Errors are what was asked (an invalid profile name).
    pub fn resolve_lenient(
        home: Home,
        asked: &Asked,
    ) -> Result<(Self, Option<ConfigError>), ConfigError> {
        let path = home.config_file();
        let (file, warning) = match ConfigFile::read(&path) {
            Ok(file) => (file, None),
            Err(e) => (ConfigFile::default(), Some(e)),
        };
        let settings = Self::from_file(home, path, file, asked)?;
        Ok((settings, warning))
    }

    /// Resolves every setting from a configuration file already read from
    /// `path`.
    pub fn from_file(
        mut home: Home,
        path: PathBuf,
        file: ConfigFile,
        asked: &Asked,
    ) -> Result<Self, ConfigError> {
        let name = profile_name(asked.profile.as_deref(), file.default_profile());
        let key = SessionKey::new(name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let own = file.profile(name).cloned();
        let lock_timeout = pick(
            asked.lock_timeout,
            file.lock_timeout.as_deref(),
            DEFAULT_LOCK_TIMEOUT,
            "lock_timeout",
            &path,
        )?;
        home.insecure_permissions = asked.insecure_permissions
            || names::switch_variable(ENV_INSECURE_PERMISSIONS).map_err(ConfigError::Invalid)?
            || file.insecure_permissions == Some(true);
        let default_network = Network::default();
        let insecure = asked.insecure_allow_http
            || own.as_ref().and_then(|p| p.insecure_allow_http) == Some(true);
        let network = Network::default()
            .with_connect_timeout(pick(
                asked.connect_timeout,
                file.connect_timeout.as_deref(),
                default_network.connect_timeout,
                "connect_timeout",
                &path,
            )?)
            .with_timeout(pick(
                asked.timeout,
                file.timeout.as_deref(),
                default_network.timeout,
                "timeout",
                &path,
            )?)
            .with_insecure_http_allowed(insecure);
        let (asked_backend, database) = match &asked.store {
            Some(StoreChoice::Files(backend)) => (Some(*backend), None),
            Some(StoreChoice::Database(url)) => (None, Some(url.clone())),
            None => (None, None),
        };
        let backend = asked_backend
            .or(own.as_ref().and_then(|p| p.store))
            .or(file.store)
            .unwrap_or_default();
        let key_source = match (&asked.key_file, &file.key_file) {
            (Some(path), _) => KeySource::File(path.clone()),
            // A relative path in the file is relative to the file's directory.
            (None, Some(path)) => KeySource::File(home.config_dir.join(path)),
            (None, None) => KeySource::Keyring,
        };
        let keyring_fallback =
            asked.insecure_keyring_fallback || file.insecure_keyring_fallback == Some(true);
        let mut settings = Self {
            backend,
            database,
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
            asked: asked.clone(),
        };
        settings.policy = settings.policy_of(&settings.key)?;
        Ok(settings)
    }

    /// The same settings for another profile of the same file.
    pub fn for_profile(&self, name: &str) -> Result<Self, ConfigError> {
        let asked = Asked {
            profile: Some(name.to_owned()),
            ..self.asked.clone()
        };
        let mut home = self.home.clone();
        home.insecure_permissions = false;
        Self::from_file(home, self.config_path.clone(), self.file.clone(), &asked)
    }

    /// The configuration file as read.
    pub fn file(&self) -> &ConfigFile {
        &self.file
    }

    /// The refresh policy of any session: what was asked for, else that
    /// profile's settings, else the file's top level, else the default.
    pub fn policy_of(&self, key: &SessionKey) -> Result<Policy, ConfigError> {
        refresh_policy(
            self.asked.refresh_threshold,
            self.asked.refresh_fraction,
            self.file.layers(key.as_str()),
        )
        .map_err(|e| ConfigError::Invalid(format!("{e} (refresh settings of profile {key})")))
    }

    /// The refresh policy of sessions that are not profiles (the accounts of
    /// a database store): what was asked for, else the file's top level, else
    /// the default.
    pub fn top_level_policy(&self) -> Result<Policy, ConfigError> {
        refresh_policy(
            self.asked.refresh_threshold,
            self.asked.refresh_fraction,
            self.file.top_level_layers(),
        )
        .map_err(|e| ConfigError::Invalid(format!("{e} (refresh settings at the top level)")))
    }

    /// A coordinator over the file store with these settings, to finish
    /// building (events) and build. Where the keyring store falls back to
    /// plain files, `on_fallback` is told.
    pub fn keeper_with(
        &self,
        on_fallback: impl FnOnce(&KeyringFallback),
    ) -> KeeperBuilder<FileStore> {
        Keeper::builder(self.store_writing_with(self.backend, on_fallback))
            .policy(self.policy)
            .lock_timeout(self.lock_timeout)
            .network(self.network.clone())
            .discovery_cache(self.home.discovery_cache())
    }

    /// The session store, writing secrets to `backend` and opening whatever
    /// any record holds. Where the keyring store was chosen, falling back is
    /// allowed and no keyring answers, the plain file store is used and
    /// `on_fallback` is told.
    pub fn store_writing_with(
        &self,
        backend: Backend,
        on_fallback: impl FnOnce(&KeyringFallback),
    ) -> FileStore {
        let plain = self.home.store();
        let backend = if backend == Backend::Keyring && self.keyring_fallback {
            self.keyring_or_fallback(&plain, on_fallback)
        } else {
            backend
        };
        let sealer = AnySealer::new(backend, self.key_source.clone(), plain.dir());
        plain.with_sealer(Arc::new(sealer))
    }

    /// The keyring, if one answers; else the plain file store.
    #[cfg(feature = "keyring")]
    fn keyring_or_fallback(
        &self,
        plain: &FileStore,
        on_fallback: impl FnOnce(&KeyringFallback),
    ) -> Backend {
        match self.vault().probe_blocking() {
            Ok(()) => Backend::Keyring,
            Err(e) => {
                on_fallback(&KeyringFallback {
                    why: super::keyring_failure(&e),
                    dir: plain.dir().to_owned(),
                });
                Backend::File
            }
        }
    }

    /// Without keyring support, the plain file store.
    #[cfg(not(feature = "keyring"))]
    fn keyring_or_fallback(
        &self,
        plain: &FileStore,
        on_fallback: impl FnOnce(&KeyringFallback),
    ) -> Backend {
        on_fallback(&KeyringFallback {
            why: "this authkeep was built without OS keyring support".to_owned(),
            dir: plain.dir().to_owned(),
        });
        Backend::File
    }

    /// The OS keyring of this home's store.
    #[cfg(feature = "keyring")]
    pub fn vault(&self) -> crate::store::Vault {
        super::vault_for(self.home.store().dir())
    }
}

/// Resolves one duration setting: what was asked, else the configuration
/// file, else the library's default.
fn pick(
    asked: Option<SignedDuration>,
    file: Option<&str>,
    default: Duration,
    name: &str,
    path: &std::path::Path,
) -> Result<Duration, ConfigError> {
    let value = match (asked, file) {
        (Some(v), _) => v,
        (None, Some(text)) => names::parse_duration(text).map_err(|e| {
            ConfigError::Invalid(format!("{e} (setting {name} in {})", path.display()))
        })?,
        (None, None) => return Ok(default),
    };
    // A negative duration asked for counts as none.
    Ok(Duration::try_from(value).unwrap_or(Duration::ZERO))
}

/// The profile to use: the one asked for (`--profile`, else `AUTHKEEP_PROFILE`),
/// else the configuration's `default_profile`, else `default`.
pub fn profile_name<'a>(asked: Option<&'a str>, default_profile: Option<&'a str>) -> &'a str {
    asked.or(default_profile).unwrap_or(names::DEFAULT_PROFILE)
}

/// The refresh policy: what was asked for (a flag, else its environment
/// variable), else the profile's setting, else the top level's, else the
/// default. `layers` are the configuration's (threshold, fraction) pairs, the
/// profile's first ([`ConfigFile::layers`]). The error says which value is
/// wrong, without saying where it came from.
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("config.toml")).unwrap()
    }

    #[test]
    fn each_profile_gets_its_own_policy_store_and_network() {
        let config = file(
            "default_profile = \"work\"\nrefresh_threshold = \"2m\"\nlock_timeout = \"7s\"\nstore = \"encrypted-file\"\nkey_file = \"k\"\n\
             [profiles.work]\nrefresh_threshold = \"10m\"\ninsecure_allow_http = true\nstore = \"file\"\n[profiles.other]\n",
        );
        let home = Home::at("/h");
        let settings =
            Settings::from_file(home.clone(), home.config_file(), config, &Asked::new()).unwrap();
        assert_eq!(settings.key.as_str(), "work");
        assert_eq!(settings.policy.threshold, SignedDuration::from_mins(10));
        assert_eq!(settings.lock_timeout, Duration::from_secs(7));
        assert_eq!(settings.backend, Backend::File);
        assert!(settings.network.allow_insecure_http);
        assert_eq!(settings.key_source, KeySource::File("/h/k".into()));
        assert_eq!(settings.database, None);
        let other = settings.for_profile("other").unwrap();
        assert_eq!(other.key.as_str(), "other");
        assert_eq!(other.policy.threshold, SignedDuration::from_mins(2));
        assert_eq!(other.backend, Backend::EncryptedFile);
        assert!(!other.network.allow_insecure_http);
        assert_eq!(
            other.top_level_policy().unwrap().threshold,
            SignedDuration::from_mins(2)
        );
        assert!(settings.for_profile("../x").unwrap_err().is_invalid());
    }

    #[test]
    fn what_was_asked_wins_and_a_database_is_named_apart() {
        let config = file("[profiles.work]\nrefresh_threshold = \"10m\"\nstore = \"keyring\"\n");
        let home = Home::at("/h");
        let mut asked = Asked::new();
        asked.profile = Some("work".into());
        asked.refresh_threshold = Some(SignedDuration::from_mins(1));
        asked.store = Some(StoreChoice::Database("sqlite:/h/a.db".into()));
        asked.key_file = Some("/keys/k".into());
        let settings =
            Settings::from_file(home.clone(), home.config_file(), config, &asked).unwrap();
        assert_eq!(settings.policy.threshold, SignedDuration::from_mins(1));
        assert_eq!(settings.database.as_deref(), Some("sqlite:/h/a.db"));
        assert_eq!(settings.backend, Backend::Keyring);
        assert_eq!(settings.key_source, KeySource::File("/keys/k".into()));
        let bad = file("lock_timeout = \"5s\"\n");
        asked.profile = Some("no/such".into());
        assert!(
            Settings::from_file(home.clone(), home.config_file(), bad, &asked)
                .unwrap_err()
                .is_invalid()
        );
    }
}
