//! Group commit: every lease change and record write of a store goes through
//! a few writer tasks ("lanes"), each of which takes whatever has queued up
//! meanwhile and commits it in one transaction, so that one sync to disk
//! carries many refreshes. Each caller still gets its own answer: every
//! statement is its own compare-and-swap, judged by itself, and a row that
//! does not match simply returns nothing. Should a statement fail outright
//! (which would undo the whole transaction), the batch is rolled back and
//! each of its jobs runs again alone, so that one bad row never fails the
//! others. A failed commit fails every job of its batch: none of them is
//! known to have happened.
//!
//! Durability. A record write is durable before its caller hears of it: on
//! SQLite a batch holding a write commits with `synchronous=FULL`, which
//! syncs the write-ahead log, and with it every earlier frame. A batch of
//! lease changes only (take, renew, release) commits with
//! `synchronous=NORMAL` in WAL mode: it reaches the operating system but is
//! not synced, so it survives a crash of any process and may be lost only
//! with the machine (power loss, a kernel crash), which takes every holder
//! of those leases with it; a lease lost that way is simply free, and every
//! write is fenced by generation and owner. The level is set before every
//! batch, so a write's durability never rests on what an earlier batch left
//! behind. PostgreSQL commits every batch with the server's own
//! `synchronous_commit`: there a lease could be lost by a server crash that
//! its holder survives, whose write would then fail with a lost lease, so
//! leases stay durable and the batching alone saves the syncs.
//!
//! Costs. On SQLite each statement is a round trip to the connection's own
//! thread, so the level is set only when it changes: what the connection was
//! last set to is kept beside it ([`Level`]). That is sound because the
//! writer pool has exactly one connection, changed only by a lane holding
//! it, and a connection the pool opens afresh starts at `FULL` (its connect
//! options): the one belief that could cost durability, "it is `FULL`" while
//! it is `NORMAL`, cannot arise. A failure forgets what was set.
//!
//! Ordering. Jobs for one account always go to the same lane, in the order
//! they were sent, so a guard's release never overtakes its write.

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use sqlx::{Connection as _, Row as _};
use tokio::sync::{mpsc, oneshot};

use crate::backend::{Kind, Pool, dispatch};
use crate::error::{DbError, sql_error};
use crate::schedule::Derived;
use crate::store::{LoadedRow, Statements};

/// The most jobs one transaction carries.
const MOST_PER_COMMIT: usize = 128;

/// What a lane is asked to do.
pub(crate) enum Op {
    /// Take the account's lease if nobody holds it.
    Take {
        key: String,
        lease_id: i64,
        ttl: i64,
    },
    /// Extend this guard's lease if it still holds it.
    Renew {
        key: String,
        lease_id: i64,
        ttl: i64,
    },
    /// Let go of this guard's lease.
    Release { key: String, lease_id: i64 },
    /// Write a record under this guard's lease (compare-and-swap).
    Write(Box<Write>),
    /// Claim due accounts for this store, taking their leases
    /// (`DbStore::claim_due`).
    Claim {
        lease_id: i64,
        ttl: i64,
        /// Unix milliseconds.
        due: i64,
        limit: i64,
    },
}

/// A record write's values, bound as the write statements expect.
pub(crate) struct Write {
    /// Whether a record is expected (`write_some`) or none (`write_none`).
    pub some: bool,
    pub record: String,
    pub client_name: Option<String>,
    pub derived: Derived,
    pub key: String,
    pub lease_id: i64,
    pub expected: i64,
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Take { key, .. } | Op::Renew { key, .. } | Op::Release { key, .. } => key,
            Op::Write(write) => &write.key,
            Op::Claim { .. } => "",
        }
    }

    /// Whether its commit must be on disk before it is answered.
    fn durable(&self) -> bool {
        matches!(self, Op::Write(_))
    }

    fn action(&self) -> &'static str {
        match self {
            Op::Take { .. } => "taking a lease",
            Op::Renew { .. } => "renewing a lease",
            Op::Release { .. } => "releasing a lease",
            Op::Write(_) => "writing an account",
            Op::Claim { .. } => "claiming due accounts",
        }
    }
}

/// What a job did.
pub(crate) enum Done {
    /// The account's row as the lease found it; `None`: somebody else holds
    /// the lease.
    Taken(Option<Box<LoadedRow>>),
    /// Whether the lease was still this guard's.
    Renewed(bool),
    Released,
    /// The new generation, or `None` when the compare-and-swap or the fence
    /// did not match.
    Written(Option<i64>),
    /// The accounts claimed: each id, due instant and row as its lease
    /// found it.
    Claimed(Vec<(String, Option<i64>, LoadedRow)>),
}

struct Job {
    op: Op,
    /// `None` when nobody waits for the answer (a release from a dropped
    /// guard: should it fail, the lease runs out by itself).
    answer: Option<oneshot::Sender<Result<Done, DbError>>>,
}

impl Job {
    fn answer(self, result: Result<Done, DbError>) {
        if let Some(answer) = self.answer
            && answer.send(result).is_err()
        {
            // The caller stopped waiting (its task was cancelled): what was
            // done stays done, exactly as if it had heard.
        }
    }
}

/// The writer lanes of one store, or none: then each op runs at once on a
/// connection of the pool, in a transaction of its own.
pub(crate) struct Committer {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    direct: Option<Arc<Lane>>,
    /// Without lanes: the releases of dropped guards, which a task lets go
    /// of in one statement per batch.
    releases: Option<mpsc::UnboundedSender<(String, i64)>>,
    location: String,
    /// Where the store was opened: unanswered ops of a direct committer run
    /// there when sent from outside any runtime (a guard dropped in
    /// synchronous code).
    runtime: tokio::runtime::Handle,
}

/// What a lane needs to run statements.
struct Lane {
    pool: Pool,
    kind: Kind,
    location: String,
    owner: String,
    sql: Arc<Statements>,
    level: Arc<Level>,
}

/// The `synchronous` level the SQLite writer connection was last set to,
/// shared by the lanes of a store: read and changed only while holding that
/// connection, the pool's only one.
#[derive(Default)]
struct Level(AtomicU8);

const LEVEL_UNKNOWN: u8 = 0;
const LEVEL_NORMAL: u8 = 1;
const LEVEL_FULL: u8 = 2;

/// Why a batch failed: in a statement (the others may succeed alone) or in
/// its commit (nothing is known to have happened).
struct Failed {
    error: DbError,
    in_statement: bool,
}

impl Committer {
    /// Starts `lanes` writer tasks on the current Tokio runtime, committing
    /// through `pool`; with no lanes, ops run at once, each on its own. The
    /// caller is on a runtime: the store was just opened by a task on one.
    pub(crate) fn start(
        lanes: usize,
        pool: &Pool,
        kind: Kind,
        location: &str,
        owner: &str,
        sql: &Arc<Statements>,
    ) -> Self {
        let level = Arc::new(Level::default());
        let lane = || Lane {
            pool: pool.clone(),
            kind,
            location: location.to_owned(),
            owner: owner.to_owned(),
            sql: Arc::clone(sql),
            level: Arc::clone(&level),
        };
        let direct = (lanes == 0).then(|| Arc::new(lane()));
        let releases = direct.as_ref().map(|_| {
            let (send, receive) = mpsc::unbounded_channel();
            tokio::spawn(lane().release_batches(receive));
            send
        });
        let lanes = (0..lanes)
            .map(|_| {
                let (send, receive) = mpsc::unbounded_channel();
                tokio::spawn(lane().serve(receive));
                send
            })
            .collect();
        Committer {
            lanes,
            direct,
            releases,
            location: location.to_owned(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn lane(&self, key: &str) -> Option<&mpsc::UnboundedSender<Job>> {
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        let lanes = u64::try_from(self.lanes.len()).ok().filter(|n| *n > 0)?;
        let at = usize::try_from(hasher.finish() % lanes).ok()?;
        self.lanes.get(at)
    }

    fn stopped(&self) -> DbError {
        DbError::Unavailable {
            location: self.location.clone(),
            detail: "the store's writer has stopped (its runtime ended)".into(),
        }
    }

    /// Runs `op` in the next batch of its lane and returns what it did.
    pub(crate) async fn run(&self, op: Op) -> Result<Done, DbError> {
        if let Some(direct) = &self.direct {
            return direct.alone(&op).await;
        }
        let (answer, answered) = oneshot::channel();
        self.lane(op.key())
            .ok_or_else(|| self.stopped())?
            .send(Job {
                op,
                answer: Some(answer),
            })
            .map_err(|_| self.stopped())?;
        answered.await.map_err(|_| self.stopped())?
    }

    /// Starts `op` without waiting for it; returns whether it was started
    /// (not once the lanes' runtime has ended).
    pub(crate) fn send(&self, op: Op) -> bool {
        if let (Some(releases), Op::Release { key, lease_id }) = (&self.releases, &op) {
            return releases.send((key.clone(), *lease_id)).is_ok();
        }
        if let Some(direct) = &self.direct {
            let runtime =
                tokio::runtime::Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
            let direct = Arc::clone(direct);
            runtime.spawn(async move {
                if let Err(e) = direct.alone(&op).await {
                    // Nobody waits for it (see `Job::answer`).
                    drop(e);
                }
            });
            return true;
        }
        self.lane(op.key())
            .is_some_and(|lane| lane.send(Job { op, answer: None }).is_ok())
    }
}

/// Runs one op on `$exec` (a connection or a transaction), as an expression
/// of type `Result<Done, sqlx::Error>`.
macro_rules! run_op {
    ($lane:expr, $exec:expr, $op:expr) => {{
        let lane: &Lane = $lane;
        let owner = lane.owner.as_str();
        match $op {
            Op::Take { key, lease_id, ttl } => sqlx::query(lane.sql.try_lock.clone())
                .bind(key.as_str())
                .bind(owner)
                .bind(*lease_id)
                .bind(*ttl)
                .fetch_optional($exec)
                .await
                .and_then(|row| {
                    row.map(|row| LoadedRow::read(&row).map(Box::new))
                        .transpose()
                })
                .map(Done::Taken),
            Op::Renew { key, lease_id, ttl } => sqlx::query(lane.sql.renew.clone())
                .bind(key.as_str())
                .bind(owner)
                .bind(*lease_id)
                .bind(*ttl)
                .execute($exec)
                .await
                .map(|r| Done::Renewed(r.rows_affected() == 1)),
            Op::Release { key, lease_id } => sqlx::query(lane.sql.release.clone())
                .bind(key.as_str())
                .bind(owner)
                .bind(*lease_id)
                .execute($exec)
                .await
                .map(|_| Done::Released),
            Op::Write(w) => {
                let statement = if w.some {
                    &lane.sql.write_some
                } else {
                    &lane.sql.write_none
                };
                let d = &w.derived;
                crate::backend::bind_derived!(
                    sqlx::query_scalar(statement.clone())
                        .bind(w.record.as_str())
                        .bind(w.client_name.as_deref()),
                    d
                )
                .bind(w.key.as_str())
                .bind(owner)
                .bind(w.lease_id)
                .bind(w.expected)
                .fetch_optional($exec)
                .await
                .map(Done::Written)
            }
            Op::Claim {
                lease_id,
                ttl,
                due,
                limit,
            } => sqlx::query(lane.sql.claim.clone())
                .bind(owner)
                .bind(*lease_id)
                .bind(*ttl)
                .bind(*due)
                .bind(*limit)
                .fetch_all($exec)
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map(|row| {
                            Ok((
                                row.try_get(0)?,
                                row.try_get(1)?,
                                LoadedRow::read_at(row, 2)?,
                            ))
                        })
                        .collect::<Result<Vec<_>, sqlx::Error>>()
                })
                .map(Done::Claimed),
        }
    }};
}

/// Lets go of the owner's leases `$pairs` (account id, lease id) in one
/// statement on `$exec`, as an expression of type `Result<(), sqlx::Error>`
/// (a macro for the same reason as `run_op!`: each backend's executor).
macro_rules! release_many {
    ($sql:expr, $owner:expr, $pairs:expr, $exec:expr) => {{
        let pairs: &[(&str, i64)] = $pairs;
        match serde_json::to_string(pairs) {
            Ok(pairs) => sqlx::query($sql.release_many.clone())
                .bind($owner)
                .bind(pairs)
                .execute($exec)
                .await
                .map(drop),
            Err(e) => Err(sqlx::Error::Encode(Box::new(e))),
        }
    }};
}

impl Lane {
    /// Lets go of the queued leases, whatever queued up meanwhile in one
    /// statement. Nobody waits for the answer: a release that fails leaves a
    /// lease that runs out by itself.
    async fn release_batches(self, mut queue: mpsc::UnboundedReceiver<(String, i64)>) {
        let mut batch = Vec::with_capacity(MOST_PER_COMMIT);
        while queue.recv_many(&mut batch, MOST_PER_COMMIT).await > 0 {
            let pairs: Vec<(&str, i64)> = batch.iter().map(|(k, l)| (k.as_str(), *l)).collect();
            let released = dispatch!(&self.pool, pool => {
                release_many!(self.sql, self.owner.as_str(), &pairs, pool)
            });
            if let Err(e) = released {
                drop(e);
            }
            batch.clear();
        }
    }

    async fn serve(self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let mut batch = Vec::with_capacity(MOST_PER_COMMIT);
        while jobs.recv_many(&mut batch, MOST_PER_COMMIT).await > 0 {
            self.commit(&mut batch).await;
        }
    }

    /// Commits `batch` (leaving it empty) and answers each job.
    async fn commit(&self, batch: &mut Vec<Job>) {
        let ops: Vec<&Op> = batch.iter().map(|job| &job.op).collect();
        let durable = ops.iter().any(|op| op.durable());
        let attempt = self.attempt(&ops, durable).await;
        drop(ops);
        match attempt {
            Ok(done) => {
                for (job, done) in batch.drain(..).zip(done) {
                    job.answer(Ok(done));
                }
            }
            Err(failed) if failed.in_statement && batch.len() > 1 => {
                for job in batch.drain(..) {
                    let result = self.alone(&job.op).await;
                    job.answer(result);
                }
            }
            Err(failed) => {
                for job in batch.drain(..) {
                    job.answer(Err(failed.error.clone()));
                }
            }
        }
    }

    /// Runs `op` on its own.
    async fn alone(&self, op: &Op) -> Result<Done, DbError> {
        let mut done = self
            .attempt(&[op], op.durable())
            .await
            .map_err(|failed| failed.error)?;
        done.pop().ok_or_else(|| DbError::Sql {
            location: self.location.clone(),
            action: op.action(),
            detail: "the statement returned nothing".into(),
        })
    }

    /// Runs `ops` in one transaction (a single op on its own, which is one
    /// already) and returns what each did, in order.
    async fn attempt(&self, ops: &[&Op], durable: bool) -> Result<Vec<Done>, Failed> {
        let failed = |action, in_statement| {
            move |e| Failed {
                error: sql_error(&self.location, action, e),
                in_statement,
            }
        };
        let mut done = Vec::with_capacity(ops.len());
        dispatch!(&self.pool, pool => {
            let mut conn = pool.acquire().await.map_err(failed("connecting", false))?;
            let wanted = if durable { LEVEL_FULL } else { LEVEL_NORMAL };
            if self.kind == Kind::Sqlite && self.level.0.load(Ordering::Acquire) != wanted {
                self.level.0.store(LEVEL_UNKNOWN, Ordering::Release);
                let pragma = if durable {
                    "PRAGMA synchronous = FULL"
                } else {
                    "PRAGMA synchronous = NORMAL"
                };
                sqlx::query(pragma)
                    .execute(&mut *conn)
                    .await
                    .map_err(failed("setting the durability", false))?;
                self.level.0.store(wanted, Ordering::Release);
            }
            if let [op] = ops {
                let one = run_op!(self, &mut *conn, *op).map_err(failed(op.action(), false))?;
                done.push(one);
            } else {
                let begin = match self.kind {
                    Kind::Sqlite => "BEGIN IMMEDIATE",
                    Kind::Postgres => "BEGIN",
                };
                let mut tx = conn
                    .begin_with(begin)
                    .await
                    .map_err(failed("beginning a batch", false))?;
                // Releases first, in one statement. None of them can be of a
                // lease another op of the batch needs: a guard is released
                // only after its take and its writes were answered.
                let releases: Vec<(&str, i64)> = ops
                    .iter()
                    .filter_map(|op| match op {
                        Op::Release { key, lease_id } => Some((key.as_str(), *lease_id)),
                        _ => None,
                    })
                    .collect();
                let combined = releases.len() > 1;
                if combined {
                    release_many!(self.sql, self.owner.as_str(), &releases, &mut *tx)
                        .map_err(failed("releasing leases", true))?;
                }
                for op in ops {
                    let one = match op {
                        Op::Release { .. } if combined => Done::Released,
                        _ => run_op!(self, &mut *tx, *op).map_err(failed(op.action(), true))?,
                    };
                    done.push(one);
                }
                tx.commit().await.map_err(failed("committing a batch", false))?;
            }
        });
        Ok(done)
    }
}
