//! Where sessions are kept, as the configuration chooses: the file store's
//! backends (`file`, `encrypted-file`, `keyring`) and the one sealer every
//! program's file store uses, which writes the chosen way and opens whatever a
//! record holds (plain, encrypted or in the keyring), so sessions can move
//! between backends and a program never needs to know how one was written;
//! or a database of accounts (`sqlite:PATH`, `postgres://…`), which this crate
//! only names: opening one is the database crate's.
//!
//! Keys of the encrypted store come from a key file (`AUTHKEEP_KEY_FILE`,
//! config `key_file`), else from the OS keyring, where a rekey keeps the next
//! key beside the current one until every record is re-sealed. Keyring and key
//! are loaded on first use: a plain record never touches either.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
#[cfg(feature = "keyring")]
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::session::SessionKey;
use crate::store::{Encrypting, SealError, Sealer, StoreKey};
#[cfg(feature = "keyring")]
use crate::store::{InKeyring, Vault, VaultError};

/// Longest wait for the OS keyring: a keyring waiting for a prompt on another
/// screen must not hang a token call.
#[cfg(feature = "keyring")]
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(5);
/// The keyring entry holding the encrypted store's key.
pub const KEY_ENTRY: &str = "store-key";
/// The keyring entry holding the next key while a rekey runs.
pub const NEXT_KEY_ENTRY: &str = "store-key-next";

/// A file store backend: where a profile's secrets are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// One JSON file per session, secrets in plain text (0600).
    #[default]
    File,
    /// The same files with the secrets encrypted (XChaCha20-Poly1305).
    EncryptedFile,
    /// The secrets in the OS keyring, the rest in the files.
    Keyring,
}

impl Backend {
    /// The name users type.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::EncryptedFile => "encrypted-file",
            Backend::Keyring => "keyring",
        }
    }

    /// The backend of this name, if it is one.
    pub fn from_name(text: &str) -> Option<Self> {
        match text {
            "file" => Some(Backend::File),
            "encrypted-file" => Some(Backend::EncryptedFile),
            "keyring" => Some(Backend::Keyring),
            _ => None,
        }
    }

    /// What a sealed record's `"kind"` says about where its secrets are.
    pub fn of_kind(kind: Option<&str>) -> Option<Self> {
        match kind {
            None => Some(Backend::File),
            Some("encrypted") => Some(Backend::EncryptedFile),
            Some("keyring") => Some(Backend::Keyring),
            Some(_) => None,
        }
    }
}

/// A store as a user names it (`AUTHKEEP_STORE`): a file store backend, or a
/// database of accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// The file store, writing secrets this way.
    Files(Backend),
    /// A database of accounts: `sqlite:PATH` or `postgres://…` (the URL, which
    /// may hold a password: never shown).
    Database(String),
}

impl StoreChoice {
    /// Reads a store's name; the error never repeats more than a URL's scheme.
    pub fn parse(text: &str) -> Result<Self, String> {
        if is_database_url(text) {
            return Ok(StoreChoice::Database(text.to_owned()));
        }
        Backend::from_name(text).map(StoreChoice::Files).ok_or_else(|| {
            let shown = match text.split_once(':') {
                Some((scheme, _)) => format!("{scheme:?}"),
                None => super::names::quoted(text),
            };
            format!(
                "unknown store {shown}: use file, encrypted-file, keyring, sqlite:PATH or postgres://USER@HOST/DATABASE"
            )
        })
    }
}

/// Whether `text` names a database of accounts rather than a file store.
pub fn is_database_url(text: &str) -> bool {
    text.starts_with("sqlite:")
        || text.starts_with("postgres://")
        || text.starts_with("postgresql://")
}

/// Where the encrypted store's key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    #[cfg(feature = "keyring")]
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
            #[cfg(feature = "keyring")]
            in_keyring: OnceLock::new(),
        }
    }

    #[cfg(feature = "keyring")]
    fn in_keyring(&self) -> Result<&InKeyring, SealError> {
        Ok(self.in_keyring.get_or_init(|| {
            Arc::new(InKeyring::new(Vault::new(
                &self.vault_namespace,
                KEYRING_TIMEOUT,
            )))
        }))
    }

    #[cfg(not(feature = "keyring"))]
    fn in_keyring(&self) -> Result<&dyn Sealer, SealError> {
        Err(SealError(NO_KEYRING.to_owned()))
    }

    fn encrypting(&self) -> Result<&Encrypting, SealError> {
        self.encrypting
            .get_or_init(|| load_keys(&self.key_source, &self.vault_namespace).map(Arc::new))
            .as_ref()
            .map(|e| e.as_ref())
            .map_err(|e| SealError(e.clone()))
    }

    fn for_sealed(&self, sealed: &Value) -> Result<&dyn Sealer, SealError> {
        match sealed.get("kind").and_then(Value::as_str) {
            Some("encrypted") => Ok(self.encrypting()?),
            Some("keyring") => Ok(self.in_keyring()?),
            other => Err(SealError(format!(
                "its secrets are sealed in a way this authkeep does not know ({})",
                other.unwrap_or("no kind")
            ))),
        }
    }
}

/// Why the keyring backend cannot be used in a build without it.
#[cfg(not(feature = "keyring"))]
const NO_KEYRING: &str = "this authkeep was built without OS keyring support";

impl Sealer for AnySealer {
    fn seal(&self, key: &SessionKey, secrets: &[u8]) -> Result<Value, SealError> {
        match self.write {
            Backend::EncryptedFile => self.encrypting()?.seal(key, secrets),
            Backend::Keyring => self.in_keyring()?.seal(key, secrets),
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
fn load_keys(
    source: &KeySource,
    #[cfg_attr(
        not(feature = "keyring"),
        expect(unused_variables, reason = "only the keyring is named")
    )]
    vault_namespace: &str,
) -> Result<Encrypting, String> {
    match source {
        KeySource::File(path) => StoreKey::read_file(path)
            .map(Encrypting::new)
            .map_err(|e| e.to_string()),
        #[cfg(feature = "keyring")]
        KeySource::Keyring => {
            let vault = Vault::new(vault_namespace, KEYRING_TIMEOUT);
            let (current, next) = (
                vault.get_blocking(KEY_ENTRY),
                vault.get_blocking(NEXT_KEY_ENTRY),
            );
            let read = |entry: Result<Option<Zeroizing<String>>, VaultError>, name: &str| {
                entry
                    .map_err(|e| keyring_advice(&e))?
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
        #[cfg(not(feature = "keyring"))]
        KeySource::Keyring => Err(format!("{NO_KEYRING}; give a key file instead")),
    }
}

/// The OS keyring of the store in `dir`.
#[cfg(feature = "keyring")]
pub fn vault_for(dir: &Path) -> Vault {
    Vault::new(&namespace(dir), KEYRING_TIMEOUT)
}

/// Why a keyring failed, without advice.
#[cfg(feature = "keyring")]
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

/// A keyring failure with what to do about it, in the words of the `authkeep`
/// command (whose flags and variables every program reading this
/// configuration shares).
#[cfg(feature = "keyring")]
pub fn keyring_advice(error: &VaultError) -> String {
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

    #[test]
    fn store_names_are_read_exactly() {
        assert_eq!(
            StoreChoice::parse("file"),
            Ok(StoreChoice::Files(Backend::File))
        );
        assert_eq!(
            StoreChoice::parse("encrypted-file"),
            Ok(StoreChoice::Files(Backend::EncryptedFile))
        );
        assert_eq!(
            StoreChoice::parse("sqlite:/x.db"),
            Ok(StoreChoice::Database("sqlite:/x.db".into()))
        );
        assert_eq!(
            StoreChoice::parse("postgres://u:pw@h/db"),
            Ok(StoreChoice::Database("postgres://u:pw@h/db".into()))
        );
        let error = StoreChoice::parse("mysql://u:hunter2@h/db").unwrap_err();
        assert!(error.starts_with("unknown store \"mysql\""), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(StoreChoice::parse("Keyring").is_err());
        for backend in [Backend::File, Backend::EncryptedFile, Backend::Keyring] {
            assert_eq!(Backend::from_name(backend.as_str()), Some(backend));
        }
        assert_eq!(
            Backend::of_kind(Some("encrypted")),
            Some(Backend::EncryptedFile)
        );
        assert_eq!(Backend::of_kind(Some("other")), None);
    }
}
