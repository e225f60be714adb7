//! The encrypted file store: the file store with a record's secret fields
//! sealed by AEAD under a store key, and the key's rotation.
//!
//! [`Encrypting`] is a [`Sealer`] for [`FileStore::with_sealer`]: it encrypts
//! the secrets of each record with XChaCha20-Poly1305 under the current
//! [`StoreKey`], with a fresh random 24-byte nonce per write and the session's
//! name as associated data, so that sealed secrets copied into another
//! session's file do not open. The record keeps, under `"sealed"`,
//! `{"kind":"encrypted","key_id":…,"nonce":…,"ciphertext":…}` (base64url
//! without padding); everything else in it (metadata, generations, locks,
//! journals, tombstones) is the file store's. A record sealed under a key that
//! is not at hand, or altered, is an error that names the key ids involved and
//! changes nothing. [`rekey`] moves every record to a new key, one session at a
//! time under its lock. Neither key bytes nor plain text ever reach a message
//! or `Debug` output; key bytes are zeroized on drop.

use std::io::{Read as _, Write as _};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{FileStore, SealError, Sealer, Store as _};
use crate::error::StoreError;
use crate::session::SessionKey;

/// The first word of a key's text form.
const KEY_MAGIC: &str = "authkeep-store-key";
/// The key text format this build reads and writes.
const KEY_FORMAT: &str = "1";
/// The bytes of a key.
const KEY_LEN: usize = 32;
/// The bytes of a key id (shown as twice as many hex digits).
const ID_LEN: usize = 8;
/// The bytes of an XChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 24;
/// A key file longer than this is not a key; nothing more of it is read.
const KEY_FILE_MAX: u64 = 1024;
/// The `"kind"` of secrets this sealer seals.
const KIND: &str = "encrypted";

/// A 256-bit store key with an id. `Debug` prints the id only; the key bytes
/// are zeroized on drop.
#[derive(Clone)]
pub struct StoreKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a store key could not be made, read or written. No message holds any
/// of the key's bytes, nor any of the text that was read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not a store key.
    #[error("{}{problem}", in_file(path.as_deref()))]
    Malformed {
        /// The key file, when the text came from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// A key file was not written because the file exists already.
    #[error("key file {} already exists; it was left untouched", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// An I/O error on a key file.
    #[error("{action} key file {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The system's random number generator failed.
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

fn in_file(path: Option<&Path>) -> String {
    path.map_or_else(String::new, |p| format!("key file {}: ", p.display()))
}

/// What is wrong with the text of a store key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// It is empty.
    #[error("it is empty")]
    Empty,
    /// It is not UTF-8 text.
    #[error("it is not text")]
    NotText,
    /// It is longer than any key.
    #[error("it is too long to be an authkeep store key")]
    TooLong,
    /// It does not start with `authkeep-store-key`.
    #[error("it is not an authkeep store key (one line starting with \"{KEY_MAGIC}\")")]
    NotAKey,
    /// It is a key of a format this build does not know.
    #[error(
        "it is a store key of a format this authkeep does not understand (it knows {KEY_FORMAT}); upgrade authkeep"
    )]
    Format,
    /// It has more or fewer than the four words of a key.
    #[error("it is not of the form \"{KEY_MAGIC} {KEY_FORMAT} <id> <key>\" on one line")]
    Shape,
    /// Its id is not 16 lowercase hex digits.
    #[error("its key id is not 16 lowercase hex digits")]
    Id,
    /// Its key is not 32 bytes in base64url.
    #[error("its key is not 32 bytes in base64url without padding")]
    Bytes,
}

impl StoreKey {
    /// A new random key with a new random id.
    pub fn generate() -> Result<StoreKey, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|e| KeyError::Random(e.to_string()))?;
        let mut id = [0u8; ID_LEN];
        getrandom::fill(&mut id).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(StoreKey {
            id: hex(&id),
            bytes,
        })
    }

    /// The key's id: 16 lowercase hex digits, stored beside everything sealed
    /// with the key. Not a secret.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as one line of text (without a line break):
    /// `authkeep-store-key 1 <id> <key in base64url>`. A secret.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(128));
        text.push_str(KEY_MAGIC);
        text.push(' ');
        text.push_str(KEY_FORMAT);
        text.push(' ');
        text.push_str(&self.id);
        text.push(' ');
        // Capacity enough for the whole line, so that no copy of the key is
        // left behind by a reallocation.
        URL_SAFE_NO_PAD.encode_string(self.bytes.as_slice(), &mut text);
        text
    }

    /// Reads a key from its text form ([`Self::to_text`]); surrounding white
    /// space (a trailing line break) is ignored.
    pub fn from_text(text: &str) -> Result<StoreKey, KeyError> {
        parse(text).map_err(|problem| KeyError::Malformed {
            path: None,
            problem,
        })
    }

    /// Reads a key from a file holding its text form.
    pub fn read_file(path: &Path) -> Result<StoreKey, KeyError> {
        let io = |action| {
            move |e| KeyError::Io {
                action,
                path: path.to_owned(),
                source: Arc::new(e),
            }
        };
        let file = std::fs::File::open(path).map_err(io("opening"))?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(256));
        file.take(KEY_FILE_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(io("reading"))?;
        let malformed = |problem| KeyError::Malformed {
            path: Some(path.to_owned()),
            problem,
        };
        if bytes.len() as u64 > KEY_FILE_MAX {
            return Err(malformed(KeyProblem::TooLong));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| malformed(KeyProblem::NotText))?;
        parse(text).map_err(malformed)
    }

    /// Writes the key's text form, and a line break, to a new file readable by
    /// its owner only (0600), synced to disk with its directory entry. An
    /// existing file is never overwritten; a file this call created is removed
    /// again if it could not be written whole.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Io {
                    action: "creating",
                    path: path.to_owned(),
                    source: Arc::new(e),
                }
            }
        })?;
        let mut line = self.to_text();
        line.push('\n');
        let written = file
            .write_all(line.as_bytes())
            .map_err(|e| ("writing", e))
            .and_then(|()| file.sync_all().map_err(|e| ("syncing", e)))
            .and_then(|()| sync_parent(path).map_err(|e| ("syncing the directory of", e)));
        drop(file);
        written.map_err(|(action, e)| {
            // The key was never handed out, so a partial file is worth nothing
            // and would block the next attempt. If it cannot be removed either,
            // the error below still says this attempt failed.
            std::fs::remove_file(path).ok();
            KeyError::Io {
                action,
                path: path.to_owned(),
                source: Arc::new(e),
            }
        })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // By reference: no copy of the key is left on the stack. The cipher
        // keeps its own, zeroized when it is dropped.
        let key: &chacha20poly1305::Key = (&*self.bytes).into();
        XChaCha20Poly1305::new(key)
    }
}

/// Makes a new directory entry durable (a no-op where directories cannot be
/// synced).
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match crate::lock::sync_dir(dir) {
        Ok(()) => Ok(()),
        Err(StoreError::Io { source, .. }) => {
            Err(std::io::Error::new(source.kind(), source.to_string()))
        }
        Err(other) => Err(std::io::Error::other(other.to_string())),
    }
}

fn parse(text: &str) -> Result<StoreKey, KeyProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyProblem::Empty);
    }
    let mut words = text.split(' ');
    if words.next() != Some(KEY_MAGIC) {
        return Err(KeyProblem::NotAKey);
    }
    if words.next() != Some(KEY_FORMAT) {
        return Err(KeyProblem::Format);
    }
    let (Some(id), Some(encoded), None) = (words.next(), words.next(), words.next()) else {
        return Err(KeyProblem::Shape);
    };
    if !is_key_id(id) {
        return Err(KeyProblem::Id);
    }
    // Room for every byte the text could decode to, so that no reallocation
    // leaves a copy of the key behind.
    let mut decoded = Zeroizing::new(Vec::with_capacity(encoded.len()));
    URL_SAFE_NO_PAD
        .decode_vec(encoded, &mut decoded)
        .map_err(|_| KeyProblem::Bytes)?;
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    if decoded.len() != KEY_LEN {
        return Err(KeyProblem::Bytes);
    }
    bytes.copy_from_slice(&decoded);
    Ok(StoreKey {
        id: id.to_owned(),
        bytes,
    })
}

fn is_key_id(id: &str) -> bool {
    id.len() == 2 * ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seals records' secrets with XChaCha20-Poly1305 under a [`StoreKey`]: the
/// current key for every write, and any older keys given for reading records
/// not yet moved to it. `Debug` shows the key ids only.
#[derive(Clone, Debug)]
pub struct Encrypting {
    current: StoreKey,
    old: Vec<StoreKey>,
}

impl Encrypting {
    /// Seals with `current`, and opens what it sealed.
    pub fn new(current: StoreKey) -> Self {
        Self {
            current,
            old: Vec::new(),
        }
    }

    /// Also opens records sealed with `key`. A key whose id is already known
    /// is ignored: the first key given for an id is the one used.
    pub fn with_old_key(mut self, key: StoreKey) -> Self {
        if self.key(key.id()).is_none() {
            self.old.push(key);
        }
        self
    }

    /// The ids of the keys it holds, the current one first.
    pub fn key_ids(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|k| k.id.clone())
            .collect()
    }

    fn key(&self, id: &str) -> Option<&StoreKey> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
    }
}

impl Encrypting {
    /// Seals `secrets` with the current key, bound to `context` (the AEAD's
    /// associated data): what is sealed for one context does not open for
    /// another. [`Sealer::seal`] uses the session's name as the context; other
    /// stores (a database) name their own, so that nothing sealed for one kind
    /// of entry opens as another.
    pub fn seal_with(&self, context: &[u8], secrets: &[u8]) -> Result<Value, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| SealError(format!("the system's random number generator failed: {e}")))?;
        let payload = Payload {
            msg: secrets,
            aad: context,
        };
        let ciphertext = self
            .current
            .cipher()
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SealError("its secrets are too long to encrypt".into()))?;
        Ok(serde_json::json!({
            "kind": KIND,
            "key_id": self.current.id,
            "nonce": URL_SAFE_NO_PAD.encode(nonce),
            "ciphertext": URL_SAFE_NO_PAD.encode(ciphertext),
        }))
    }

    /// Opens what [`Self::seal_with`] sealed for `context`, with whichever of
    /// its keys the value names.
    pub fn open_with(
        &self,
        context: &[u8],
        sealed: &Value,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let field = |name: &str| sealed.get(name).and_then(Value::as_str);
        match field("kind") {
            Some(KIND) => {}
            Some(kind) if is_word(kind) => {
                return Err(SealError(format!(
                    "its secrets are kept by a store of another kind ({kind}), not encrypted with a store key"
                )));
            }
            _ => {
                return Err(SealError(
                    "its sealed secrets are not of a kind this authkeep knows".into(),
                ));
            }
        }
        let id = field("key_id")
            .filter(|id| is_key_id(id))
            .ok_or_else(|| SealError("its sealed secrets name no valid key id".into()))?;
        let Some(store_key) = self.key(id) else {
            let ids = self.key_ids();
            let given = match ids.as_slice() {
                [one] => format!("which is not the key given ({one})"),
                many => format!("which is none of the keys given ({})", many.join(", ")),
            };
            return Err(SealError(format!(
                "its secrets are sealed with key {id}, {given}"
            )));
        };
        let nonce = field("nonce")
            .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
            .and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok())
            .ok_or_else(|| SealError("its sealed secrets have no valid nonce".into()))?;
        let ciphertext = field("ciphertext")
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .ok_or_else(|| SealError("its sealed secrets have no valid ciphertext".into()))?;
        let payload = Payload {
            msg: &ciphertext,
            aad: context,
        };
        store_key
            .cipher()
            .decrypt(&XNonce::from(nonce), payload)
            .map(Zeroizing::new)
            .map_err(|_| {
                SealError(format!(
                    "its secrets do not decrypt with key {id} (wrong key or altered file)"
                ))
            })
    }
}

impl Sealer for Encrypting {
    fn seal(&self, key: &SessionKey, secrets: &[u8]) -> Result<Value, SealError> {
        self.seal_with(key.as_str().as_bytes(), secrets)
    }

    fn open(&self, key: &SessionKey, sealed: &Value) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.open_with(key.as_str().as_bytes(), sealed)
    }

    fn describe(&self) -> String {
        format!("encrypted (XChaCha20-Poly1305, key {})", self.current.id)
    }
}

/// A short lowercase word, safe to repeat from a file in a message.
fn is_word(text: &str) -> bool {
    (1..=32).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

/// What [`rekey`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Records written again, sealed with the new key.
    pub resealed: usize,
    /// Records that were sealed with the new key already.
    pub already: usize,
    /// Records whose secrets are not encrypted (in plain text, or in a
    /// keyring): left as they are.
    pub other: usize,
}

/// Re-seals every record in the store directory `dir` under `new`, one session
/// at a time under its lock (waiting at most `wait` for each): the record is
/// read, opened with `old` or `new`, and written back sealed with `new`.
/// Records sealed with `new` already are skipped, so an interrupted rekey can
/// simply be run again; records whose secrets are not encrypted (in plain text,
/// or in a keyring) are left alone: each keeps the store it was given.
///
/// Each record is replaced atomically, so a process killed at any instant
/// leaves every record readable with `old` or `new`: keep both keys until this
/// returns `Ok`. A record that opens with neither (or cannot be read) stops the
/// rekey with its error, that record unchanged.
pub async fn rekey(
    dir: &Path,
    old: StoreKey,
    new: StoreKey,
    wait: Duration,
) -> Result<Rekeyed, StoreError> {
    rekey_with(dir, old, new, wait, |_| ControlFlow::Continue(())).await
}

/// [`rekey`], calling `on_each` once each session is sealed with `new` (and
/// its lock released); `ControlFlow::Break` stops there, with what was done so
/// far, and leaves the rest as they were: readable with `old`.
pub async fn rekey_with(
    dir: &Path,
    old: StoreKey,
    new: StoreKey,
    wait: Duration,
    mut on_each: impl FnMut(&SessionKey) -> ControlFlow<()>,
) -> Result<Rekeyed, StoreError> {
    let new_id = new.id.clone();
    let store = FileStore::new(dir).with_sealer(Arc::new(Encrypting::new(new).with_old_key(old)));
    let mut done = Rekeyed::default();
    for key in store.list().await? {
        let guard = store.lock(&key, wait, || {}).await?;
        if store.sealed_kind_blocking(&key)?.as_deref() != Some(KIND) {
            done.other += 1;
        } else if sealed_with(&store.path(&key)).as_deref() == Some(new_id.as_str()) {
            done.already += 1;
        } else if let Some(current) = store.load(&key).await? {
            store
                .write(&guard, Some(current.generation), &current.record)
                .await?;
            done.resealed += 1;
        }
        drop(guard);
        if on_each(&key).is_break() {
            break;
        }
    }
    Ok(done)
}

/// The id of the key a record file's secrets are sealed with, if it can be
/// read and is sealed by [`Encrypting`]. Anything else is for the store's own
/// reading to report.
fn sealed_with(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let record: Value = serde_json::from_slice(&bytes).ok()?;
    let sealed = record.get("sealed")?;
    (sealed.get("kind")?.as_str()? == KIND)
        .then(|| sealed.get("key_id")?.as_str().map(str::to_owned))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(name: &str) -> SessionKey {
        SessionKey::new(name).unwrap()
    }

    const SECRETS: &[u8] = br#"{"access_token":"at-secret","refresh_token":"rt-secret"}"#;

    #[test]
    fn sealed_secrets_open_again_and_hold_no_plain_text() {
        let key = StoreKey::generate().unwrap();
        let sealer = Encrypting::new(key.clone());
        let sealed = sealer.seal(&session("alice"), SECRETS).unwrap();
        assert_eq!(sealed["kind"], "encrypted");
        assert_eq!(sealed["key_id"], key.id());
        let text = sealed.to_string();
        assert!(!text.contains("secret"), "{text}");
        let opened = sealer.open(&session("alice"), &sealed).unwrap();
        assert_eq!(opened.as_slice(), SECRETS);
    }

    #[test]
    fn every_seal_takes_a_new_nonce() {
        let sealer = Encrypting::new(StoreKey::generate().unwrap());
        let one = sealer.seal(&session("alice"), SECRETS).unwrap();
        let two = sealer.seal(&session("alice"), SECRETS).unwrap();
        assert_ne!(one["nonce"], two["nonce"]);
        assert_ne!(one["ciphertext"], two["ciphertext"]);
        let nonce = URL_SAFE_NO_PAD
            .decode(one["nonce"].as_str().unwrap())
            .unwrap();
        assert_eq!(nonce.len(), NONCE_LEN);
    }

    #[test]
    fn secrets_sealed_for_one_session_do_not_open_for_another() {
        let sealer = Encrypting::new(StoreKey::generate().unwrap());
        let sealed = sealer.seal(&session("alice"), SECRETS).unwrap();
        let error = sealer.open(&session("bob"), &sealed).unwrap_err();
        assert!(
            error.0.contains("do not decrypt") && error.0.contains("altered file"),
            "{error}"
        );
    }

    #[test]
    fn a_record_sealed_with_another_key_names_both_key_ids() {
        let (one, two, three) = (
            StoreKey::generate().unwrap(),
            StoreKey::generate().unwrap(),
            StoreKey::generate().unwrap(),
        );
        let sealed = Encrypting::new(one.clone())
            .seal(&session("alice"), SECRETS)
            .unwrap();
        let error = Encrypting::new(two.clone())
            .open(&session("alice"), &sealed)
            .unwrap_err();
        assert_eq!(
            error.0,
            format!(
                "its secrets are sealed with key {}, which is not the key given ({})",
                one.id(),
                two.id()
            )
        );
        let both = Encrypting::new(two.clone()).with_old_key(three.clone());
        let error = both.open(&session("alice"), &sealed).unwrap_err();
        assert!(
            error.0.ends_with(&format!(
                "which is none of the keys given ({}, {})",
                two.id(),
                three.id()
            )),
            "{error}"
        );
        // With the old key added, it opens.
        let opened = both
            .with_old_key(one)
            .open(&session("alice"), &sealed)
            .unwrap();
        assert_eq!(opened.as_slice(), SECRETS);
    }

    #[test]
    fn a_key_with_the_right_id_but_other_bytes_does_not_decrypt() {
        let key = StoreKey::generate().unwrap();
        let mut impostor = StoreKey::generate().unwrap();
        impostor.id = key.id.clone();
        let sealed = Encrypting::new(key)
            .seal(&session("alice"), SECRETS)
            .unwrap();
        let error = Encrypting::new(impostor)
            .open(&session("alice"), &sealed)
            .unwrap_err();
        assert!(error.0.contains("wrong key or altered file"), "{error}");
    }

    #[test]
    fn altered_or_malformed_sealed_secrets_are_refused_without_quoting_them() {
        let sealer = Encrypting::new(StoreKey::generate().unwrap());
        let sealed = sealer.seal(&session("alice"), SECRETS).unwrap();
        let mut flipped = URL_SAFE_NO_PAD
            .decode(sealed["ciphertext"].as_str().unwrap())
            .unwrap();
        flipped[3] ^= 1;
        let mut cut = flipped.clone();
        cut.truncate(10);
        let with = |field: &str, value: Value| {
            let mut altered = sealed.clone();
            altered[field] = value;
            altered
        };
        let cases = [
            (
                with("ciphertext", URL_SAFE_NO_PAD.encode(&flipped).into()),
                "do not decrypt",
            ),
            (
                with("ciphertext", URL_SAFE_NO_PAD.encode(&cut).into()),
                "do not decrypt",
            ),
            (
                with("ciphertext", "not base64 !".into()),
                "no valid ciphertext",
            ),
            (
                with("nonce", URL_SAFE_NO_PAD.encode([0u8; 12]).into()),
                "no valid nonce",
            ),
            (with("nonce", Value::Null), "no valid nonce"),
            (with("key_id", "\u{1b}[31mX".into()), "no valid key id"),
            (with("kind", "keyring".into()), "another kind (keyring)"),
            (with("kind", "\u{1b}[31m".into()), "not of a kind"),
            (Value::String("x".into()), "not of a kind"),
        ];
        for (altered, expected) in cases {
            let error = sealer.open(&session("alice"), &altered).unwrap_err();
            assert!(error.0.contains(expected), "{expected}: {error}");
            assert!(!error.0.contains('\u{1b}'), "{error}");
        }
    }

    #[test]
    fn key_text_round_trips_and_debug_shows_only_the_id() {
        let key = StoreKey::generate().unwrap();
        assert!(is_key_id(key.id()), "{}", key.id());
        let text = key.to_text();
        let words: Vec<&str> = text.split(' ').collect();
        assert_eq!(words[..3], [KEY_MAGIC, "1", key.id()]);
        assert_eq!(words[3].len(), 43);
        let back = StoreKey::from_text(&format!("{}\n", *text)).unwrap();
        assert_eq!(back.id(), key.id());
        assert_eq!(*back.bytes, *key.bytes);
        assert_eq!(back.to_text(), text);
        let debug = format!("{key:?}");
        assert_eq!(debug, format!("StoreKey {{ id: {:?}, .. }}", key.id()));
        assert!(!debug.contains(words[3]));
        let sealer = format!("{:?}", Encrypting::new(key.clone()));
        assert!(
            sealer.contains(key.id()) && !sealer.contains(words[3]),
            "{sealer}"
        );
        assert_ne!(StoreKey::generate().unwrap().id(), key.id());
    }

    #[test]
    fn key_text_errors_say_what_is_wrong_without_echoing_the_text() {
        let key = StoreKey::generate().unwrap();
        let text = key.to_text();
        let id = key.id();
        let encoded = text.rsplit(' ').next().unwrap();
        let cases = [
            ("".to_owned(), KeyProblem::Empty),
            ("  \n".to_owned(), KeyProblem::Empty),
            (format!("age-key 1 {id} {encoded}"), KeyProblem::NotAKey),
            (format!("{KEY_MAGIC} 2 {id} {encoded}"), KeyProblem::Format),
            (format!("{KEY_MAGIC} 1 {id}"), KeyProblem::Shape),
            (
                format!("{KEY_MAGIC} 1 {id} {encoded} extra"),
                KeyProblem::Shape,
            ),
            (format!("{KEY_MAGIC} 1 {id}  {encoded}"), KeyProblem::Shape),
            (
                format!("{KEY_MAGIC} 1 {} {encoded}", id.to_uppercase()),
                KeyProblem::Id,
            ),
            (format!("{KEY_MAGIC} 1 {}0 {encoded}", id), KeyProblem::Id),
            (
                format!("{KEY_MAGIC} 1 {id} {}", &encoded[1..]),
                KeyProblem::Bytes,
            ),
            (format!("{KEY_MAGIC} 1 {id} {encoded}AA"), KeyProblem::Bytes),
            (format!("{KEY_MAGIC} 1 {id} {encoded}="), KeyProblem::Bytes),
            (
                format!("{KEY_MAGIC} 1 {id} +{}", &encoded[1..]),
                KeyProblem::Bytes,
            ),
        ];
        for (input, expected) in cases {
            let error = StoreKey::from_text(&input).unwrap_err();
            let KeyError::Malformed {
                path: None,
                problem,
            } = &error
            else {
                panic!("{input}: {error:?}");
            };
            assert_eq!(*problem, expected, "{input}");
            let message = error.to_string();
            assert!(!message.contains(&encoded[..20]), "{message}");
            assert!(!message.contains(id), "{message}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_is_private_never_overwritten_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        let key = StoreKey::generate().unwrap();
        key.write_new_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", *key.to_text())
        );
        assert_eq!(StoreKey::read_file(&path).unwrap().id(), key.id());

        let other = StoreKey::generate().unwrap();
        let error = other.write_new_file(&path).unwrap_err();
        assert!(matches!(error, KeyError::Exists { .. }), "{error:?}");
        assert!(error.to_string().contains("store.key"), "{error}");
        assert_eq!(StoreKey::read_file(&path).unwrap().id(), key.id());
    }

    #[test]
    fn key_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let error = StoreKey::read_file(&missing).unwrap_err();
        assert!(matches!(error, KeyError::Io { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.key"), "{error}");

        let cases: [(&str, Vec<u8>, KeyProblem); 3] = [
            (
                "garbage.key",
                b"hello world\n".to_vec(),
                KeyProblem::NotAKey,
            ),
            ("binary.key", vec![0xff, 0xfe, 0x00], KeyProblem::NotText),
            ("huge.key", vec![b'a'; 4096], KeyProblem::TooLong),
        ];
        for (name, content, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let error = StoreKey::read_file(&path).unwrap_err();
            let KeyError::Malformed {
                path: Some(p),
                problem,
            } = &error
            else {
                panic!("{name}: {error:?}");
            };
            assert_eq!((p.as_path(), *problem), (path.as_path(), expected));
            assert!(error.to_string().contains(name), "{error}");
            assert!(!error.to_string().contains("hello"), "{error}");
        }
        let error = StoreKey::generate()
            .unwrap()
            .write_new_file(&dir.path().join("no-such-dir").join("k"))
            .unwrap_err();
        assert!(
            matches!(
                error,
                KeyError::Io {
                    action: "creating",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn describe_names_the_cipher_and_the_current_key() {
        let key = StoreKey::generate().unwrap();
        let old = StoreKey::generate().unwrap();
        let sealer = Encrypting::new(key.clone()).with_old_key(old.clone());
        assert_eq!(
            sealer.describe(),
            format!("encrypted (XChaCha20-Poly1305, key {})", key.id())
        );
        assert_eq!(
            sealer.key_ids(),
            vec![key.id().to_owned(), old.id().to_owned()]
        );
        // The first key given for an id is the one kept.
        assert_eq!(sealer.with_old_key(key.clone()).key_ids().len(), 2);
    }
}
