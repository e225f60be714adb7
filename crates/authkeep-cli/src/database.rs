//! The database store of the `agent`, `clients` and `accounts` commands:
//! `--store sqlite:PATH | postgres://…` (or `AUTHKEEP_STORE`; default
//! `sqlite:` + `accounts.db` in the state directory), its secrets sealed with
//! the store key from `--key-file` (`AUTHKEEP_KEY_FILE`, config `key_file`).
//! Store errors become exit codes here: unreachable is "retry later" (4), a
//! name or client that does not fit is a usage error (2).

use std::path::PathBuf;

use anyhow::Result;
use authkeep::store::StoreKey;
use authkeep_db::{DbError, DbOptions, DbStore};
use clap::Args;

use crate::common::Home;
use crate::config::ConfigFile;
use crate::exit::{RetryLater, usage};
use crate::names::{DEFAULT_DB_FILE, ENV_KEY_FILE, ENV_STORE};

/// Which database, and its key.
#[derive(Args, Debug, Clone, Default)]
pub struct DbArgs {
    /// The database: sqlite:PATH or postgres://USER@HOST/DATABASE [default: sqlite: with
    /// accounts.db in the state directory]
    #[arg(long, env = ENV_STORE, value_name = "URL")]
    pub store: Option<String>,
    /// The store key file, which seals tokens and client secrets (make one with `authkeep store
    /// keygen --out PATH`) [default: key_file in config.toml]
    #[arg(long, env = ENV_KEY_FILE, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

/// The database URL asked for, checked to name a database.
pub fn url(args: &DbArgs, home: &Home) -> Result<String> {
    let url = match args.store.as_deref().filter(|s| !s.is_empty()) {
        Some(url) => url.to_owned(),
        None => format!("sqlite:{}", home.state_dir.join(DEFAULT_DB_FILE).display()),
    };
    let is_database = url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://");
    if !is_database {
        return Err(usage(format!(
            "the store {:?} holds profiles, not accounts: give a database with --store sqlite:PATH or --store postgres://USER@HOST/DATABASE",
            url.split(':').next().unwrap_or_default()
        )));
    }
    Ok(url)
}

/// Opens the database store with `options`, creating or upgrading its schema.
pub async fn open(args: &DbArgs, home: &Home, options: DbOptions) -> Result<DbStore> {
    let url = url(args, home)?;
    let key_file = match &args.key_file {
        Some(path) => path.clone(),
        None => match ConfigFile::read(&home.config_file())?.key_file() {
            Some(path) => home.config_dir.join(path),
            None => {
                return Err(usage(format!(
                    "a database store keeps its tokens encrypted and needs a key: make one with \
                     `authkeep store keygen --out PATH` and name it with --key-file or {ENV_KEY_FILE} \
                     (or key_file in config.toml)"
                )));
            }
        },
    };
    let key = StoreKey::read_file(&key_file).map_err(|e| usage(e.to_string()))?;
    DbStore::open_with(&url, key, options)
        .await
        .map_err(db_error)
}

/// A store error in the command's terms.
pub fn db_error(error: DbError) -> anyhow::Error {
    match error {
        e if e.is_transient() => RetryLater(e.to_string()).into(),
        e @ (DbError::UnsupportedUrl { .. }
        | DbError::InvalidUrl(_)
        | DbError::BackendDisabled(_)
        | DbError::InvalidName(_)
        | DbError::ClientExists(_)
        | DbError::UnknownClient(_)
        | DbError::ClientInUse { .. }
        | DbError::InsecurePermissions { .. }
        | DbError::Sealed { .. }) => usage(e.to_string()),
        e => anyhow::Error::new(e),
    }
}
