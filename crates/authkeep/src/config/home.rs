//! Where authkeep's files live: one directory named by `AUTHKEEP_HOME`, else
//! the platform's configuration and state directories.

use std::path::PathBuf;

use super::ConfigError;
use super::names::ENV_HOME;
use crate::store::FileStore;

/// The directories authkeep uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    /// Holds `config.toml`.
    pub config_dir: PathBuf,
    /// Holds sessions and caches.
    pub state_dir: PathBuf,
    /// Whether a session store that other users may read or change is used
    /// rather than refused (`insecure_permissions`; `locate` leaves it off).
    pub insecure_permissions: bool,
}

impl Home {
    /// `AUTHKEEP_HOME` for both, else the platform's configuration and state
    /// directories.
    pub fn locate() -> Result<Self, ConfigError> {
        if let Some(home) = std::env::var_os(ENV_HOME).filter(|h| !h.is_empty()) {
            return Ok(Self::at(home));
        }
        let config = dirs::config_dir().ok_or_else(|| {
            ConfigError::NoHome(format!(
                "cannot find a configuration directory; set {ENV_HOME}"
            ))
        })?;
        let state = dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .ok_or_else(|| {
                ConfigError::NoHome(format!("cannot find a state directory; set {ENV_HOME}"))
            })?;
        Ok(Self {
            config_dir: config.join("authkeep"),
            state_dir: state.join("authkeep"),
            insecure_permissions: false,
        })
    }

    /// One directory for configuration and state, as `AUTHKEEP_HOME` names it.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            config_dir: dir.clone(),
            state_dir: dir,
            insecure_permissions: false,
        }
    }

    /// The configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The session store, refusing files and a directory that other users may
    /// use unless `insecure_permissions` allows them.
    pub fn store(&self) -> FileStore {
        FileStore::new(self.state_dir.join("sessions"))
            .with_insecure_permissions(self.insecure_permissions)
    }

    /// Where provider metadata is cached.
    pub fn discovery_cache(&self) -> PathBuf {
        self.state_dir.join("cache").join("discovery")
    }
}
