//! What the agent, the token API and `accounts` commands ask of a database
//! store beyond the session contract: named clients that many accounts
//! share; logins stored for accounts (one, or many in batches); overviews
//! without secrets; and the scheduler's questions (which accounts are due,
//! claimed so that several agents share them, and when the next one is).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use authkeep::store::Store as _;
use authkeep::{
    Client, FailureClass, Health, Origin, Record, SessionKey, StoreError, TokenResponse,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use sqlx::Row as _;

use crate::backend::{Kind, dispatch, sql};
use crate::commit::{Done, Op};
use crate::error::DbError;
use crate::schedule::AccountState;
use crate::store::{
    CLIENT_COLUMNS, Claimed, ClientRow, DbStore, context, instant, instant_ms, millis,
};

/// How many logins one transaction of [`DbStore::put_accounts`] writes.
const IMPORT_BATCH: usize = 500;

/// A client to add under a name ([`DbStore::add_client`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewClient {
    /// Its name: 1 to 256 printable ASCII characters, not `/`.
    pub name: String,
    /// The client, secret included.
    pub client: Client,
    /// Whether an existing client of the name is replaced (its issuer and
    /// client id may change only while no account uses it).
    pub replace: bool,
}

impl NewClient {
    /// A client to add as `name`; refused if the name exists.
    pub fn new(name: impl Into<String>, client: Client) -> Self {
        Self {
            name: name.into(),
            client,
            replace: false,
        }
    }

    /// Replaces a client of the same name.
    pub fn replacing(mut self) -> Self {
        self.replace = true;
        self
    }
}

/// A stored client and its name.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NamedClient {
    /// The name.
    pub name: String,
    /// The client, secret included (redacted in `Debug`).
    pub client: Client,
}

/// A login to store for an account ([`DbStore::put_accounts`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccountLogin {
    /// The account.
    pub key: SessionKey,
    /// The name of its client.
    pub client: String,
    /// The token response obtained elsewhere.
    pub response: TokenResponse,
}

impl AccountLogin {
    /// A login for `key` with the client named `client`.
    pub fn new(key: SessionKey, client: impl Into<String>, response: TokenResponse) -> Self {
        Self {
            key,
            client: client.into(),
            response,
        }
    }
}

/// What [`DbStore::put_accounts`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// Accounts written, with their new generation.
    pub written: Vec<(SessionKey, u64)>,
    /// Accounts left as they were because somebody held their lease (a
    /// refresh in progress): store them again later.
    pub busy: Vec<SessionKey>,
}

/// One account as overviews show it: never a secret.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AccountSummary {
    /// The account.
    pub key: SessionKey,
    /// Its named client, if it is bound to one.
    pub client: Option<String>,
    /// What it amounts to.
    pub state: AccountState,
    /// Its generation.
    pub generation: u64,
    /// When its access token expires, if known.
    pub expires_at: Option<Timestamp>,
    /// When its refresh token expires, if the provider said.
    pub refresh_expires_at: Option<Timestamp>,
    /// When its tokens were obtained.
    pub obtained_at: Option<Timestamp>,
    /// Whether a new login is needed.
    pub needs_login: bool,
    /// The last successful refresh or login.
    pub last_success_at: Option<Timestamp>,
    /// The class of the last failure.
    pub last_error_class: Option<FailureClass>,
    /// The provider's error code of the last failure (`invalid_grant`,
    /// `http_503`), never its text.
    pub last_error_code: Option<String>,
    /// When it failed last.
    pub last_error_at: Option<Timestamp>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// No attempt before this instant (back-off).
    pub next_attempt_at: Option<Timestamp>,
    /// When it is next due for a refresh.
    pub due_at: Option<Timestamp>,
}

impl AccountSummary {
    /// An overview of `key` in `state` with nothing else known (for tests and
    /// for callers that build overviews of their own).
    pub fn new(key: SessionKey, state: AccountState) -> Self {
        Self {
            key,
            client: None,
            state,
            generation: 0,
            expires_at: None,
            refresh_expires_at: None,
            obtained_at: None,
            needs_login: state == AccountState::NeedsLogin,
            last_success_at: None,
            last_error_class: None,
            last_error_code: None,
            last_error_at: None,
            consecutive_failures: 0,
            next_attempt_at: None,
            due_at: None,
        }
    }
}

/// Which accounts [`DbStore::accounts`] lists, in order of id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountFilter {
    /// Only accounts in this state.
    pub state: Option<AccountState>,
    /// Only accounts of this client.
    pub client: Option<String>,
    /// Only accounts after this id (for paging).
    pub after: Option<SessionKey>,
    /// At most this many (default: all).
    pub limit: Option<u32>,
}

impl AccountFilter {
    /// Every account.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only accounts in `state`.
    pub fn state(mut self, state: AccountState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only accounts of the client named `client`.
    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }

    /// A page: at most `limit` accounts after `after`.
    pub fn page(mut self, after: Option<SessionKey>, limit: u32) -> Self {
        self.after = after;
        self.limit = Some(limit);
        self
    }
}

/// A due account that [`DbStore::claim_due`] claimed for this store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// The account.
    pub key: SessionKey,
    /// Its generation when claimed.
    pub generation: u64,
    /// When it was due, as the claim found it (for the schedule's lag).
    pub due_at: Option<Timestamp>,
    /// The claim's lease on it.
    pub(crate) lease_id: i64,
}

fn check_name(name: &str) -> Result<(), DbError> {
    SessionKey::account(name).map(drop).map_err(|_| {
        DbError::InvalidName(format!(
            "invalid client name {:?}: use 1 to 256 printable ASCII characters, not /",
            name.chars().take(80).collect::<String>()
        ))
    })
}

fn enum_text<T: serde::Serialize>(value: T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => text,
        // Unit enum variants always serialize as strings.
        _ => String::new(),
    }
}

impl DbStore {
    /// Adds a client under `new.name`: an error if the name exists, unless
    /// `new.replace` (then its issuer and client id may change only while no
    /// account uses it). Its secret is sealed with the store key.
    pub async fn add_client(&self, new: NewClient) -> Result<(), DbError> {
        check_name(&new.name)?;
        let inner = &self.inner;
        let kind = inner.kind;
        let client = &new.client;
        let secret = match &client.client_secret {
            Some(secret) => {
                let sealed = inner
                    .sealer
                    .0
                    .seal_with(
                        &context("client", &new.name),
                        secret.expose_secret().as_bytes(),
                    )
                    .map_err(|e| DbError::NotSealed {
                        what: format!("client {:?}", new.name),
                        detail: e.0,
                    })?;
                Some(sealed.to_string())
            }
            None => None,
        };
        let params = (!client.token_params.is_empty())
            .then(|| serde_json::to_string(&client.token_params))
            .transpose()
            .map_err(|_| DbError::InvalidName("token parameters that cannot be written".into()))?;
        let insert = sql(
            kind,
            "INSERT INTO authkeep_clients (name, issuer, client_id, secret, auth, scopes, \
            token_endpoint, renewal, token_params) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
            ON CONFLICT (name) DO UPDATE SET issuer = $2, client_id = $3, secret = $4, auth = $5, \
            scopes = $6, token_endpoint = $7, renewal = $8, token_params = $9 WHERE $10 = 1",
        );
        let existing = sql(
            kind,
            "SELECT issuer, client_id FROM authkeep_clients WHERE name = $1",
        );
        let users = sql(
            kind,
            "SELECT COUNT(*) FROM authkeep_accounts WHERE client_name = $1",
        );
        let location = &inner.location;
        let failed = |action| move |e| crate::error::sql_error(location, action, e);
        dispatch!(&inner.pool, pool => {
            let mut tx = pool.begin().await.map_err(failed("adding a client"))?;
            let found: Option<(String, String)> = sqlx::query_as(existing)
                .bind(new.name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed("reading a client"))?;
            if let Some((issuer, client_id)) = found {
                if !new.replace {
                    return Err(DbError::ClientExists(new.name.clone()));
                }
                if issuer != client.issuer || client_id != client.client_id {
                    let count: i64 = sqlx::query_scalar(users)
                        .bind(new.name.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(failed("counting a client's accounts"))?;
                    if count > 0 {
                        return Err(DbError::ClientInUse {
                            name: new.name.clone(),
                            accounts: count,
                            refused: "its issuer and client id cannot change",
                        });
                    }
                }
            }
            let done = sqlx::query(insert)
                .bind(new.name.as_str())
                .bind(client.issuer.as_str())
                .bind(client.client_id.as_str())
                .bind(secret.as_deref())
                .bind(enum_text(client.auth))
                .bind(client.scope.as_deref())
                .bind(client.token_endpoint.as_deref())
                .bind(enum_text(client.renewal))
                .bind(params.as_deref())
                .bind(i64::from(new.replace))
                .execute(&mut *tx)
                .await
                .map_err(failed("adding a client"))?;
            if done.rows_affected() != 1 {
                return Err(DbError::ClientExists(new.name.clone()));
            }
            tx.commit().await.map_err(failed("adding a client"))
        })
    }

    /// The client named `name`, secret included.
    pub async fn client(&self, name: &str) -> Result<Option<Client>, DbError> {
        Ok(self
            .read_clients(Some(name))
            .await?
            .into_iter()
            .next()
            .map(|named| named.client))
    }

    /// Every client, by name.
    pub async fn clients(&self) -> Result<Vec<NamedClient>, DbError> {
        self.read_clients(None).await
    }

    async fn read_clients(&self, name: Option<&str>) -> Result<Vec<NamedClient>, DbError> {
        let inner = &self.inner;
        let statement = sql(
            inner.kind,
            &format!(
                "SELECT name, {} FROM authkeep_clients \
                WHERE CAST($1 AS TEXT) IS NULL OR name = $1 ORDER BY name",
                CLIENT_COLUMNS.join(", ")
            ),
        );
        let rows: Vec<(String, ClientRow)> = dispatch!(&inner.pool, pool => {
            sqlx::query(statement)
                .bind(name)
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(|row| Ok((row.try_get(0)?, ClientRow::read(row, 1)?))).collect())
        })
        .map_err(self.failed("reading clients"))?;
        rows.into_iter()
            .map(|(name, row)| {
                let client = self.client_from_row(&name, row)?;
                Ok(NamedClient { name, client })
            })
            .collect()
    }

    /// Removes the client named `name`; refused while accounts use it.
    /// Returns whether there was one.
    pub async fn remove_client(&self, name: &str) -> Result<bool, DbError> {
        let inner = &self.inner;
        let users = sql(
            inner.kind,
            "SELECT COUNT(*) FROM authkeep_accounts WHERE client_name = $1",
        );
        let delete = sql(inner.kind, "DELETE FROM authkeep_clients WHERE name = $1");
        let in_use = |accounts| DbError::ClientInUse {
            name: name.to_owned(),
            accounts,
            refused: "it cannot be removed",
        };
        let count: i64 = dispatch!(&inner.pool, pool => {
            sqlx::query_scalar(users).bind(name).fetch_one(pool).await
        })
        .map_err(self.failed("counting a client's accounts"))?;
        if count > 0 {
            return Err(in_use(count));
        }
        let deleted = dispatch!(&inner.pool, pool => {
            sqlx::query(delete).bind(name).execute(pool).await.map(|r| r.rows_affected())
        });
        match deleted {
            Ok(n) => Ok(n > 0),
            // An account bound to it meanwhile: the foreign key refused.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(in_use(1)),
            Err(e) => Err(self.failed("removing a client")(e)),
        }
    }

    /// Stores a login for the account `key` with the client named `client`,
    /// as an import (its age unknown, counted from `now`): its health is
    /// cleared and its generation continues. Waits (at most the store's lock
    /// wait) while somebody holds the account's lease. Returns the new
    /// generation.
    pub async fn put_account(
        &self,
        key: &SessionKey,
        client: &str,
        response: TokenResponse,
        now: Timestamp,
    ) -> Result<u64, DbError> {
        let wait = self.inner.options.lock_wait;
        let deadline = std::time::Instant::now().checked_add(wait);
        loop {
            let login = AccountLogin::new(key.clone(), client, response.clone());
            let done = self.put_accounts(vec![login], now).await?;
            if let Some((_, generation)) = done.written.first() {
                return Ok(*generation);
            }
            let left = deadline.map_or(wait, |d| {
                d.saturating_duration_since(std::time::Instant::now())
            });
            if left.is_zero() || !self.wait_for_lease(key, left).await? {
                return Err(DbError::Store(StoreError::LockTimeout {
                    key: key.to_string(),
                    waited: wait,
                }));
            }
        }
    }

    /// Stores many logins, in transactions of 500: each account is written
    /// in one statement only if nobody holds its lease (as if its lease were
    /// taken and released around the write), continuing its generation and
    /// clearing its health; accounts whose lease is held are reported busy and
    /// left as they were. Every named client must exist, else nothing is
    /// written.
    pub async fn put_accounts(
        &self,
        logins: Vec<AccountLogin>,
        now: Timestamp,
    ) -> Result<Imported, DbError> {
        let names: BTreeSet<&str> = logins.iter().map(|l| l.client.as_str()).collect();
        let mut clients: HashMap<String, Client> = HashMap::new();
        for name in names {
            let client = self
                .client(name)
                .await?
                .ok_or_else(|| DbError::UnknownClient(name.to_owned()))?;
            clients.insert(name.to_owned(), client);
        }
        let mut skews: HashMap<String, i64> = HashMap::new();
        for client in clients.values() {
            if !skews.contains_key(&client.issuer) {
                let skew = self.skew(&client.issuer).await?.unwrap_or(0);
                skews.insert(client.issuer.clone(), skew);
            }
        }
        let mut health = Health::default();
        health.record_success(now);
        let mut prepared = Vec::with_capacity(logins.len());
        for login in logins {
            // Present: every name was looked up above.
            let Some(client) = clients.get(&login.client) else {
                return Err(DbError::UnknownClient(login.client));
            };
            let skew = skews.get(&client.issuer).copied().unwrap_or(0);
            let record = Record {
                client: Some(client.clone()),
                tokens: Some(login.response.into_token_set(
                    now,
                    Origin::Import,
                    SignedDuration::from_secs(skew),
                )),
                health: health.clone(),
                clock_skew_secs: (skew != 0).then_some(skew),
            };
            let (text, derived) = self.prepare(&login.key, &record, true, now)?;
            prepared.push((login.key, login.client, text, derived));
        }
        let inner = &self.inner;
        let mut done = Imported::default();
        for batch in prepared.chunks(IMPORT_BATCH) {
            let written: Vec<Option<i64>> = dispatch!(&inner.pool, pool => {
                let begin = match inner.kind {
                    Kind::Sqlite => "BEGIN IMMEDIATE",
                    Kind::Postgres => "BEGIN",
                };
                let mut tx = pool.begin_with(begin).await.map_err(self.failed("storing logins"))?;
                let mut written = Vec::with_capacity(batch.len());
                for (key, client, text, d) in batch {
                    let generation: Option<i64> = crate::backend::bind_derived!(
                        sqlx::query_scalar(inner.sql.upsert_login.clone())
                            .bind(text.as_str())
                            .bind(client.as_str()),
                        d
                    )
                        .bind(key.as_str())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(self.failed("storing a login"))?;
                    written.push(generation);
                }
                tx.commit().await.map_err(self.failed("storing logins"))?;
                written
            });
            for ((key, ..), generation) in batch.iter().zip(written) {
                match generation.map(u64::try_from) {
                    Some(Ok(generation)) => done.written.push((key.clone(), generation)),
                    _ => done.busy.push(key.clone()),
                }
            }
        }
        Ok(done)
    }

    /// Removes an account's session under its lease (waiting at most the
    /// store's lock wait), keeping its generation. Returns whether there was
    /// one.
    pub async fn remove_account(&self, key: &SessionKey) -> Result<bool, DbError> {
        let guard = self.lock(key, self.inner.options.lock_wait, || {}).await?;
        let Some(current) = self.session_generation(key).await? else {
            return Ok(false);
        };
        self.remove(&guard, current).await?;
        Ok(true)
    }

    async fn session_generation(&self, key: &SessionKey) -> Result<Option<u64>, DbError> {
        Ok(self.summary(key).await?.map(|s| s.generation))
    }

    /// Accounts matching `filter`, in order of id; no secrets.
    pub async fn accounts(&self, filter: &AccountFilter) -> Result<Vec<AccountSummary>, DbError> {
        let inner = &self.inner;
        let limit = filter.limit.map_or(i64::MAX, i64::from);
        let after = filter.after.as_ref().map_or("", |k| k.as_str());
        let rows: Vec<SummaryRow> = dispatch!(&inner.pool, pool => {
            sqlx::query(inner.sql.summaries.clone())
                .bind(filter.state.map(AccountState::as_str))
                .bind(filter.client.as_deref())
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(SummaryRow::read).collect())
        })
        .map_err(self.failed("listing accounts"))?;
        rows.into_iter().map(|row| self.summarize(row)).collect()
    }

    /// One account's overview; no secrets.
    pub async fn account(&self, key: &SessionKey) -> Result<Option<AccountSummary>, DbError> {
        self.summary(key).await
    }

    async fn summary(&self, key: &SessionKey) -> Result<Option<AccountSummary>, DbError> {
        let inner = &self.inner;
        let row: Option<SummaryRow> = dispatch!(&inner.pool, pool => {
            sqlx::query(inner.sql.summary.clone())
                .bind(key.as_str())
                .fetch_optional(pool)
                .await
                .and_then(|row| row.as_ref().map(SummaryRow::read).transpose())
        })
        .map_err(self.failed("reading an account"))?;
        row.map(|row| self.summarize(row)).transpose()
    }

    fn summarize(&self, row: SummaryRow) -> Result<AccountSummary, DbError> {
        let corrupt = |detail: String| DbError::Corrupt {
            what: format!("account {:?}", row.id),
            location: self.inner.location.clone(),
            detail,
        };
        let key = SessionKey::account(&row.id).map_err(|e| corrupt(e.to_string()))?;
        let state = row
            .state
            .as_deref()
            .and_then(AccountState::parse)
            .ok_or_else(|| corrupt("unknown state".into()))?;
        let class = row
            .last_error_class
            .map(|c| serde_json::from_value::<FailureClass>(Value::String(c)))
            .transpose()
            .map_err(|_| corrupt("unknown error class".into()))?;
        Ok(AccountSummary {
            key,
            client: row.client_name,
            state,
            generation: u64::try_from(row.generation)
                .map_err(|_| corrupt("negative generation".into()))?,
            expires_at: instant(row.expires_at),
            refresh_expires_at: instant(row.refresh_expires_at),
            obtained_at: instant(row.obtained_at),
            needs_login: row.needs_login != 0,
            last_success_at: instant(row.last_success_at),
            last_error_class: class,
            last_error_code: row.last_error_code,
            last_error_at: instant(row.last_error_at),
            consecutive_failures: u32::try_from(row.consecutive_failures).unwrap_or(u32::MAX),
            next_attempt_at: instant(row.next_attempt_at),
            due_at: instant_ms(row.due_at_ms),
        })
    }

    /// How many accounts are in each state.
    pub async fn counts(&self) -> Result<BTreeMap<AccountState, u64>, DbError> {
        let inner = &self.inner;
        let rows: Vec<(Option<String>, i64)> = dispatch!(&inner.pool, pool => {
            sqlx::query_as(inner.sql.counts.clone()).fetch_all(pool).await
        })
        .map_err(self.failed("counting accounts"))?;
        let mut counts = BTreeMap::new();
        for (state, count) in rows {
            let state = state
                .as_deref()
                .and_then(AccountState::parse)
                .ok_or_else(|| DbError::Corrupt {
                    what: "an account's state".into(),
                    location: inner.location.clone(),
                    detail: "unknown state".into(),
                })?;
            counts.insert(state, u64::try_from(count).unwrap_or(0));
        }
        Ok(counts)
    }

    /// Claims up to `limit` accounts due at `now` that nobody leases, taking
    /// their leases for this store in one statement (PostgreSQL: `FOR UPDATE
    /// SKIP LOCKED`), so that an account is never claimed twice at once and
    /// other agents skip it. The first `try_lock` of a claimed account on
    /// this store takes up its lease (see `Claimed`): the refresh that
    /// follows a claim takes no lease of its own. Call
    /// [`Self::release_claim`] once a claimed account was dealt with, to let
    /// go of a lease nobody took up; one left alone runs out after the
    /// lease's lifetime.
    pub async fn claim_due(&self, limit: u32, now: Timestamp) -> Result<Vec<Claim>, DbError> {
        let inner = &self.inner;
        let lease_id = inner.next_lease.fetch_add(1, Ordering::Relaxed);
        // Before the request: the leases surely last until then.
        let taken = Instant::now();
        let rows = self
            .commit(Op::Claim {
                lease_id,
                ttl: millis(inner.options.lease_ttl),
                due: now.as_millisecond(),
                limit: i64::from(limit),
            })
            .await?;
        let Done::Claimed(rows) = rows else {
            return Err(self.unexpected("claiming due accounts"));
        };
        let mut claims = Vec::with_capacity(rows.len());
        let mut corrupt = None;
        for (id, due_at, row) in rows {
            let parsed = SessionKey::account(&id)
                .map_err(|e| e.to_string())
                .and_then(|key| {
                    u64::try_from(row.generation)
                        .map(|generation| (key, generation))
                        .map_err(|_| "negative generation".to_owned())
                });
            match parsed {
                Ok((key, generation)) => {
                    self.keep_claimed(
                        key.clone(),
                        Claimed {
                            lease_id,
                            taken,
                            row: Box::new(row),
                        },
                    );
                    claims.push(Claim {
                        key,
                        generation,
                        due_at: instant_ms(due_at),
                        lease_id,
                    });
                }
                // Its lease runs out by itself; the others are still claimed.
                Err(detail) => {
                    corrupt.get_or_insert(DbError::Corrupt {
                        what: format!("account {id:?}"),
                        location: inner.location.clone(),
                        detail,
                    });
                }
            }
        }
        match corrupt {
            // The claims kept are let go: the caller hears only the error.
            Some(error) => {
                for claim in &claims {
                    self.release_claim(claim).await?;
                }
                Err(error)
            }
            None => Ok(claims),
        }
    }

    /// When the next account nobody leases is due, for the scheduler's
    /// sleep (a lease that runs out is not foreseen: sleep at most the
    /// lease's lifetime).
    pub async fn next_due(&self) -> Result<Option<Timestamp>, DbError> {
        let inner = &self.inner;
        let next: Option<i64> = dispatch!(&inner.pool, pool => {
            sqlx::query_scalar(inner.sql.next_due.clone()).fetch_one(pool).await
        })
        .map_err(self.failed("reading the next due account"))?;
        Ok(instant_ms(next))
    }
}

struct SummaryRow {
    id: String,
    client_name: Option<String>,
    state: Option<String>,
    generation: i64,
    expires_at: Option<i64>,
    refresh_expires_at: Option<i64>,
    obtained_at: Option<i64>,
    needs_login: i64,
    last_success_at: Option<i64>,
    last_error_class: Option<String>,
    last_error_code: Option<String>,
    last_error_at: Option<i64>,
    consecutive_failures: i64,
    next_attempt_at: Option<i64>,
    due_at_ms: Option<i64>,
}

impl SummaryRow {
    fn read<R: sqlx::Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(SummaryRow {
            id: row.try_get(0)?,
            client_name: row.try_get(1)?,
            state: row.try_get(2)?,
            generation: row.try_get(3)?,
            expires_at: row.try_get(4)?,
            refresh_expires_at: row.try_get(5)?,
            obtained_at: row.try_get(6)?,
            needs_login: row.try_get(7)?,
            last_success_at: row.try_get(8)?,
            last_error_class: row.try_get(9)?,
            last_error_code: row.try_get(10)?,
            last_error_at: row.try_get(11)?,
            consecutive_failures: row.try_get(12)?,
            next_attempt_at: row.try_get(13)?,
            due_at_ms: row.try_get(14)?,
        })
    }
}
