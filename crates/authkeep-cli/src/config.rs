//! Where configuration and state live, and how a setting is chosen: a flag, then
//! its environment variable, then the configuration file, then the default.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use authkeep::{
    DEFAULT_LOCK_TIMEOUT, FileStore, Keeper, KeeperBuilder, Network, Policy, SessionKey,
};
use jiff::SignedDuration;
use serde::Deserialize;

use crate::common::Home;
use crate::exit::usage;
use crate::names::{self, NetworkArgs, PolicyArgs};

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
}

impl Settings {
    /// Resolves every setting.
    pub fn resolve(policy: &PolicyArgs, network: &NetworkArgs) -> Result<Self> {
        let home = Home::locate()?;
        let path = home.config_file();
        let file = ConfigFile::read(&path)?;
        let defaults = Policy::default();
        let threshold = pick(
            policy.refresh_threshold,
            file.refresh_threshold.as_deref(),
            Duration::try_from(defaults.threshold).unwrap_or(Duration::ZERO),
            "refresh_threshold",
            &path,
        )?;
        let fraction = policy
            .refresh_fraction
            .or(file.refresh_fraction)
            .unwrap_or(defaults.fraction);
        if !(0.0..=1.0).contains(&fraction) {
            return Err(usage(format!(
                "refresh_fraction in {} must be from 0 to 1",
                path.display()
            )));
        }
        let lock_timeout = pick(
            network.lock_timeout,
            file.lock_timeout.as_deref(),
            DEFAULT_LOCK_TIMEOUT,
            "lock_timeout",
            &path,
        )?;
        let default_network = Network::default();
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
            .with_insecure_http_allowed(network.insecure_allow_http);
        Ok(Self {
            policy: defaults
                .with_threshold(SignedDuration::try_from(threshold).unwrap_or(SignedDuration::MAX))
                .with_fraction(fraction),
            lock_timeout,
            network,
            home,
        })
    }

    /// A coordinator over the file store with these settings, to finish
    /// building (events) and build.
    pub fn keeper(&self) -> KeeperBuilder<FileStore> {
        Keeper::builder(self.home.store())
            .policy(self.policy)
            .lock_timeout(self.lock_timeout)
            .network(self.network.clone())
            .discovery_cache(self.home.state_dir.join("cache").join("discovery"))
    }
}

/// Validates a profile name.
pub fn session_key(profile: &str) -> Result<SessionKey> {
    SessionKey::new(profile).map_err(|e| usage(e.to_string()))
}
