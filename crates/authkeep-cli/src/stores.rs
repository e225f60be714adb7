//! Where a profile's secrets live: the backend chosen with `--store`
//! (`AUTHKEEP_STORE`, config `store`, per profile or for all), and the one
//! sealer every command's store uses, which writes the chosen way and opens
//! whatever a record holds (plain, encrypted or in the keyring), so sessions can
//! move between backends and a command never needs to know how one was written.
//!
//! Keys of the encrypted store come from the key file (`--key-file`,
//! `AUTHKEEP_KEY_FILE`, config `key_file`), else from the OS keyring, where
//! `store rekey` keeps the next key beside the current one until every record
//! is re-sealed. Keyring and key are loaded on first use: a plain record never
//! touches either.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authkeep::SessionKey;

pub use crate::names::Backend;
use authkeep::store::{Encrypting, InKeyring, SealError, Sealer, StoreKey, Vault, VaultError};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Longest wait for the OS keyring: a keyring waiting for a prompt on another
/// screen must not hang `token`.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(5);
/// The keyring entry holding the encrypted store's key.
pub const KEY_ENTRY: &str = "store-key";
/// The keyring entry holding the next key while `store rekey` runs.
pub const NEXT_KEY_ENTRY: &str = "store-key-next";

/// Where the encrypted store's key comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A key file.
    File(PathBuf),
    /// The OS keyring.
    Keyring,
}

/// Opens every kind of sealed record, and seals the chosen way.
#[derive(Debug)]
pub struct AnySealer {
    write: Backend,
    key_source: KeySource,
    vault_namespace: String,
    encrypting: OnceLock<Result<Arc<Encrypting>, String>>,
    in_keyring: OnceLock<Arc<InKeyring>>,
}

impl AnySealer {
    /// A sealer that writes as `write` for the store in `dir`.
    pub fn new(write: Backend, key_source: KeySource, dir: &Path) -> Self {
        Self {
            write,
            key_source,
            vault_namespace: namespace(dir),
            encrypting: OnceLock::new(),
            in_keyring: OnceLock::new(),
        }
    }

    /// The OS keyring of this store.
    fn vault(&self) -> Vault {
        Vault::new(&self.vault_namespace, KEYRING_TIMEOUT)
    }

    fn in_keyring(&self) -> &InKeyring {
        self.in_keyring
            .get_or_init(|| Arc::new(InKeyring::new(self.vault())))
    }

    fn encrypting(&self) -> Result<&Encrypting, SealError> {
        self.encrypting
            .get_or_init(|| load_keys(&self.key_source, &self.vault()).map(Arc::new))
            .as_ref()
            .map(|e| e.as_ref())
            .map_err(|e| SealError(e.clone()))
    }

    fn for_sealed(&self, sealed: &Value) -> Result<&dyn Sealer, SealError> {
        match sealed.get("kind").and_then(Value::as_str) {
            Some("encrypted") => Ok(self.encrypting()?),
            Some("keyring") => Ok(self.in_keyring()),
            other => Err(SealError(format!(
                "its secrets are sealed in a way this authkeep does not know ({})",
                other.unwrap_or("no kind")
            ))),
        }
    }
}

impl Sealer for AnySealer {
    fn seal(&self, key: &SessionKey, secrets: &[u8]) -> Result<Value, SealError> {
        match self.write {
            Backend::EncryptedFile => self.encrypting()?.seal(key, secrets),
            Backend::Keyring => self.in_keyring().seal(key, secrets),
            // `seals()` is false: the file store writes plain text.
            Backend::File => Err(SealError("the file store does not seal".into())),
        }
    }

    fn open(&self, key: &SessionKey, sealed: &Value) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.for_sealed(sealed)?.open(key, sealed)
    }

    fn discard(&self, key: &SessionKey, sealed: &Value) -> Result<(), SealError> {
        self.for_sealed(sealed)?.discard(key, sealed)
    }

    fn describe(&self) -> String {
        match self.write {
            Backend::File => "plain text in the session files (0600)".to_owned(),
            Backend::EncryptedFile => match &self.key_source {
                KeySource::File(path) => format!(
                    "encrypted in the session files, key from {}",
                    path.display()
                ),
                KeySource::Keyring => {
                    "encrypted in the session files, key in the OS keyring".to_owned()
                }
            },
            Backend::Keyring => "in the OS keyring".to_owned(),
        }
    }

    fn seals(&self) -> bool {
        self.write != Backend::File
    }
}

/// The keys that open the store: the key file's, or the keyring's current key
/// and, while a rekey is unfinished, the next one (then the current key for
/// writing is the next one, so an interrupted rekey goes on where it stopped).
fn load_keys(source: &KeySource, vault: &Vault) -> Result<Encrypting, String> {
    match source {
        KeySource::File(path) => StoreKey::read_file(path)
            .map(Encrypting::new)
            .map_err(|e| e.to_string()),
        KeySource::Keyring => {
            let (current, next) = (
                vault.get_blocking(KEY_ENTRY),
                vault.get_blocking(NEXT_KEY_ENTRY),
            );
            let read = |entry: Result<Option<Zeroizing<String>>, VaultError>, name: &str| {
                entry
                    .map_err(|e| keyring_message(&e))?
                    .map(|text| {
                        StoreKey::from_text(&text).map_err(|e| {
                            format!("the keyring entry {name} is not a store key: {e}")
                        })
                    })
                    .transpose()
            };
            let current = read(current, KEY_ENTRY)?;
            let next = read(next, NEXT_KEY_ENTRY)?;
            match (current, next) {
                (Some(current), Some(next)) => Ok(Encrypting::new(next).with_old_key(current)),
                (Some(current), None) => Ok(Encrypting::new(current)),
                (None, Some(next)) => Ok(Encrypting::new(next)),
                (None, None) => Err(
                    "the OS keyring holds no store key; run `authkeep store keygen` (or give a key file with --key-file)"
                        .to_owned(),
                ),
            }
        }
    }
}

/// The OS keyring of the store in `dir`.
pub fn vault_for(dir: &Path) -> Vault {
    Vault::new(&namespace(dir), KEYRING_TIMEOUT)
}

/// Why a keyring failed, without advice.
pub fn keyring_failure(error: &VaultError) -> String {
    match error {
        VaultError::Unavailable(why) => format!("no OS keyring is available here ({why})"),
        VaultError::Locked(why) => format!("the OS keyring is locked ({why})"),
        VaultError::TimedOut(after) => {
            format!("the OS keyring did not answer within {}s", after.as_secs())
        }
        other => format!("the OS keyring failed: {other}"),
    }
}

/// A keyring failure in the command's words, with what to do about it.
pub fn keyring_message(error: &VaultError) -> String {
    let why = keyring_failure(error);
    match error {
        VaultError::Unavailable(_) => format!(
            "{why}; choose another store (--store file, or encrypted-file with --key-file), or allow the plain file store with --insecure-keyring-fallback"
        ),
        VaultError::Locked(_) => format!("{why}; unlock it and try again"),
        VaultError::TimedOut(_) => {
            format!("{why} (it may be waiting for a prompt on another screen)")
        }
        _ => why,
    }
}

/// Keyring entries of one home never mix with another's: the namespace is a
/// digest of the store directory.
fn namespace(dir: &Path) -> String {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_differ_per_directory() {
        assert_ne!(
            namespace(Path::new("/a/sessions")),
            namespace(Path::new("/b/sessions"))
        );
        assert_eq!(namespace(Path::new("/a")).len(), 16);
    }
}
