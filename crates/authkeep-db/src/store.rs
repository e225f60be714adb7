//! [`DbStore`]: the session contract of `authkeep::store::Store` on a
//! database, so that `Keeper<DbStore>` works unchanged.
//!
//! A session's lock is a lease on its account row: an owner id (unique per
//! `DbStore`: host, process, random), a lease id (unique per guard) and an
//! expiry on the database's clock. `try_lock` takes it in one statement only
//! if nobody holds it or it ran out; a task renews it every third of its
//! lifetime while the guard lives, and dropping the guard releases it (a
//! crashed holder's lease simply runs out). Every write and removal is a
//! compare-and-swap on the generation *and* on the lease still being this
//! guard's (fencing): a holder whose lease ran out and was taken over writes
//! nothing and gets [`StoreError::LeaseLost`].
//!
//! A row's `record` holds the session in the file store's format with its
//! secrets sealed by the store key (bound to the account id); a removed
//! session leaves its row with no record, keeping the generation. An account
//! bound to a named client keeps no client in its record: loading fills it
//! from the client row, secret included, so that every account of a client
//! refreshes with its current settings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authkeep::store::{
    Encrypting, Guard, RecordProblem, SealError, Sealer, Store, StoreKey, decode_record,
    encode_record,
};
use authkeep::{
    Client, ClientAuth, ClientSecret, Clock, Record, Renewal, SessionKey, StoreError, SystemClock,
    Versioned,
};
use jiff::Timestamp;
use serde_json::Value;
use sqlx::SqlStr;
use zeroize::Zeroizing;

use crate::backend::{self, Kind, Pool, dispatch, sql};
use crate::commit::{Committer, Done, Op, Write};
use crate::error::{DbError, sql_error};
use crate::schedule::{Derived, Schedule};

/// How long a lease lasts unless renewed, by default.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// How many group commit lanes a PostgreSQL store runs by default: none.
/// The server already commits concurrent transactions with one flush of its
/// log, and measured (benches/claim_write.rs), batching on one connection
/// per lane cost more round trips than it saved.
const POSTGRES_LANES: usize = 0;
/// How long an issuer's clock skew, once read, is used without reading it
/// again: the skew only steers when sessions refresh, and reading it for
/// every refresh cost a database round trip each. This process's own
/// changes apply at once; another agent's within this long.
const SKEW_FRESH: Duration = Duration::from_secs(60);
/// The first and the longest pause between looks at a lease while waiting.
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

/// How a [`DbStore`] works; every field has a default.
#[derive(Clone)]
#[non_exhaustive]
pub struct DbOptions {
    /// How long a lease lasts without renewal (default 30 s); renewed every
    /// third of it while its guard lives. The leases of
    /// [`DbStore::claim_due`] last as long.
    pub lease_ttl: Duration,
    /// The longest wait for another holder's lease in [`DbStore::put_account`]
    /// and [`DbStore::remove_account`] (default 30 s).
    pub lock_wait: Duration,
    /// When accounts are due.
    pub schedule: Schedule,
    /// The most connections the pool opens (default 4 for SQLite, 8 for
    /// PostgreSQL).
    pub max_connections: Option<u32>,
    /// Where `now` comes from for the derived columns (the leases use the
    /// database's clock).
    pub clock: Arc<dyn Clock>,
    /// How many tasks commit lease changes, record writes and claims, each
    /// batching whatever queued up while it committed into one transaction
    /// (group commit); 0 runs each in a transaction of its own. Default: 1
    /// for SQLite (one writer at a time), 0 for PostgreSQL (whose server
    /// groups concurrent commits itself).
    pub writer_lanes: Option<usize>,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            lease_ttl: DEFAULT_LEASE_TTL,
            lock_wait: authkeep::DEFAULT_LOCK_TIMEOUT,
            schedule: Schedule::default(),
            max_connections: None,
            clock: Arc::new(SystemClock),
            writer_lanes: None,
        }
    }
}

impl std::fmt::Debug for DbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbOptions")
            .field("lease_ttl", &self.lease_ttl)
            .field("lock_wait", &self.lock_wait)
            .field("schedule", &self.schedule)
            .field("max_connections", &self.max_connections)
            .field("writer_lanes", &self.writer_lanes)
            .finish_non_exhaustive()
    }
}

impl DbOptions {
    /// Leases that last `ttl` without renewal.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Waits at most `wait` for another holder's lease.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Accounts are due by `schedule`.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// At most `max` connections.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Commits through `lanes` group commit tasks (0: none, each write in a
    /// transaction of its own).
    pub fn writer_lanes(mut self, lanes: usize) -> Self {
        self.writer_lanes = Some(lanes);
        self
    }

    /// Reads `now` from `clock`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Sessions, clients and per-account health in SQLite or PostgreSQL. Cheap
/// to clone: clones share the pool and the owner id (open the URL again for
/// another owner).
#[derive(Clone)]
pub struct DbStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) kind: Kind,
    pub(crate) location: String,
    pub(crate) sealer: AccountSealer,
    pub(crate) owner: String,
    pub(crate) next_lease: AtomicI64,
    pub(crate) options: DbOptions,
    pub(crate) sql: Arc<Statements>,
    /// Lease changes and record writes go through it (group commit).
    committer: Committer,
    /// Issuers' clock skews as last read or written, and when.
    skews: Mutex<HashMap<String, (Option<i64>, Timestamp)>>,
    /// The sessions of the accounts whose leases this store holds, as their
    /// holders last read or wrote them (see [`Held`]).
    held: Mutex<HashMap<SessionKey, Held>>,
    /// Leases claims took that no guard has taken up yet (see [`Claimed`]).
    claimed: Mutex<HashMap<SessionKey, Claimed>>,
}

/// A lease [`DbStore::claim_due`] took with the account's row, kept until
/// `try_lock` on this store takes it up as a guard (the claimed account's
/// refresh then takes no lease of its own), or the claimant lets it go
/// ([`DbStore::release_claim`]). Taken up only within a third of the lease's
/// lifetime, so that the guard's renewal comes before it could run out; an
/// older one is let go and a lease taken afresh.
pub(crate) struct Claimed {
    pub lease_id: i64,
    /// No later than the claim took the lease.
    pub taken: Instant,
    pub row: Box<LoadedRow>,
}

/// A leased account's session as its holder last read or wrote it. While
/// the lease holds, nobody else can change the row (every write needs the
/// lease, a login waits for it), so `load` answers from here instead of
/// reading the row again: a refresh reads it once, when its lease is taken.
/// Used only until the lease could have run out unrenewed (`fresh_until`,
/// one lease lifetime from the take) and never once renewing found it lost.
struct Held {
    lease_id: i64,
    fresh_until: Instant,
    lost: Arc<AtomicBool>,
    /// The client row's client as the lease found it, for a bound record.
    client: Option<Client>,
    session: Option<Versioned>,
}

impl std::fmt::Debug for DbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbStore")
            .field("location", &self.inner.location)
            .field("owner", &self.inner.owner)
            .field("key_id", &self.inner.sealer.0.key_ids())
            .finish_non_exhaustive()
    }
}

/// Seals an account's secrets bound to its id, in a context of its own, so
/// that nothing sealed for a client opens as an account or the reverse.
#[derive(Debug)]
pub(crate) struct AccountSealer(pub(crate) Encrypting);

pub(crate) fn context(kind: &str, name: &str) -> Vec<u8> {
    format!("authkeep-db {kind}\0{name}").into_bytes()
}

impl Sealer for AccountSealer {
    fn seal(&self, key: &SessionKey, secrets: &[u8]) -> Result<Value, SealError> {
        self.0.seal_with(&context("account", key.as_str()), secrets)
    }

    fn open(&self, key: &SessionKey, sealed: &Value) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.0.open_with(&context("account", key.as_str()), sealed)
    }

    fn describe(&self) -> String {
        Sealer::describe(&self.0)
    }
}

/// The account's named client, as its lease found it: writes of a record
/// whose client has the same issuer and client id keep the binding.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Binding {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
}

/// A lease on one account row; writes require it. Renewed while it lives,
/// released when dropped.
pub struct DbGuard {
    key: SessionKey,
    lease_id: i64,
    store: DbStore,
    binding: Mutex<Option<Binding>>,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for DbGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbGuard")
            .field("key", &self.key)
            .field("owner", &self.store.inner.owner)
            .field("lease_id", &self.lease_id)
            .finish_non_exhaustive()
    }
}

impl Guard for DbGuard {
    fn key(&self) -> &SessionKey {
        &self.key
    }
}

impl DbGuard {
    /// Whether renewing found the lease taken over (writes will fail).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    fn binding(&self) -> Option<Binding> {
        self.binding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_binding(&self, binding: Option<Binding>) {
        *self
            .binding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = binding;
    }
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        self.renewer.abort();
        self.store.update_held(self, None);
        // Queued behind this guard's writes, unanswered: should it fail, or
        // the writer be gone, the lease runs out by itself.
        let queued = self.store.inner.committer.send(Op::Release {
            key: self.key.as_str().to_owned(),
            lease_id: self.lease_id,
        });
        if !queued {
            // The store's writer stopped with its runtime: the same.
        }
    }
}

/// Every statement, prepared as text for the backend once.
pub(crate) struct Statements {
    pub try_lock: SqlStr,
    pub renew: SqlStr,
    pub release: SqlStr,
    pub release_many: SqlStr,
    pub leased: SqlStr,
    pub write_some: SqlStr,
    pub write_none: SqlStr,
    pub lease_held: SqlStr,
    pub remove: SqlStr,
    pub load: SqlStr,
    pub list: SqlStr,
    pub skew: SqlStr,
    pub set_skew: SqlStr,
    pub clear_skew: SqlStr,
    pub claim: SqlStr,
    pub next_due: SqlStr,
    pub upsert_login: SqlStr,
    pub summaries: SqlStr,
    pub summary: SqlStr,
    pub counts: SqlStr,
}

const DERIVED_SET: &str = "state = $3, expires_at = $4, refresh_expires_at = $5, obtained_at = $6, \
    needs_login = $7, last_success_at = $8, last_error_class = $9, last_error_code = $10, \
    last_error_at = $11, consecutive_failures = $12, next_attempt_at = $13, due_at_ms = $14";

/// A client row's columns as [`ClientRow::read`] reads them, in order.
pub(crate) const CLIENT_COLUMNS: [&str; 8] = [
    "issuer",
    "client_id",
    "secret",
    "auth",
    "scopes",
    "token_endpoint",
    "renewal",
    "token_params",
];

pub(crate) const SUMMARY_COLUMNS: &str = "id, client_name, state, generation, expires_at, \
    refresh_expires_at, obtained_at, needs_login, last_success_at, last_error_class, \
    last_error_code, last_error_at, consecutive_failures, next_attempt_at, due_at_ms";

impl Statements {
    fn new(kind: Kind) -> Self {
        let s = |text: &str| sql(kind, text);
        let lease_is_mine = "lease_owner = $16 AND lease_id = $17 AND lease_until > {now}";
        Statements {
            // Returns what `load` reads, so that the holder's first load
            // needs no round trip of its own (`Held`).
            try_lock: s(&format!(
                "INSERT INTO authkeep_accounts (id, generation, lease_owner, lease_id, lease_until) \
                VALUES ($1, 0, $2, $3, {{now}} + $4) \
                ON CONFLICT (id) DO UPDATE SET lease_owner = excluded.lease_owner, \
                lease_id = excluded.lease_id, lease_until = excluded.lease_until \
                WHERE authkeep_accounts.lease_until IS NULL OR authkeep_accounts.lease_until <= {{now}} \
                RETURNING generation, record, client_name, {}",
                client_subqueries()
            )),
            renew: s("UPDATE authkeep_accounts SET lease_until = {now} + $4 \
                WHERE id = $1 AND lease_owner = $2 AND lease_id = $3 AND lease_until > {now}"),
            release: s(
                "UPDATE authkeep_accounts SET lease_owner = NULL, lease_id = NULL, lease_until = NULL \
                WHERE id = $1 AND lease_owner = $2 AND lease_id = $3",
            ),
            // `$2`: a JSON array of `[id, lease id]` pairs.
            release_many: s(
                "UPDATE authkeep_accounts SET lease_owner = NULL, lease_id = NULL, lease_until = NULL \
                FROM ({pairs}) AS r \
                WHERE authkeep_accounts.id = r.id AND authkeep_accounts.lease_owner = $1 \
                AND authkeep_accounts.lease_id = r.lease_id",
            ),
            leased: s(
                "SELECT COUNT(*) FROM authkeep_accounts WHERE id = $1 AND lease_until > {now}",
            ),
            write_some: s(&format!(
                "UPDATE authkeep_accounts SET generation = generation + 1, \
                record = $1, client_name = $2, {DERIVED_SET} \
                WHERE id = $15 AND {lease_is_mine} AND record IS NOT NULL AND generation = $18 \
                RETURNING generation"
            )),
            write_none: s(&format!(
                "UPDATE authkeep_accounts SET generation = generation + 1, \
                record = $1, client_name = $2, {DERIVED_SET} \
                WHERE id = $15 AND {lease_is_mine} AND record IS NULL AND $18 = 0 \
                RETURNING generation"
            )),
            lease_held: s(
                "SELECT CAST(CASE WHEN lease_owner = $2 AND lease_id = $3 AND lease_until > {now} \
                THEN 1 ELSE 0 END AS BIGINT), CAST(CASE WHEN record IS NULL THEN 0 ELSE 1 END AS BIGINT) \
                FROM authkeep_accounts WHERE id = $1",
            ),
            remove: s(
                "UPDATE authkeep_accounts SET record = NULL, client_name = NULL, state = NULL, \
                expires_at = NULL, refresh_expires_at = NULL, obtained_at = NULL, needs_login = 0, \
                last_success_at = NULL, last_error_class = NULL, last_error_code = NULL, \
                last_error_at = NULL, consecutive_failures = 0, next_attempt_at = NULL, due_at_ms = NULL \
                WHERE id = $1 AND lease_owner = $2 AND lease_id = $3 AND lease_until > {now} \
                AND record IS NOT NULL AND generation = $4",
            ),
            load: s(&format!(
                "SELECT a.generation, a.record, a.client_name, {} \
                FROM authkeep_accounts a LEFT JOIN authkeep_clients c ON c.name = a.client_name \
                WHERE a.id = $1 AND a.record IS NOT NULL",
                CLIENT_COLUMNS
                    .map(|column| format!("c.{column}"))
                    .join(", ")
            )),
            list: s("SELECT id FROM authkeep_accounts WHERE record IS NOT NULL ORDER BY id"),
            skew: s("SELECT clock_skew_secs FROM authkeep_issuers WHERE issuer = $1"),
            set_skew: s(
                "INSERT INTO authkeep_issuers (issuer, clock_skew_secs) VALUES ($1, $2) \
                ON CONFLICT (issuer) DO UPDATE SET clock_skew_secs = excluded.clock_skew_secs",
            ),
            clear_skew: s("DELETE FROM authkeep_issuers WHERE issuer = $1"),
            // Takes the leases of the accounts it claims and returns what
            // `load` reads, like `try_lock` (see `Claimed`).
            claim: s(&format!(
                "UPDATE authkeep_accounts SET lease_owner = $1, lease_id = $2, \
                lease_until = {{now}} + $3 \
                WHERE id IN (SELECT id FROM authkeep_accounts \
                    WHERE due_at_ms <= $4 AND record IS NOT NULL \
                    AND (lease_until IS NULL OR lease_until <= {{now}}) \
                    ORDER BY due_at_ms LIMIT $5 {{skip_locked}}) \
                RETURNING id, due_at_ms, generation, record, client_name, {}",
                client_subqueries()
            )),
            next_due: s(
                "SELECT MIN(due_at_ms) FROM authkeep_accounts WHERE due_at_ms IS NOT NULL \
                AND (lease_until IS NULL OR lease_until <= {now})",
            ),
            upsert_login: s(&format!(
                "INSERT INTO authkeep_accounts (id, client_name, generation, record, \
                state, expires_at, refresh_expires_at, obtained_at, needs_login, last_success_at, \
                last_error_class, last_error_code, last_error_at, consecutive_failures, \
                next_attempt_at, due_at_ms) \
                VALUES ($15, $2, 1, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                ON CONFLICT (id) DO UPDATE SET generation = authkeep_accounts.generation + 1, \
                record = $1, client_name = $2, {DERIVED_SET} \
                WHERE authkeep_accounts.lease_until IS NULL OR authkeep_accounts.lease_until <= {{now}} \
                RETURNING generation"
            )),
            summaries: s(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM authkeep_accounts \
                WHERE record IS NOT NULL AND (CAST($1 AS TEXT) IS NULL OR state = $1) \
                AND (CAST($2 AS TEXT) IS NULL OR client_name = $2) AND id > $3 \
                ORDER BY id LIMIT $4"
            )),
            summary: s(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM authkeep_accounts \
                WHERE id = $1 AND record IS NOT NULL"
            )),
            counts: s(
                "SELECT state, COUNT(*) FROM authkeep_accounts WHERE record IS NOT NULL GROUP BY state",
            ),
        }
    }
}

/// The client row's columns of an account row being updated, as
/// subqueries (`RETURNING` cannot join).
fn client_subqueries() -> String {
    CLIENT_COLUMNS
        .map(|column| {
            format!(
                "(SELECT {column} FROM authkeep_clients WHERE name = authkeep_accounts.client_name)"
            )
        })
        .join(", ")
}

/// A process-wide-unique owner id: host, process id, random.
fn owner_id() -> Result<String, DbError> {
    #[cfg(unix)]
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ':')
        .take(64)
        .collect::<String>();
    #[cfg(not(unix))]
    let host = std::env::var("COMPUTERNAME").unwrap_or_else(|_| "host".into());
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(|e| {
        DbError::InvalidName(format!("the system's random number generator failed: {e}"))
    })?;
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{host}:{}:{random}", std::process::id()))
}

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

pub(crate) fn instant(secs: Option<i64>) -> Option<Timestamp> {
    secs.and_then(|s| Timestamp::from_second(s).ok())
}

pub(crate) fn instant_ms(millis: Option<i64>) -> Option<Timestamp> {
    millis.and_then(|ms| Timestamp::from_millisecond(ms).ok())
}

impl DbStore {
    /// Opens the store at `url` (`sqlite:PATH` or `postgres://…`) with the
    /// default options, creating or upgrading its schema; secrets are sealed
    /// with `key`.
    pub async fn open(url: &str, key: StoreKey) -> Result<DbStore, DbError> {
        Self::open_with(url, key, DbOptions::default()).await
    }

    /// [`Self::open`] with `options`.
    pub async fn open_with(
        url: &str,
        key: StoreKey,
        options: DbOptions,
    ) -> Result<DbStore, DbError> {
        let opened = backend::open(url, options.max_connections).await?;
        backend::migrate(&opened).await?;
        let owner = owner_id()?;
        let sql = Arc::new(Statements::new(opened.kind));
        let lanes = options.writer_lanes.unwrap_or(match opened.kind {
            // One writer at a time: more lanes would only wait for each other.
            Kind::Sqlite => 1,
            Kind::Postgres => POSTGRES_LANES,
        });
        let committer = Committer::start(
            lanes,
            &opened.writer,
            opened.kind,
            &opened.location,
            &owner,
            &sql,
        );
        Ok(DbStore {
            inner: Arc::new(Inner {
                sql,
                pool: opened.pool,
                kind: opened.kind,
                location: opened.location,
                sealer: AccountSealer(Encrypting::new(key)),
                owner,
                next_lease: AtomicI64::new(1),
                options,
                committer,
                skews: Mutex::default(),
                held: Mutex::default(),
                claimed: Mutex::default(),
            }),
        })
    }

    /// The database, without credentials (`sqlite:/path`, `postgres://host:port/db`).
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// This store's owner id, as leases and claims name it.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The options it was opened with.
    pub fn options(&self) -> &DbOptions {
        &self.inner.options
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.inner.options.clock.now()
    }

    pub(crate) fn failed(&self, action: &'static str) -> impl Fn(sqlx::Error) -> DbError + '_ {
        move |e| sql_error(&self.inner.location, action, e)
    }

    pub(crate) fn what(key: &SessionKey) -> String {
        format!("account {:?}", key.as_str())
    }

    /// Closes the pool: waits for connections in use to be returned.
    pub async fn close(&self) {
        dispatch!(&self.inner.pool, pool => pool.close().await)
    }

    async fn take_lease(&self, key: &SessionKey) -> Result<Option<DbGuard>, DbError> {
        let claimed = self.claimed().remove(key);
        if let Some(claimed) = claimed {
            if claimed.taken.elapsed() < self.inner.options.lease_ttl / 3 {
                return Ok(Some(self.guard_for(
                    key,
                    claimed.lease_id,
                    claimed.taken,
                    *claimed.row,
                )));
            }
            // Too old to rely on (its renewal might come too late): let it
            // go, and take the lease as anyone would.
            self.release_lease(key, claimed.lease_id).await?;
        }
        let inner = &self.inner;
        let lease_id = inner.next_lease.fetch_add(1, Ordering::Relaxed);
        // Before the request: the lease surely lasts until then.
        let taken_at = Instant::now();
        let taken = inner
            .committer
            .run(Op::Take {
                key: key.as_str().to_owned(),
                lease_id,
                ttl: millis(inner.options.lease_ttl),
            })
            .await?;
        let Done::Taken(taken) = taken else {
            return Err(self.unexpected("taking a lease"));
        };
        Ok(taken.map(|row| self.guard_for(key, lease_id, taken_at, *row)))
    }

    /// The guard of a lease just taken (by `try_lock` or a claim) at
    /// `taken_at` or later, on the row as the lease found it.
    fn guard_for(
        &self,
        key: &SessionKey,
        lease_id: i64,
        taken_at: Instant,
        row: LoadedRow,
    ) -> DbGuard {
        let inner = &self.inner;
        // From here the lease is ours: a guard releases it whatever happens.
        // `tokio::spawn` below needs a Tokio runtime, which cannot be missing
        // here: the lease was just taken by a task on one.
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let store = self.clone();
            let key = key.clone();
            let lost = Arc::clone(&lost);
            let period = (inner.options.lease_ttl / 3).max(Duration::from_millis(1));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    match store.renew(&key, lease_id).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::Relaxed);
                            break;
                        }
                        // The next period tries again; should the lease run
                        // out meanwhile, fencing keeps the writes safe.
                        Err(e) => drop(e),
                    }
                }
            })
        };
        let binding = match (&row.client_name, &row.client.issuer, &row.client.client_id) {
            (Some(name), Some(issuer), Some(client_id)) => Some(Binding {
                name: name.clone(),
                issuer: issuer.clone(),
                client_id: client_id.clone(),
            }),
            _ => None,
        };
        let guard = DbGuard {
            key: key.clone(),
            lease_id,
            store: self.clone(),
            binding: Mutex::new(binding),
            lost: Arc::clone(&lost),
            renewer,
        };
        // A row that does not decode is not kept: `load` reads it again and
        // reports what is wrong with it.
        if let (Some(fresh_until), Ok(session)) = (
            taken_at.checked_add(inner.options.lease_ttl),
            self.decode(key, row),
        ) {
            self.held().insert(
                key.clone(),
                Held {
                    lease_id,
                    fresh_until,
                    lost,
                    client: session.as_ref().and_then(|v| v.record.client.clone()),
                    session,
                },
            );
        }
        guard
    }

    /// Lets go of a lease this store holds, and waits until it is let go.
    async fn release_lease(&self, key: &SessionKey, lease_id: i64) -> Result<(), DbError> {
        let released = self
            .commit(Op::Release {
                key: key.as_str().to_owned(),
                lease_id,
            })
            .await?;
        match released {
            Done::Released => Ok(()),
            _ => Err(self.unexpected("releasing a lease")),
        }
    }

    /// Keeps the leases of a claim for this store's guards to take up.
    pub(crate) fn keep_claimed(&self, key: SessionKey, claimed: Claimed) {
        let replaced = self.claimed().insert(key, claimed);
        // A claim only takes leases nobody holds, this store included, so
        // none can be waiting already; should one be, its lease is gone.
        drop(replaced);
    }

    /// Lets go of a claimed account's lease unless a guard took it up: call
    /// after the claimed account was dealt with.
    pub async fn release_claim(&self, claim: &crate::Claim) -> Result<(), DbError> {
        let unused = {
            let mut claimed = self.claimed();
            match claimed.get(&claim.key) {
                Some(c) if c.lease_id == claim.lease_id => claimed.remove(&claim.key),
                _ => None,
            }
        };
        match unused {
            Some(c) => self.release_lease(&claim.key, c.lease_id).await,
            None => Ok(()),
        }
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Claimed>> {
        // Every critical section is one lookup, insert or remove.
        self.inner
            .claimed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Held>> {
        // Every critical section is one lookup, insert, update or remove.
        self.inner
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session as this process's lease holder last read or wrote it,
    /// while that is surely still the stored one.
    fn held_session(&self, key: &SessionKey) -> Option<Option<Versioned>> {
        let held = self.held();
        let entry = held.get(key)?;
        (!entry.lost.load(Ordering::Relaxed) && Instant::now() < entry.fresh_until)
            .then(|| entry.session.clone())
    }

    /// After a write or removal under `guard`: the session it stored, or
    /// `None` to forget the held copy (the write failed: read it again).
    fn update_held(&self, guard: &DbGuard, stored: Option<Option<Versioned>>) {
        let mut held = self.held();
        let Some(entry) = held
            .get_mut(&guard.key)
            .filter(|e| e.lease_id == guard.lease_id)
        else {
            return;
        };
        match stored {
            Some(mut session) => {
                // As `load` fills it: a bound record's client is the client row.
                if let Some(v) = session.as_mut()
                    && guard.binding().is_some()
                {
                    v.record.client = entry.client.clone();
                }
                entry.session = session;
            }
            None => {
                held.remove(&guard.key);
            }
        }
    }

    /// A lane answered with another kind of result than its op has: a bug,
    /// reported rather than panicking.
    pub(crate) fn unexpected(&self, action: &'static str) -> DbError {
        DbError::Sql {
            location: self.inner.location.clone(),
            action,
            detail: "the writer answered another request".into(),
        }
    }

    /// Runs `op` through the store's group commit.
    pub(crate) async fn commit(&self, op: Op) -> Result<Done, DbError> {
        self.inner.committer.run(op).await
    }

    async fn renew(&self, key: &SessionKey, lease_id: i64) -> Result<bool, DbError> {
        let inner = &self.inner;
        let done = inner
            .committer
            .run(Op::Renew {
                key: key.as_str().to_owned(),
                lease_id,
                ttl: millis(inner.options.lease_ttl),
            })
            .await?;
        match done {
            Done::Renewed(renewed) => Ok(renewed),
            _ => Err(self.unexpected("renewing a lease")),
        }
    }

    /// Whether somebody holds the account's lease now.
    pub async fn is_leased(&self, key: &SessionKey) -> Result<bool, DbError> {
        let inner = &self.inner;
        let count: i64 = dispatch!(&inner.pool, pool => {
            sqlx::query_scalar(inner.sql.leased.clone())
                .bind(key.as_str())
                .fetch_one(pool)
                .await
        })
        .map_err(self.failed("reading a lease"))?;
        Ok(count > 0)
    }

    pub(crate) async fn wait_for_lease(
        &self,
        key: &SessionKey,
        wait: Duration,
    ) -> Result<bool, DbError> {
        let deadline = Instant::now().checked_add(wait);
        let mut pause = POLL_FIRST;
        loop {
            if !self.is_leased(key).await? {
                return Ok(true);
            }
            let left = deadline.map_or(wait, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Reads an account's session, its client filled from the client row
    /// when it is bound to one.
    pub async fn session(&self, key: &SessionKey) -> Result<Option<Versioned>, DbError> {
        let inner = &self.inner;
        let row: Option<LoadedRow> = dispatch!(&inner.pool, pool => {
            sqlx::query(inner.sql.load.clone())
                .bind(key.as_str())
                .fetch_optional(pool)
                .await
                .and_then(|row| row.map(|row| LoadedRow::read(&row)).transpose())
        })
        .map_err(self.failed("reading an account"))?;
        match row {
            Some(row) => self.decode(key, row),
            None => Ok(None),
        }
    }

    /// The session an account row holds (none without a record).
    fn decode(&self, key: &SessionKey, row: LoadedRow) -> Result<Option<Versioned>, DbError> {
        let inner = &self.inner;
        let Some(bytes) = row.record else {
            return Ok(None);
        };
        let what = || Self::what(key);
        let corrupt = |detail: String| DbError::Corrupt {
            what: what(),
            location: inner.location.clone(),
            detail,
        };
        let mut record =
            decode_record(bytes.as_bytes(), Some(&inner.sealer), key).map_err(|p| match p {
                RecordProblem::Sealed(detail) => DbError::Sealed {
                    what: what(),
                    location: inner.location.clone(),
                    detail,
                },
                other => corrupt(other.to_string()),
            })?;
        if let Some(name) = row.client_name {
            record.client = Some(self.client_from_row(&name, row.client)?);
        }
        let generation = u64::try_from(row.generation)
            .map_err(|_| corrupt("its generation is negative".into()))?;
        Ok(Some(Versioned { generation, record }))
    }

    pub(crate) fn client_from_row(&self, name: &str, row: ClientRow) -> Result<Client, DbError> {
        let location = &self.inner.location;
        let what = || format!("client {name:?}");
        let corrupt = |detail: &str| DbError::Corrupt {
            what: what(),
            location: location.clone(),
            detail: detail.to_owned(),
        };
        let (Some(issuer), Some(client_id), Some(auth), Some(renewal)) =
            (row.issuer, row.client_id, row.auth, row.renewal)
        else {
            return Err(corrupt("its row is incomplete"));
        };
        let auth: ClientAuth = serde_json::from_value(Value::String(auth))
            .map_err(|_| corrupt("unknown client authentication"))?;
        let renewal: Renewal = serde_json::from_value(Value::String(renewal))
            .map_err(|_| corrupt("unknown renewal"))?;
        let mut client = Client::new(issuer, client_id).with_renewal(renewal);
        if let Some(sealed) = row.secret {
            let sealed: Value = serde_json::from_str(&sealed)
                .map_err(|_| corrupt("its sealed secret is not JSON"))?;
            let plain = self
                .inner
                .sealer
                .0
                .open_with(&context("client", name), &sealed)
                .map_err(|e| DbError::Sealed {
                    what: what(),
                    location: location.clone(),
                    detail: e.0,
                })?;
            let secret =
                std::str::from_utf8(&plain).map_err(|_| corrupt("its secret is not text"))?;
            client = client.with_secret(ClientSecret::new(secret), auth);
        }
        client.auth = auth;
        if let Some(scope) = row.scopes {
            client = client.with_scope(scope);
        }
        if let Some(endpoint) = row.token_endpoint {
            client = client.with_token_endpoint(endpoint);
        }
        if let Some(params) = row.token_params {
            let params: Vec<(String, String)> = serde_json::from_str(&params)
                .map_err(|_| corrupt("its token parameters are not a list of pairs"))?;
            client = client.with_token_params(params);
        }
        Ok(client)
    }

    /// Seals `record` for `key` (without its client when `bound`) and derives
    /// its plain columns.
    pub(crate) fn prepare(
        &self,
        key: &SessionKey,
        record: &Record,
        bound: bool,
        now: Timestamp,
    ) -> Result<(String, Derived), DbError> {
        let derived = Derived::of(key, record, &self.inner.options.schedule, now);
        let stripped;
        let stored = if bound {
            stripped = Record {
                client: None,
                ..record.clone()
            };
            &stripped
        } else {
            record
        };
        let bytes = encode_record(stored, Some(&self.inner.sealer), key).map_err(|e| {
            DbError::NotSealed {
                what: Self::what(key),
                detail: e.0,
            }
        })?;
        // JSON is UTF-8.
        let text = String::from_utf8(bytes).map_err(|_| DbError::NotSealed {
            what: Self::what(key),
            detail: "its record is not text".into(),
        })?;
        Ok((text, derived))
    }

    async fn write_record(
        &self,
        guard: &DbGuard,
        expected: Option<u64>,
        record: &Record,
    ) -> Result<u64, DbError> {
        let inner = &self.inner;
        let key = &guard.key;
        let conflict = || DbError::Store(StoreError::Conflict(key.to_string()));
        let binding = guard.binding().filter(|b| {
            record
                .client
                .as_ref()
                .is_some_and(|c| c.issuer == b.issuer && c.client_id == b.client_id)
        });
        let (text, d) = self.prepare(key, record, binding.is_some(), self.now())?;
        let (some, expected) = match expected {
            Some(g) => (true, i64::try_from(g).map_err(|_| conflict())?),
            None => (false, 0),
        };
        let done = inner
            .committer
            .run(Op::Write(Box::new(Write {
                some,
                record: text,
                client_name: binding.as_ref().map(|b| b.name.clone()),
                derived: d,
                key: key.as_str().to_owned(),
                lease_id: guard.lease_id,
                expected,
            })))
            .await?;
        let Done::Written(written) = done else {
            return Err(self.unexpected("writing an account"));
        };
        match written {
            Some(generation) => {
                guard.set_binding(binding);
                u64::try_from(generation).map_err(|_| conflict())
            }
            None => match self.lease_state(guard).await? {
                Some((true, _)) => Err(conflict()),
                _ => Err(DbError::Store(StoreError::LeaseLost(key.to_string()))),
            },
        }
    }

    /// Whether the guard's lease still holds, and whether the row has a record.
    async fn lease_state(&self, guard: &DbGuard) -> Result<Option<(bool, bool)>, DbError> {
        let inner = &self.inner;
        let row: Option<(i64, i64)> = dispatch!(&inner.pool, pool => {
            sqlx::query_as(inner.sql.lease_held.clone())
                .bind(guard.key.as_str())
                .bind(inner.owner.as_str())
                .bind(guard.lease_id)
                .fetch_optional(pool)
                .await
        })
        .map_err(self.failed("reading a lease"))?;
        Ok(row.map(|(held, record)| (held == 1, record == 1)))
    }

    async fn remove_record(&self, guard: &DbGuard, expected: u64) -> Result<(), DbError> {
        let inner = &self.inner;
        let key = &guard.key;
        let conflict = || DbError::Store(StoreError::Conflict(key.to_string()));
        let expected = i64::try_from(expected).map_err(|_| conflict())?;
        let removed = dispatch!(&inner.pool, pool => {
            sqlx::query(inner.sql.remove.clone())
                .bind(key.as_str())
                .bind(inner.owner.as_str())
                .bind(guard.lease_id)
                .bind(expected)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(self.failed("removing an account"))?;
        if removed == 1 {
            return Ok(());
        }
        match self.lease_state(guard).await? {
            Some((true, false)) => Ok(()),
            Some((true, true)) => Err(conflict()),
            _ => Err(DbError::Store(StoreError::LeaseLost(key.to_string()))),
        }
    }

    async fn keys(&self) -> Result<Vec<SessionKey>, DbError> {
        let inner = &self.inner;
        let ids: Vec<String> = dispatch!(&inner.pool, pool => {
            sqlx::query_scalar(inner.sql.list.clone()).fetch_all(pool).await
        })
        .map_err(self.failed("listing accounts"))?;
        ids.iter()
            .map(|id| {
                SessionKey::account(id).map_err(|e| DbError::Corrupt {
                    what: "an account id".into(),
                    location: inner.location.clone(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// The issuer's recorded clock skew, as read at most a minute ago.
    pub async fn skew(&self, issuer: &str) -> Result<Option<i64>, DbError> {
        let inner = &self.inner;
        let now = self.now();
        if let Some(&(skew, read_at)) = self.skews().get(issuer)
            && read_at <= now
            && now.duration_since(read_at) < SKEW_FRESH.try_into().unwrap_or_default()
        {
            return Ok(skew);
        }
        let skew = dispatch!(&inner.pool, pool => {
            sqlx::query_scalar(inner.sql.skew.clone())
                .bind(issuer)
                .fetch_optional(pool)
                .await
        })
        .map_err(self.failed("reading an issuer"))?;
        self.skews().insert(issuer.to_owned(), (skew, now));
        Ok(skew)
    }

    async fn set_skew(&self, issuer: &str, skew: Option<i64>) -> Result<(), DbError> {
        let inner = &self.inner;
        let written = dispatch!(&inner.pool, pool => {
            match skew {
                Some(skew) => sqlx::query(inner.sql.set_skew.clone()).bind(issuer).bind(skew).execute(pool).await.map(drop),
                None => sqlx::query(inner.sql.clear_skew.clone()).bind(issuer).execute(pool).await.map(drop),
            }
        })
        .map_err(self.failed("recording an issuer"));
        // Whatever happened, the next read asks the database.
        self.skews().remove(issuer);
        written
    }

    fn skews(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<i64>, Timestamp)>> {
        // Every critical section is one lookup, insert or remove.
        self.inner
            .skews
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An account row as `load` reads it (and a lease taken returns it).
pub(crate) struct LoadedRow {
    pub(crate) generation: i64,
    record: Option<String>,
    client_name: Option<String>,
    client: ClientRow,
}

impl LoadedRow {
    pub(crate) fn read<R: sqlx::Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Self::read_at(row, 0)
    }

    /// Reads the row's columns from column `at` on.
    pub(crate) fn read_at<R: sqlx::Row>(row: &R, at: usize) -> Result<Self, sqlx::Error>
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(LoadedRow {
            generation: row.try_get(at)?,
            record: row.try_get(at + 1)?,
            client_name: row.try_get(at + 2)?,
            client: ClientRow::read(row, at + 3)?,
        })
    }
}

/// A client row's columns as read (all optional: a LEFT JOIN may find none).
pub(crate) struct ClientRow {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub secret: Option<String>,
    pub auth: Option<String>,
    pub scopes: Option<String>,
    pub token_endpoint: Option<String>,
    pub renewal: Option<String>,
    pub token_params: Option<String>,
}

impl ClientRow {
    /// Reads [`CLIENT_COLUMNS`] from column `at` on.
    pub(crate) fn read<R: sqlx::Row>(row: &R, at: usize) -> Result<Self, sqlx::Error>
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(ClientRow {
            issuer: row.try_get(at)?,
            client_id: row.try_get(at + 1)?,
            secret: row.try_get(at + 2)?,
            auth: row.try_get(at + 3)?,
            scopes: row.try_get(at + 4)?,
            token_endpoint: row.try_get(at + 5)?,
            renewal: row.try_get(at + 6)?,
            token_params: row.try_get(at + 7)?,
        })
    }
}

impl Store for DbStore {
    type Guard = DbGuard;

    async fn load(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        if let Some(session) = self.held_session(key) {
            return Ok(session);
        }
        Ok(self.session(key).await?)
    }

    async fn try_lock(&self, key: &SessionKey) -> Result<Option<DbGuard>, StoreError> {
        Ok(self.take_lease(key).await?)
    }

    async fn wait_for_release(&self, key: &SessionKey, wait: Duration) -> Result<bool, StoreError> {
        if self.claimed().contains_key(key) {
            // This store's own claim holds it: `try_lock` takes it up.
            return Ok(true);
        }
        Ok(self.wait_for_lease(key, wait).await?)
    }

    async fn write(
        &self,
        guard: &DbGuard,
        expected: Option<u64>,
        record: &Record,
    ) -> Result<u64, StoreError> {
        let written = self.write_record(guard, expected, record).await;
        self.update_held(
            guard,
            written.as_ref().ok().map(|&generation| {
                Some(Versioned {
                    generation,
                    record: record.clone(),
                })
            }),
        );
        Ok(written?)
    }

    async fn remove(&self, guard: &DbGuard, expected: u64) -> Result<(), StoreError> {
        let removed = self.remove_record(guard, expected).await;
        self.update_held(guard, removed.as_ref().ok().map(|()| None));
        Ok(removed?)
    }

    async fn list(&self) -> Result<Vec<SessionKey>, StoreError> {
        Ok(self.keys().await?)
    }

    async fn issuer_skew(&self, issuer: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.skew(issuer).await?)
    }

    async fn set_issuer_skew(
        &self,
        issuer: &str,
        skew_secs: Option<i64>,
    ) -> Result<(), StoreError> {
        Ok(self.set_skew(issuer, skew_secs).await?)
    }
}
