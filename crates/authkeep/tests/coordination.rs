//! One refresh per session across the tasks of one process, and a session that a
//! foreign writer rotates during a refresh is used, never deleted. The keeper runs
//! over a file store in a temporary directory against the development identity
//! provider.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use authkeep::store::FileGuard;
use authkeep::token::Origin;
use authkeep::{
    AccessToken, Client, Demand, Error, Event, EventSink, FileStore, Keeper, Record, Served,
    SessionKey, Settings, Store, StoreError, TokenResponse, Versioned,
};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, SessionRequest};
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
    Client {
        issuer: idp.issuer(),
        client_id: DEFAULT_CLIENT_ID.into(),
        ..Client::default()
    }
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
        .store_login(
            &key(),
            client(idp),
            response(&session, Some(100)),
            Origin::Import,
        )
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
async fn all_at_once<S, F, Fut>(keepers: &[Arc<Keeper<S>>], tasks: usize, call: F) -> Vec<Served>
where
    S: Store,
    F: Fn(Arc<Keeper<S>>) -> Fut,
    Fut: Future<Output = Result<Served, Error>> + Send + 'static,
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

/// Every caller got the same token, exactly one of them refreshed it, the
/// provider saw one refresh request, and the token and the stored refresh token
/// work.
fn assert_one_refresh(idp: &DevIdp, store: &FileStore, served: &[Served], old: &Value) {
    let counters = idp.counters();
    assert_eq!(counters.token_requests_for(REFRESH), 1, "refresh requests");
    assert_eq!(counters.outcome(REFRESH, "ok"), 1);
    assert_eq!(counters.grants_revoked, 0);
    assert_eq!(served.iter().filter(|s| s.refreshed).count(), 1);
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
    let keeper = Arc::new(Keeper::new(store.clone(), Settings::default()));
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
        Arc::new(Keeper::new(store.clone(), Settings::default())),
        Arc::new(Keeper::new(FileStore::new(dir.path()), Settings::default())),
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
    let keeper = Arc::new(Keeper::new(store.clone(), Settings::default()));
    // Far from expiry: only the resource server's rejection makes it refresh.
    let session = idp.create_session(&SessionRequest::default());
    keeper
        .store_login(
            &key(),
            client(&idp),
            response(&session, None),
            Origin::Login,
        )
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

/// A file store that lets a foreign writer act once, right after the keeper's
/// first read under the lock: between its read and its refresh.
struct Interleaved {
    inner: FileStore,
    locked: AtomicBool,
    foreign: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Interleaved {
    fn new(inner: FileStore, foreign: impl FnOnce() + Send + 'static) -> Self {
        Self {
            inner,
            locked: AtomicBool::new(false),
            foreign: Mutex::new(Some(Box::new(foreign))),
        }
    }
}

impl Store for Interleaved {
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

    async fn lock(
        &self,
        key: &SessionKey,
        wait: Duration,
        on_wait: impl FnOnce() + Send,
    ) -> Result<FileGuard, StoreError> {
        let guard = self.inner.lock(key, wait, on_wait).await?;
        self.locked.store(true, Ordering::SeqCst);
        Ok(guard)
    }

    async fn write(
        &self,
        guard: &FileGuard,
        expected: Option<u64>,
        record: &Record,
    ) -> Result<u64, StoreError> {
        self.inner.write(guard, expected, record).await
    }

    async fn remove(&self, guard: &FileGuard, expected: u64) -> Result<(), StoreError> {
        self.inner.remove(guard, expected).await
    }

    async fn list(&self) -> Result<Vec<SessionKey>, StoreError> {
        self.inner.list().await
    }
}

/// Replaces a file the way a foreign writer that ignores the lock would, though
/// atomically.
fn replace_file(path: &Path, bytes: &[u8]) {
    let temp = path.with_extension("foreign");
    std::fs::write(&temp, bytes).unwrap();
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
    let first = log_in_near_expiry(&Keeper::new(store.clone(), Settings::default()), &idp).await;

    // The foreign writer logged in elsewhere: its record, written by a keeper of
    // its own, ends up over ours, and the old grant is gone.
    let elsewhere = tempfile::tempdir().unwrap();
    let second = idp.create_session(&SessionRequest::default());
    Keeper::new(FileStore::new(elsewhere.path()), Settings::default())
        .store_login(&key(), client(&idp), response(&second, None), Origin::Login)
        .await
        .unwrap();
    let foreign_record = std::fs::read(FileStore::new(elsewhere.path()).path(&key())).unwrap();
    let (writer_idp, path, old_refresh) = (
        Arc::clone(&idp),
        store.path(&key()),
        text(&first, "refresh_token"),
    );
    let interleaved = Interleaved::new(store.clone(), move || {
        assert!(writer_idp.revoke_grant_of(&old_refresh));
        replace_file(&path, &foreign_record);
    });
    let (sink, events) = recording();
    let keeper = Keeper::new(interleaved, Settings::default()).with_events(sink);

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
    let first = log_in_near_expiry(&Keeper::new(store.clone(), Settings::default()), &idp).await;
    let (writer_idp, old_refresh) = (Arc::clone(&idp), text(&first, "refresh_token"));
    let interleaved = Interleaved::new(store.clone(), move || {
        assert!(writer_idp.revoke_grant_of(&old_refresh));
    });
    let keeper = Keeper::new(interleaved, Settings::default());

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
