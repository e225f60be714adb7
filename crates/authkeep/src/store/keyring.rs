//! The OS keyring: secrets kept by the platform (the Secret Service on Linux
//! and the BSDs, the Keychain on macOS, the Credential Manager on Windows),
//! one entry per secret under the service name `authkeep`.
//!
//! [`Vault`] reads, writes and deletes entries; every call runs on a thread of
//! its own and is abandoned when it does not answer within the vault's
//! timeout, so a keyring that hangs (a prompt nobody answers, a bus that
//! accepts and never replies) is an error, never a hang, and never delays the
//! exit of the process. [`InKeyring`] is the file store's [`Sealer`] that keeps
//! a record's secret fields in the keyring and only a reference to the entry
//! in the record file; locks, generations, journals and tombstones stay the
//! file store's.
//!
//! Ordering makes it crash safe: a write stores the secrets under a fresh
//! entry before the record names it, and the file store discards the entry
//! the previous record named only after the record was replaced. A crash
//! leaves at worst an orphan entry, never a record naming a missing one.

use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use keyring_core::{CredentialStore, Entry, Error as KeyringError};
use serde_json::{Value, json};
use zeroize::{Zeroize as _, Zeroizing};

use super::file::{SealError, Sealer};
use crate::oauth::sanitize::{Secrets, sanitize};
use crate::session::SessionKey;

/// The service name of every entry authkeep keeps in the keyring.
pub const KEYRING_SERVICE: &str = "authkeep";

/// The longest keyring error text passed on, in characters.
const DETAIL_MAX_CHARS: usize = 200;

/// The `"kind"` of what [`InKeyring`] puts under a record's `"sealed"`.
const SEALED_KIND: &str = "keyring";

/// The OS keyring: one entry per secret, service `authkeep`, every call
/// bounded by the vault's timeout (run on a thread of its own; a call that
/// does not answer in time is an error, never a hang).
///
/// Entries are named `<namespace>/<name>` (the Secret Service's `username`
/// attribute), so that two stores with different namespaces never share one.
/// Clones share the connection to the keyring.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    timeout: Duration,
    /// Where the connection comes from.
    source: Source,
    /// The connection, made by the first call that needs one and forgotten
    /// after a call that failed in the platform or did not answer, so that the
    /// next call connects afresh instead of waiting behind a hung one.
    store: Mutex<Option<Arc<CredentialStore>>>,
}

/// Where a vault's connection comes from.
enum Source {
    /// The platform's keyring.
    Platform,
    /// A store given once (tests: `keyring_core`'s mock store).
    #[cfg(test)]
    Given,
}

/// Why a keyring call failed. The text never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// No keyring service answers: none runs, or there is no session bus.
    #[error("no OS keyring is available: {0}")]
    Unavailable(String),
    /// The keyring is locked, or unlocking it was refused.
    #[error("the OS keyring is locked: {0}")]
    Locked(String),
    /// The keyring did not answer in time.
    #[error("the OS keyring did not answer within {0:?}")]
    TimedOut(Duration),
    /// The keyring answered with an error.
    #[error("the OS keyring failed: {0}")]
    Failed(String),
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("namespace", &self.inner.namespace)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// The platform's keyring, entries under `namespace` (for example a digest
    /// of the store's directory, so that two homes never share entries), each
    /// call bounded by `timeout`. Nothing is contacted until the first call.
    pub fn new(namespace: &str, timeout: Duration) -> Vault {
        Vault::with_source(namespace, timeout, Source::Platform, None)
    }

    fn with_source(
        namespace: &str,
        timeout: Duration,
        source: Source,
        store: Option<Arc<CredentialStore>>,
    ) -> Vault {
        Vault {
            inner: Arc::new(Inner {
                namespace: namespace.to_owned(),
                timeout,
                source,
                store: Mutex::new(store),
            }),
        }
    }

    /// The namespace its entries are named under (`<namespace>/<name>`).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The secret stored as `name`; `None` when there is no such entry.
    pub async fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, VaultError> {
        let name = name.to_owned();
        self.run(move |inner| inner.get(&name)).await
    }

    /// Stores `secret` as `name`, replacing what was there.
    pub async fn set(&self, name: &str, secret: &str) -> Result<(), VaultError> {
        let (name, secret) = (name.to_owned(), Zeroizing::new(secret.to_owned()));
        self.run(move |inner| inner.set(&name, &secret)).await
    }

    /// Deletes the entry `name`; whether there was one.
    pub async fn delete(&self, name: &str) -> Result<bool, VaultError> {
        let name = name.to_owned();
        self.run(move |inner| inner.delete(&name)).await
    }

    /// Whether a keyring service is reachable and unlocked, without prompting
    /// anyone: fast, and bounded by the timeout like every call.
    pub async fn probe(&self) -> Result<(), VaultError> {
        self.run(Inner::probe).await
    }

    /// [`Vault::get`], for synchronous code.
    pub fn get_blocking(&self, name: &str) -> Result<Option<Zeroizing<String>>, VaultError> {
        let name = name.to_owned();
        self.call(move |inner| inner.get(&name))
    }

    /// [`Vault::set`], for synchronous code.
    pub fn set_blocking(&self, name: &str, secret: &str) -> Result<(), VaultError> {
        let (name, secret) = (name.to_owned(), Zeroizing::new(secret.to_owned()));
        self.call(move |inner| inner.set(&name, &secret))
    }

    /// [`Vault::delete`], for synchronous code.
    pub fn delete_blocking(&self, name: &str) -> Result<bool, VaultError> {
        let name = name.to_owned();
        self.call(move |inner| inner.delete(&name))
    }

    /// [`Vault::probe`], for synchronous code.
    pub fn probe_blocking(&self) -> Result<(), VaultError> {
        self.call(Inner::probe)
    }

    /// Runs `op` as [`Vault::call`] does, from async code: the wait happens on
    /// tokio's blocking pool, so it stalls no task, and it ends within the
    /// timeout, so neither does a runtime's shutdown wait on a hung keyring.
    async fn run<T, F>(&self, op: F) -> Result<T, VaultError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, VaultError> + Send + 'static,
    {
        let vault = self.clone();
        tokio::task::spawn_blocking(move || vault.call(op))
            .await
            .map_err(|_| VaultError::Failed("the keyring call ended without an answer".into()))?
    }

    /// Runs `op` on a thread of its own and waits at most the timeout for its
    /// answer. A call that does not answer in time is left to finish or hang
    /// on its own (a detached thread keeps no process alive), and the
    /// connection it holds is forgotten.
    fn call<T, F>(&self, op: F) -> Result<T, VaultError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, VaultError> + Send + 'static,
    {
        let timeout = self.inner.timeout;
        let (answer, answered) = mpsc::sync_channel(1);
        let inner = Arc::clone(&self.inner);
        std::thread::Builder::new()
            .name("authkeep-keyring".into())
            .spawn(move || {
                let result = op(&inner);
                if answer.send(result).is_err() {
                    // The caller stopped waiting (it timed out): the answer
                    // has nobody to go to. A secret it held is zeroized as it
                    // drops; an entry it wrote is an orphan no record names.
                }
            })
            .map_err(|e| VaultError::Failed(format!("cannot start a thread for the call: {e}")))?;
        match answered.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.inner.forget();
                Err(VaultError::TimedOut(timeout))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.inner.forget();
                Err(VaultError::Failed(
                    "the keyring call ended without an answer".into(),
                ))
            }
        }
    }
}

impl Inner {
    /// The connection, made now if there is none.
    fn store(&self) -> Result<Arc<CredentialStore>, VaultError> {
        if let Some(store) = self.slot().as_ref() {
            return Ok(Arc::clone(store));
        }
        // Connecting happens outside the lock, so that a connection attempt
        // that hangs does not keep the calls after it from trying their own.
        let store = match self.source {
            Source::Platform => platform::connect()?,
            #[cfg(test)]
            Source::Given => {
                return Err(VaultError::Unavailable("the given store is gone".into()));
            }
        };
        *self.slot() = Some(Arc::clone(&store));
        Ok(store)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<CredentialStore>>> {
        // Nothing panics while holding the lock; if something did, the slot
        // still holds a connection or none, both fine to use.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the connection after a failure that may have broken it.
    fn forget(&self) {
        if matches!(self.source, Source::Platform) {
            *self.slot() = None;
        }
    }

    fn entry(&self, name: &str) -> Result<Entry, VaultError> {
        let user = format!("{}/{name}", self.namespace);
        Entry::new_in_store(&self.store()?, KEYRING_SERVICE, &user)
            .map_err(|e| self.classify(e, &Secrets::new()))
    }

    fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, VaultError> {
        match self.entry(name)?.get_secret() {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Ok(Some(Zeroizing::new(text))),
                Err(e) => {
                    e.into_bytes().zeroize();
                    Err(VaultError::Failed(format!(
                        "the entry {name} does not hold text"
                    )))
                }
            },
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(self.classify(e, &Secrets::new())),
        }
    }

    fn set(&self, name: &str, secret: &str) -> Result<(), VaultError> {
        let mut secrets = Secrets::new();
        secrets.add(secret);
        self.entry(name)?
            .set_password(secret)
            .map_err(|e| self.classify(e, &secrets))
    }

    fn delete(&self, name: &str) -> Result<bool, VaultError> {
        match self.entry(name)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringError::NoEntry) => Ok(false),
            Err(e) => Err(self.classify(e, &Secrets::new())),
        }
    }

    fn probe(&self) -> Result<(), VaultError> {
        if matches!(self.source, Source::Platform)
            && let Some(answer) = platform::probe()
        {
            return answer;
        }
        // Elsewhere, reading an entry that nobody writes shows the keyring
        // answers (macOS and Windows unlock with the user's login).
        self.get(".probe").map(drop)
    }

    /// The vault's error for a keyring error, with `secrets` redacted from its
    /// text. A connection that failed in the platform is forgotten.
    fn classify(&self, error: KeyringError, secrets: &Secrets) -> VaultError {
        let detail = |text: String| sanitize(&text, secrets, DETAIL_MAX_CHARS);
        match error {
            KeyringError::NoStorageAccess(e) => VaultError::Locked(detail(e.to_string())),
            KeyringError::PlatformFailure(e) => {
                self.forget();
                if platform::is_unavailable(e.as_ref()) {
                    VaultError::Unavailable(detail(e.to_string()))
                } else {
                    VaultError::Failed(detail(e.to_string()))
                }
            }
            KeyringError::NoDefaultStore => VaultError::Unavailable("no keyring store".into()),
            KeyringError::BadEncoding(mut bytes) => {
                bytes.zeroize();
                VaultError::Failed("an entry does not hold text".into())
            }
            KeyringError::BadDataFormat(mut bytes, e) => {
                bytes.zeroize();
                VaultError::Failed(detail(format!("an entry is malformed: {e}")))
            }
            KeyringError::Ambiguous(entries) => {
                VaultError::Failed(format!("{} keyring entries match one name", entries.len()))
            }
            other => VaultError::Failed(detail(other.to_string())),
        }
    }
}

/// The Secret Service, through zbus (no C library).
#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
mod platform {
    use std::sync::Arc;

    use keyring_core::CredentialStore;
    use secret_service::EncryptionType;
    use secret_service::blocking::SecretService;

    use super::{DETAIL_MAX_CHARS, VaultError};
    use crate::oauth::sanitize::{Secrets, sanitize};

    /// What `status` calls this keyring.
    pub(super) const NAME: &str = "Secret Service";

    /// Connects to the session bus and opens an encrypted session with the
    /// Secret Service. Any failure means there is no usable service.
    pub(super) fn connect() -> Result<Arc<CredentialStore>, VaultError> {
        match zbus_secret_service_keyring_store::Store::new() {
            Ok(store) => Ok(store),
            Err(e) => Err(VaultError::Unavailable(detail(&e.to_string()))),
        }
    }

    /// Whether the default collection, where entries are created, exists and
    /// is unlocked, asked over a plain session (no secret passes) without
    /// asking it to unlock: unlocking would prompt, and the prompt may wait
    /// for a person who is not there.
    pub(super) fn probe() -> Option<Result<(), VaultError>> {
        let answer = (|| {
            let service = SecretService::connect(EncryptionType::Plain)
                .map_err(|e| VaultError::Unavailable(detail(&e.to_string())))?;
            let collection = service.get_default_collection().map_err(|e| {
                VaultError::Unavailable(detail(&format!("no default collection: {e}")))
            })?;
            match collection.is_locked() {
                Ok(false) => Ok(()),
                Ok(true) => Err(VaultError::Locked(
                    "the default collection is locked".into(),
                )),
                Err(e) => Err(VaultError::Failed(detail(&e.to_string()))),
            }
        })();
        Some(answer)
    }

    /// Whether a platform error says there is no service at all.
    pub(super) fn is_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
        matches!(
            error.downcast_ref::<secret_service::Error>(),
            Some(secret_service::Error::Unavailable)
        )
    }

    fn detail(text: &str) -> String {
        sanitize(text, &Secrets::new(), DETAIL_MAX_CHARS)
    }
}

/// The login Keychain.
#[cfg(target_os = "macos")]
mod platform {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    use super::{DETAIL_MAX_CHARS, VaultError};
    use crate::oauth::sanitize::{Secrets, sanitize};

    pub(super) const NAME: &str = "macOS Keychain";

    pub(super) fn connect() -> Result<Arc<CredentialStore>, VaultError> {
        match apple_native_keyring_store::keychain::Store::new() {
            Ok(store) => Ok(store),
            Err(e) => Err(VaultError::Unavailable(sanitize(
                &e.to_string(),
                &Secrets::new(),
                DETAIL_MAX_CHARS,
            ))),
        }
    }

    pub(super) fn probe() -> Option<Result<(), VaultError>> {
        None
    }

    pub(super) fn is_unavailable(_: &(dyn std::error::Error + 'static)) -> bool {
        false
    }
}

/// The Credential Manager.
#[cfg(target_os = "windows")]
mod platform {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    use super::{DETAIL_MAX_CHARS, VaultError};
    use crate::oauth::sanitize::{Secrets, sanitize};

    pub(super) const NAME: &str = "Windows Credential Manager";

    pub(super) fn connect() -> Result<Arc<CredentialStore>, VaultError> {
        match windows_native_keyring_store::Store::new() {
            Ok(store) => Ok(store),
            Err(e) => Err(VaultError::Unavailable(sanitize(
                &e.to_string(),
                &Secrets::new(),
                DETAIL_MAX_CHARS,
            ))),
        }
    }

    pub(super) fn probe() -> Option<Result<(), VaultError>> {
        None
    }

    pub(super) fn is_unavailable(_: &(dyn std::error::Error + 'static)) -> bool {
        false
    }
}

/// Platforms without a keyring this build knows.
#[cfg(not(any(
    all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ),
    target_os = "macos",
    target_os = "windows"
)))]
mod platform {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    use super::VaultError;

    pub(super) const NAME: &str = "none on this platform";

    pub(super) fn connect() -> Result<Arc<CredentialStore>, VaultError> {
        Err(VaultError::Unavailable(
            "this platform has no keyring authkeep supports".into(),
        ))
    }

    pub(super) fn probe() -> Option<Result<(), VaultError>> {
        None
    }

    pub(super) fn is_unavailable(_: &(dyn std::error::Error + 'static)) -> bool {
        true
    }
}

/// Keeps a record's secret fields in the OS keyring: [`Sealer::seal`] stores
/// them under a fresh random entry name and returns
/// `{"kind":"keyring","entry":"<name>"}`; [`Sealer::open`] reads the entry;
/// [`Sealer::discard`] deletes it.
///
/// Entry names are `<session>/<32 hex digits>`: a record copied to another
/// session's file is refused rather than read with the wrong secrets.
#[derive(Clone, Debug)]
pub struct InKeyring {
    vault: Vault,
}

impl InKeyring {
    /// Seals into `vault`.
    pub fn new(vault: Vault) -> Self {
        Self { vault }
    }

    /// The vault it seals into.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The entry a sealed value names, checked to belong to `key`.
    fn entry<'a>(key: &SessionKey, sealed: &'a Value) -> Result<&'a str, SealError> {
        if sealed.get("kind").and_then(Value::as_str) != Some(SEALED_KIND) {
            return Err(SealError(
                "its secrets were sealed by another kind of store, not the OS keyring".into(),
            ));
        }
        let Some(entry) = sealed.get("entry").and_then(Value::as_str) else {
            return Err(SealError("its keyring reference names no entry".into()));
        };
        match entry.rsplit_once('/') {
            Some((session, id)) if session == key.as_str() && is_entry_id(id) => Ok(entry),
            Some((_, id)) if is_entry_id(id) => Err(SealError(
                "its keyring entry was sealed for another session".into(),
            )),
            _ => Err(SealError(
                "its keyring reference is not one authkeep writes".into(),
            )),
        }
    }
}

/// How many random bytes name an entry.
const ENTRY_ID_BYTES: usize = 16;

fn is_entry_id(id: &str) -> bool {
    id.len() == ENTRY_ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn fresh_entry_name(key: &SessionKey) -> Result<String, SealError> {
    let mut bytes = [0u8; ENTRY_ID_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| SealError(format!("the system's random number source failed: {e}")))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{key}/{id}"))
}

fn seal_error(doing: &str, error: &VaultError) -> SealError {
    SealError(format!("{doing}: {error}"))
}

impl Sealer for InKeyring {
    fn seal(&self, key: &SessionKey, secrets: &[u8]) -> Result<Value, SealError> {
        let text = std::str::from_utf8(secrets)
            .map_err(|_| SealError("the secrets to keep are not text".into()))?;
        let entry = fresh_entry_name(key)?;
        self.vault
            .set_blocking(&entry, text)
            .map_err(|e| seal_error("the OS keyring did not keep the secrets", &e))?;
        Ok(json!({ "kind": SEALED_KIND, "entry": entry }))
    }

    fn open(&self, key: &SessionKey, sealed: &Value) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let entry = Self::entry(key, sealed)?;
        match self.vault.get_blocking(entry) {
            Ok(Some(text)) => Ok(Zeroizing::new(text.as_bytes().to_vec())),
            Ok(None) => Err(SealError(format!(
                "its secrets are not in the OS keyring (entry {entry} is missing)"
            ))),
            Err(e) => Err(seal_error("the OS keyring did not give its secrets", &e)),
        }
    }

    fn discard(&self, key: &SessionKey, sealed: &Value) -> Result<(), SealError> {
        let entry = Self::entry(key, sealed)?;
        match self.vault.delete_blocking(entry) {
            // An entry already gone is what discarding asks for.
            Ok(_existed) => Ok(()),
            Err(e) => Err(seal_error("the OS keyring did not delete an old entry", &e)),
        }
    }

    fn describe(&self) -> String {
        format!(
            "in the OS keyring ({}, service \"{KEYRING_SERVICE}\")",
            platform::NAME
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use keyring_core::api::CredentialStoreApi as _;
    use keyring_core::mock;

    use super::*;
    use crate::secret::{AccessToken, ClientSecret, RefreshToken};
    use crate::session::{Client, ClientAuth, Record};
    use crate::store::{FileStore, Store};
    use crate::token::{ExpirySource, Origin, TokenSet};

    const WAIT: Duration = Duration::from_secs(5);

    /// A vault over `keyring_core`'s in-memory mock store, and that store.
    fn mock_vault(namespace: &str) -> (Vault, Arc<mock::Store>) {
        let store = mock::Store::new().unwrap();
        let shared: Arc<CredentialStore> = store.clone();
        (
            Vault::with_source(namespace, WAIT, Source::Given, Some(shared)),
            store,
        )
    }

    /// Makes the next call on the entry `ns/<name>` fail with `error`.
    fn fail_next(store: &Arc<mock::Store>, name: &str, error: KeyringError) {
        let shared: Arc<CredentialStore> = store.clone();
        let entry = Entry::new_in_store(&shared, KEYRING_SERVICE, &format!("ns/{name}")).unwrap();
        let cred: &mock::Cred = entry.as_any().downcast_ref().unwrap();
        cred.set_error(error);
    }

    /// How many entries of the service hold a secret.
    fn stored_entries(store: &Arc<mock::Store>) -> usize {
        let spec = HashMap::from([("service", KEYRING_SERVICE)]);
        store
            .search(&spec)
            .unwrap()
            .iter()
            .filter(|entry| entry.get_secret().is_ok())
            .count()
    }

    #[tokio::test]
    async fn secrets_are_set_read_replaced_and_deleted_under_the_namespace() {
        let (vault, store) = mock_vault("ns");
        assert_eq!(vault.get("a").await.unwrap(), None);
        vault.set("a", "first").await.unwrap();
        assert_eq!(vault.get("a").await.unwrap().unwrap().as_str(), "first");
        vault.set("a", "second").await.unwrap();
        assert_eq!(vault.get_blocking("a").unwrap().unwrap().as_str(), "second");
        vault.probe().await.unwrap();

        let shared: Arc<CredentialStore> = store.clone();
        let other = Vault::with_source("other", WAIT, Source::Given, Some(shared));
        assert_eq!(other.get("a").await.unwrap(), None, "namespaces are apart");

        assert!(vault.delete("a").await.unwrap());
        assert!(!vault.delete_blocking("a").unwrap(), "already gone");
        assert_eq!(vault.get("a").await.unwrap(), None);
        assert_eq!(stored_entries(&store), 0);
    }

    #[tokio::test]
    async fn keyring_errors_are_classified_and_never_quote_the_secret() {
        let (vault, store) = mock_vault("ns");
        vault.set("a", "kept").await.unwrap();

        let locked = std::io::Error::other("collection is locked");
        fail_next(&store, "a", KeyringError::NoStorageAccess(Box::new(locked)));
        let error = vault.get("a").await.unwrap_err();
        assert!(matches!(error, VaultError::Locked(_)), "{error:?}");

        let echo = std::io::Error::other("refused to store hunter2-secret\u{1b}[31m");
        fail_next(&store, "a", KeyringError::PlatformFailure(Box::new(echo)));
        let error = vault.set("a", "hunter2-secret").await.unwrap_err();
        assert!(matches!(error, VaultError::Failed(_)), "{error:?}");
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains('\u{1b}'), "{shown}");
        }

        fail_next(
            &store,
            "a",
            KeyringError::BadEncoding(b"raw-secret".to_vec()),
        );
        let error = vault.get("a").await.unwrap_err();
        assert_eq!(
            error,
            VaultError::Failed("an entry does not hold text".into())
        );

        fail_next(&store, "a", KeyringError::Ambiguous(Vec::new()));
        assert!(matches!(
            vault.delete("a").await,
            Err(VaultError::Failed(_))
        ));

        // Each error was the keyring's answer to one call; the entry is intact.
        assert_eq!(vault.get("a").await.unwrap().unwrap().as_str(), "kept");
    }

    #[tokio::test]
    async fn a_call_that_does_not_answer_times_out_and_the_next_one_works() {
        let (vault, _store) = mock_vault("ns");
        let timeout = Duration::from_millis(100);
        let vault = Vault::with_source("ns", timeout, Source::Given, vault.inner.slot().clone());
        let (never, blocked) = mpsc::channel::<()>();
        let started = Instant::now();
        let answer = vault
            .run(move |_| {
                // Blocks until the test ends and drops the sender.
                blocked.recv().ok();
                Ok(())
            })
            .await;
        assert_eq!(answer, Err(VaultError::TimedOut(timeout)));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(vault.to_owned().probe_blocking().is_ok());
        drop(never);
    }

    #[test]
    fn a_call_that_panics_is_an_error_not_a_panic() {
        let (vault, _store) = mock_vault("ns");
        let answer: Result<(), VaultError> = vault.call(|_| panic!("the keyring call broke"));
        assert!(matches!(answer, Err(VaultError::Failed(_))), "{answer:?}");
    }

    fn key(name: &str) -> SessionKey {
        SessionKey::new(name).unwrap()
    }

    #[test]
    fn sealed_secrets_are_an_entry_of_the_session_and_discarding_deletes_it() {
        let (vault, store) = mock_vault("ns");
        let sealer = InKeyring::new(vault.clone());
        let alice = key("alice");
        let sealed = sealer.seal(&alice, br#"{"access_token":"at"}"#).unwrap();
        assert_eq!(sealed["kind"], "keyring");
        let entry = sealed["entry"].as_str().unwrap().to_owned();
        assert!(entry.starts_with("alice/"), "{entry}");
        assert_eq!(
            vault.get_blocking(&entry).unwrap().unwrap().as_str(),
            r#"{"access_token":"at"}"#
        );
        assert_eq!(
            sealer.open(&alice, &sealed).unwrap().as_slice(),
            br#"{"access_token":"at"}"#
        );
        let again = sealer.seal(&alice, b"{}").unwrap();
        assert_ne!(again["entry"], sealed["entry"], "every seal is a new entry");

        // A record copied to another session, another sealer's value, or a
        // reference authkeep never writes is refused.
        let error = sealer.open(&key("alice.b"), &sealed).unwrap_err();
        assert!(error.0.contains("another session"), "{error}");
        let foreign = json!({ "kind": "aead", "entry": entry });
        assert!(
            sealer
                .open(&alice, &foreign)
                .unwrap_err()
                .0
                .contains("another kind")
        );
        let odd = json!({ "kind": "keyring", "entry": "alice/../x" });
        assert!(sealer.open(&alice, &odd).unwrap_err().0.contains("not one"));

        sealer.discard(&alice, &sealed).unwrap();
        assert_eq!(vault.get_blocking(&entry).unwrap(), None);
        sealer.discard(&alice, &sealed).unwrap();
        let error = sealer.open(&alice, &sealed).unwrap_err();
        assert!(error.0.contains("missing"), "{error}");
        assert_eq!(stored_entries(&store), 1, "the second seal's entry");
        assert!(sealer.describe().contains("OS keyring"));
    }

    #[test]
    fn a_keyring_error_fails_the_seal_and_names_no_secret() {
        let (vault, store) = mock_vault("ns");
        let sealer = InKeyring::new(vault);
        let sealed = sealer
            .seal(&key("s"), br#"{"refresh_token":"rt-secret"}"#)
            .unwrap();
        let name = sealed["entry"].as_str().unwrap().to_owned();
        fail_next(
            &store,
            &name,
            KeyringError::PlatformFailure(Box::new(std::io::Error::other("bus broke"))),
        );
        let error = sealer.open(&key("s"), &sealed).unwrap_err();
        assert!(error.0.contains("bus broke"), "{error}");
        assert!(!error.0.contains("rt-secret"), "{error}");
    }

    fn record(access: &str, refresh: &str) -> Record {
        Record {
            client: Some(Client::new("https://idp.example", "cli").with_secret(
                ClientSecret::new("client-secret-value"),
                ClientAuth::ClientSecretBasic,
            )),
            tokens: Some(TokenSet {
                access_token: AccessToken::new(access),
                token_type: "Bearer".into(),
                refresh_token: Some(RefreshToken::new(refresh)),
                scope: None,
                id_token: None,
                expires_at: None,
                issued_at: None,
                refresh_expires_at: None,
                expiry_source: ExpirySource::Unknown,
                obtained_at: jiff::Timestamp::UNIX_EPOCH,
                origin: Origin::Login,
            }),
            ..Record::default()
        }
    }

    #[tokio::test]
    async fn a_file_store_sealing_into_the_keyring_leaves_one_entry_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, store) = mock_vault("ns");
        let files = FileStore::new(dir.path()).with_sealer(Arc::new(InKeyring::new(vault)));
        let k = key("alice");
        let guard = files.try_lock(&k).await.unwrap().unwrap();
        let mut generation = None;
        for n in 0..5 {
            let r = record(&format!("at-{n}"), &format!("rt-{n}"));
            generation = Some(files.write(&guard, generation, &r).await.unwrap());
            assert_eq!(files.load(&k).await.unwrap().unwrap().record, r);
            assert_eq!(stored_entries(&store), 1, "after write {n}");
        }
        let text = std::fs::read_to_string(files.path(&k)).unwrap();
        assert!(
            !text.contains("at-4") && !text.contains("client-secret"),
            "{text}"
        );

        // A refused write leaves the record and the entry it names readable,
        // and discards the entry it made.
        let stale = files.write(&guard, Some(1), &record("late", "late")).await;
        assert!(
            matches!(stale, Err(crate::StoreError::Conflict(_))),
            "{stale:?}"
        );
        assert_eq!(
            files.load(&k).await.unwrap().unwrap().record,
            record("at-4", "rt-4")
        );

        files.remove(&guard, generation.unwrap()).await.unwrap();
        assert_eq!(stored_entries(&store), 0, "no entry is left behind");
    }
}
