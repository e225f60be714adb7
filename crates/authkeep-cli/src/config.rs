//! `config.toml` as the command uses it: the library reads and resolves it
//! (`authkeep::config`: a flag, then its environment variable, then the
//! profile's table, then the file's top level, then the default), so that
//! every program sees the same profiles; this module turns the command line
//! into what was asked, words what goes wrong, and edits the file.
//!
//! Edits (`write_profile`, `set_default_profile`) go through `toml_edit`, so
//! every other key, table and comment survives, and replace the file
//! atomically.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use authkeep::config::{Asked, ConfigError, KeyringFallback, StoreChoice};
use authkeep::{FileStore, KeeperBuilder, SessionKey};

pub use authkeep::config::{AuthMethod, ConfigFile, LoginMethod, OnErase, Profile};

use crate::common::{self, Home};
use crate::exit::usage;
use crate::names::{NetworkArgs, PolicyArgs, ProfileArg};
use crate::stores::Backend;

/// A configuration error as the command reports it: an invalid setting is a
/// usage error (exit 2); anything else keeps its cause.
pub fn invalid(error: ConfigError) -> anyhow::Error {
    if error.is_invalid() {
        usage(error.to_string())
    } else {
        anyhow::Error::new(error)
    }
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
            invalid(authkeep::config::error_at(
                path,
                &text,
                e.span().map(|s| s.start),
                e.message(),
            ))
        })?;
    change(&mut document)?;
    let updated = document.to_string();
    ConfigFile::parse(&updated, path)
        .map_err(invalid)
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

/// What a command runs with: the library's settings, resolved from the
/// command line, the environment, the configuration file and the defaults.
#[derive(Debug)]
pub struct Settings(authkeep::config::Settings);

impl std::ops::Deref for Settings {
    type Target = authkeep::config::Settings;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What the command line asks (clap has read the flags' variables).
fn asked(profile: &ProfileArg, policy: &PolicyArgs, network: &NetworkArgs) -> Asked {
    let mut asked = Asked::new();
    asked.profile = profile.profile.clone();
    asked.refresh_threshold = policy.refresh_threshold;
    asked.refresh_fraction = policy.refresh_fraction;
    asked.lock_timeout = network.lock_timeout;
    asked.connect_timeout = network.connect_timeout;
    asked.timeout = network.timeout;
    asked.insecure_allow_http = network.insecure_allow_http;
    asked.store = network.store.store.map(StoreChoice::Files);
    asked.key_file = network.store.key_file.clone();
    asked.insecure_keyring_fallback = network.store.insecure_keyring_fallback;
    asked.insecure_permissions = network.store.insecure_permissions;
    asked
}

impl Settings {
    /// Resolves every setting; a broken configuration file is an error.
    pub fn resolve(
        profile: &ProfileArg,
        policy: &PolicyArgs,
        network: &NetworkArgs,
    ) -> Result<Self> {
        let home = Home::locate().map_err(invalid)?;
        authkeep::config::Settings::resolve(home, &asked(profile, policy, network))
            .map(Self)
            .map_err(invalid)
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
        let home = Home::locate().map_err(invalid)?;
        let (settings, warning) =
            authkeep::config::Settings::resolve_lenient(home, &asked(profile, policy, network))
                .map_err(invalid)?;
        let warning = warning.map(|e| crate::exit::one_line(&invalid(e)));
        Ok((Self(settings), warning))
    }

    /// The refresh policy of any session: what was asked for, else that
    /// profile's settings, else the file's top level, else the default.
    pub fn policy_of(&self, key: &SessionKey) -> Result<authkeep::Policy> {
        self.0.policy_of(key).map_err(invalid)
    }

    /// A coordinator over the file store with these settings, to finish
    /// building (events) and build.
    pub fn keeper(&self) -> KeeperBuilder<FileStore> {
        self.0.keeper_with(warn_fallback)
    }

    /// The session store, writing this profile's secrets where it asks and
    /// opening whatever any record holds.
    pub fn store(&self) -> FileStore {
        self.store_writing(self.backend)
    }

    /// The session store, writing secrets to `backend`.
    pub fn store_writing(&self, backend: Backend) -> FileStore {
        self.0.store_writing_with(backend, warn_fallback)
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
}

/// Where `--insecure-keyring-fallback` let the keyring store fall back to plain
/// files: a warning.
fn warn_fallback(fallback: &KeyringFallback) {
    common::stderr_line(&format!(
        "authkeep: warning: {}; --insecure-keyring-fallback: keeping the secrets in plain files in {} instead",
        fallback.why,
        fallback.dir.display()
    ));
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
        ConfigFile::parse(text, Path::new("config.toml")).map_err(invalid)
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
