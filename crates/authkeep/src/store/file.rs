//! The file store: one JSON record per session in a private directory.
//!
//! Layout: `<dir>/<name>.json` (0600) holds the record, `<dir>/<name>.lock` is the
//! session's lock file (never deleted), and `.<name>.json.*.tmp` are temporary
//! files of an atomic replace in progress; one left behind by a crash is removed by
//! the next holder of the lock.
//!
//! Reading is lenient, so that records written by older versions or other tools
//! keep working: no or an unparseable expiry is "unknown", an empty or placeholder
//! refresh token is "none", `expiry` is read as `expires_at`, and the next write
//! upgrades the record. A record of a newer format version is an error and is never
//! overwritten; so is a corrupt one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Guard, Store};
use crate::error::StoreError;
use crate::lock::{FileLock, create_private_dir, sync_dir, write_atomically};
use crate::secret::{AccessToken, ClientSecret, IdToken, RefreshToken};
use crate::session::{Client, ClientAuth, Health, Record, SessionKey, Versioned};
use crate::token::{self, ExpirySource, Origin, TokenSet, format_instant, parse_instant};

/// The format version this build writes.
pub const FORMAT_VERSION: u64 = 1;

/// Sessions stored as files in one directory.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
}

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
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record file of a session.
    pub fn path(&self, key: &SessionKey) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn temp_prefix(key: &SessionKey) -> String {
        format!(".{key}.json.")
    }

    /// Reads a session synchronously: the warm path of a one-shot command needs no
    /// async runtime.
    pub fn load_blocking(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("reading", path)(e)),
        };
        decode(&bytes).map(Some).map_err(|problem| problem.at(path))
    }

    /// Removes temporary files a crashed writer left behind. Only lock holders
    /// write temporary files, so while we hold the lock none is in use.
    fn remove_stale_temporaries(&self, key: &SessionKey) {
        let prefix = Self::temp_prefix(key);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                // Best effort: a leftover that cannot be removed blocks nothing.
                let _ = std::fs::remove_file(entry.path());
            }
        }
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

    fn current_generation(&self, key: &SessionKey) -> Result<Option<u64>, StoreError> {
        Ok(self.load_blocking(key)?.map(|v| v.generation))
    }
}

impl Store for FileStore {
    type Guard = FileGuard;

    async fn load(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        self.load_blocking(key)
    }

    async fn lock(
        &self,
        key: &SessionKey,
        wait: Duration,
        on_wait: impl FnOnce() + Send,
    ) -> Result<FileGuard, StoreError> {
        create_private_dir(&self.dir)?;
        let lock_path = self.dir.join(format!("{key}.lock"));
        let lock = FileLock::acquire(&lock_path, key.as_str(), wait, on_wait).await?;
        self.remove_stale_temporaries(key);
        Ok(FileGuard {
            key: key.clone(),
            _lock: lock,
        })
    }

    async fn write(
        &self,
        guard: &FileGuard,
        expected: Option<u64>,
        record: &Record,
    ) -> Result<u64, StoreError> {
        let key = &guard.key;
        if self.current_generation(key)? != expected {
            return Err(StoreError::Conflict(key.to_string()));
        }
        let generation = expected.map_or(1, |g| g + 1);
        let bytes = encode(record, generation);
        write_atomically(&self.path(key), &Self::temp_prefix(key), &bytes)?;
        Ok(generation)
    }

    async fn remove(&self, guard: &FileGuard, expected: u64) -> Result<(), StoreError> {
        let key = &guard.key;
        match self.current_generation(key)? {
            None => return Ok(()),
            Some(g) if g != expected => return Err(StoreError::Conflict(key.to_string())),
            Some(_) => {}
        }
        let path = self.path(key);
        std::fs::remove_file(&path).map_err(StoreError::io("removing", path))?;
        sync_dir(&self.dir)
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
}

/// A problem found while decoding, before the file name is attached.
enum Problem {
    Corrupt(String),
    Newer(u64),
}

impl Problem {
    fn at(self, path: PathBuf) -> StoreError {
        match self {
            Problem::Corrupt(detail) => StoreError::Corrupt { path, detail },
            Problem::Newer(version) => StoreError::NewerFormat { path, version },
        }
    }
}

/// The record as written: token fields named as in RFC 6749 at the top level.
#[derive(Serialize)]
struct OnDisk<'a> {
    version: u64,
    generation: u64,
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

fn encode(record: &Record, generation: u64) -> Vec<u8> {
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
    // Serializing plain strings, numbers and enums into a Vec cannot fail.
    let mut bytes = serde_json::to_vec_pretty(&on_disk).expect("a record always serializes");
    bytes.push(b'\n');
    bytes
}

fn decode(bytes: &[u8]) -> Result<Versioned, Problem> {
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
    let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    let instant = |name: &str| map.get(name).and_then(parse_instant);
    let generation = map.get("generation").and_then(Value::as_u64).unwrap_or(0);

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

    fn decode_str(s: &str) -> Result<Versioned, Problem> {
        decode(s.as_bytes())
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
    fn corrupt_detail_never_quotes_the_content() {
        let Err(Problem::Corrupt(detail)) = decode_str(r#"{"access_token":"super-secret-token"#)
        else {
            panic!("expected corrupt");
        };
        assert!(!detail.contains("super-secret"), "{detail}");
    }
}
