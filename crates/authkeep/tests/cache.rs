//! The cached token of long-running programs against the development identity
//! provider: the hot read makes no request and needs no store; refresh-ahead
//! replaces the token before it expires while readers keep getting the valid
//! one, and never makes them wait for the network; the task stops with the
//! handle, after a provider ends the session, and never retries in a loop; the
//! cache follows what other callers of the same keeper do.

use std::future::Future as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use authkeep::{
    CachedToken, ChangeKind, Client, Demand, Event, FileStore, Keeper, Policy, SessionKey,
    TokenChange, TokenResponse,
};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, FaultKind, Faults, SessionRequest};
use serde_json::Value;
use tokio::sync::mpsc;

const REFRESH: &str = "refresh_token";
/// Access tokens of the short-lived provider: with the policy's fraction of
/// one half, the refresh window is their second half.
const SHORT_TTL: Duration = Duration::from_secs(6);
/// Longer than anything here should take, so that a hang fails rather than
/// blocks.
const PATIENCE: Duration = Duration::from_secs(30);

fn key() -> SessionKey {
    SessionKey::new("default").unwrap()
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap().to_owned()
}

/// A provider, a keeper over a file store in a temporary directory with one
/// session just logged in, and the keeper's token changes as they happen.
struct Setup {
    idp: Arc<DevIdp>,
    _dir: tempfile::TempDir,
    keeper: Keeper<FileStore>,
    changes: mpsc::UnboundedReceiver<TokenChange>,
    session: Value,
}

impl Setup {
    async fn new(access_ttl: Duration) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = Config {
            access_ttl,
            ..Config::default()
        };
        let idp = Arc::new(DevIdp::start(addr, config).await.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let (tx, changes) = mpsc::unbounded_channel();
        let keeper = Keeper::builder(FileStore::new(dir.path()))
            .policy(Policy::default().with_fraction(0.5))
            .on_token_change(move |change| {
                // The test may have stopped listening.
                tx.send(change.clone()).ok();
            })
            .build();
        let session = idp.create_session(&SessionRequest::default());
        let response = TokenResponse::from_fields(session.as_object().unwrap());
        // Imported: of unknown age, so that a forced refresh is never
        // satisfied by the login itself.
        keeper
            .import_login(
                &key(),
                Client::new(idp.issuer(), DEFAULT_CLIENT_ID),
                response,
            )
            .await
            .unwrap();
        let mut setup = Self {
            idp,
            _dir: dir,
            keeper,
            changes,
            session,
        };
        assert_eq!(setup.next_change().await.kind, ChangeKind::LoggedIn);
        setup
    }

    async fn short_lived() -> Self {
        Self::new(SHORT_TTL).await
    }

    fn refreshes(&self) -> u64 {
        self.idp.counters().token_requests_for(REFRESH)
    }

    async fn next_change(&mut self) -> TokenChange {
        next_change(&mut self.changes).await
    }
}

async fn next_change(changes: &mut mpsc::UnboundedReceiver<TokenChange>) -> TokenChange {
    tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("a token change in time")
        .expect("the keeper is alive")
}

/// Waits until `done` holds, checking every 5 ms, for at most [`PATIENCE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "{what} did not happen in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads `cached` every millisecond until stopped; returns how many reads found
/// nothing usable.
fn watch_reads(
    cached: &CachedToken<FileStore>,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let (cached, stop) = (cached.clone(), Arc::clone(stop));
    tokio::spawn(async move {
        let mut empty = 0;
        while !stop.load(Ordering::Relaxed) {
            if cached.get().is_none() {
                empty += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        empty
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_read_serves_the_token_without_any_request_or_store() {
    let setup = Setup::new(Duration::from_secs(300)).await;
    let cached = setup.keeper.cached(key());
    assert!(cached.get().is_none(), "empty until filled");

    let token = cached.token().await.unwrap();
    assert!(token.access_token.expose_secret() == text(&setup.session, "access_token"));
    assert!(!token.refreshed);
    // The store goes away: the cache needs it no more.
    std::fs::remove_dir_all(setup._dir.path()).unwrap();
    let mut reader = cached.reader();
    for _ in 0..1000 {
        let read = cached.get().expect("a usable token");
        assert_eq!(read.access_token, token.access_token);
        let own = reader.get().expect("a usable token");
        assert_eq!(own.access_token, token.access_token);
        let again = cached.token().await.unwrap();
        assert_eq!(again.access_token, token.access_token);
    }
    let counters = setup.idp.counters();
    assert_eq!(counters.token_requests_for(REFRESH), 0);
    assert_eq!(counters.discovery_requests, 0);
    assert!(!cached.needs_login());
    let shown = format!("{cached:?}");
    assert!(
        !shown.contains(token.access_token.expose_secret()),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_replaces_the_token_before_it_expires_while_readers_keep_the_valid_one() {
    let mut setup = Setup::short_lived().await;
    let cached = setup.keeper.cached(key()).refresh_ahead();
    let first = cached.token().await.unwrap();
    let old_expiry = first.expires_at.unwrap();
    let mut reader = cached.reader();
    assert!(
        reader
            .get()
            .is_some_and(|t| t.access_token == first.access_token)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = watch_reads(&cached, &stop);

    let change = setup.next_change().await;
    let refreshed_at = setup.keeper.now();
    assert_eq!(change.kind, ChangeKind::Refreshed);
    assert!(
        refreshed_at < old_expiry,
        "refreshed at {refreshed_at}, the old token expiring at {old_expiry}"
    );
    let new = change.tokens.unwrap().access_token;
    until("the cache serving the new token", || {
        cached.get().is_some_and(|t| t.access_token == new)
    })
    .await;
    assert!(
        reader.get().is_some_and(|t| t.access_token == new),
        "a reader sees the new token too"
    );
    stop.store(true, Ordering::Relaxed);
    assert_eq!(reads.await.unwrap(), 0, "a read found nothing usable");
    assert_eq!(setup.refreshes(), 1);
    assert!(setup.idp.is_active(new.expose_secret()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_wait_for_a_slow_background_refresh() {
    let setup = Setup::short_lived().await;
    let mut events = setup.keeper.subscribe();
    let cached = setup.keeper.cached(key()).refresh_ahead();
    cached.token().await.unwrap();
    setup.idp.set_faults(Faults {
        latency_ms: 500,
        ..Faults::default()
    });

    // Each reader calls token() about once a millisecond, as a busy server's
    // tasks would, and records when each call started, how long it took, and
    // whether it was not ready at once (it would have waited).
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (cached, stop) = (cached.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut calls, mut waited) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let mut call = std::pin::pin!(cached.token());
                    let first =
                        std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
                    let token = match first {
                        Poll::Ready(token) => token,
                        Poll::Pending => {
                            waited += 1;
                            call.await
                        }
                    };
                    calls.push((started, started.elapsed()));
                    std::hint::black_box(token.unwrap());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (calls, waited)
            })
        })
        .collect();

    let (mut refreshing, mut refreshed) = (None, None);
    while refreshed.is_none() {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("a refresh in time")
            .unwrap();
        match event {
            Event::Refreshing { .. } => refreshing = Some(Instant::now()),
            Event::Refreshed { .. } => refreshed = Some(Instant::now()),
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (refreshing, refreshed) = (refreshing.unwrap(), refreshed.unwrap());
    let (mut during, mut waited) = (Vec::new(), 0);
    for reader in readers {
        let (calls, reader_waited) = reader.await.unwrap();
        waited += reader_waited;
        during.extend(
            calls
                .into_iter()
                .filter(|(at, _)| (refreshing..refreshed).contains(at))
                .map(|(_, took)| took),
        );
    }
    assert!(
        during.len() > 100,
        "{} calls during the refresh",
        during.len()
    );
    during.sort();
    let longest = during[during.len() - 1];
    let p99 = during[during.len() * 99 / 100];
    eprintln!(
        "during a background refresh of {:?} (the provider answering after 500 ms), 16 readers \
         made {} token() calls: none waited ({waited} not ready at once), p99 {p99:?}, \
         longest {longest:?}",
        refreshed - refreshing,
        during.len(),
    );
    assert!(refreshed - refreshing >= Duration::from_millis(500));
    assert_eq!(waited, 0, "a call waited");
    assert_eq!(setup.refreshes(), 1);
    // Generous for a loaded machine: the bound proves only that nobody waited
    // for the provider's 500 ms.
    assert!(longest < Duration::from_millis(100), "{longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cache_stops_its_task() {
    let Setup {
        idp,
        _dir,
        keeper,
        mut changes,
        ..
    } = Setup::short_lived().await;
    let refreshes = || idp.counters().token_requests_for(REFRESH);
    // The cache holds the only keeper: once it and its task are gone, so is
    // the keeper, and the channel its change hook feeds closes.
    let cached = CachedToken::new(keeper, key()).refresh_ahead();
    let change = next_change(&mut changes).await;
    assert_eq!(change.kind, ChangeKind::Refreshed);
    let new_expiry = change.tokens.unwrap().expires_at.unwrap();
    let before = refreshes();

    drop(cached);
    tokio::time::timeout(PATIENCE, async {
        while let Some(change) = changes.recv().await {
            assert_ne!(
                change.kind,
                ChangeKind::Refreshed,
                "refreshed after the drop"
            );
        }
    })
    .await
    .expect("every clone of the keeper, the task's included, was dropped");

    // The next refresh was due at the start of the new token's window; wait
    // past its expiry, with a margin, and check that none was made.
    let wait = new_expiry - jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    tokio::time::sleep(Duration::try_from(wait).unwrap_or(Duration::ZERO)).await;
    assert_eq!(refreshes(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_provider_ends_leaves_nothing_usable_and_stops_refreshing() {
    let mut setup = Setup::short_lived().await;
    let cached = setup.keeper.cached(key()).refresh_ahead();
    cached.token().await.unwrap();
    assert!(
        setup
            .idp
            .revoke_grant_of(&text(&setup.session, "refresh_token"))
    );

    let change = setup.next_change().await;
    assert_eq!(change.kind, ChangeKind::Ended);
    until("the cache to say a login is needed", || {
        cached.needs_login()
    })
    .await;
    assert!(cached.get().is_none());
    let error = cached.token().await.unwrap_err();
    assert!(error.is_login_required(), "{error}");
    let counters = setup.idp.counters();
    assert_eq!(counters.outcome(REFRESH, "invalid_grant"), 1);

    // A task that went on would try again within a second (its shortest
    // pause) and the keeper's decision would send it straight back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(setup.refreshes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_retried_with_back_off_not_in_a_loop() {
    let mut setup = Setup::short_lived().await;
    let cached = setup.keeper.cached(key()).refresh_ahead();
    let first = cached.token().await.unwrap();
    let expiry = first.expires_at.unwrap();
    setup.idp.set_faults(Faults {
        kind: Some(FaultKind::Status {
            status: 503,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    });

    // One attempt in the window; the keeper's recorded back-off, capped at
    // the expiry, holds until then; one attempt at the expiry, as the keeper
    // would make for the next caller; then the task's own back-off (at least
    // 27 s).
    until("a refresh attempt in the window", || setup.refreshes() == 1).await;
    assert!(setup.keeper.now() < expiry);
    assert!(cached.get().is_some(), "the valid token is still served");
    until("a refresh attempt at expiry", || setup.refreshes() == 2).await;
    assert!(setup.keeper.now() >= expiry);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(setup.refreshes(), 2, "then back-off");
    assert!(cached.get().is_none(), "the token expired");
    assert!(!cached.needs_login(), "the session is kept");
    assert!(setup.changes.try_recv().is_err(), "no token change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_refresh_ahead_token_refreshes_in_the_window_as_the_keeper_does() {
    let setup = Setup::short_lived().await;
    let cached = setup.keeper.cached(key());
    let first = cached.token().await.unwrap();
    let expiry = first.expires_at.unwrap();
    assert_eq!(setup.refreshes(), 0, "outside the window: the stored token");

    let started = Instant::now();
    let refreshed = loop {
        let token = cached.token().await.unwrap();
        if token.access_token != first.access_token {
            break token;
        }
        assert!(cached.get().is_some(), "valid until the window's refresh");
        assert!(started.elapsed() < PATIENCE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refreshed.refreshed);
    assert!(setup.keeper.now() < expiry, "refreshed before expiry");
    assert_eq!(setup.refreshes(), 1);
    let served = cached.get().expect("the new token is cached");
    assert_eq!(served.access_token, refreshed.access_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_follows_what_other_callers_of_the_keeper_do() {
    let mut setup = Setup::new(Duration::from_secs(300)).await;
    let cached = setup.keeper.cached(key());
    let first = cached.token().await.unwrap();

    // Another caller refreshes.
    let forced = setup
        .keeper
        .token(&key(), Demand::new().force())
        .await
        .unwrap();
    assert!(forced.refreshed);
    until("the cache to follow the refresh", || {
        cached
            .get()
            .is_some_and(|t| t.access_token == forced.access_token)
    })
    .await;
    assert_ne!(forced.access_token, first.access_token);
    assert_eq!(setup.refreshes(), 1, "the cache refreshed nothing itself");

    // Another caller logs out, then in again.
    assert!(setup.keeper.logout(&key()).await.unwrap());
    until("the cache to follow the logout", || cached.needs_login()).await;
    assert!(cached.get().is_none());
    let session = setup.idp.create_session(&SessionRequest::default());
    let response = TokenResponse::from_fields(session.as_object().unwrap());
    setup
        .keeper
        .save_login(
            &key(),
            Client::new(setup.idp.issuer(), DEFAULT_CLIENT_ID),
            response,
        )
        .await
        .unwrap();
    until("the cache to follow the login", || {
        cached
            .get()
            .is_some_and(|t| t.access_token.expose_secret() == text(&session, "access_token"))
    })
    .await;
    assert!(!cached.needs_login());
    while let Ok(change) = setup.changes.try_recv() {
        assert_ne!(change.kind, ChangeKind::Ended);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_waits_for_a_login_and_fills_once_there_is_one() {
    let setup = Setup::new(Duration::from_secs(300)).await;
    let other = SessionKey::new("other").unwrap();
    let cached = setup.keeper.cached(other.clone()).refresh_ahead();
    until("the cache to say a login is needed", || {
        cached.needs_login()
    })
    .await;

    let session = setup.idp.create_session(&SessionRequest::default());
    let response = TokenResponse::from_fields(session.as_object().unwrap());
    setup
        .keeper
        .save_login(
            &other,
            Client::new(setup.idp.issuer(), DEFAULT_CLIENT_ID),
            response,
        )
        .await
        .unwrap();
    until("the cache to fill", || cached.get().is_some()).await;
    assert!(!cached.needs_login());
    assert_eq!(setup.refreshes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_replaced_and_never_served_again() {
    let setup = Setup::new(Duration::from_secs(300)).await;
    let cached = setup.keeper.cached(key()).refresh_ahead();
    let first = cached.token().await.unwrap();

    let replaced = cached
        .token_after_rejection(&first.access_token)
        .await
        .unwrap();
    assert!(replaced.refreshed);
    assert_ne!(replaced.access_token, first.access_token);
    let served = cached.get().expect("the new token is cached");
    assert_eq!(served.access_token, replaced.access_token);
    // Rejected again by a slower caller: the newer token, without a request.
    let again = cached
        .token_after_rejection(&first.access_token)
        .await
        .unwrap();
    assert_eq!(again.access_token, replaced.access_token);
    assert_eq!(setup.refreshes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_refresh_ahead_on_keeps_serving_the_cached_token() {
    let setup = Setup::new(Duration::from_secs(300)).await;
    let cached = setup.keeper.cached(key());
    cached.token().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = watch_reads(&cached, &stop);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The task without refresh-ahead is replaced; as it ends, it must not take
    // its successor's entry out of service.
    let cached = cached.refresh_ahead();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(reads.await.unwrap(), 0, "a read found nothing usable");
    assert!(cached.get().is_some());
    assert_eq!(setup.refreshes(), 0);
}
