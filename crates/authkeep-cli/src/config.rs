//! Where configuration and state live, and how a setting is chosen: a flag, then
//! its environment variable, then the configuration file, then the default.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use authkeep::http::HttpSettings;
use authkeep::{FileStore, Keeper, Policy, SessionKey, Settings};
use jiff::SignedDuration;
use serde::Deserialize;

use crate::common::{Home, default_policy};
use crate::exit::usage;
use crate::names::{self, NetworkArgs, PolicyArgs, defaults};

/// The configuration file's settings; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    refresh_threshold: Option<String>,
    refresh_fraction: Option<f64>,
    lock_timeout: Option<String>,
    connect_timeout: Option<String>,
    timeout: Option<String>,
}

impl ConfigFile {
    /// Reads the file if it exists; a malformed file is an error naming it.
    pub fn read(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text).map_err(|e| {
            usage(format!(
                "invalid configuration file {}: {}",
                path.display(),
                e.message()
            ))
        })
    }
}

/// Resolves one duration setting.
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

/// The coordinator over the file store, with settings resolved from flags,
/// environment, configuration file and defaults.
pub fn keeper(policy: &PolicyArgs, network: &NetworkArgs) -> Result<Keeper<FileStore>> {
    let (home, settings) = settings(policy, network)?;
    Ok(Keeper::new(home.store(), settings))
}

/// The settings resolved from flags, environment, configuration file and
/// defaults, with the home they came from.
pub fn settings(policy: &PolicyArgs, network: &NetworkArgs) -> Result<(Home, Settings)> {
    {
        let home = Home::locate()?;
        let path = home.config_file();
        let file = ConfigFile::read(&path)?;
        let threshold = pick(
            policy.refresh_threshold,
            file.refresh_threshold.as_deref(),
            defaults::REFRESH_THRESHOLD,
            "refresh_threshold",
            &path,
        )?;
        let fraction = policy
            .refresh_fraction
            .or(file.refresh_fraction)
            .unwrap_or(defaults::REFRESH_FRACTION);
        if !(0.0..=1.0).contains(&fraction) {
            return Err(usage(format!(
                "refresh_fraction in {} must be from 0 to 1",
                path.display()
            )));
        }
        let settings = Settings {
            policy: Policy {
                threshold: SignedDuration::try_from(threshold).unwrap_or(SignedDuration::MAX),
                fraction,
                ..default_policy()
            },
            lock_timeout: pick(
                network.lock_timeout,
                file.lock_timeout.as_deref(),
                defaults::LOCK_TIMEOUT,
                "lock_timeout",
                &path,
            )?,
            http: HttpSettings {
                connect_timeout: pick(
                    network.connect_timeout,
                    file.connect_timeout.as_deref(),
                    defaults::CONNECT_TIMEOUT,
                    "connect_timeout",
                    &path,
                )?,
                timeout: pick(
                    network.timeout,
                    file.timeout.as_deref(),
                    defaults::TIMEOUT,
                    "timeout",
                    &path,
                )?,
                allow_insecure_http: network.insecure_allow_http,
                ..HttpSettings::default()
            },
            discovery_cache_dir: Some(home.state_dir.join("cache").join("discovery")),
            login_hint: "log in again with `authkeep login --profile {profile}`".into(),
            ..Settings::default()
        };
        Ok((home, settings))
    }
}

/// Validates a profile name.
pub fn session_key(profile: &str) -> Result<SessionKey> {
    SessionKey::new(profile).map_err(|e| usage(e.to_string()))
}
