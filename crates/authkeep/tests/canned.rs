//! The coordinator on its own: a memory store, a manual clock and a transport
//! that answers with canned responses, so that every step is decided by the
//! test: how many requests go out, what is stored, which events and errors come
//! back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use authkeep::{
    ChangeKind, Client, Clock as _, Demand, Error, Event, FailureClass, Keeper, LoginReason,
    ManualClock, MemoryStore, SessionKey, Store as _, Stored, TokenChange, TokenResponse,
    TransportError,
};
use http::{Request, Response};
use jiff::{SignedDuration, Timestamp};

const ENDPOINT: &str = "https://idp.example/token";

fn start() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn key() -> SessionKey {
    SessionKey::new("alice").unwrap()
}

/// What the canned provider saw and will answer.
#[derive(Default)]
struct Provider {
    requests: AtomicUsize,
    bodies: Mutex<Vec<String>>,
    answers: Mutex<Vec<Response<Vec<u8>>>>,
    /// While set, a request waits here before it is answered.
    hold: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl Provider {
    fn answer(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.answers
            .lock()
            .unwrap()
            .push(builder.body(body.as_bytes().to_vec()).unwrap());
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A keeper whose transport answers from `provider`'s queue, moving the clock
/// on by `latency` during each request.
struct Setup {
    keeper: Keeper<MemoryStore>,
    provider: Arc<Provider>,
    clock: Arc<ManualClock>,
    events: Arc<Mutex<Vec<Event>>>,
    changes: Arc<Mutex<Vec<TokenChange>>>,
}

fn setup(latency: SignedDuration) -> Setup {
    let provider = Arc::new(Provider::default());
    let clock = Arc::new(ManualClock::new(start()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let changes = Arc::new(Mutex::new(Vec::new()));
    let (seen, answering, ticking) = (events.clone(), provider.clone(), clock.clone());
    let changed = changes.clone();
    let keeper = Keeper::builder(MemoryStore::new())
        .clock(clock.clone())
        .transport(move |request: Request<Vec<u8>>| {
            let provider = answering.clone();
            let clock = ticking.clone();
            async move {
                assert_eq!(request.uri(), ENDPOINT);
                provider.requests.fetch_add(1, Ordering::SeqCst);
                provider
                    .bodies
                    .lock()
                    .unwrap()
                    .push(String::from_utf8(request.into_body()).unwrap());
                clock.advance(latency);
                let hold = provider.hold.lock().unwrap().clone();
                if let Some(hold) = hold {
                    hold.notified().await;
                }
                let mut answers = provider.answers.lock().unwrap();
                if answers.is_empty() {
                    return Err(TransportError::Failed("no canned answer left".into()));
                }
                Ok(answers.remove(0))
            }
        })
        .on_event(move |event| seen.lock().unwrap().push(event.clone()))
        .on_token_change(move |change| changed.lock().unwrap().push(change.clone()))
        .build();
    Setup {
        keeper,
        provider,
        clock,
        events,
        changes,
    }
}

impl Setup {
    /// Imports a session whose hour-long token has `left` seconds to live.
    async fn import(&self, left: i64) {
        let mut response = TokenResponse::from_fields(
            serde_json::json!({"access_token": "at-0", "refresh_token": "rt-0", "token_type": "Bearer"})
                .as_object()
                .unwrap(),
        );
        let now = self.clock.now();
        response.expires_at = Some(now + SignedDuration::from_secs(left));
        response.issued_at = Some(now + SignedDuration::from_secs(left - 3600));
        let client = Client::new("https://idp.example", "cli").with_token_endpoint(ENDPOINT);
        self.keeper
            .import_login(&key(), client, response)
            .await
            .unwrap();
    }

    async fn stored(&self) -> authkeep::Versioned {
        self.keeper.store().load(&key()).await.unwrap().unwrap()
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

const ROTATED: &str =
    r#"{"access_token":"at-1","refresh_token":"rt-1","token_type":"Bearer","expires_in":3600}"#;

#[tokio::test]
async fn a_valid_token_outside_the_window_costs_no_request() {
    let s = setup(SignedDuration::ZERO);
    s.import(3000).await;
    let token = s.keeper.token(&key(), Demand::new()).await.unwrap();
    assert_eq!(token.access_token.expose_secret(), "at-0");
    assert!(!token.refreshed);
    assert_eq!(s.provider.requests(), 0);
    assert!(matches!(s.events().last(), Some(Event::Valid { .. })));
}

#[tokio::test]
async fn a_refresh_is_stored_before_it_is_handed_out_with_expiry_from_the_sending_instant() {
    // The provider takes 5 s to answer: the expiry counts from the request.
    let s = setup(SignedDuration::from_secs(5));
    s.import(100).await;
    s.provider.answer(200, &[], ROTATED);
    let sent = s.clock.now();
    let token = s.keeper.token(&key(), Demand::new()).await.unwrap();
    assert!(token.refreshed);
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(
        token.expires_at,
        Some(sent + SignedDuration::from_secs(3600))
    );
    let body = s.provider.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        body,
        "grant_type=refresh_token&refresh_token=rt-0&client_id=cli"
    );
    let stored = s.stored().await;
    assert_eq!(stored.generation, 2, "import 1, refresh 2");
    let tokens = stored.record.tokens.unwrap();
    assert_eq!(tokens.refresh_token.unwrap().expose_secret(), "rt-1");
    assert!(matches!(
        s.events().as_slice(),
        [
            Event::Refreshing { .. },
            Event::Refreshed { rotated: true, .. }
        ]
    ));
    let changes = s.changes.lock().unwrap();
    assert_eq!(
        changes.iter().map(|c| c.kind).collect::<Vec<_>>(),
        [ChangeKind::LoggedIn, ChangeKind::Refreshed]
    );
    let shown = format!("{changes:?}");
    assert!(
        !shown.contains("rt-1") && !shown.contains("at-1"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_response_without_a_refresh_token_keeps_the_stored_one() {
    let s = setup(SignedDuration::ZERO);
    s.import(100).await;
    s.provider
        .answer(200, &[], r#"{"access_token":"at-1","expires_in":"3600"}"#);
    s.keeper.token(&key(), Demand::new()).await.unwrap();
    let tokens = s.stored().await.record.tokens.unwrap();
    assert_eq!(tokens.refresh_token.unwrap().expose_secret(), "rt-0");
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, Event::Refreshed { rotated: false, .. }))
    );
}

#[tokio::test]
async fn a_transient_failure_serves_the_valid_token_and_backs_off() {
    let s = setup(SignedDuration::ZERO);
    s.import(100).await;
    s.provider.answer(503, &[], "<html>down</html>");
    let token = s.keeper.token(&key(), Demand::new()).await.unwrap();
    assert_eq!(token.access_token.expose_secret(), "at-0");
    assert!(s.events().iter().any(|e| matches!(
        e,
        Event::ServedStored {
            reason: Stored::AfterFailure {
                class: FailureClass::Transient,
                ..
            },
            ..
        }
    )));
    let health = s.stored().await.record.health;
    let next = health.next_attempt_at.unwrap();
    let wait = next.duration_since(s.clock.now()).as_secs();
    assert!((27..=33).contains(&wait), "{wait}");
    // Within the back-off: no request, the stored token.
    s.clock.advance(SignedDuration::from_secs(10));
    s.keeper.token(&key(), Demand::new()).await.unwrap();
    assert_eq!(s.provider.requests(), 1);
    // After it: one more attempt.
    s.clock.advance(SignedDuration::from_secs(30));
    s.provider.answer(200, &[], ROTATED);
    assert!(
        s.keeper
            .token(&key(), Demand::new())
            .await
            .unwrap()
            .refreshed
    );
    assert_eq!(s.provider.requests(), 2);
    assert_eq!(s.stored().await.record.health.last_error, None);
}

#[tokio::test]
async fn invalid_grant_for_the_stored_refresh_token_ends_the_session() {
    let s = setup(SignedDuration::ZERO);
    s.import(100).await;
    s.provider.answer(
        400,
        &[("content-type", "application/json")],
        r#"{"error":"invalid_grant","error_description":"Token is not active"}"#,
    );
    let error = s.keeper.token(&key(), Demand::new()).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::LoginRequired {
                reason: LoginReason::SessionEnded,
                detail: Some(detail),
                ..
            } if detail.contains("Token is not active")
        ),
        "{error:?}"
    );
    let record = s.stored().await.record;
    assert!(record.tokens.is_none());
    assert!(record.client.is_some());
    // The next call needs no request to know.
    let again = s.keeper.token(&key(), Demand::new()).await.unwrap_err();
    assert!(again.is_login_required());
    assert_eq!(s.provider.requests(), 1);
    assert_eq!(
        s.changes.lock().unwrap().last().map(|c| c.kind),
        Some(ChangeKind::Ended)
    );
}

#[tokio::test]
async fn an_expired_token_and_retry_after_wait_without_a_request() {
    let s = setup(SignedDuration::ZERO);
    s.import(-10).await;
    s.provider.answer(429, &[("retry-after", "120")], "");
    let first = s.keeper.token(&key(), Demand::new()).await.unwrap_err();
    assert!(first.is_transient(), "{first}");
    let second = s.keeper.token(&key(), Demand::new()).await.unwrap_err();
    assert!(matches!(second, Error::RetryAfter { .. }), "{second:?}");
    assert_eq!(s.provider.requests(), 1);
    s.clock.advance(SignedDuration::from_secs(121));
    s.provider.answer(200, &[], ROTATED);
    assert!(
        s.keeper
            .token(&key(), Demand::new())
            .await
            .unwrap()
            .refreshed
    );
}

#[tokio::test]
async fn a_misconfigured_client_with_an_expired_token_is_a_typed_error() {
    let s = setup(SignedDuration::ZERO);
    s.import(-10).await;
    s.provider.answer(401, &[], r#"{"error":"invalid_client"}"#);
    let error = s.keeper.token(&key(), Demand::new()).await.unwrap_err();
    let Error::RefreshFailed { class, failure, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*class, FailureClass::Misconfiguration);
    assert_eq!(failure.code.as_deref(), Some("invalid_client"));
    assert!(error.is_misconfiguration());
    assert!(s.stored().await.record.tokens.is_some(), "nothing removed");
}

#[tokio::test]
async fn the_providers_date_header_sets_the_issuers_clock_skew() {
    let s = setup(SignedDuration::ZERO);
    s.import(100).await;
    // The provider's clock is five minutes ahead of ours.
    let provider_now = s.clock.now() + SignedDuration::from_mins(5);
    let date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&provider_now)
        .unwrap();
    s.provider.answer(200, &[("date", &date)], ROTATED);
    s.keeper.token(&key(), Demand::new()).await.unwrap();
    let skew = s
        .keeper
        .store()
        .issuer_skew("https://idp.example")
        .await
        .unwrap();
    assert_eq!(skew, Some(300));
}

#[tokio::test]
async fn a_caller_that_stops_waiting_does_not_stop_the_save_of_a_rotation() {
    let s = setup(SignedDuration::ZERO);
    s.import(100).await;
    s.provider.answer(200, &[], ROTATED);
    let hold = Arc::new(tokio::sync::Notify::new());
    *s.provider.hold.lock().unwrap() = Some(hold.clone());

    // The caller gives up while the request is out (the provider has it).
    let keeper = s.keeper.clone();
    let caller = tokio::spawn(async move { keeper.token(&key(), Demand::new()).await });
    while s.provider.requests() == 0 {
        tokio::task::yield_now().await;
    }
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    assert!(
        s.keeper.shield().is_busy(),
        "the answer is still outstanding"
    );

    // The provider answers: the rotation is saved all the same.
    hold.notify_one();
    s.keeper.shield().idle().await;
    let tokens = s.stored().await.record.tokens.unwrap();
    assert_eq!(tokens.refresh_token.unwrap().expose_secret(), "rt-1");
    *s.provider.hold.lock().unwrap() = None;
    let token = s.keeper.token(&key(), Demand::new()).await.unwrap();
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(s.provider.requests(), 1, "no second refresh");
}

#[tokio::test]
async fn a_claimed_session_is_refreshed_only_while_its_generation_is_the_one_claimed() {
    let s = setup(SignedDuration::ZERO);
    // Valid and outside the window: a plain demand would not refresh it, a
    // claim made at its generation does (keep-alive, early schedules).
    s.import(3000).await;
    let claimed = s.stored().await.generation;
    s.provider.answer(200, &[], ROTATED);
    let token = s
        .keeper
        .refresh_unless_changed(&key(), claimed)
        .await
        .unwrap();
    assert!(token.refreshed);
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(s.provider.requests(), 1);

    // A claim made before that write (a second scheduler, a stale read) finds
    // a newer generation and refreshes nothing.
    let token = s
        .keeper
        .refresh_unless_changed(&key(), claimed)
        .await
        .unwrap();
    assert!(!token.refreshed);
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(s.provider.requests(), 1, "no second refresh");
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, Event::UsedNewerSession { .. }))
    );
    assert_eq!(s.stored().await.generation, claimed + 1);
}
