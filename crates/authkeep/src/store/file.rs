//! The file store: one JSON record per session in a private directory.
//!
//! Layout of `<dir>`:
//! - `<name>.json` (0600): the record, replaced atomically (temporary file,
//!   fsync, rename, fsync of the directory);
//! - `<name>.lock`: the session's lock file, never deleted;
//! - `<name>.journal`: the record being written, with the generation it builds
//!   on and a checksum. It is written (without fsync) before the record is
//!   replaced and removed after, so a writer killed while its fsyncs run leaves
//!   what it received in the page cache; the next holder of the lock validates it
//!   and finishes the write;
//! - `<name>.tombstone`: the generation of a removed record, so that the next
//!   login continues it;
//! - `.<name>.json.*.tmp`: temporary files of a replace in progress; one left
//!   behind by a crash is removed by the next holder of the lock;
//! - `issuers/<hash>.json`: what is known of an issuer (its clock skew).
//!
//! On Unix the directory, a record and a journal that other users may read or
//! change (group or others have access, or another user owns them) are refused
//! with [`StoreError::InsecurePermissions`] before anything is read from them,
//! unless [`FileStore::with_insecure_permissions`] allows them. On the warm path
//! this costs one `stat` of the directory: the record's mode comes from the
//! file already open.
//!
//! Reading is lenient, so that records written by older versions or other tools
//! keep working: no or an unparseable expiry is "unknown", an empty or placeholder
//! refresh token is "none", `expiry` is read as `expires_at`, and the next write
//! upgrades the record. A record of a newer format version is an error and is never
//! overwritten; so is a corrupt one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::{Guard, Store};
use crate::error::StoreError;
use crate::lock::{
    FileLock, check_private, create_private_dir, open_private, sync_dir, write_atomically,
};
use crate::policy::{Decision, Demand, Policy};
use crate::secret::{AccessToken, ClientSecret, IdToken, RefreshToken};
use crate::session::{Client, ClientAuth, Health, Record, Renewal, SessionKey, Versioned};
use crate::token::{self, ExpirySource, Origin, TokenSet, format_instant, parse_instant};

/// The format version this build writes.
pub const FORMAT_VERSION: u64 = 1;

/// The first word of a journal file.
const JOURNAL_MAGIC: &str = "authkeep-journal";

/// Sessions stored as files in one directory.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// Where the secret fields go instead of the record file; `None`: in it.
    sealer: Option<Arc<dyn Sealer>>,
    /// Whether files and a directory that other users may use are accepted.
    insecure_permissions: bool,
}

/// The fields of a record that are secrets. A store with a [`Sealer`] writes
/// them sealed, under `"sealed"`, instead of in plain text.
pub const SECRET_FIELDS: [&str; 4] = ["client_secret", "access_token", "refresh_token", "id_token"];

/// Keeps a record's secret fields ([`SECRET_FIELDS`]) out of the record file in
/// plain text: encrypted in it, or elsewhere (an OS keyring) with a reference in
/// it. The file store calls it for every write and every read that needs the
/// secrets; everything else (locks, generations, journals, tombstones) is the
/// file store's as for plain records.
pub trait Sealer: Send + Sync + std::fmt::Debug + 'static {
    /// Seals the secret fields of `key`'s record (the bytes of a JSON object)
    /// into the value the record file keeps under `"sealed"`.
    fn seal(&self, key: &SessionKey, secrets: &[u8]) -> Result<Value, SealError>;

    /// Opens what [`Sealer::seal`] returned, giving back the same bytes.
    fn open(&self, key: &SessionKey, sealed: &Value) -> Result<Zeroizing<Vec<u8>>, SealError>;

    /// Called once a record that held `sealed` has been replaced or removed: a
    /// sealer that keeps the secrets elsewhere deletes them. Its failure leaves
    /// a superseded secret behind, which the store reports to nobody: the write
    /// itself succeeded.
    fn discard(&self, key: &SessionKey, sealed: &Value) -> Result<(), SealError> {
        let _unused = (key, sealed);
        Ok(())
    }

    /// Where sealed secrets live, in a few words, for `status`.
    fn describe(&self) -> String;

    /// Whether records are written sealed. A sealer that answers `false` only
    /// opens (and discards) records that others sealed, and the store writes
    /// in plain text: a store that moves sessions out of sealing uses one.
    fn seals(&self) -> bool {
        true
    }
}

/// Why sealing or opening a record's secrets failed. The text never holds a
/// secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SealError(pub String);

/// The lock on one file-stored session.
#[derive(Debug)]
pub struct FileGuard {
    key: SessionKey,
    _lock: FileLock,
}

impl Guard for FileGuard {
    fn key(&self) -> &SessionKey {
        &self.key
    }
}

impl FileStore {
    /// A store in `dir`, which is created private (0700) when first written.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            sealer: None,
            insecure_permissions: false,
        }
    }

    /// The same store, accepting (`true`) or refusing (`false`, the default) a
    /// directory or file that other users may read or change. Refused, such a
    /// store is an error ([`StoreError::InsecurePermissions`]) that names the
    /// `chmod` (or `chown`) that fixes it. Accepted, its permissions are left
    /// as they are. Only Unix is checked.
    pub fn with_insecure_permissions(mut self, allowed: bool) -> Self {
        self.insecure_permissions = allowed;
        self
    }

    /// The same store with the secret fields of every record it writes sealed
    /// by `sealer`. It still reads records written in plain text (so sessions
    /// can move to it); a sealed record read without its sealer is an error.
    pub fn with_sealer(mut self, sealer: Arc<dyn Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Where this store's secrets live, in a few words.
    pub fn describe_secrets(&self) -> String {
        match &self.sealer {
            Some(sealer) if sealer.seals() => sealer.describe(),
            _ => format!("in plain text in {} (files 0600)", self.dir.display()),
        }
    }

    /// How a stored record's secrets are sealed: the `"kind"` of its sealed
    /// value (`None` when it is in plain text or there is no record). Reads
    /// the file without opening anything.
    pub fn sealed_kind_blocking(&self, key: &SessionKey) -> Result<Option<String>, StoreError> {
        Ok(self
            .stored_header(key)?
            .and_then(|(_, sealed)| sealed)
            .map(|sealed| {
                sealed
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned()
            }))
    }

    fn opener<'a>(&'a self, key: &'a SessionKey) -> Option<(&'a dyn Sealer, &'a SessionKey)> {
        self.sealer.as_deref().map(|s| (s, key))
    }

    /// Lets the sealer forget the secrets of a record that is gone.
    fn discard(&self, key: &SessionKey, sealed: Option<Value>) {
        if let (Some(sealer), Some(sealed)) = (&self.sealer, sealed)
            && let Err(e) = sealer.discard(key, &sealed)
        {
            // The record was replaced or removed as asked; what is left is a
            // superseded secret in the sealer's keeping, which no record names.
            drop(e);
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record file of a session.
    pub fn path(&self, key: &SessionKey) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The journal of a session's write in progress.
    pub fn journal_path(&self, key: &SessionKey) -> PathBuf {
        self.dir.join(format!("{key}.journal"))
    }

    fn lock_path(&self, key: &SessionKey) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }

    fn tombstone_path(&self, key: &SessionKey) -> PathBuf {
        self.dir.join(format!("{key}.tombstone"))
    }

    fn issuer_path(&self, issuer: &str) -> PathBuf {
        // A digest, not the URL: issuers hold characters no file name may, and
        // two URLs must never share a file.
        let digest = Sha256::digest(issuer.as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join("issuers").join(format!("{name}.json"))
    }

    fn temp_prefix(key: &SessionKey) -> String {
        format!(".{key}.json.")
    }

    /// Reads a session synchronously: the warm path of a one-shot command needs no
    /// async runtime.
    pub fn load_blocking(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        check_key(key)?;
        self.check_dir()?;
        let path = self.path(key);
        let Some(bytes) = self.read_private(&path)? else {
            return Ok(None);
        };
        match decode(&bytes, self.opener(key)) {
            Ok(versioned) => Ok(Some(versioned)),
            // A reader without the lock may have read a record just replaced,
            // whose sealed secrets (a keyring entry) the writer then discarded:
            // the record read again names the new ones.
            Err(Problem::Sealed(_)) if self.sealer.is_some() => {
                let Some(again) = self.read_private(&path)? else {
                    return Ok(None);
                };
                if again == bytes {
                    return decode(&bytes, self.opener(key))
                        .map(Some)
                        .map_err(|problem| problem.at(path));
                }
                decode(&again, self.opener(key))
                    .map(Some)
                    .map_err(|problem| problem.at(path))
            }
            Err(problem) => Err(problem.at(path)),
        }
    }

    /// Reads a session synchronously, with the instants its provider's clock gave
    /// moved onto ours by the issuer's last measured clock skew: what every
    /// decision about it starts from, the warm path's included.
    pub fn load_with_skew_blocking(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Versioned>, StoreError> {
        let mut loaded = self.load_blocking(key)?;
        if let Some(versioned) = loaded.as_mut()
            && versioned.record.expiry_on_provider_clock()
            && let Some(client) = versioned.record.client.as_ref()
            && let Some(skew) = self.issuer_skew_blocking(&client.issuer)?
        {
            versioned.record.apply_issuer_skew(skew);
        }
        Ok(loaded)
    }

    /// The warm path, synchronously: the session as [`Self::load_with_skew_blocking`]
    /// reads it and what `policy` decides for `demand` at `now`. The `authkeep`
    /// command's small front and the keeper both start here, so they decide
    /// alike.
    pub fn warm(
        &self,
        key: &SessionKey,
        policy: &Policy,
        demand: Demand,
        now: Timestamp,
    ) -> Result<(Option<Versioned>, Decision), StoreError> {
        let loaded = self.load_with_skew_blocking(key)?;
        let decision = policy.decide(loaded.as_ref().map(|v| &v.record), demand, now);
        Ok((loaded, decision))
    }

    /// Whether another process holds the session's lock (is refreshing it).
    pub fn is_locked_blocking(&self, key: &SessionKey) -> Result<bool, StoreError> {
        check_key(key)?;
        FileLock::is_held(&self.lock_path(key))
    }

    /// Waits, at most `wait`, until whoever holds the session's lock lets go,
    /// synchronously (see [`Store::wait_for_release`]).
    pub fn wait_for_release_blocking(
        &self,
        key: &SessionKey,
        wait: Duration,
    ) -> Result<bool, StoreError> {
        check_key(key)?;
        FileLock::wait_for_release_blocking(&self.lock_path(key), wait)
    }

    /// The issuer's recorded clock skew, synchronously (see [`Store::issuer_skew`]).
    /// An unreadable entry counts as "never measured": it only steers expiry
    /// decisions, and the next measurement replaces it.
    pub fn issuer_skew_blocking(&self, issuer: &str) -> Result<Option<i64>, StoreError> {
        let Some(bytes) = read_if_exists(&self.issuer_path(issuer))? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<IssuerEntry>(&bytes)
            .ok()
            .filter(|entry| entry.issuer == issuer)
            .and_then(|entry| entry.clock_skew_secs))
    }

    /// Removes temporary files a crashed writer left behind. Only lock holders
    /// write temporary files, so while we hold the lock none is in use.
    fn remove_stale_temporaries(&self, key: &SessionKey) {
        let prefix = Self::temp_prefix(key);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            // Nothing listed, nothing to clean: a leftover only costs disk space.
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                // A leftover that cannot be removed blocks nothing and is tried
                // again by the next holder.
                std::fs::remove_file(entry.path()).ok();
            }
        }
    }

    /// Finishes a write whose writer died after journaling it: if the journal is
    /// whole and builds on the generation the record still has, the record is
    /// replaced with it; a torn or outdated journal is discarded. Only lock
    /// holders write journals, so while we hold the lock none is being written.
    fn recover_journal(&self, key: &SessionKey) -> Result<(), StoreError> {
        let journal = self.journal_path(key);
        let Some(bytes) = self.read_private(&journal)? else {
            return Ok(());
        };
        if let Some((base, record)) = parse_journal(&bytes) {
            let current = match self.load_blocking(key) {
                Ok(current) => current.map(|v| v.generation),
                // A record that cannot be read is left alone, and so is its
                // journal: nothing is overwritten that a person may want back.
                Err(
                    StoreError::Corrupt { .. }
                    | StoreError::NewerFormat { .. }
                    | StoreError::Sealed { .. },
                ) => return Ok(()),
                Err(other) => return Err(other),
            };
            if current == base {
                write_atomically(&self.path(key), &Self::temp_prefix(key), record)?;
            }
        }
        remove_if_exists(&journal)
    }

    /// Refuses the directory if other users may use it (see
    /// [`Self::with_insecure_permissions`]); returns whether it exists.
    fn check_dir(&self) -> Result<bool, StoreError> {
        if self.insecure_permissions {
            return Ok(self.dir.is_dir());
        }
        match std::fs::metadata(&self.dir) {
            Ok(meta) => check_private(&self.dir, &meta).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("reading", self.dir.clone())(e)),
        }
    }

    /// Makes sure the directory exists before a session is locked or written:
    /// created private (0700), or, if ours, made private as on creation. One
    /// another user owns is refused. Allowed insecure, an existing directory is
    /// left as it is. Reading never changes a mode: it refuses (see
    /// [`Self::check_dir`]).
    fn ensure_dir(&self) -> Result<(), StoreError> {
        if self.insecure_permissions && self.dir.is_dir() {
            return Ok(());
        }
        match self.check_dir() {
            Ok(_) | Err(StoreError::InsecurePermissions { owner: None, .. }) => {
                create_private_dir(&self.dir)
            }
            Err(other) => Err(other),
        }
    }

    /// Reads a record or journal, refusing it before reading if other users
    /// may use it; `None` when it does not exist. Its permissions come from the
    /// open file (links followed): one `fstat`, as a plain `std::fs::read` makes.
    fn read_private(&self, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        use std::io::Read as _;
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("reading", path)(e)),
        };
        let meta = file.metadata().map_err(StoreError::io("reading", path))?;
        if !self.insecure_permissions {
            check_private(path, &meta)?;
        }
        // Read in chunks rather than with `read_to_end`, which would stat the
        // file again for its size. The length is a hint: a file that grows or
        // shrinks meanwhile is read whole.
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => return Ok(Some(bytes)),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::io("reading", path)(e)),
            }
        }
    }

    /// Every part of the store that other users may read or change, as
    /// reading would refuse it, whatever [`Self::with_insecure_permissions`]
    /// allows: the directory, then each entry directly in it (records,
    /// journals, lock files), in name order. Each is a
    /// [`StoreError::InsecurePermissions`] naming its fix. Empty when there is
    /// no directory yet. For a health check that shows every fix at once.
    pub fn permission_problems_blocking(&self) -> Result<Vec<StoreError>, StoreError> {
        let meta = match std::fs::metadata(&self.dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("reading", self.dir.clone())(e)),
        };
        let mut problems: Vec<StoreError> =
            check_private(&self.dir, &meta).err().into_iter().collect();
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(StoreError::io("listing", &self.dir))? {
            paths.push(entry.map_err(StoreError::io("listing", &self.dir))?.path());
        }
        paths.sort();
        for path in paths {
            match std::fs::metadata(&path) {
                Ok(meta) => problems.extend(check_private(&path, &meta).err()),
                // Removed since it was listed (a temporary file renamed), or a
                // link to nothing: nothing there for others to read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("reading", path)(e)),
            }
        }
        Ok(problems)
    }

    /// Moves a record that cannot be read aside (`<name>.json.corrupt-<time>`) so
    /// that a new login can proceed without deleting anything. Returns the new path.
    pub fn set_aside(&self, guard: &FileGuard, now: Timestamp) -> Result<PathBuf, StoreError> {
        let path = self.path(&guard.key);
        let aside = self
            .dir
            .join(format!("{}.json.corrupt-{}", guard.key, now.as_second()));
        std::fs::rename(&path, &aside).map_err(StoreError::io("moving aside", path))?;
        sync_dir(&self.dir)?;
        Ok(aside)
    }

    /// Journals `bytes`, checks that the record is still at generation
    /// `expected`, replaces it durably, then drops the journal.
    ///
    /// The journal comes first, before anything is read: a refresh's answer is
    /// safe from a killed process as soon as it can be, and the fsyncs that make
    /// the record durable take milliseconds. It is written without fsync (the
    /// page cache outlives a killed process, though not a power cut, which only
    /// the record's fsyncs protect against). If the replace fails, the journal
    /// stays for the next holder of the lock; if the generation no longer
    /// matches, the journal's own condition fails too and it is dropped.
    fn replace(
        &self,
        key: &SessionKey,
        expected: Option<u64>,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let journal = self.journal_path(key);
        let mut file = open_private(&journal, true)?;
        file.write_all(&journal_bytes(expected, bytes))
            .map_err(StoreError::io("writing", journal.clone()))?;
        drop(file);
        if self.current_generation(key)? != expected {
            remove_if_exists(&journal)?;
            return Err(StoreError::Conflict(key.to_string()));
        }
        write_atomically(&self.path(key), &Self::temp_prefix(key), bytes)?;
        // The record is saved. A journal that cannot be removed is outdated (it
        // builds on the previous generation): the next holder of the lock
        // discards it, so failing here would only misreport a success.
        remove_if_exists(&journal).or(Ok(()))
    }

    /// The stored record's generation, read without opening its secrets.
    fn current_generation(&self, key: &SessionKey) -> Result<Option<u64>, StoreError> {
        Ok(self.stored_header(key)?.map(|(generation, _)| generation))
    }

    /// The stored record's generation and sealed secrets, if it is sealed.
    fn stored_header(&self, key: &SessionKey) -> Result<Option<(u64, Option<Value>)>, StoreError> {
        check_key(key)?;
        let path = self.path(key);
        let Some(bytes) = read_if_exists(&path)? else {
            return Ok(None);
        };
        let mut map = header(&bytes).map_err(|problem| problem.at(path))?;
        let generation = map.get("generation").and_then(Value::as_u64).unwrap_or(0);
        Ok(Some((generation, map.remove("sealed"))))
    }

    /// The generation a removed record left behind.
    fn tombstone(&self, key: &SessionKey) -> Result<Option<u64>, StoreError> {
        let path = self.tombstone_path(key);
        let Some(bytes) = read_if_exists(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice::<Tombstone>(&bytes)
            .map(|t| Some(t.generation))
            .map_err(|e| StoreError::Corrupt {
                path,
                detail: format!("not a tombstone: line {}, column {}", e.line(), e.column()),
            })
    }
}

/// What `<name>.tombstone` holds.
#[derive(Serialize, Deserialize)]
struct Tombstone {
    generation: u64,
}

/// What `issuers/<hash>.json` holds.
#[derive(Serialize, Deserialize)]
struct IssuerEntry {
    issuer: String,
    clock_skew_secs: Option<i64>,
}

/// Refuses a session whose name is not a profile name (an account id with
/// characters no file name may hold, or too long for one): the file store
/// names its files after sessions and never encodes them.
fn check_key(key: &SessionKey) -> Result<(), StoreError> {
    if key.fits_file_name() {
        Ok(())
    } else {
        Err(StoreError::KeyNotStorable(key.to_string()))
    }
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("reading", path)(e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("removing", path)(e)),
    }
}

/// `authkeep-journal 1 <expected generation or -> <length> <sha256>`, a newline,
/// then the record's bytes. The expected generation is the write's
/// compare-and-swap condition: the journal applies only while it still holds.
fn journal_bytes(base: Option<u64>, record: &[u8]) -> Vec<u8> {
    let base = base.map_or_else(|| "-".to_owned(), |g| g.to_string());
    let digest = hex(&Sha256::digest(record));
    let mut bytes = format!("{JOURNAL_MAGIC} 1 {base} {} {digest}\n", record.len()).into_bytes();
    bytes.extend_from_slice(record);
    bytes
}

/// The base generation and record of a whole journal; `None` for a torn or
/// foreign one.
fn parse_journal(bytes: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let newline = bytes.iter().position(|b| *b == b'\n')?;
    let (header, record) = (
        std::str::from_utf8(&bytes[..newline]).ok()?,
        &bytes[newline + 1..],
    );
    let mut words = header.split(' ');
    if words.next()? != JOURNAL_MAGIC || words.next()? != "1" {
        return None;
    }
    let base = match words.next()? {
        "-" => None,
        g => Some(g.parse::<u64>().ok()?),
    };
    let length: usize = words.next()?.parse().ok()?;
    let digest = words.next()?;
    if words.next().is_some() || record.len() != length || hex(&Sha256::digest(record)) != digest {
        return None;
    }
    // The record must decode, and follow its base.
    let generation = self::header(record).ok()?.get("generation")?.as_u64()?;
    let follows = base.is_none_or(|b| b.checked_add(1) == Some(generation));
    follows.then_some((base, record))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store for FileStore {
    type Guard = FileGuard;

    async fn load(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        self.load_blocking(key)
    }

    async fn try_lock(&self, key: &SessionKey) -> Result<Option<FileGuard>, StoreError> {
        check_key(key)?;
        self.ensure_dir()?;
        let Some(lock) = FileLock::try_acquire(&self.lock_path(key))? else {
            return Ok(None);
        };
        self.remove_stale_temporaries(key);
        self.recover_journal(key)?;
        Ok(Some(FileGuard {
            key: key.clone(),
            _lock: lock,
        }))
    }

    async fn wait_for_release(&self, key: &SessionKey, wait: Duration) -> Result<bool, StoreError> {
        check_key(key)?;
        self.ensure_dir()?;
        FileLock::wait_for_release(&self.lock_path(key), wait).await
    }

    async fn write(
        &self,
        guard: &FileGuard,
        expected: Option<u64>,
        record: &Record,
    ) -> Result<u64, StoreError> {
        let key = &guard.key;
        let base = match expected {
            Some(g) => Some(g),
            None => self.tombstone(key)?,
        };
        let generation = base
            .map_or(Some(1), |g| g.checked_add(1))
            .ok_or_else(|| StoreError::Conflict(key.to_string()))?;
        let previous = match &self.sealer {
            Some(_) => self.stored_header(key)?.and_then(|(_, sealed)| sealed),
            None => None,
        };
        let bytes =
            encode(record, generation, self.opener(key)).map_err(|e| StoreError::NotSealed {
                path: self.path(key),
                detail: e.0,
            })?;
        match self.replace(key, expected, &bytes) {
            Ok(()) => {}
            // The record changed meanwhile and the journal was dropped: the
            // secrets just sealed belong to no record.
            Err(conflict @ StoreError::Conflict(_)) => {
                self.discard(
                    key,
                    self::header(&bytes)
                        .ok()
                        .and_then(|mut m| m.remove("sealed")),
                );
                return Err(conflict);
            }
            // Whatever step failed, the user's concern is the record. The
            // journal may still name the new secrets: they are kept.
            Err(StoreError::Io { source, .. }) => {
                return Err(StoreError::Io {
                    action: "saving",
                    path: self.path(key),
                    source,
                });
            }
            Err(other) => return Err(other),
        }
        self.discard(key, previous);
        Ok(generation)
    }

    async fn remove(&self, guard: &FileGuard, expected: u64) -> Result<(), StoreError> {
        let key = &guard.key;
        let sealed = match self.stored_header(key)? {
            None => return Ok(()),
            Some((g, _)) if g != expected => return Err(StoreError::Conflict(key.to_string())),
            Some((_, sealed)) => sealed,
        };
        let tombstone = serde_json::to_vec(&Tombstone {
            generation: expected,
        })
        // A struct of one integer always serializes.
        .expect("a tombstone always serializes");
        write_atomically(&self.tombstone_path(key), ".tombstone.", &tombstone)?;
        let path = self.path(key);
        std::fs::remove_file(&path).map_err(StoreError::io("removing", path))?;
        sync_dir(&self.dir)?;
        self.discard(key, sealed);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SessionKey>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("listing", self.dir.clone())(e)),
        };
        let mut keys: Vec<SessionKey> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let stem = name.to_str()?.strip_suffix(".json")?.to_owned();
                SessionKey::new(&stem).ok()
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn issuer_skew(&self, issuer: &str) -> Result<Option<i64>, StoreError> {
        self.issuer_skew_blocking(issuer)
    }

    async fn set_issuer_skew(
        &self,
        issuer: &str,
        skew_secs: Option<i64>,
    ) -> Result<(), StoreError> {
        if self.issuer_skew_blocking(issuer)? == skew_secs {
            return Ok(());
        }
        let path = self.issuer_path(issuer);
        let dir = path.parent().unwrap_or(&self.dir);
        create_private_dir(dir)?;
        let entry = serde_json::to_vec(&IssuerEntry {
            issuer: issuer.to_owned(),
            clock_skew_secs: skew_secs,
        })
        // A string and an integer always serialize.
        .expect("an issuer entry always serializes");
        write_atomically(&path, ".issuer.", &entry)
    }
}

/// Why a record could not be decoded ([`decode_record`]). No text holds any
/// of the record's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordProblem {
    /// It is not a record: what is wrong, without its content.
    #[error("it is corrupt ({0})")]
    Corrupt(String),
    /// It has a format version newer than this build understands.
    #[error("it has format version {0}, newer than this authkeep understands ({FORMAT_VERSION})")]
    Newer(u64),
    /// Its sealed secrets cannot be opened (wrong key, altered, not sealed
    /// here).
    #[error("cannot open its secrets: {0}")]
    Sealed(String),
}

use RecordProblem as Problem;

impl Problem {
    fn at(self, path: PathBuf) -> StoreError {
        match self {
            Problem::Corrupt(detail) => StoreError::Corrupt { path, detail },
            Problem::Newer(version) => StoreError::NewerFormat { path, version },
            Problem::Sealed(detail) => StoreError::Sealed { path, detail },
        }
    }
}

/// The record as written: token fields named as in RFC 6749 at the top level.
#[derive(Serialize)]
struct OnDisk<'a> {
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a ClientSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_auth: Option<ClientAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested_scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_endpoint: Option<&'a str>,
    /// Written only when not the default (a refresh token), so that records of
    /// sessions with refresh tokens stay as older versions wrote them.
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal: Option<Renewal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_params: Option<&'a [(String, String)]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a AccessToken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a RefreshToken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a IdToken>,
    expires_at: Option<String>,
    issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_source: Option<ExpirySource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    obtained_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<Origin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_skew_secs: Option<i64>,
    health: &'a Health,
}

/// A record in the file store's format, compact, without a generation (a
/// store that keeps generations elsewhere keeps them there), its secret
/// fields sealed by `sealer` for session `key` when one is given (and
/// [`Sealer::seals`]). [`decode_record`] reads it back.
pub fn encode_record(
    record: &Record,
    sealer: Option<&dyn Sealer>,
    key: &SessionKey,
) -> Result<Vec<u8>, SealError> {
    let value = encode_value(record, None, sealer.map(|s| (s, key)))?;
    // A JSON value always serializes.
    Ok(serde_json::to_vec(&value).expect("a record always serializes"))
}

/// Reads a record that [`encode_record`] (or the file store) wrote, as
/// leniently as the file store reads; sealed secrets are opened with `sealer`
/// for session `key`.
pub fn decode_record(
    bytes: &[u8],
    sealer: Option<&dyn Sealer>,
    key: &SessionKey,
) -> Result<Record, RecordProblem> {
    decode(bytes, sealer.map(|s| (s, key))).map(|v| v.record)
}

fn encode(
    record: &Record,
    generation: u64,
    sealer: Option<(&dyn Sealer, &SessionKey)>,
) -> Result<Vec<u8>, SealError> {
    let value = encode_value(record, Some(generation), sealer)?;
    let mut bytes = serde_json::to_vec_pretty(&value).expect("a record always serializes");
    bytes.push(b'\n');
    Ok(bytes)
}

fn encode_value(
    record: &Record,
    generation: Option<u64>,
    sealer: Option<(&dyn Sealer, &SessionKey)>,
) -> Result<Value, SealError> {
    let client = record.client.as_ref();
    let tokens = record.tokens.as_ref();
    let on_disk = OnDisk {
        version: FORMAT_VERSION,
        generation,
        issuer: client.map(|c| c.issuer.as_str()),
        client_id: client.map(|c| c.client_id.as_str()),
        client_secret: client.and_then(|c| c.client_secret.as_ref()),
        client_auth: client.map(|c| c.auth),
        requested_scope: client.and_then(|c| c.scope.as_deref()),
        token_endpoint: client.and_then(|c| c.token_endpoint.as_deref()),
        renewal: client
            .map(|c| c.renewal)
            .filter(|r| *r != Renewal::default()),
        token_params: client
            .map(|c| c.token_params.as_slice())
            .filter(|p| !p.is_empty()),
        access_token: tokens.map(|t| &t.access_token),
        token_type: tokens.map(|t| t.token_type.as_str()),
        refresh_token: tokens.and_then(|t| t.refresh_token.as_ref()),
        scope: tokens.and_then(|t| t.scope.as_deref()),
        id_token: tokens.and_then(|t| t.id_token.as_ref()),
        expires_at: tokens.and_then(|t| t.expires_at).map(format_instant),
        issued_at: tokens.and_then(|t| t.issued_at).map(format_instant),
        refresh_expires_at: tokens
            .and_then(|t| t.refresh_expires_at)
            .map(format_instant),
        expiry_source: tokens.map(|t| t.expiry_source),
        obtained_at: tokens.map(|t| format_instant(t.obtained_at)),
        origin: tokens.map(|t| t.origin),
        clock_skew_secs: record.clock_skew_secs,
        health: &record.health,
    };
    // Serializing plain strings, numbers and enums cannot fail.
    let mut value = serde_json::to_value(&on_disk).expect("a record always serializes");
    if let (Some((sealer, key)), Value::Object(map)) =
        (sealer.filter(|(s, _)| s.seals()), &mut value)
    {
        let secrets: Map<String, Value> = SECRET_FIELDS
            .iter()
            .filter_map(|field| map.remove(*field).map(|v| ((*field).to_owned(), v)))
            .collect();
        let plain = Zeroizing::new(serde_json::to_vec(&secrets).expect("strings always serialize"));
        map.insert("sealed".to_owned(), sealer.seal(key, &plain)?);
    }
    Ok(value)
}

/// The record's JSON object, its format version checked; secrets unopened.
fn header(bytes: &[u8]) -> Result<Map<String, Value>, Problem> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Problem::Corrupt(format!(
            "not valid JSON: line {}, column {}",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(Problem::Corrupt("not a JSON object".into()));
    };
    match map.get("version") {
        None => {}
        Some(v) => match v.as_u64() {
            Some(v) if v > FORMAT_VERSION => return Err(Problem::Newer(v)),
            Some(_) => {}
            None => return Err(Problem::Corrupt("\"version\" is not a number".into())),
        },
    }
    Ok(map)
}

fn decode(bytes: &[u8], sealer: Option<(&dyn Sealer, &SessionKey)>) -> Result<Versioned, Problem> {
    let mut map = header(bytes)?;
    if let Some(sealed) = map.remove("sealed") {
        let Some((sealer, key)) = sealer else {
            return Err(Problem::Sealed(
                "its secrets are sealed (encrypted, or kept in a keyring) and this store keeps them in plain text; use the store it was written with".into(),
            ));
        };
        let plain = sealer
            .open(key, &sealed)
            .map_err(|e| Problem::Sealed(e.0))?;
        let Ok(Value::Object(secrets)) = serde_json::from_slice::<Value>(&plain) else {
            return Err(Problem::Sealed(
                "its sealed secrets are not a JSON object".into(),
            ));
        };
        for (field, value) in secrets {
            if SECRET_FIELDS.contains(&field.as_str()) {
                map.insert(field, value);
            }
        }
    }
    let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    let instant = |name: &str| map.get(name).and_then(parse_instant);
    let generation = map.get("generation").and_then(Value::as_u64).unwrap_or(0);

    // A repeated grant without its parameters would ask for the wrong token,
    // so parameters that cannot be read make the record corrupt.
    let token_params = match map.get("token_params") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => {
            serde_json::from_value::<Vec<(String, String)>>(value.clone()).map_err(|_| {
                Problem::Corrupt("\"token_params\" is not a list of [name, value] pairs".into())
            })?
        }
    };
    let client = text("issuer")
        .zip(text("client_id"))
        .map(|(issuer, client_id)| Client {
            issuer,
            client_id,
            client_secret: text("client_secret")
                .filter(|s| !s.is_empty())
                .map(ClientSecret::new),
            auth: enum_field(&map, "client_auth").unwrap_or_default(),
            scope: text("requested_scope"),
            token_endpoint: text("token_endpoint"),
            // Older records name no renewal: they renew with a refresh token.
            renewal: enum_field(&map, "renewal").unwrap_or_default(),
            token_params,
        });

    let access = text("access_token");
    let refresh = text("refresh_token").filter(|rt| !token::is_placeholder_refresh_token(rt));
    let tokens = if access.is_none() && refresh.is_none() {
        None
    } else {
        let expires_at = instant("expires_at").or_else(|| instant("expiry"));
        let issued_at = instant("issued_at");
        let expiry_source = match (expires_at, enum_field(&map, "expiry_source")) {
            (Some(_), Some(source)) => source,
            (Some(_), None) => ExpirySource::Explicit,
            (None, Some(ExpirySource::ProviderGivesNone)) => ExpirySource::ProviderGivesNone,
            (None, _) => ExpirySource::Unknown,
        };
        Some(TokenSet {
            access_token: AccessToken::new(access.unwrap_or_default()),
            token_type: text("token_type")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "Bearer".into()),
            refresh_token: refresh.map(RefreshToken::new),
            scope: text("scope"),
            id_token: text("id_token").filter(|t| !t.is_empty()).map(IdToken::new),
            expires_at,
            issued_at,
            refresh_expires_at: instant("refresh_expires_at"),
            expiry_source,
            obtained_at: instant("obtained_at")
                .or(issued_at)
                .unwrap_or(Timestamp::UNIX_EPOCH),
            origin: enum_field(&map, "origin").unwrap_or(Origin::Import),
        })
    };
    let health = map
        .get("health")
        .and_then(|h| serde_json::from_value::<Health>(h.clone()).ok())
        .unwrap_or_default();
    let clock_skew_secs = map.get("clock_skew_secs").and_then(Value::as_i64);
    Ok(Versioned {
        generation,
        record: Record {
            client,
            tokens,
            health,
            clock_skew_secs,
        },
    })
}

fn enum_field<T: serde::de::DeserializeOwned>(map: &Map<String, Value>, name: &str) -> Option<T> {
    map.get(name)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a file as the store would: private to its owner.
    fn write_private(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) {
        let mut file = open_private(path.as_ref(), true).unwrap();
        file.write_all(bytes.as_ref()).unwrap();
    }

    fn decode_str(s: &str) -> Result<Versioned, Problem> {
        decode(s.as_bytes(), None)
    }

    #[test]
    fn legacy_record_without_expiry_or_version_is_read() {
        let v =
            decode_str(r#"{"access_token":"a","refresh_token":"auto-login","expires_at":"soon"}"#)
                .ok()
                .unwrap();
        let tokens = v.record.tokens.unwrap();
        assert_eq!(tokens.expires_at, None);
        assert_eq!(tokens.expiry_source, ExpirySource::Unknown);
        assert_eq!(tokens.refresh_token, None);
        assert_eq!(v.generation, 0);
    }

    #[test]
    fn golang_style_expiry_field_is_understood() {
        let v = decode_str(r#"{"access_token":"a","refresh_token":"r","expiry":"2026-01-01T00:00:00.123456789+01:00"}"#)
            .ok()
            .unwrap();
        let tokens = v.record.tokens.unwrap();
        assert_eq!(
            tokens.expires_at.map(format_instant).as_deref(),
            Some("2025-12-31T23:00:00Z")
        );
        assert_eq!(tokens.refresh_token.unwrap().expose_secret(), "r");
    }

    #[test]
    fn newer_format_and_corrupt_files_are_errors() {
        assert!(matches!(
            decode_str(r#"{"version":2,"access_token":"a"}"#),
            Err(Problem::Newer(2))
        ));
        assert!(matches!(
            decode_str(r#"{"access_token":"a""#),
            Err(Problem::Corrupt(_))
        ));
        assert!(matches!(decode_str("[1,2]"), Err(Problem::Corrupt(_))));
        assert!(matches!(
            decode_str(r#"{"version":"x"}"#),
            Err(Problem::Corrupt(_))
        ));
    }

    #[test]
    fn renewal_and_token_params_round_trip_and_older_records_default() {
        let mut record = sample("one");
        record.client = record.client.map(|c| {
            c.with_renewal(Renewal::ClientCredentials)
                .with_token_params(vec![
                    ("audience".into(), "https://api".into()),
                    ("resource".into(), "a".into()),
                    ("resource".into(), "b".into()),
                ])
        });
        let bytes = encode(&record, 3, None).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""renewal": "client_credentials""#),
            "{text}"
        );
        let back = decode(&bytes, None).ok().unwrap();
        assert_eq!(back.record.client, record.client);
        assert_eq!(back.generation, 3);

        // A session with a refresh token is written as older versions wrote it.
        let plain = String::from_utf8(encode(&sample("one"), 1, None).unwrap()).unwrap();
        assert!(
            !plain.contains("renewal") && !plain.contains("token_params"),
            "{plain}"
        );
        let old = decode_str(
            r#"{"version":1,"issuer":"https://i","client_id":"c","access_token":"a","refresh_token":"r"}"#,
        )
        .ok()
        .unwrap();
        let client = old.record.client.unwrap();
        assert_eq!(client.renewal, Renewal::RefreshToken);
        assert!(client.token_params.is_empty());
    }

    #[test]
    fn unreadable_token_params_make_the_record_corrupt() {
        for params in [r#""audience""#, r#"[["audience"]]"#, r#"[["a", 1]]"#] {
            let record = format!(
                r#"{{"issuer":"https://i","client_id":"c","access_token":"a","token_params":{params}}}"#
            );
            assert!(
                matches!(decode_str(&record), Err(Problem::Corrupt(_))),
                "{params}"
            );
        }
    }

    fn sample(access: &str) -> Record {
        let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        Record {
            client: Some(Client {
                issuer: "https://idp.example".into(),
                client_id: "c".into(),
                ..Client::default()
            }),
            tokens: Some(TokenSet {
                access_token: AccessToken::new(access),
                token_type: "Bearer".into(),
                refresh_token: Some(RefreshToken::new(format!("rt-{access}"))),
                scope: None,
                id_token: None,
                expires_at: Some(now),
                issued_at: Some(now),
                refresh_expires_at: None,
                expiry_source: ExpirySource::ExpiresIn,
                obtained_at: now,
                origin: Origin::Refresh,
            }),
            ..Record::default()
        }
    }

    /// A store holding `sample("one")` at generation 1, and its session key.
    async fn store_with_one() -> (tempfile::TempDir, FileStore, SessionKey) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let key = SessionKey::new("s").unwrap();
        let guard = store.try_lock(&key).await.unwrap().unwrap();
        store.write(&guard, None, &sample("one")).await.unwrap();
        (dir, store, key)
    }

    fn access(store: &FileStore, key: &SessionKey) -> (u64, String) {
        let v = store.load_blocking(key).unwrap().unwrap();
        let token = v.record.tokens.unwrap().access_token;
        (v.generation, token.expose_secret().to_owned())
    }

    #[tokio::test]
    async fn a_record_longer_than_one_read_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("s"));
        let key = SessionKey::new("s").unwrap();
        let mut record = sample("one");
        if let Some(tokens) = record.tokens.as_mut() {
            tokens.scope = Some("scope ".repeat(10_000));
        }
        let guard = store.try_lock(&key).await.unwrap().unwrap();
        store.write(&guard, None, &record).await.unwrap();
        assert!(std::fs::metadata(store.path(&key)).unwrap().len() > 3 * 16 * 1024);
        assert_eq!(store.load_blocking(&key).unwrap().unwrap().record, record);
    }

    #[tokio::test]
    async fn a_write_leaves_no_journal_behind() {
        let (_dir, store, key) = store_with_one().await;
        assert!(!store.journal_path(&key).exists());
        assert_eq!(access(&store, &key), (1, "one".into()));
    }

    #[tokio::test]
    async fn a_journal_left_by_a_killed_writer_is_finished_by_the_next_lock_holder() {
        let (_dir, store, key) = store_with_one().await;
        // Killed after journaling generation 2, before the record was replaced.
        let next = encode(&sample("two"), 2, None).unwrap();
        write_private(store.journal_path(&key), journal_bytes(Some(1), &next));
        assert_eq!(
            access(&store, &key),
            (1, "one".into()),
            "readers see the record"
        );
        let _guard = store.try_lock(&key).await.unwrap().unwrap();
        assert_eq!(access(&store, &key), (2, "two".into()));
        assert!(!store.journal_path(&key).exists());
    }

    #[tokio::test]
    async fn a_first_write_journaled_without_a_record_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let key = SessionKey::new("s").unwrap();
        let first = encode(&sample("one"), 1, None).unwrap();
        write_private(store.journal_path(&key), journal_bytes(None, &first));
        let _guard = store.try_lock(&key).await.unwrap().unwrap();
        assert_eq!(access(&store, &key), (1, "one".into()));
    }

    #[tokio::test]
    async fn torn_foreign_and_outdated_journals_are_discarded() {
        let (_dir, store, key) = store_with_one().await;
        let next = journal_bytes(Some(1), &encode(&sample("two"), 2, None).unwrap());
        let torn = next[..next.len() - 5].to_vec();
        let mut flipped = next.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        let outdated = journal_bytes(Some(0), &encode(&sample("zero"), 1, None).unwrap());
        let skipping = journal_bytes(Some(1), &encode(&sample("three"), 3, None).unwrap());
        for journal in [
            torn,
            flipped,
            outdated,
            skipping,
            b"garbage".to_vec(),
            Vec::new(),
        ] {
            write_private(store.journal_path(&key), &journal);
            let guard = store.try_lock(&key).await.unwrap().unwrap();
            assert_eq!(access(&store, &key), (1, "one".into()));
            assert!(!store.journal_path(&key).exists());
            drop(guard);
        }
    }

    #[tokio::test]
    async fn a_journal_beside_an_unreadable_record_is_left_alone() {
        let (_dir, store, key) = store_with_one().await;
        let journal = journal_bytes(Some(1), &encode(&sample("two"), 2, None).unwrap());
        write_private(store.journal_path(&key), &journal);
        write_private(store.path(&key), b"{not json");
        let _guard = store.try_lock(&key).await.unwrap().unwrap();
        assert_eq!(std::fs::read(store.path(&key)).unwrap(), b"{not json");
        assert_eq!(std::fs::read(store.journal_path(&key)).unwrap(), journal);
    }

    #[tokio::test]
    async fn a_removed_session_leaves_its_generation_for_the_next_login() {
        let (_dir, store, key) = store_with_one().await;
        let guard = store.try_lock(&key).await.unwrap().unwrap();
        store.remove(&guard, 1).await.unwrap();
        assert!(!store.path(&key).exists());
        assert_eq!(store.list().await.unwrap(), Vec::<SessionKey>::new());
        assert_eq!(store.write(&guard, None, &sample("new")).await.unwrap(), 2);
    }

    #[test]
    fn corrupt_detail_never_quotes_the_content() {
        let Err(Problem::Corrupt(detail)) = decode_str(r#"{"access_token":"super-secret-token"#)
        else {
            panic!("expected corrupt");
        };
        assert!(!detail.contains("super-secret"), "{detail}");
    }
}

#[cfg(test)]
mod sealing_tests {
    use std::sync::Mutex;

    use super::*;

    /// Seals by reversing the bytes and hex-encoding them: not secret, but
    /// plainly not the plain text; remembers what it was asked to discard.
    #[derive(Debug, Default)]
    struct Reversing {
        discarded: Mutex<Vec<Value>>,
    }

    impl Sealer for Reversing {
        fn seal(&self, key: &SessionKey, secrets: &[u8]) -> Result<Value, SealError> {
            let reversed: Vec<u8> = secrets.iter().rev().copied().collect();
            Ok(serde_json::json!({ "for": key.as_str(), "data": hex(&reversed) }))
        }

        fn open(&self, key: &SessionKey, sealed: &Value) -> Result<Zeroizing<Vec<u8>>, SealError> {
            if sealed["for"] != key.as_str() {
                return Err(SealError("sealed for another session".into()));
            }
            let data = sealed["data"].as_str().unwrap_or_default();
            let bytes: Vec<u8> = (0..data.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(data.get(i..i + 2)?, 16).ok())
                .collect();
            Ok(Zeroizing::new(bytes.into_iter().rev().collect()))
        }

        fn discard(&self, _: &SessionKey, sealed: &Value) -> Result<(), SealError> {
            self.discarded.lock().unwrap().push(sealed.clone());
            Ok(())
        }

        fn describe(&self) -> String {
            "reversed".into()
        }
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
                id_token: Some(IdToken::new("id-token-value")),
                expires_at: None,
                issued_at: None,
                refresh_expires_at: None,
                expiry_source: ExpirySource::Unknown,
                obtained_at: Timestamp::UNIX_EPOCH,
                origin: Origin::Login,
            }),
            health: Health::default(),
            clock_skew_secs: None,
        }
    }

    #[tokio::test]
    async fn a_sealed_store_writes_no_secret_in_plain_text_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Arc::new(Reversing::default());
        let store = FileStore::new(dir.path()).with_sealer(sealer.clone());
        let key = SessionKey::new("alice").unwrap();
        let guard = store.try_lock(&key).await.unwrap().unwrap();
        let first = record("access-token-one", "refresh-token-one");
        let g1 = store.write(&guard, None, &first).await.unwrap();
        let text = std::fs::read_to_string(store.path(&key)).unwrap();
        for secret in [
            "access-token-one",
            "refresh-token-one",
            "client-secret-value",
            "id-token-value",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("\"sealed\"") && text.contains("https://idp.example"),
            "{text}"
        );
        assert_eq!(store.load(&key).await.unwrap().unwrap().record, first);
        assert!(sealer.discarded.lock().unwrap().is_empty());

        // Replacing discards the previous sealed value, removing the last one.
        let second = record("access-token-two", "refresh-token-two");
        let g2 = store.write(&guard, Some(g1), &second).await.unwrap();
        assert_eq!(sealer.discarded.lock().unwrap().len(), 1);
        // A write that loses a race to another writer discards what it sealed.
        let error = store.write(&guard, Some(g1), &first).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
        assert_eq!(sealer.discarded.lock().unwrap().len(), 2);
        assert_eq!(store.load(&key).await.unwrap().unwrap().record, second);
        store.remove(&guard, g2).await.unwrap();
        assert_eq!(sealer.discarded.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_sealed_record_is_not_read_without_its_sealer_and_plain_ones_are_read_by_both() {
        let dir = tempfile::tempdir().unwrap();
        let plain = FileStore::new(dir.path());
        let sealed = FileStore::new(dir.path()).with_sealer(Arc::new(Reversing::default()));
        let (alice, bob) = (
            SessionKey::new("alice").unwrap(),
            SessionKey::new("bob").unwrap(),
        );
        let guard = plain.try_lock(&alice).await.unwrap().unwrap();
        plain.write(&guard, None, &record("a", "r")).await.unwrap();
        assert!(
            sealed.load(&alice).await.unwrap().is_some(),
            "a plain record is read"
        );
        let guard = sealed.try_lock(&bob).await.unwrap().unwrap();
        sealed.write(&guard, None, &record("b", "r")).await.unwrap();
        let error = plain.load(&bob).await.unwrap_err();
        assert!(matches!(error, StoreError::Sealed { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("use the store it was written with"),
            "{error}"
        );
        // Sealed for another session: refused, the file untouched.
        std::fs::copy(sealed.path(&bob), sealed.path(&alice)).unwrap();
        let before = std::fs::read(sealed.path(&alice)).unwrap();
        let error = sealed.load(&alice).await.unwrap_err();
        assert!(error.to_string().contains("another session"), "{error}");
        assert_eq!(std::fs::read(sealed.path(&alice)).unwrap(), before);
    }
}

#[cfg(all(test, unix))]
mod permission_tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn record() -> Record {
        Record {
            client: Some(Client::new("https://idp.example", "cli")),
            ..Record::default()
        }
    }

    /// A store in a directory it creates, holding one record at generation 1.
    async fn store_with_one() -> (tempfile::TempDir, FileStore, SessionKey) {
        let home = tempfile::tempdir().unwrap();
        let store = FileStore::new(home.path().join("state").join("sessions"));
        let key = SessionKey::new("s").unwrap();
        let guard = store.try_lock(&key).await.unwrap().unwrap();
        store.write(&guard, None, &record()).await.unwrap();
        (home, store, key)
    }

    fn refused(error: StoreError, path: &Path, found: u32) {
        match error {
            StoreError::InsecurePermissions {
                path: ref at, mode, ..
            } => assert_eq!((at.as_path(), mode), (path, found), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn new_directories_are_0700_and_files_0600() {
        let (home, store, key) = store_with_one().await;
        assert_eq!(mode(&home.path().join("state")), 0o700);
        assert_eq!(mode(store.dir()), 0o700);
        for name in ["s.json", "s.lock"] {
            assert_eq!(mode(&store.dir().join(name)), 0o600, "{name}");
        }
        let guard = store.try_lock(&key).await.unwrap().unwrap();
        store.remove(&guard, 1).await.unwrap();
        assert_eq!(mode(&store.dir().join("s.tombstone")), 0o600);
        store
            .set_issuer_skew("https://idp.example", Some(90))
            .await
            .unwrap();
        let issuers = store.dir().join("issuers");
        assert_eq!(mode(&issuers), 0o700);
        for entry in std::fs::read_dir(&issuers).unwrap() {
            assert_eq!(mode(&entry.unwrap().path()), 0o600);
        }
    }

    #[tokio::test]
    async fn a_record_or_directory_others_may_read_is_refused_and_left_as_it_is() {
        let (_home, store, key) = store_with_one().await;
        let path = store.path(&key);
        set_mode(&path, 0o644);
        refused(store.load_blocking(&key).unwrap_err(), &path, 0o644);
        let policy = Policy::default();
        let warm = store.warm(&key, &policy, Demand::new(), Timestamp::UNIX_EPOCH);
        refused(warm.unwrap_err(), &path, 0o644);
        assert_eq!(mode(&path), 0o644, "nothing was changed");

        set_mode(&path, 0o600);
        set_mode(store.dir(), 0o755);
        refused(store.load_blocking(&key).unwrap_err(), store.dir(), 0o755);
        assert_eq!(mode(store.dir()), 0o755, "reading changes nothing");

        // Locking, to write, makes our own directory private as on creation.
        drop(store.try_lock(&key).await.unwrap().unwrap());
        assert_eq!(mode(store.dir()), 0o700);
        assert!(store.load_blocking(&key).unwrap().is_some());
        set_mode(store.dir(), 0o750);
        assert!(
            store
                .wait_for_release(&key, Duration::from_secs(10))
                .await
                .unwrap()
        );
        assert_eq!(mode(store.dir()), 0o700);
    }

    #[tokio::test]
    async fn permission_problems_name_every_loose_part_with_its_fix() {
        let missing = FileStore::new("/nonexistent/authkeep/sessions");
        assert!(missing.permission_problems_blocking().unwrap().is_empty());
        let (_home, store, key) = store_with_one().await;
        assert!(store.permission_problems_blocking().unwrap().is_empty());
        set_mode(&store.path(&key), 0o644);
        set_mode(&store.dir().join("s.lock"), 0o640);
        set_mode(store.dir(), 0o755);
        // Reported whatever the store is allowed to use.
        let allowed = store.clone().with_insecure_permissions(true);
        let problems = allowed.permission_problems_blocking().unwrap();
        let found: Vec<(PathBuf, u32, String)> = problems
            .into_iter()
            .map(|p| match p {
                StoreError::InsecurePermissions {
                    path, mode, fix, ..
                } => (path, mode, fix),
                other => panic!("{other:?}"),
            })
            .collect();
        let dir = store.dir().to_owned();
        let fix = |mode: &str, path: &Path| format!("chmod {mode} {}", path.display());
        assert_eq!(
            found,
            [
                (dir.clone(), 0o755, fix("700", &dir)),
                (dir.join("s.json"), 0o644, fix("600", &dir.join("s.json"))),
                (dir.join("s.lock"), 0o640, fix("600", &dir.join("s.lock"))),
            ]
        );
        assert_eq!(mode(&store.path(&key)), 0o644, "nothing was changed");
    }

    #[tokio::test]
    async fn insecure_permissions_serve_and_keep_the_modes() {
        let (_home, store, key) = store_with_one().await;
        let path = store.path(&key);
        set_mode(&path, 0o644);
        set_mode(store.dir(), 0o755);
        let allowed = store.clone().with_insecure_permissions(true);
        assert!(allowed.load_blocking(&key).unwrap().is_some());
        let guard = allowed.try_lock(&key).await.unwrap().unwrap();
        allowed.write(&guard, Some(1), &record()).await.unwrap();
        assert_eq!(mode(store.dir()), 0o755, "the directory is left as it is");
        assert_eq!(mode(&path), 0o600, "a record is always written private");
        drop(guard);
        // The same store, checking again, still refuses the directory.
        refused(store.load_blocking(&key).unwrap_err(), store.dir(), 0o755);
    }

    #[tokio::test]
    async fn a_journal_others_may_read_is_refused_before_it_is_applied() {
        let (_home, store, key) = store_with_one().await;
        let journal = store.journal_path(&key);
        let next = journal_bytes(Some(1), &encode(&record(), 2, None).unwrap());
        std::fs::write(&journal, &next).unwrap();
        set_mode(&journal, 0o640);
        refused(store.try_lock(&key).await.unwrap_err(), &journal, 0o640);
        assert_eq!(store.load_blocking(&key).unwrap().unwrap().generation, 1);
        assert_eq!(std::fs::read(&journal).unwrap(), next, "left for the user");
        set_mode(&journal, 0o600);
        let _guard = store.try_lock(&key).await.unwrap().unwrap();
        assert_eq!(store.load_blocking(&key).unwrap().unwrap().generation, 2);
    }

    #[tokio::test]
    async fn a_linked_record_is_judged_by_its_target() {
        let (home, store, key) = store_with_one().await;
        let target = home.path().join("elsewhere.json");
        std::fs::rename(store.path(&key), &target).unwrap();
        std::os::unix::fs::symlink(&target, store.path(&key)).unwrap();
        assert!(store.load_blocking(&key).unwrap().is_some(), "0600 target");
        set_mode(&target, 0o644);
        refused(
            store.load_blocking(&key).unwrap_err(),
            &store.path(&key),
            0o644,
        );
    }

    #[tokio::test]
    async fn a_record_another_user_owns_is_refused() {
        use std::os::unix::fs::MetadataExt as _;
        let (_home, store, key) = store_with_one().await;
        let path = store.path(&key);
        let me = std::fs::metadata(&path).unwrap().uid();
        // Giving a file away takes privileges (CI runs as root); without them
        // this case cannot be set up.
        if std::os::unix::fs::chown(&path, Some(me + 4242), None).is_err() {
            return;
        }
        let error = store.load_blocking(&key).unwrap_err();
        assert!(
            matches!(error, StoreError::InsecurePermissions { owner: Some(uid), .. } if uid == me + 4242),
            "{error:?}"
        );
        assert!(
            store
                .clone()
                .with_insecure_permissions(true)
                .load_blocking(&key)
                .unwrap()
                .is_some()
        );
    }
}

#[cfg(test)]
mod reread_tests {
    use std::sync::Mutex;

    use super::*;

    /// Opens only what it sealed last; the first failed open replaces the
    /// record file with a newer one, as a writer racing the reader would.
    #[derive(Debug, Default)]
    struct Rotating {
        last: Mutex<Option<Value>>,
        newer_file: Mutex<Option<(PathBuf, Vec<u8>)>>,
    }

    impl Sealer for Rotating {
        fn seal(&self, _: &SessionKey, secrets: &[u8]) -> Result<Value, SealError> {
            let sealed = serde_json::json!({ "kind": "test", "data": hex(secrets) });
            *self.last.lock().unwrap() = Some(sealed.clone());
            Ok(sealed)
        }

        fn open(&self, _: &SessionKey, sealed: &Value) -> Result<Zeroizing<Vec<u8>>, SealError> {
            if self.last.lock().unwrap().as_ref() != Some(sealed) {
                if let Some((path, bytes)) = self.newer_file.lock().unwrap().take() {
                    std::fs::write(path, bytes).unwrap();
                }
                return Err(SealError("the entry is gone".into()));
            }
            let data = sealed["data"].as_str().unwrap_or_default();
            Ok(Zeroizing::new(
                (0..data.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(data.get(i..i + 2)?, 16).ok())
                    .collect(),
            ))
        }

        fn describe(&self) -> String {
            "rotating".into()
        }
    }

    fn record(access: &str) -> Record {
        Record {
            tokens: Some(TokenSet {
                access_token: AccessToken::new(access),
                token_type: "Bearer".into(),
                refresh_token: Some(RefreshToken::new("r")),
                scope: None,
                id_token: None,
                expires_at: None,
                issued_at: None,
                refresh_expires_at: None,
                expiry_source: ExpirySource::Unknown,
                obtained_at: Timestamp::UNIX_EPOCH,
                origin: Origin::Login,
            }),
            ..Record::default()
        }
    }

    #[tokio::test]
    async fn a_reader_that_finds_its_sealed_secrets_gone_reads_the_newer_record() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Arc::new(Rotating::default());
        let store = FileStore::new(dir.path())
            .with_sealer(sealer.clone())
            .with_insecure_permissions(true);
        let key = SessionKey::new("alice").unwrap();
        let guard = store.try_lock(&key).await.unwrap().unwrap();
        let first = store.write(&guard, None, &record("one")).await.unwrap();
        let old_bytes = std::fs::read(store.path(&key)).unwrap();
        store
            .write(&guard, Some(first), &record("two"))
            .await
            .unwrap();
        let new_bytes = std::fs::read(store.path(&key)).unwrap();
        // The reader sees the old file, whose secrets are gone; the writer's
        // newer file lands before it reads again.
        std::fs::write(store.path(&key), &old_bytes).unwrap();
        *sealer.newer_file.lock().unwrap() = Some((store.path(&key), new_bytes));
        let loaded = store.load(&key).await.unwrap().unwrap();
        assert_eq!(loaded.record, record("two"));
        // The same failure with no newer file is the error it is.
        std::fs::write(store.path(&key), &old_bytes).unwrap();
        let error = store.load(&key).await.unwrap_err();
        assert!(error.to_string().contains("the entry is gone"), "{error}");
    }

    #[tokio::test]
    async fn account_ids_that_cannot_name_a_file_are_refused_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("sessions"));
        for id in ["user@example.com", "..", "a b", &"x".repeat(65)] {
            let key = SessionKey::account(id).unwrap();
            let refused = |result: Result<(), StoreError>| {
                let Err(StoreError::KeyNotStorable(name)) = result else {
                    panic!("{id}: {result:?}");
                };
                assert_eq!(name, id);
            };
            refused(store.load(&key).await.map(drop));
            refused(store.try_lock(&key).await.map(drop));
            refused(store.wait_for_release(&key, Duration::ZERO).await.map(drop));
            refused(store.sealed_kind_blocking(&key).map(drop));
            refused(store.is_locked_blocking(&key).map(drop));
        }
        assert!(!dir.path().join("sessions").exists(), "nothing was created");
        // An account id that is also a profile name works as one.
        let key = SessionKey::account("alice").unwrap();
        assert!(store.try_lock(&key).await.unwrap().is_some());
    }
}
