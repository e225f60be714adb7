//! `authkeep store`: the encrypted store's keys (`keygen`, `rekey`) and moving
//! sessions between stores (`migrate`). Every record is rewritten under its
//! session's lock by an atomic replace, so a command killed at any instant
//! leaves each record readable, in its old form or its new one.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use authkeep::store::{Store as _, StoreKey};
use authkeep::{FileStore, SessionKey};

use crate::config::{self, Settings};
use crate::exit::usage;
use crate::names::{NetworkArgs, OptionalProfileArg, PolicyArgs, ProfileArg};
use crate::printer::{self, Level};
use crate::stores::{self, Backend, KEY_ENTRY, KeySource, NEXT_KEY_ENTRY};

/// Keys of the encrypted store, and moving sessions between stores.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Make a new random key for the encrypted store: in a new file (0600; never overwrites one)
    /// with --out, else in the OS keyring (where the store looks when no key file is set).
    Keygen {
        /// The key file to create.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Re-encrypt every encrypted session under a new key: the one in --new-key-file, or a new
    /// key in the OS keyring. Safe to interrupt: run it again to finish.
    Rekey {
        /// The new key's file (made with `authkeep store keygen --out`).
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<PathBuf>,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Move sessions to another store (every profile, or one) and make it the store they use.
    /// Safe to interrupt: run it again to finish.
    Migrate {
        /// The store to move to: file, encrypted-file or keyring.
        #[arg(long, value_name = "STORE", value_parser = crate::names::parse_backend)]
        to: Backend,
        #[command(flatten)]
        profile: OptionalProfileArg,
        #[command(flatten)]
        network: NetworkArgs,
    },
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    match args.command {
        Command::Keygen { out } => keygen(out, level),
        Command::Rekey {
            new_key_file,
            network,
        } => rekey(new_key_file, &network, level),
        Command::Migrate {
            to,
            profile,
            network,
        } => migrate(to, profile.profile, &network, level),
    }
}

fn settings(network: &NetworkArgs) -> Result<Settings> {
    Settings::resolve(&ProfileArg::default(), &PolicyArgs::default(), network)
}

fn keygen(out: Option<PathBuf>, level: Level) -> Result<()> {
    let key = StoreKey::generate()?;
    match out {
        Some(path) => {
            key.write_new_file(&path)?;
            printer::status(
                level,
                Level::Normal,
                &format!(
                    "wrote a new store key (id {}) to {}; use it with --key-file, AUTHKEEP_KEY_FILE or key_file in config.toml",
                    key.id(),
                    path.display()
                ),
            );
        }
        None => {
            let settings = settings(&NetworkArgs::default())?;
            let vault = settings.vault();
            let runtime = crate::runtime()?;
            if runtime
                .block_on(vault.get(KEY_ENTRY))
                .map_err(|e| anyhow!(stores::keyring_message(&e)))?
                .is_some()
            {
                return Err(usage(
                    "the OS keyring already holds a store key; `authkeep store rekey` replaces it",
                ));
            }
            runtime
                .block_on(vault.set(KEY_ENTRY, &key.to_text()))
                .map_err(|e| anyhow!(stores::keyring_message(&e)))?;
            printer::status(
                level,
                Level::Normal,
                &format!("stored a new store key (id {}) in the OS keyring", key.id()),
            );
        }
    }
    Ok(())
}

fn rekey(new_key_file: Option<PathBuf>, network: &NetworkArgs, level: Level) -> Result<()> {
    let settings = settings(network)?;
    let runtime = crate::runtime()?;
    let (old, new) = match (&settings.key_source, new_key_file) {
        (KeySource::File(old), Some(new)) => {
            (StoreKey::read_file(old)?, StoreKey::read_file(&new)?)
        }
        (KeySource::File(old), None) => {
            return Err(usage(format!(
                "the store key comes from {}: give the new one with --new-key-file (make it with `authkeep store keygen --out PATH`)",
                old.display()
            )));
        }
        (KeySource::Keyring, Some(_)) => {
            return Err(usage(
                "the store key is in the OS keyring; rekey without --new-key-file makes a new one there (or set key_file to use key files)",
            ));
        }
        (KeySource::Keyring, None) => {
            let vault = settings.vault();
            let keyring = |e| anyhow!(stores::keyring_message(&e));
            let old = runtime
                .block_on(vault.get(KEY_ENTRY))
                .map_err(keyring)?
                .ok_or_else(|| usage("the OS keyring holds no store key to replace"))?;
            let old = StoreKey::from_text(&old)?;
            // An interrupted rekey left its new key here: finish with it.
            let new = match runtime
                .block_on(vault.get(NEXT_KEY_ENTRY))
                .map_err(keyring)?
            {
                Some(text) => StoreKey::from_text(&text)?,
                None => {
                    let new = StoreKey::generate()?;
                    runtime
                        .block_on(vault.set(NEXT_KEY_ENTRY, &new.to_text()))
                        .map_err(keyring)?;
                    new
                }
            };
            (old, new)
        }
    };
    let (new_id, old_id) = (new.id().to_owned(), old.id().to_owned());
    let dir = settings.home.store().dir().to_path_buf();
    let done = runtime.block_on(authkeep::store::rekey(
        &dir,
        old,
        new,
        settings.lock_timeout,
    ))?;
    if let KeySource::Keyring = settings.key_source {
        let vault = settings.vault();
        let keyring = |e| anyhow!(stores::keyring_message(&e));
        let next = runtime
            .block_on(vault.get(NEXT_KEY_ENTRY))
            .map_err(keyring)?
            .ok_or_else(|| anyhow!("the new store key vanished from the OS keyring"))?;
        runtime
            .block_on(vault.set(KEY_ENTRY, &next))
            .map_err(keyring)?;
        runtime
            .block_on(vault.delete(NEXT_KEY_ENTRY))
            .map_err(keyring)?;
    }
    printer::status(
        level,
        Level::Normal,
        &format!(
            "re-encrypted {} session(s) under key {new_id} ({} already were); the old key {old_id} {}",
            done.resealed,
            done.already,
            match settings.key_source {
                KeySource::Keyring => "was replaced in the OS keyring",
                KeySource::File(_) => {
                    "is no longer needed: point --key-file, AUTHKEEP_KEY_FILE or key_file at the new file, then delete the old one"
                }
            }
        ),
    );
    Ok(())
}

fn migrate(
    to: Backend,
    profile: Option<String>,
    network: &NetworkArgs,
    level: Level,
) -> Result<()> {
    let settings = settings(network)?;
    settings.check_store(to)?;
    // The configuration first: from now on new writes go to the target, and a
    // migration interrupted below is finished by running it again.
    let path = settings.config_path.clone();
    let keys = match &profile {
        Some(name) => {
            let key = config::session_key(name)?;
            let mut own = config::ConfigFile::read(&path)?
                .profile(name)
                .cloned()
                .unwrap_or_default();
            own.store = Some(to);
            config::write_profile(&path, name, &own)?;
            vec![key]
        }
        None => {
            config::set_top_level(&path, "store", to.as_str())?;
            let file = config::ConfigFile::read(&path)?;
            for (name, own) in file.profiles() {
                if own.store.is_some_and(|s| s != to) {
                    let mut own = own.clone();
                    own.store = Some(to);
                    config::write_profile(&path, name, &own)?;
                }
            }
            crate::runtime()?.block_on(settings.home.store().list())?
        }
    };
    let target = settings.store_writing(to);
    let runtime = crate::runtime()?;
    let mut moved = 0;
    for key in &keys {
        if runtime.block_on(move_one(&target, key, to, settings.lock_timeout))? {
            moved += 1;
        }
    }
    printer::status(
        level,
        Level::Normal,
        &format!(
            "moved {moved} of {} session(s) to the {} store; {}",
            keys.len(),
            to.as_str(),
            target.describe_secrets()
        ),
    );
    Ok(())
}

/// Rewrites one session with `target`'s sealing, under its lock. Returns
/// whether it had to move.
async fn move_one(
    target: &FileStore,
    key: &SessionKey,
    to: Backend,
    wait: std::time::Duration,
) -> Result<bool> {
    let guard = target.lock(key, wait, || {}).await?;
    let kind = target.sealed_kind_blocking(key)?;
    if Backend::of_kind(kind.as_deref()) == Some(to) {
        return Ok(false);
    }
    let Some(current) = target.load(key).await? else {
        return Ok(false);
    };
    target
        .write(&guard, Some(current.generation), &current.record)
        .await
        .with_context(|| format!("moving the session of profile {key}"))?;
    Ok(true)
}
