//! A cached token for long-running programs (docs/DESIGN.md §11): one session of
//! a [`Keeper`], read without a lock, without I/O and without reading the clock.
//!
//! [`CachedToken::get`] is two atomic loads: the current entry (an
//! [`arc_swap::ArcSwapOption`], about as cheap as reading a plain `Arc`) and its
//! `usable` flag. The clock is read by a background task instead, never by a
//! reader: it clears the flag shortly before the token expires, and with
//! [`CachedToken::refresh_ahead`] it also refreshes the session at the start of
//! the policy's refresh window, through the keeper (single flight, lock, policy),
//! while readers go on getting the still-valid token. No reader ever waits for
//! the network while a usable token is held.
//!
//! ```no_run
//! use authkeep::{FileStore, Keeper, SessionKey};
//!
//! # async fn run() -> Result<(), authkeep::Error> {
//! let keeper = Keeper::builder(FileStore::new("/var/lib/myapp/sessions")).build();
//! let key = SessionKey::new("account-42").expect("a valid name");
//! // Refreshes ahead of expiry until `cached` (and every clone of it) is dropped.
//! let cached = keeper.cached(key).refresh_ahead();
//! loop {
//!     // Tens of nanoseconds while a usable token is held; the keeper otherwise.
//!     let token = cached.token().await?;
//!     # let _ = token.access_token.expose_secret();
//!     // Send `token.access_token.expose_secret()`. If the server answers 401:
//!     let token = cached.token_after_rejection(&token.access_token).await?;
//!     # let _ = token;
//! }
//! # }
//! ```
//!
//! # What the background task does
//!
//! One task per cached session, started by [`CachedToken::refresh_ahead`] or,
//! without refresh-ahead, by the first [`CachedToken::token`] that stores a
//! token. It needs a tokio runtime with the time driver, like the keeper itself.
//!
//! - It stops serving a token [one second](EXPIRY_MARGIN) before its expiry, so
//!   that a timer that fires a little late never hands out an expired token. It
//!   reads the clock at least every [ten seconds](LONGEST_SLEEP), so that a
//!   clock that jumps or a machine that sleeps is noticed within that time.
//! - With refresh-ahead, it asks the keeper for a token when the keeper's
//!   decision would turn to "refresh" ([`Policy::window`] before expiry, or when
//!   a recorded back-off ends). A refresh that fails while the token is valid is
//!   retried when the keeper's back-off says ([`UseReason::BackingOff`]); after
//!   expiry, with the same back-off counted by the task itself. Attempts are at
//!   least a second apart, whatever the policy says: it never spins.
//! - When the session needs a login (no session, the provider ended it, the
//!   provider asks for interaction once the token has expired), it stops
//!   refreshing; [`CachedToken::get`] returns `None` and
//!   [`CachedToken::needs_login`] says so.
//! - It follows changes made through any clone of the same keeper (a refresh by
//!   another caller, a login, a logout, an ended session) by reading the store
//!   when told of one. Changes made by other processes are read at the next
//!   check (the start of the window, or expiry): until then the cache holds
//!   what it last read, which stays valid.
//! - Dropping the last clone of the [`CachedToken`] aborts the task. A refresh
//!   the task has started runs in a task of its own and is never cut short, so
//!   a rotated refresh token is always saved.
//!
//! Without refresh-ahead, [`CachedToken::token`] serves the cached token while
//! the keeper would serve it without a refresh, and otherwise calls
//! [`Keeper::token`], which refreshes in the window as usual, and stores the
//! result; [`CachedToken::get`] serves it until shortly before expiry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{Notify, broadcast};
use tokio::task::AbortHandle;

use crate::error::Error;
use crate::keeper::{Keeper, Token};
use crate::policy::{Decision, Demand, Policy, UseReason};
use crate::secret::AccessToken;
use crate::session::{SessionKey, Versioned, back_off};
use crate::store::Store;
use crate::token::{saturating_add, saturating_sub};

/// A cached token stops being served this long before it expires, so that a
/// timer that fires late never hands out an expired token.
pub const EXPIRY_MARGIN: SignedDuration = SignedDuration::from_secs(1);
/// The background task reads the clock at least this often, so that a clock
/// that jumps, or a machine that was asleep, is noticed within this time.
pub const LONGEST_SLEEP: Duration = Duration::from_secs(10);
/// The shortest pause between two refreshes the background task starts.
const MIN_PAUSE: SignedDuration = SignedDuration::from_secs(1);

/// A token for one session of a [`Keeper`], read without a lock, I/O or clock.
///
/// Cheap to clone: clones share the cached entry and the background task,
/// which stops when the last clone is dropped. See the [module
/// documentation](self) for what the task does.
///
/// ```no_run
/// use authkeep::{Demand, MemoryStore, Keeper, SessionKey};
///
/// # async fn run() -> Result<(), authkeep::Error> {
/// let keeper = Keeper::builder(MemoryStore::default()).build();
/// let cached = keeper.cached(SessionKey::new("worker").expect("a valid name"));
/// let token = cached.token().await?; // the keeper's token(), stored
/// assert!(cached.get().is_some()); // from now on, without the keeper
/// # let _ = token;
/// # Ok(()) }
/// ```
pub struct CachedToken<S: Store> {
    inner: Arc<Shared<S>>,
}

impl<S: Store> Clone for CachedToken<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store> std::fmt::Debug for CachedToken<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("key", &self.inner.key)
            .field("usable", &self.get().is_some())
            .field("needs_login", &self.needs_login())
            .field("refresh_ahead", &self.inner.refreshes_ahead())
            .finish_non_exhaustive()
    }
}

/// What every clone of a cached token shares.
struct Shared<S: Store> {
    keeper: Keeper<S>,
    key: SessionKey,
    slot: Arc<Slot>,
    driver: Mutex<Option<Driver>>,
}

/// The background task of a cached token.
struct Driver {
    task: AbortHandle,
    ahead: bool,
}

impl<S: Store> Drop for Shared<S> {
    fn drop(&mut self) {
        let driver = self
            .driver
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(driver) = driver.take() {
            driver.task.abort();
        }
    }
}

impl<S: Store> Shared<S> {
    fn driver(&self) -> MutexGuard<'_, Option<Driver>> {
        // The guarded value is replaced whole: a panic cannot leave it half-set.
        self.driver.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refreshes_ahead(&self) -> bool {
        self.driver().as_ref().is_some_and(|d| d.ahead)
    }

    /// Starts the background task on `runtime` unless one that does as much
    /// runs already. Returns whether it refreshes ahead.
    fn start(&self, runtime: &tokio::runtime::Handle, ahead: bool) -> bool {
        let mut driver = self.driver();
        if let Some(running) = driver.as_ref()
            && !running.task.is_finished()
            && (running.ahead || !ahead)
        {
            return running.ahead;
        }
        // A task whose runtime shut down is replaced as it was.
        let ahead = ahead || driver.as_ref().is_some_and(|d| d.ahead);
        // From now on only the new task may take the entry out of service as
        // it ends: the id changes before the previous task is aborted, since
        // it may end at once, on another thread.
        let id = self
            .slot
            .driver
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        if let Some(previous) = driver.take() {
            previous.task.abort();
        }
        let task = runtime.spawn(drive(
            self.keeper.clone(),
            self.key.clone(),
            Arc::clone(&self.slot),
            ahead,
            id,
        ));
        *driver = Some(Driver {
            task: task.abort_handle(),
            ahead,
        });
        ahead
    }
}

/// A per-thread (or per-task) reader of a [`CachedToken`]: it keeps the entry
/// it last saw and checks with one atomic load whether a newer one was cached,
/// so a read of an unchanged token costs about as much as reading a field.
pub struct TokenReader {
    cache: arc_swap::Cache<Arc<ArcSwapOption<Entry>>, Option<Arc<Entry>>>,
}

impl TokenReader {
    /// The cached token, if one is usable (as [`CachedToken::get`]): no lock,
    /// no I/O, no clock, no reference count.
    pub fn get(&mut self) -> Option<&Token> {
        let entry = self.cache.load().as_ref()?;
        entry
            .usable
            .load(Ordering::Relaxed)
            .then_some(&*entry.token)
    }
}

impl std::fmt::Debug for TokenReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReader").finish_non_exhaustive()
    }
}

/// Where readers find the token, and what the background task is to do next.
#[derive(Default)]
struct Slot {
    /// Shared with [`TokenReader`]s, which keep their own handle on it.
    entry: Arc<ArcSwapOption<Entry>>,
    state: Mutex<State>,
    /// Wakes the background task when the schedule changed.
    replanned: Notify,
    needs_login: AtomicBool,
    /// The id of the current background task.
    driver: AtomicU64,
}

/// One token as cached. The flags only ever go from true to false; a new token
/// is a new entry. Aligned to cache lines of its own, so that readers on other
/// cores, who only read it, do not share a line with a reference count that
/// they write.
#[repr(align(128))]
struct Entry {
    token: Arc<Token>,
    /// Cleared shortly before the token expires.
    usable: AtomicBool,
    /// Cleared when the keeper would refresh rather than serve it (without
    /// refresh-ahead): [`CachedToken::token`] then asks the keeper.
    fresh: AtomicBool,
}

/// Changed only under the slot's mutex, together with the entry.
#[derive(Default)]
struct State {
    schedule: Schedule,
    /// The store generation the installed plan was read at, if any.
    generation: Option<u64>,
    /// A token a resource server rejected: never cached again.
    rejected: Option<AccessToken>,
}

/// What the background task waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Schedule {
    /// Counts installed plans: a read that began before the last install
    /// replaces it only if it found a later generation.
    epoch: u64,
    /// When the keeper's decision turns to "refresh"; `None` once acted on.
    due_at: Option<Timestamp>,
    /// When the entry stops being served; `None` once acted on.
    stale_at: Option<Timestamp>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state whole: a panic cannot
        // leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn schedule(&self) -> Schedule {
        self.state().schedule
    }

    /// Installs `plan`, made from a read that began when the epoch was
    /// `seen`, unless another plan was installed since and `plan` was not read
    /// at a later generation of the record. Returns whether it was installed.
    fn install(&self, plan: Plan, seen: u64) -> bool {
        let mut state = self.state();
        let later = matches!(
            (plan.generation, state.generation),
            (Some(read), Some(held)) if read > held
        );
        if state.schedule.epoch != seen && !later {
            return false;
        }
        // The store may still hold a token a server rejected (its
        // replacement failed, or is not saved yet): it is not served.
        let token = plan
            .token
            .filter(|t| state.rejected.as_ref() != Some(&t.access_token));
        state.schedule = Schedule {
            epoch: state.schedule.epoch.wrapping_add(1),
            due_at: plan.due_at,
            stale_at: token.as_ref().and(plan.stale_at),
        };
        state.generation = plan.generation;
        self.needs_login.store(plan.login, Ordering::Relaxed);
        self.entry.store(token.map(|token| {
            Arc::new(Entry {
                token: Arc::new(token),
                usable: AtomicBool::new(true),
                fresh: AtomicBool::new(plan.fresh),
            })
        }));
        drop(state);
        self.replanned.notify_one();
        true
    }

    /// The entry of `epoch` reached its stale instant: it is no longer served.
    fn expire(&self, epoch: u64) {
        let mut state = self.state();
        if state.schedule.epoch == epoch {
            if let Some(entry) = self.entry.load().as_ref() {
                entry.fresh.store(false, Ordering::Relaxed);
                entry.usable.store(false, Ordering::Relaxed);
            }
            state.schedule.stale_at = None;
        }
    }

    /// Nothing is served until a new entry is installed.
    fn retire(&self) {
        let mut state = self.state();
        state.schedule = Schedule {
            epoch: state.schedule.epoch.wrapping_add(1),
            ..Schedule::default()
        };
        state.generation = None;
        self.entry.store(None);
    }

    /// The keeper would now refresh rather than serve the entry of `epoch`.
    fn unfresh(&self, epoch: u64) {
        let mut state = self.state();
        if state.schedule.epoch == epoch {
            if let Some(entry) = self.entry.load().as_ref() {
                entry.fresh.store(false, Ordering::Relaxed);
            }
            state.schedule.due_at = None;
        }
    }

    /// A resource server rejected `rejected`: it is no longer served, nor ever
    /// cached again. Returns the epoch to install the keeper's answer against,
    /// or a different, usable token already cached.
    fn reject(&self, rejected: &AccessToken) -> Result<u64, Arc<Token>> {
        let mut state = self.state();
        if let Some(entry) = self.entry.load().as_ref() {
            if entry.token.access_token == *rejected {
                entry.fresh.store(false, Ordering::Relaxed);
                entry.usable.store(false, Ordering::Relaxed);
            } else if entry.usable.load(Ordering::Relaxed) {
                return Err(Arc::clone(&entry.token));
            }
        }
        state.rejected = Some(rejected.clone());
        Ok(state.schedule.epoch)
    }
}

/// What a read of the session amounts to for the cache: a pure function of the
/// record, the policy and `now`, like the keeper's decision it is made from.
#[derive(Debug, PartialEq)]
struct Plan {
    /// The generation of the record read, if there was one.
    generation: Option<u64>,
    /// The token to serve, if it is usable beyond the margin.
    token: Option<Token>,
    /// Whether [`CachedToken::token`] may serve it without asking the keeper.
    fresh: bool,
    /// When the keeper's decision turns to "refresh".
    due_at: Option<Timestamp>,
    /// When to stop serving the token.
    stale_at: Option<Timestamp>,
    /// Whether the session needs a login.
    login: bool,
}

impl Plan {
    /// Nothing to serve or refresh until the session changes.
    fn login(generation: Option<u64>) -> Self {
        Self {
            generation,
            token: None,
            fresh: false,
            due_at: None,
            stale_at: None,
            login: true,
        }
    }

    fn new(loaded: Option<&Versioned>, policy: &Policy, now: Timestamp, ahead: bool) -> Self {
        let generation = loaded.map(|v| v.generation);
        let record = loaded.map(|v| &v.record);
        let decision = policy.decide(record, Demand::new(), now);
        let tokens = record.and_then(|r| r.tokens.as_ref());
        let window_start = || {
            let tokens = tokens?;
            let window = policy.window(tokens.lifetime());
            tokens.expires_at.map(|at| saturating_sub(at, window))
        };
        let due_at = match decision {
            Decision::UseStored(UseReason::Valid | UseReason::ShorterThanAsked) => window_start(),
            Decision::UseStored(UseReason::BackingOff(until))
            | Decision::WaitForProvider(until) => Some(until),
            Decision::UseStored(UseReason::NoExpiryFromProvider) => policy
                .max_age
                .zip(tokens)
                .map(|(age, t)| saturating_add(t.obtained_at, age)),
            Decision::Refresh { .. } => Some(now),
            Decision::UseStored(UseReason::CannotRenew) | Decision::RequireLogin(_) => None,
        };
        if matches!(decision, Decision::RequireLogin(_)) {
            return Self::login(generation);
        }
        let serve = tokens.filter(|t| t.is_usable(saturating_add(now, EXPIRY_MARGIN)));
        Self {
            generation,
            token: serve.map(|t| Token::from_tokens(t, false)),
            fresh: ahead || matches!(decision, Decision::UseStored(_)),
            due_at,
            stale_at: serve
                .and_then(|t| t.expires_at)
                .map(|at| saturating_sub(at, EXPIRY_MARGIN)),
            login: false,
        }
    }
}

impl<S: Store> Keeper<S> {
    /// A cached token for `key`: see [`CachedToken`].
    pub fn cached(&self, key: SessionKey) -> CachedToken<S> {
        CachedToken::new(self.clone(), key)
    }
}

impl<S: Store> CachedToken<S> {
    /// A cache for `key`'s token, empty until [`CachedToken::token`] or the
    /// refresh-ahead task fills it.
    pub fn new(keeper: Keeper<S>, key: SessionKey) -> Self {
        Self {
            inner: Arc::new(Shared {
                keeper,
                key,
                slot: Arc::default(),
                driver: Mutex::new(None),
            }),
        }
    }

    /// Starts the background task that refreshes the session ahead of expiry
    /// and keeps this cache filled (see the [module documentation](self)). It
    /// runs until the last clone of this cache is dropped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn refresh_ahead(self) -> Self {
        self.inner.start(&tokio::runtime::Handle::current(), true);
        self
    }

    /// The session this cache is for.
    pub fn key(&self) -> &SessionKey {
        &self.inner.key
    }

    /// The keeper behind this cache.
    pub fn keeper(&self) -> &Keeper<S> {
        &self.inner.keeper
    }

    /// The cached token, if one is usable: no lock, no I/O, no clock. `None`
    /// before the cache is filled, within a second of the token's expiry, and
    /// once the session needs a login.
    pub fn get(&self) -> Option<Arc<Token>> {
        let entry = self.inner.slot.entry.load();
        let entry = entry.as_ref()?;
        entry
            .usable
            .load(Ordering::Relaxed)
            .then(|| Arc::clone(&entry.token))
    }

    /// Calls `read` with the cached token, if one is usable, as
    /// [`CachedToken::get`] but without taking a reference to it: the
    /// cheapest read when the token is only looked at (to build a header, say)
    /// by many threads at once. `read` should be brief.
    pub fn with<R>(&self, read: impl FnOnce(&Token) -> R) -> Option<R> {
        let entry = self.inner.slot.entry.load();
        let entry = entry.as_ref()?;
        entry
            .usable
            .load(Ordering::Relaxed)
            .then(|| read(&entry.token))
    }

    /// A reader of its own for one thread or task: its [`TokenReader::get`] is
    /// the cheapest read there is (one atomic load while the token is
    /// unchanged), at the price of `&mut` access.
    pub fn reader(&self) -> TokenReader {
        TokenReader {
            cache: arc_swap::Cache::new(Arc::clone(&self.inner.slot.entry)),
        }
    }

    /// Whether the session needs a login, as last learned: the refresh-ahead
    /// task has stopped, and nothing is served until the session changes.
    pub fn needs_login(&self) -> bool {
        self.inner.slot.needs_login.load(Ordering::Relaxed)
    }

    /// A usable token: the cached one when it can be served as it is (as
    /// [`CachedToken::get`], and without refresh-ahead only while the keeper
    /// would not refresh it), else [`Keeper::token`]'s, which is then cached.
    pub async fn token(&self) -> Result<Arc<Token>, Error> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let shared = &self.inner;
        let seen = shared.slot.schedule().epoch;
        let outcome = shared.keeper.token(&shared.key, Demand::new()).await;
        self.learn(seen, outcome.as_ref().err()).await;
        outcome.map(Arc::new)
    }

    /// A resource server rejected `rejected` (a 401): as
    /// [`Keeper::token_after_rejection`], and the rejected token is never
    /// served from this cache again. A different usable token already cached
    /// is returned at once.
    pub async fn token_after_rejection(&self, rejected: &AccessToken) -> Result<Arc<Token>, Error> {
        let shared = &self.inner;
        let seen = match shared.slot.reject(rejected) {
            Ok(seen) => seen,
            Err(newer) => return Ok(newer),
        };
        let outcome = shared
            .keeper
            .token_after_rejection(&shared.key, rejected)
            .await;
        self.learn(seen, outcome.as_ref().err()).await;
        outcome.map(Arc::new)
    }

    /// The hot read of [`CachedToken::token`].
    fn fresh(&self) -> Option<Arc<Token>> {
        let entry = self.inner.slot.entry.load();
        let entry = entry.as_ref()?;
        let serve = entry.usable.load(Ordering::Relaxed) && entry.fresh.load(Ordering::Relaxed);
        serve.then(|| Arc::clone(&entry.token))
    }

    /// Caches what a call to the keeper found, read back from the store with
    /// what the schedule needs (issue instant, back-off). Nothing is cached
    /// where no task can run to take it out of service before it expires.
    async fn learn(&self, seen: u64, failure: Option<&Error>) {
        let shared = &self.inner;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ahead = shared.start(&runtime, false);
        let login = failure.is_some_and(Error::is_login_required);
        // Any other failure means no usable token: the cache keeps what it
        // holds (at most an entry on its way out of service).
        if failure.is_none() || login {
            let (keeper, key) = (&shared.keeper, &shared.key);
            sync(keeper, key, &shared.slot, ahead, seen, login).await;
        }
    }
}

/// When the background task may start its next refresh.
struct Pause {
    failures: u32,
    not_before: Timestamp,
}

impl Pause {
    fn new() -> Self {
        Self {
            failures: 0,
            not_before: Timestamp::MIN,
        }
    }

    fn succeeded(&mut self, now: Timestamp) {
        self.failures = 0;
        self.not_before = saturating_add(now, MIN_PAUSE);
    }

    fn failed(&mut self, now: Timestamp) {
        self.failures = self.failures.saturating_add(1);
        self.not_before = saturating_add(now, back_off(self.failures).max(MIN_PAUSE));
    }
}

/// The background task: takes the entry out of service before it expires,
/// follows the session's changes and, `ahead`, refreshes when due.
async fn drive<S: Store>(
    keeper: Keeper<S>,
    key: SessionKey,
    slot: Arc<Slot>,
    ahead: bool,
    id: u64,
) {
    let _retire = Retire(&slot, id);
    // Subscribed before the first read, so that no change is missed.
    let mut changes = Some(keeper.inner.changed_keys.subscribe());
    let mut pause = Pause::new();
    if ahead {
        refresh(&keeper, &key, &slot, &mut pause).await;
    }
    loop {
        let now = keeper.now();
        let schedule = slot.schedule();
        if schedule.stale_at.is_some_and(|at| at <= now) {
            slot.expire(schedule.epoch);
            // What now? A refresh is due, or a login is needed: the store says.
            sync(&keeper, &key, &slot, ahead, schedule.epoch, false).await;
            continue;
        }
        let due_at = schedule.due_at.map(|at| at.max(pause.not_before));
        if due_at.is_some_and(|at| at <= now) {
            if ahead {
                refresh(&keeper, &key, &slot, &mut pause).await;
            } else {
                slot.unfresh(schedule.epoch);
            }
            continue;
        }
        let wake = [schedule.stale_at, due_at].into_iter().flatten().min();
        let sleep = wake.map_or(LONGEST_SLEEP, |at| {
            Duration::try_from(at.duration_since(now))
                .unwrap_or(Duration::ZERO)
                .min(LONGEST_SLEEP)
        });
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = slot.replanned.notified() => {}
            () = changed(&mut changes, &key) => {
                let seen = slot.schedule().epoch;
                sync(&keeper, &key, &slot, ahead, seen, false).await;
            }
        }
    }
}

/// Takes the entry out of service when the background task with this id ends,
/// unless another has replaced it: when its runtime shuts down, nothing else
/// would do so at the entry's expiry.
struct Retire<'a>(&'a Slot, u64);

impl Drop for Retire<'_> {
    fn drop(&mut self) {
        if self.0.driver.load(Ordering::Acquire) == self.1 {
            self.0.retire();
        }
    }
}

/// Waits until `key`'s tokens changed (or changes were missed).
async fn changed(changes: &mut Option<broadcast::Receiver<SessionKey>>, key: &SessionKey) {
    loop {
        let Some(receiver) = changes.as_mut() else {
            return std::future::pending().await;
        };
        match receiver.recv().await {
            Ok(changed) if changed == *key => return,
            Ok(_) => {}
            // Some were missed: read the store to be sure.
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // The keeper is gone (it cannot be while the task holds a clone):
            // nothing more to follow.
            Err(broadcast::error::RecvError::Closed) => *changes = None,
        }
    }
}

/// One refresh-ahead step: asks the keeper for a token (it refreshes when its
/// decision says so) and caches what the store then holds.
async fn refresh<S: Store>(keeper: &Keeper<S>, key: &SessionKey, slot: &Slot, pause: &mut Pause) {
    let seen = slot.schedule().epoch;
    // The keeper runs a refresh in a task of its own: aborting this one (the
    // cache was dropped) does not cut short a refresh whose answer is not yet
    // saved.
    let outcome = keeper.token(key, Demand::new()).await;
    let now = keeper.now();
    let login = match outcome {
        Ok(_) => {
            pause.succeeded(now);
            false
        }
        Err(error) if error.is_login_required() => true,
        // A failure: its token, if still valid, was served with a recorded
        // back-off that the store now shows.
        Err(_) => {
            pause.failed(now);
            false
        }
    };
    sync(keeper, key, slot, true, seen, login).await;
}

/// Caches what the store holds for `key`, unless something newer was cached
/// since the epoch was `seen`; with `login`, the keeper just said that the
/// session needs a login, and nothing is served or refreshed until it changes.
async fn sync<S: Store>(
    keeper: &Keeper<S>,
    key: &SessionKey,
    slot: &Slot,
    ahead: bool,
    seen: u64,
    login: bool,
) {
    let plan = match keeper.session(key).await {
        Ok(loaded) if login => Plan::login(loaded.map(|v| v.generation)),
        Ok(loaded) => Plan::new(loaded.as_ref(), keeper.policy(), keeper.now(), ahead),
        Err(_) if login => Plan::login(None),
        // The entry stays until its stale instant; with refresh-ahead, the
        // next attempt meets the store's error and backs off.
        Err(_) => return,
    };
    slot.install(plan, seen);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureClass;
    use crate::session::{Client, Failure, Health, Record};
    use crate::token::{ExpirySource, Origin, TokenSet};

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    /// A record whose hour-long access token expires `left` seconds from now.
    fn record(left: i64, refresh: bool) -> Record {
        let expires_at = now() + secs(left);
        Record {
            client: Some(Client::new("https://idp.example", "c")),
            tokens: Some(TokenSet {
                access_token: AccessToken::new("at"),
                token_type: "Bearer".into(),
                refresh_token: refresh.then(|| crate::RefreshToken::new("rt")),
                scope: None,
                id_token: None,
                expires_at: Some(expires_at),
                issued_at: Some(expires_at - secs(3600)),
                refresh_expires_at: None,
                expiry_source: ExpirySource::ExpiresIn,
                obtained_at: expires_at - secs(3600),
                origin: Origin::Refresh,
            }),
            health: Health::default(),
            clock_skew_secs: None,
        }
    }

    fn plan(record: &Record, ahead: bool) -> Plan {
        read(1, record, ahead)
    }

    /// A plan made from `record` read at `generation`.
    fn read(generation: u64, record: &Record, ahead: bool) -> Plan {
        let loaded = Versioned {
            generation,
            record: record.clone(),
        };
        Plan::new(Some(&loaded), &Policy::default(), now(), ahead)
    }

    #[test]
    fn a_valid_token_is_due_at_the_start_of_its_window_and_stale_before_expiry() {
        // Lifetime 3600 s: window min(300 s, 1800 s) = 300 s.
        let plan = plan(&record(1000, true), false);
        assert!(plan.token.is_some() && plan.fresh && !plan.login);
        assert_eq!(plan.due_at, Some(now() + secs(700)));
        assert_eq!(plan.stale_at, Some(now() + secs(999)));
    }

    #[test]
    fn inside_the_window_only_refresh_ahead_serves_it_as_fresh() {
        let passive = plan(&record(100, true), false);
        assert!(passive.token.is_some() && !passive.fresh);
        assert_eq!(passive.due_at, Some(now()));
        let ahead = plan(&record(100, true), true);
        assert!(ahead.token.is_some() && ahead.fresh);
    }

    #[test]
    fn a_back_off_postpones_the_next_refresh() {
        let mut backing_off = record(100, true);
        let until = now() + secs(30);
        backing_off.health.next_attempt_at = Some(until);
        let plan = plan(&backing_off, false);
        assert!(plan.fresh, "the keeper would serve it as it is");
        assert_eq!(plan.due_at, Some(until));
    }

    #[test]
    fn a_token_within_the_margin_of_expiry_is_not_cached() {
        let plan = plan(&record(1, true), true);
        assert_eq!(plan.token, None);
        assert_eq!(plan.stale_at, None);
        assert_eq!(plan.due_at, Some(now()), "a refresh is due");
    }

    #[test]
    fn a_session_that_cannot_renew_is_served_until_expiry_and_never_due() {
        let plan = plan(&record(100, false), true);
        assert!(plan.token.is_some());
        assert_eq!(plan.due_at, None);
        assert_eq!(plan.stale_at, Some(now() + secs(99)));
    }

    #[test]
    fn an_ended_session_or_none_needs_a_login() {
        let mut ended = record(100, true);
        ended.tokens = None;
        ended.health.last_error = Some(Failure {
            class: FailureClass::SessionDead,
            message: String::new(),
            at: now(),
        });
        assert_eq!(plan(&ended, true), Plan::login(Some(1)));
        assert_eq!(
            Plan::new(None, &Policy::default(), now(), true),
            Plan::login(None)
        );
    }

    #[test]
    fn an_older_read_never_replaces_a_newer_one() {
        let slot = Slot::default();
        let seen = slot.schedule().epoch;
        assert!(slot.install(read(2, &record(1000, true), false), seen));
        assert!(!slot.install(Plan::login(None), seen), "began before");
        assert!(
            !slot.install(read(1, &record(1000, true), false), seen),
            "an earlier generation"
        );
        assert!(
            !slot.install(read(2, &record(900, true), false), seen),
            "the same generation"
        );
        assert_eq!(slot.schedule().stale_at, Some(now() + secs(999)));
        assert!(slot.entry.load().is_some());
        assert!(!slot.needs_login.load(Ordering::Relaxed));
        assert!(
            slot.install(read(3, &record(2000, true), false), seen),
            "a later generation, though its read began before"
        );
        assert_eq!(slot.schedule().stale_at, Some(now() + secs(1999)));
    }

    #[test]
    fn an_expired_entry_is_no_longer_served_and_a_rejected_token_never_again() {
        let slot = Slot::default();
        assert!(slot.install(plan(&record(1000, true), false), 0));
        let usable = |slot: &Slot| {
            slot.entry
                .load()
                .as_ref()
                .is_some_and(|e| e.usable.load(Ordering::Relaxed))
        };
        assert!(usable(&slot));
        slot.expire(1);
        assert!(!usable(&slot));
        assert_eq!(slot.schedule().stale_at, None);

        assert!(slot.install(plan(&record(1000, true), false), 1));
        assert!(usable(&slot));
        let seen = slot.reject(&AccessToken::new("at")).unwrap();
        assert!(!usable(&slot));
        assert!(slot.install(plan(&record(1000, true), false), seen));
        assert!(slot.entry.load().is_none(), "the rejected token stays out");
    }
}
