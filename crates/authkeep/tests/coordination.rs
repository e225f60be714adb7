//! One refresh per session across the tasks of one process, sharing one lock
//! wait and one outcome; a session that a foreign writer rotates during a refresh
//! is used, never deleted; a rotation that cannot be saved is an error, never a
//! token; a provider's `Retry-After`, an access token expired at receipt, a
//! rejected token and the issuer's clock skew are handled as docs/DESIGN.md says.
//! The keeper runs over a file store in a temporary directory against the
//! development identity provider.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use authkeep::store::FileGuard;
use authkeep::store::Guard as _;
use authkeep::{
    AccessToken, Client, Demand, Error, Event, EventSink, FileStore, Keeper, ManualClock, Record,
    SessionKey, Store, StoreError, Token, TokenResponse, Versioned,
};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, FaultKind, Faults, SessionRequest};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

const REFRESH: &str = "refresh_token";

async fn provider() -> Arc<DevIdp> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    Arc::new(DevIdp::start(addr, Config::default()).await.unwrap())
}

fn key() -> SessionKey {
    SessionKey::new("default").unwrap()
}

fn client(idp: &DevIdp) -> Client {
    Client::new(idp.issuer(), DEFAULT_CLIENT_ID)
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap().to_owned()
}

/// A new session's token response; with `left`, as if imported with that much of
/// an hour-long lifetime left, which puts it inside the default refresh window.
fn response(session: &Value, left: Option<i64>) -> TokenResponse {
    let mut response = TokenResponse::from_fields(session.as_object().unwrap());
    if let Some(left) = left {
        let now = Timestamp::now();
        response.expires_in = None;
        response.expires_at = Some(now + SignedDuration::from_secs(left));
        response.issued_at = Some(now + SignedDuration::from_secs(left - 3600));
    }
    response
}

/// Stores a new session with 100 s of its hour left, and returns it.
async fn log_in_near_expiry<S: Store>(keeper: &Keeper<S>, idp: &DevIdp) -> Value {
    let session = idp.create_session(&SessionRequest::default());
    keeper
        .import_login(&key(), client(idp), response(&session, Some(100)))
        .await
        .unwrap();
    session
}

fn stored_refresh_token(store: &FileStore) -> String {
    store
        .load_blocking(&key())
        .unwrap()
        .unwrap()
        .record
        .tokens
        .unwrap()
        .refresh_token
        .unwrap()
        .expose_secret()
        .to_owned()
}

/// Runs `tasks` calls at once (released together by a barrier) on `keepers` in
/// turn, and returns what each got.
async fn all_at_once<S, F, Fut>(keepers: &[Arc<Keeper<S>>], tasks: usize, call: F) -> Vec<Token>
where
    S: Store,
    F: Fn(Arc<Keeper<S>>) -> Fut,
    Fut: Future<Output = Result<Token, Error>> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let call = call(Arc::clone(&keepers[i % keepers.len()]));
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut served = Vec::new();
    for handle in handles {
        served.push(handle.await.unwrap().unwrap());
    }
    served
}

/// Every caller got the same token, the provider saw one refresh request (which
/// the callers that shared it report as theirs), and the token and the stored
/// refresh token work.
fn assert_one_refresh(idp: &DevIdp, store: &FileStore, served: &[Token], old: &Value) {
    let counters = idp.counters();
    assert_eq!(counters.token_requests_for(REFRESH), 1, "refresh requests");
    assert_eq!(counters.outcome(REFRESH, "ok"), 1);
    assert_eq!(counters.grants_revoked, 0);
    assert!(served.iter().any(|s| s.refreshed));
    let token = &served[0].access_token;
    assert!(served.iter().all(|s| s.access_token == *token), "one token");
    assert!(
        token.expose_secret() != text(old, "access_token"),
        "refreshed"
    );
    assert!(idp.is_active(token.expose_secret()));
    let refresh = stored_refresh_token(store);
    assert!(refresh != text(old, "refresh_token"), "rotated and stored");
    assert!(idp.is_active(&refresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_cause_one_refresh() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let keeper = Arc::new(Keeper::builder(store.clone()).build());
    let session = log_in_near_expiry(&keeper, &idp).await;

    let served = all_at_once(&[keeper], 64, |keeper| async move {
        keeper.token(&key(), Demand::default()).await
    })
    .await;
    assert_eq!(served.len(), 64);
    assert_one_refresh(&idp, &store, &served, &session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keepers_on_one_directory_cause_one_refresh() {
    // Two keepers share no single flight: only the lock file keeps them apart,
    // as it does separate processes.
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let keepers = [
        Arc::new(Keeper::builder(store.clone()).build()),
        Arc::new(Keeper::builder(FileStore::new(dir.path())).build()),
    ];
    let session = log_in_near_expiry(&keepers[0], &idp).await;

    let served = all_at_once(&keepers, 64, |keeper| async move {
        keeper.token(&key(), Demand::default()).await
    })
    .await;
    assert_one_refresh(&idp, &store, &served, &session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_rejections_of_one_token_cause_one_refresh() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let keeper = Arc::new(Keeper::builder(store.clone()).build());
    // Far from expiry: only the resource server's rejection makes it refresh.
    let session = idp.create_session(&SessionRequest::default());
    keeper
        .save_login(&key(), client(&idp), response(&session, None))
        .await
        .unwrap();
    let rejected = AccessToken::new(text(&session, "access_token"));

    let served = all_at_once(&[keeper], 64, |keeper| {
        let rejected = rejected.clone();
        async move { keeper.token_after_rejection(&key(), &rejected).await }
    })
    .await;
    assert_one_refresh(&idp, &store, &served, &session);
}

/// A file store with two hooks: a foreign writer that acts once, right after
/// the keeper's first read under the lock (between its read and its refresh),
/// and writes that fail with "no space left on device" the first `failures`
/// times (every time for `usize::MAX`), as a full disk does.
struct Hooked {
    inner: FileStore,
    locked: AtomicBool,
    foreign: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    failures: AtomicUsize,
    attempts: AtomicUsize,
}

impl Hooked {
    fn new(inner: FileStore) -> Self {
        Self {
            inner,
            locked: AtomicBool::new(false),
            foreign: Mutex::new(None),
            failures: 0.into(),
            attempts: 0.into(),
        }
    }

    fn interleaved(inner: FileStore, foreign: impl FnOnce() + Send + 'static) -> Self {
        let hooked = Self::new(inner);
        *hooked.foreign.lock().unwrap() = Some(Box::new(foreign));
        hooked
    }

    fn full_disk(inner: FileStore, failures: usize) -> Self {
        let hooked = Self::new(inner);
        hooked.failures.store(failures, Ordering::SeqCst);
        hooked
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

impl Store for Hooked {
    type Guard = FileGuard;

    async fn load(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        let loaded = self.inner.load(key).await;
        if self.locked.load(Ordering::SeqCst) {
            let foreign = self
                .foreign
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(foreign) = foreign {
                foreign();
            }
        }
        loaded
    }

    async fn try_lock(&self, key: &SessionKey) -> Result<Option<FileGuard>, StoreError> {
        let guard = self.inner.try_lock(key).await?;
        if guard.is_some() {
            self.locked.store(true, Ordering::SeqCst);
        }
        Ok(guard)
    }

    async fn wait_for_release(&self, key: &SessionKey, wait: Duration) -> Result<bool, StoreError> {
        self.inner.wait_for_release(key, wait).await
    }

    async fn write(
        &self,
        guard: &FileGuard,
        expected: Option<u64>,
        record: &Record,
    ) -> Result<u64, StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                (left > 0).then(|| left.saturating_sub(1))
            })
            .is_ok();
        if failing {
            return Err(StoreError::Io {
                action: "writing",
                path: self.inner.path(guard.key()),
                source: Arc::new(std::io::Error::from(std::io::ErrorKind::StorageFull)),
            });
        }
        self.inner.write(guard, expected, record).await
    }

    async fn remove(&self, guard: &FileGuard, expected: u64) -> Result<(), StoreError> {
        self.inner.remove(guard, expected).await
    }

    async fn list(&self) -> Result<Vec<SessionKey>, StoreError> {
        self.inner.list().await
    }

    async fn issuer_skew(&self, issuer: &str) -> Result<Option<i64>, StoreError> {
        self.inner.issuer_skew(issuer).await
    }

    async fn set_issuer_skew(&self, issuer: &str, skew: Option<i64>) -> Result<(), StoreError> {
        self.inner.set_issuer_skew(issuer, skew).await
    }
}

/// Replaces a file the way a foreign writer that ignores the lock would, though
/// atomically, and private to its owner as the store requires.
fn replace_file(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    let temp = path.with_extension("foreign");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

fn recording() -> (EventSink, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let sink: EventSink = Arc::new(move |event: &Event| {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.clone());
    });
    (sink, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_rotated_by_a_foreign_writer_during_a_refresh_is_used_not_deleted() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let first = log_in_near_expiry(&Keeper::builder(store.clone()).build(), &idp).await;

    // The foreign writer logged in elsewhere: its record, written by a keeper of
    // its own, ends up over ours, and the old grant is gone.
    let elsewhere = tempfile::tempdir().unwrap();
    let second = idp.create_session(&SessionRequest::default());
    Keeper::builder(FileStore::new(elsewhere.path()))
        .build()
        .save_login(&key(), client(&idp), response(&second, None))
        .await
        .unwrap();
    let foreign_record = std::fs::read(FileStore::new(elsewhere.path()).path(&key())).unwrap();
    let (writer_idp, path, old_refresh) = (
        Arc::clone(&idp),
        store.path(&key()),
        text(&first, "refresh_token"),
    );
    let interleaved = Hooked::interleaved(store.clone(), move || {
        assert!(writer_idp.revoke_grant_of(&old_refresh));
        replace_file(&path, &foreign_record);
    });
    let (sink, events) = recording();
    let keeper = Keeper::builder(interleaved)
        .on_event(move |e| sink(e))
        .build();

    let served = keeper.token(&key(), Demand::default()).await.unwrap();
    assert!(
        served.access_token.expose_secret() == text(&second, "access_token"),
        "the newer session's token is served"
    );
    assert!(!served.refreshed);
    assert!(
        stored_refresh_token(&store) == text(&second, "refresh_token"),
        "the record holds the newer session"
    );
    let counters = idp.counters();
    assert_eq!(counters.outcome(REFRESH, "invalid_grant"), 1);
    assert_eq!(counters.outcome(REFRESH, "ok"), 0);
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::UsedNewerSession { .. })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { .. })),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_refresh_token_the_store_still_holds_ends_the_session() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let first = log_in_near_expiry(&Keeper::builder(store.clone()).build(), &idp).await;
    let (writer_idp, old_refresh) = (Arc::clone(&idp), text(&first, "refresh_token"));
    let interleaved = Hooked::interleaved(store.clone(), move || {
        assert!(writer_idp.revoke_grant_of(&old_refresh));
    });
    let keeper = Keeper::builder(interleaved).build();

    let error = keeper.token(&key(), Demand::default()).await.unwrap_err();
    assert!(error.is_login_required(), "{error}");
    let record = store.load_blocking(&key()).unwrap().unwrap().record;
    assert!(
        record.tokens.is_none(),
        "compare-and-delete removed the tokens"
    );
    assert!(record.client.is_some(), "the rest of the record is kept");
    assert_eq!(idp.counters().outcome(REFRESH, "invalid_grant"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_cannot_be_saved_is_an_error_and_hands_out_no_token() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let session = log_in_near_expiry(&Keeper::builder(store.clone()).build(), &idp).await;
    let (sink, events) = recording();
    let keeper = Keeper::builder(Hooked::full_disk(store.clone(), usize::MAX))
        .on_event(move |e| sink(e))
        .build();

    let error = keeper.token(&key(), Demand::default()).await.unwrap_err();
    let Error::NotSaved { ref cause, .. } = error else {
        panic!("expected NotSaved, got {error:?}");
    };
    let shown = error.to_string();
    assert!(
        shown.contains(&store.path(&key()).display().to_string()),
        "{shown}"
    );
    assert!(matches!(cause, StoreError::Io { .. }), "{cause:?}");
    assert_eq!(keeper.store().attempts(), 4, "one write and three retries");
    // The provider rotated; nothing claims it was saved.
    assert_eq!(idp.counters().outcome(REFRESH, "ok"), 1);
    assert!(!idp.is_active(&text(&session, "refresh_token")));
    assert!(stored_refresh_token(&store) == text(&session, "refresh_token"));
    let events = events.lock().unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::NotSaved { .. })),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Refreshed { .. })),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_briefly_is_retried_and_saved() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let session = log_in_near_expiry(&Keeper::builder(store.clone()).build(), &idp).await;
    let keeper = Keeper::builder(Hooked::full_disk(store.clone(), 2)).build();

    let served = keeper.token(&key(), Demand::default()).await.unwrap();
    assert!(served.refreshed);
    assert_eq!(keeper.store().attempts(), 3);
    let stored = stored_refresh_token(&store);
    assert!(stored != text(&session, "refresh_token"));
    assert!(idp.is_active(&stored), "the saved refresh token works");
}

/// A process (flock(1)) that takes the session's lock and is then stopped.
struct StoppedHolder(std::process::Child);

impl StoppedHolder {
    fn hold(store: &FileStore) -> Self {
        use std::os::unix::process::CommandExt as _;
        std::fs::create_dir_all(store.dir()).unwrap();
        let lock = store.dir().join(format!("{}.lock", key()));
        let child = std::process::Command::new("flock")
            .arg(&lock)
            .args(["sleep", "600"])
            .process_group(0)
            .spawn()
            .expect("flock(1) runs");
        let holder = Self(child);
        let started = std::time::Instant::now();
        while lock_is_free(store) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "flock took the lock"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        holder.signal("-STOP");
        holder
    }

    fn signal(&self, signal: &str) {
        let group = format!("-{}", self.0.id());
        let status = std::process::Command::new("kill")
            .args([signal, "--", &group])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for StoppedHolder {
    fn drop(&mut self) {
        self.signal("-KILL");
        self.0.wait().ok();
    }
}

/// Whether the session's lock is free now (taking and dropping it at once).
fn lock_is_free(store: &FileStore) -> bool {
    !store.is_locked_blocking(&key()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_behind_a_stopped_lock_holder_wait_out_one_lock_timeout() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let session = log_in_near_expiry(&Keeper::builder(store.clone()).build(), &idp).await;
    let _holder = StoppedHolder::hold(&store);
    let keeper = Arc::new(
        Keeper::builder(store.clone())
            .lock_timeout(Duration::from_secs(1))
            .build(),
    );

    let started = std::time::Instant::now();
    let served = all_at_once(&[keeper], 64, |keeper| async move {
        keeper.token(&key(), Demand::default()).await
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "64 tasks behind a stopped lock holder, 1 s lock timeout: all returned after {elapsed:?}"
    );
    // One lock wait for all: about one lock time-out, where waiting in turn
    // took 64 of them. The bound is generous for a loaded machine.
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        served
            .iter()
            .all(|s| !s.refreshed
                && s.access_token.expose_secret() == text(&session, "access_token"))
    );
    assert_eq!(idp.counters().token_requests_for(REFRESH), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_with_an_expired_token_and_a_failing_provider_send_one_request() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let keeper = Arc::new(Keeper::builder(store.clone()).build());
    let session = idp.create_session(&SessionRequest::default());
    keeper
        .import_login(&key(), client(&idp), response(&session, Some(-10)))
        .await
        .unwrap();
    idp.set_faults(Faults {
        kind: Some(FaultKind::Status {
            status: 503,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    });

    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let (keeper, barrier) = (Arc::clone(&keeper), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                keeper.token(&key(), Demand::default()).await
            })
        })
        .collect();
    for handle in handles {
        let error = handle.await.unwrap().unwrap_err();
        assert!(error.is_transient(), "{error}");
    }
    assert_eq!(idp.counters().token_requests_for(REFRESH), 1);
    assert!(stored_refresh_token(&store) == text(&session, "refresh_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_retry_after_holds_after_expiry_until_a_forced_refresh() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let keeper = Keeper::builder(store.clone()).build();
    let session = idp.create_session(&SessionRequest::default());
    keeper
        .import_login(&key(), client(&idp), response(&session, Some(-10)))
        .await
        .unwrap();
    idp.set_faults(Faults {
        kind: Some(FaultKind::Status {
            status: 429,
            retry_after: Some("120".into()),
            body: None,
        }),
        ..Faults::default()
    });

    let first = keeper.token(&key(), Demand::default()).await.unwrap_err();
    assert!(first.is_transient(), "{first}");
    assert_eq!(idp.counters().token_requests_for(REFRESH), 1);
    let second = keeper.token(&key(), Demand::default()).await.unwrap_err();
    assert!(second.is_transient(), "{second}");
    assert!(
        second
            .to_string()
            .contains("asked not to be contacted again before"),
        "{second}"
    );
    assert_eq!(idp.counters().token_requests_for(REFRESH), 1, "no request");

    idp.set_faults(Faults::default());
    let forced = Demand::new().force();
    let served = keeper.token(&key(), forced).await.unwrap();
    assert!(served.refreshed);
    assert_eq!(idp.counters().token_requests_for(REFRESH), 2);
    let health = store.load_blocking(&key()).unwrap().unwrap().record.health;
    assert_eq!(health.retry_after, None, "a success clears it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_expired_at_receipt_is_not_handed_out_but_its_refresh_token_is_saved() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let keeper = Keeper::builder(store.clone()).build();
    let session = log_in_near_expiry(&keeper, &idp).await;
    idp.set_faults(Faults {
        kind: Some(FaultKind::ExpiredAccessToken),
        ..Faults::default()
    });

    let error = keeper.token(&key(), Demand::default()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("had already expired"), "{error}");
    let stored = stored_refresh_token(&store);
    assert!(
        stored != text(&session, "refresh_token"),
        "the rotation was saved"
    );
    assert!(idp.is_active(&stored));

    idp.set_faults(Faults::default());
    let served = keeper.token(&key(), Demand::default()).await.unwrap();
    assert!(
        served.refreshed,
        "the saved refresh token renews the session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_never_handed_back() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let keeper = Keeper::builder(store.clone()).build();

    // A session that cannot renew itself: log in again.
    let session = idp.create_session(&SessionRequest::default());
    let mut bare = response(&session, None);
    bare.refresh_token = None;
    keeper
        .import_login(&key(), client(&idp), bare)
        .await
        .unwrap();
    let rejected = AccessToken::new(text(&session, "access_token"));
    let error = keeper
        .token_after_rejection(&key(), &rejected)
        .await
        .unwrap_err();
    assert!(error.is_login_required(), "{error}");

    // The forced refresh fails: a retryable error, not the rejected token.
    let session = idp.create_session(&SessionRequest::default());
    keeper
        .import_login(&key(), client(&idp), response(&session, None))
        .await
        .unwrap();
    let rejected = AccessToken::new(text(&session, "access_token"));
    idp.set_faults(Faults {
        kind: Some(FaultKind::Status {
            status: 503,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    });
    let error = keeper
        .token_after_rejection(&key(), &rejected)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("rejected"), "{error}");

    // The lock wait runs out: a retryable error, not the rejected token.
    idp.set_faults(Faults::default());
    let _holder = StoppedHolder::hold(&store);
    let impatient = Keeper::builder(store.clone())
        .lock_timeout(Duration::from_millis(300))
        .build();
    let error = impatient
        .token_after_rejection(&key(), &rejected)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Store(StoreError::LockTimeout { .. })),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_learned_from_one_session_applies_to_every_session_of_the_issuer() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    // Our clock is five minutes behind the provider's (whose `Date` is real).
    let clock = Arc::new(ManualClock::new(
        Timestamp::now() - SignedDuration::from_mins(5),
    ));
    let keeper = Keeper::builder(store.clone()).clock(clock.clone()).build();
    let other = SessionKey::new("other").unwrap();

    // A second session whose expiry comes from its JWT alone: nine minutes of
    // life on the provider's clock.
    let short = idp.create_session(&SessionRequest {
        access_ttl_secs: Some(540),
        ..SessionRequest::default()
    });
    let mut jwt_only = response(&short, None);
    jwt_only.expires_in = None;
    keeper
        .import_login(&other, client(&idp), jwt_only)
        .await
        .unwrap();

    // Once our clock has caught up, the second session has 9 minutes left by
    // the provider's clock, well outside its window (half its life, 4.5 min).
    clock.set(Timestamp::now());
    let served = keeper.token(&other, Demand::default()).await.unwrap();
    assert!(!served.refreshed);

    // The first session's refresh measures the provider 5 minutes ahead…
    clock.set(Timestamp::now() - SignedDuration::from_mins(5));
    log_in_near_expiry(&keeper, &idp).await;
    let forced = Demand::new().force();
    assert!(keeper.token(&key(), forced).await.unwrap().refreshed);
    let skew = store.issuer_skew_blocking(&idp.issuer()).unwrap();
    assert!(skew.is_some_and(|s| (298..=302).contains(&s)), "{skew:?}");
    assert_eq!(idp.counters().token_requests_for(REFRESH), 1);

    // …and the second session's JWT expiry is read on our clock from then on:
    // with the skew applied, 4 of its minutes are left, inside its window.
    clock.set(Timestamp::now());
    let served = keeper.token(&other, Demand::default()).await.unwrap();
    assert!(
        served.refreshed,
        "the skew moved the session into its window"
    );
    assert_eq!(idp.counters().token_requests_for(REFRESH), 2);
}

const CLIENT_CREDENTIALS: &str = "client_credentials";

/// A provider that knows the confidential client `svc`.
async fn provider_with_service() -> Arc<DevIdp> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = Config {
        clients: vec![authkeep_devidp::ClientConfig::new("svc", "s3cret")],
        ..Config::default()
    };
    Arc::new(DevIdp::start(addr, config).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_callers_of_a_client_credentials_session_cause_one_grant() {
    let idp = provider_with_service().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    // Keepers share no single flight: only the lock file keeps them apart, as
    // it does separate processes.
    let keepers: Vec<_> = (0..4)
        .map(|_| {
            let keeper = Keeper::builder(FileStore::new(dir.path())).clock(clock.clone());
            Arc::new(keeper.build())
        })
        .collect();
    let service = Client::new(idp.issuer(), "svc").with_secret(
        authkeep::ClientSecret::new("s3cret"),
        authkeep::ClientAuth::ClientSecretBasic,
    );
    let login = keepers[0]
        .login_client_credentials(&key(), service)
        .await
        .unwrap();
    let first = login.record.tokens.unwrap().access_token;
    assert_eq!(idp.counters().token_requests_for(CLIENT_CREDENTIALS), 1);

    // 100 s of the 300 s token left: inside the window (half its life).
    clock.advance(SignedDuration::from_secs(200));
    let served = all_at_once(&keepers, 32, |keeper| async move {
        keeper.token(&key(), Demand::default()).await
    })
    .await;
    let counters = idp.counters();
    assert_eq!(
        counters.token_requests_for(CLIENT_CREDENTIALS),
        2,
        "one grant"
    );
    assert_eq!(counters.token_requests_for(REFRESH), 0);
    let token = &served[0].access_token;
    assert!(served.iter().all(|s| s.access_token == *token), "one token");
    assert!(served.iter().any(|s| s.refreshed));
    assert!(*token != first);
    assert!(idp.is_active(token.expose_secret()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_revoke_ends_the_grant_at_the_provider() {
    let idp = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let keeper = Keeper::builder(store.clone()).build();
    let session = idp.create_session(&SessionRequest::default());
    keeper
        .import_login(&key(), client(&idp), response(&session, None))
        .await
        .unwrap();
    let refresh = text(&session, "refresh_token");
    assert!(idp.is_active(&refresh));

    let logout = keeper.logout_and_revoke(&key(), true).await.unwrap();
    assert!(logout.removed);
    assert!(
        matches!(
            logout.revocation,
            authkeep::Revocation::Revoked {
                refresh_token: true,
                ..
            }
        ),
        "{logout:?}"
    );
    assert!(!idp.is_active(&refresh), "the refresh token was revoked");
    assert!(!idp.is_active(&text(&session, "access_token")));
    assert!(store.load_blocking(&key()).unwrap().is_none());
    assert!(idp.counters().revocation_requests >= 1);
}
