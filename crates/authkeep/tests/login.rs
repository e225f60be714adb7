//! Interactive logins on their own: a memory store, a transport answering
//! canned responses, tokio's paused time for the polling intervals (the
//! keeper's clock follows it), and a real loopback listener that the test
//! plays the browser against.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authkeep::oauth::Metadata;
use authkeep::{
    Client, Error, FailureClass, Keeper, LoggedIn, Loopback, MemoryStore, SessionKey, Store as _,
    TransportError,
};
use http::{Request, Response};
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ISSUER: &str = "https://idp.example";

fn key() -> SessionKey {
    SessionKey::new("alice").unwrap()
}

fn metadata() -> Metadata {
    serde_json::from_value(serde_json::json!({
        "issuer": ISSUER,
        "token_endpoint": format!("{ISSUER}/token"),
        "authorization_endpoint": format!("{ISSUER}/authorize"),
        "device_authorization_endpoint": format!("{ISSUER}/device"),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .unwrap()
}

fn client() -> Client {
    Client::new(ISSUER, "cli").with_scope("openid offline_access")
}

/// One request as the provider saw it: when (since the start), where, what.
#[derive(Clone, Debug)]
struct Seen {
    after: Duration,
    uri: String,
    body: String,
}

/// Answers from a queue; an empty queue is a network failure.
#[derive(Default)]
struct Provider {
    seen: Mutex<Vec<Seen>>,
    answers: Mutex<Vec<Result<Response<Vec<u8>>, String>>>,
}

impl Provider {
    fn answer(&self, status: u16, body: &str) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap();
        self.answers.lock().unwrap().push(Ok(response));
    }

    fn fail(&self) {
        self.answers
            .lock()
            .unwrap()
            .push(Err("connection refused".to_owned()));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A clock that follows tokio's (paused) time from a fixed start.
struct TokioClock {
    start: Timestamp,
    t0: tokio::time::Instant,
}

impl authkeep::Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.start + SignedDuration::try_from(self.t0.elapsed()).unwrap()
    }
}

/// A keeper on tokio's clock whose transport answers from `provider`.
fn keeper(provider: &Arc<Provider>) -> Keeper<MemoryStore> {
    let t0 = tokio::time::Instant::now();
    let clock = Arc::new(TokioClock {
        start: "2026-06-01T12:00:00Z".parse().unwrap(),
        t0,
    });
    let provider = provider.clone();
    Keeper::builder(MemoryStore::new())
        .clock(clock)
        .transport(move |request: Request<Vec<u8>>| {
            let provider = provider.clone();
            let seen = Seen {
                after: t0.elapsed(),
                uri: request.uri().to_string(),
                body: String::from_utf8(request.into_body()).unwrap(),
            };
            async move {
                provider.seen.lock().unwrap().push(seen);
                let mut answers = provider.answers.lock().unwrap();
                if answers.is_empty() {
                    return Err(TransportError::Failed("no canned answer left".into()));
                }
                answers.remove(0).map_err(TransportError::Failed)
            }
        })
        .build()
}

const DEVICE_GRANT: &str = r#"{"device_code":"dc-secret","user_code":"WDJB-MJHT","verification_uri":"https://idp.example/device","verification_uri_complete":"https://idp.example/device?user_code=WDJB-MJHT","expires_in":600,"interval":2}"#;
const TOKENS: &str =
    r#"{"access_token":"at-1","refresh_token":"rt-1","token_type":"Bearer","expires_in":3600}"#;

fn pending(code: &str) -> String {
    format!(r#"{{"error":"{code}"}}"#)
}

#[tokio::test(start_paused = true)]
async fn a_device_login_polls_at_the_interval_slows_down_and_stores_the_tokens() {
    let provider = Arc::new(Provider::default());
    provider.answer(200, DEVICE_GRANT);
    provider.answer(400, &pending("authorization_pending"));
    provider.answer(400, &pending("slow_down"));
    provider.fail();
    provider.answer(200, TOKENS);
    let keeper = keeper(&provider);
    let shown = Mutex::new(None);
    let logged_in = keeper
        .login_device(
            &key(),
            client(),
            &metadata(),
            &[("audience".into(), "api".into())],
            Duration::from_secs(1),
            |a| {
                *shown.lock().unwrap() =
                    Some((a.user_code.clone(), a.verification_uri_complete.clone()));
            },
        )
        .await
        .unwrap();
    assert!(matches!(logged_in, LoggedIn::Stored(_)), "{logged_in:?}");
    let (user_code, complete) = shown.into_inner().unwrap().unwrap();
    assert_eq!(user_code, "WDJB-MJHT");
    assert_eq!(
        complete.as_deref(),
        Some("https://idp.example/device?user_code=WDJB-MJHT")
    );
    let seen = provider.seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[0].uri, "https://idp.example/device");
    assert!(seen[0].body.contains("client_id=cli") && seen[0].body.contains("audience=api"));
    assert!(
        seen[0].body.contains("scope=openid+offline_access"),
        "{}",
        seen[0].body
    );
    // Polls 2 s apart, then 7 s apart once the provider asked to slow down; a
    // network failure is polled through at the same interval.
    let gaps: Vec<u64> = seen
        .windows(2)
        .map(|w| (w[1].after - w[0].after).as_secs())
        .collect();
    assert_eq!(gaps, [2, 2, 7, 7]);
    for poll in &seen[1..] {
        assert_eq!(poll.uri, "https://idp.example/token");
        assert!(
            poll.body
                .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code")
        );
        assert!(poll.body.contains("device_code=dc-secret"));
    }
    let stored = keeper.store().load(&key()).await.unwrap().unwrap();
    let tokens = stored.record.tokens.unwrap();
    assert_eq!(tokens.access_token.expose_secret(), "at-1");
    assert_eq!(tokens.refresh_token.unwrap().expose_secret(), "rt-1");
    assert_eq!(tokens.origin, authkeep::Origin::Login);
}

#[tokio::test(start_paused = true)]
async fn a_refused_or_expired_device_login_stores_nothing_and_says_so() {
    for (answer, words) in [
        ("access_denied", "access_denied"),
        ("expired_token", "expired_token"),
    ] {
        let provider = Arc::new(Provider::default());
        provider.answer(200, DEVICE_GRANT);
        provider.answer(400, &pending(answer));
        let keeper = keeper(&provider);
        let error = keeper
            .login_device(
                &key(),
                client(),
                &metadata(),
                &[],
                Duration::from_secs(1),
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(error.is_login_required(), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains(words) && !text.contains("dc-secret"),
            "{text}"
        );
        assert!(keeper.store().load(&key()).await.unwrap().is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn a_user_code_that_runs_out_while_pending_ends_the_login() {
    let provider = Arc::new(Provider::default());
    provider.answer(
        200,
        &DEVICE_GRANT.replace(r#""expires_in":600"#, r#""expires_in":5"#),
    );
    for _ in 0..2 {
        provider.answer(400, &pending("authorization_pending"));
    }
    let keeper = keeper(&provider);
    let error = keeper
        .login_device(
            &key(),
            client(),
            &metadata(),
            &[],
            Duration::from_secs(1),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("expired"), "{error}");
    assert!(error.is_login_required());
    // Polled at 2 s and 4 s; at 6 s the code had expired, and nothing was sent.
    assert_eq!(provider.seen().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_provider_without_a_device_endpoint_is_a_configuration_error() {
    let provider = Arc::new(Provider::default());
    let keeper = keeper(&provider);
    let mut metadata = metadata();
    metadata.device_authorization_endpoint = None;
    let error = keeper
        .login_device(
            &key(),
            client(),
            &metadata,
            &[],
            Duration::from_secs(1),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(error.is_misconfiguration(), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("no device authorization endpoint"),
        "{error}"
    );
    assert!(provider.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn two_device_logins_of_one_session_ask_once() {
    let provider = Arc::new(Provider::default());
    provider.answer(200, DEVICE_GRANT);
    provider.answer(200, TOKENS);
    let keeper = keeper(&provider);
    let asked = Arc::new(Mutex::new(0));
    let login = |asked: Arc<Mutex<u32>>| {
        let keeper = keeper.clone();
        async move {
            keeper
                .login_device(
                    &key(),
                    client(),
                    &metadata(),
                    &[],
                    Duration::from_secs(60),
                    |_| {
                        *asked.lock().unwrap() += 1;
                    },
                )
                .await
        }
    };
    let (first, second) = tokio::join!(login(asked.clone()), login(asked.clone()));
    let outcomes = [first.unwrap(), second.unwrap()];
    assert_eq!(*asked.lock().unwrap(), 1, "one prompt");
    assert_eq!(
        provider.seen().len(),
        2,
        "one device authorization, one poll"
    );
    assert!(outcomes.iter().any(|o| matches!(o, LoggedIn::Stored(_))));
    assert!(outcomes.iter().any(|o| matches!(o, LoggedIn::Joined(_))));
    assert_eq!(
        outcomes[0].session().generation,
        outcomes[1].session().generation
    );
}

/// Plays the browser: a GET of `target` on the loopback listener at `addr`;
/// returns the status line and body.
async fn get(addr: &str, target: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The state and redirect URI in an authorization URL.
fn parts(url: &url::Url) -> (String, String, HashMap<String, String>) {
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let redirect = url::Url::parse(&query["redirect_uri"]).unwrap();
    let addr = format!("127.0.0.1:{}", redirect.port().unwrap());
    (addr, redirect.path().to_owned(), query)
}

/// What the browser sends back, built from the authorization URL's parameters.
type Visit = Box<dyn Fn(&HashMap<String, String>) -> String + Send>;

/// Runs a browser login whose browser makes `visits` (each a query string
/// built from the authorization URL's parameters) and returns the outcome and
/// what the browser was shown for each visit.
async fn browser_login(
    provider: &Arc<Provider>,
    visits: Vec<Visit>,
) -> (Result<LoggedIn, Error>, Vec<(String, String)>) {
    let keeper = keeper(provider);
    let loopback = Loopback::bind(None).await.unwrap();
    let (url_tx, url_rx) = tokio::sync::oneshot::channel();
    let browser = tokio::spawn(async move {
        let url: url::Url = url_rx.await.unwrap();
        let (addr, path, query) = parts(&url);
        let mut shown = Vec::new();
        for visit in visits {
            shown.push(get(&addr, &format!("{path}?{}", visit(&query))).await);
        }
        shown
    });
    let outcome = keeper
        .login_browser(
            &key(),
            client(),
            &metadata(),
            &[("prompt".into(), "consent".into())],
            loopback,
            Duration::from_secs(300),
            |url| {
                url_tx.send(url.clone()).unwrap();
            },
        )
        .await;
    (outcome, browser.await.unwrap())
}

fn answer_with(code: &'static str) -> Visit {
    Box::new(move |q| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", code)
            .append_pair("state", &q["state"])
            .append_pair("iss", ISSUER)
            .finish()
    })
}

#[tokio::test]
async fn a_browser_login_checks_the_state_exchanges_the_code_with_the_verifier_and_says_so() {
    let provider = Arc::new(Provider::default());
    provider.answer(200, TOKENS);
    let forged: Visit = Box::new(|_| format!("code=evil&state=forged&iss={ISSUER}"));
    let (outcome, shown) = browser_login(&provider, vec![forged, answer_with("the-code")]).await;
    assert!(matches!(outcome.unwrap(), LoggedIn::Stored(_)));
    assert!(
        shown[0].0.contains("400") && shown[0].1.contains("does not belong"),
        "{shown:?}"
    );
    assert!(
        shown[1].0.contains("200") && shown[1].1.contains("signed in"),
        "{shown:?}"
    );
    let seen = provider.seen();
    assert_eq!(seen.len(), 1, "only the right code is exchanged");
    let body = &seen[0].body;
    assert!(
        body.contains("grant_type=authorization_code") && body.contains("code=the-code"),
        "{body}"
    );
    assert!(
        body.contains("code_verifier=") && body.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{body}"
    );
}

#[tokio::test]
async fn the_authorization_url_carries_pkce_s256_state_and_extra_parameters() {
    let provider = Arc::new(Provider::default());
    provider.answer(200, TOKENS);
    let check: Visit = Box::new(|q| {
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cli");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"].len(), 43);
        assert!(q["state"].len() >= 22);
        assert_eq!(q["scope"], "openid offline_access");
        assert_eq!(q["prompt"], "consent");
        assert!(q["redirect_uri"].ends_with("/callback"));
        answer_with("c")(q)
    });
    let (outcome, _) = browser_login(&provider, vec![check]).await;
    outcome.unwrap();
}

#[tokio::test]
async fn a_refused_or_mixed_up_browser_login_stores_nothing_and_shows_why() {
    let denied: Visit = Box::new(|q| {
        format!(
            "error=access_denied&error_description=no+thanks&state={}&iss={ISSUER}",
            q["state"]
        )
    });
    let provider = Arc::new(Provider::default());
    let (outcome, shown) = browser_login(&provider, vec![denied]).await;
    let error = outcome.unwrap_err();
    assert!(
        error.is_login_required() && error.to_string().contains("access_denied"),
        "{error}"
    );
    assert!(
        shown[0].1.contains("refused") && shown[0].1.contains("no thanks"),
        "{shown:?}"
    );
    assert!(provider.seen().is_empty());

    let mixed_up: Visit =
        Box::new(|q| format!("code=c&state={}&iss=https%3A%2F%2Fevil.example", q["state"]));
    let (outcome, shown) = browser_login(&provider, vec![mixed_up]).await;
    let error = outcome.unwrap_err();
    assert!(
        error.is_misconfiguration() && error.to_string().contains("evil.example"),
        "{error}"
    );
    assert!(shown[0].1.contains("failed"), "{shown:?}");
    assert!(
        provider.seen().is_empty(),
        "a mixed-up code is never exchanged"
    );

    let no_iss: Visit = Box::new(|q| format!("code=c&state={}", q["state"]));
    let (outcome, _) = browser_login(&provider, vec![no_iss]).await;
    assert!(outcome.unwrap_err().to_string().contains("no iss"));
}

#[tokio::test]
async fn a_failed_code_exchange_is_shown_in_the_browser_and_returned() {
    let provider = Arc::new(Provider::default());
    provider.answer(
        400,
        r#"{"error":"invalid_grant","error_description":"code already used"}"#,
    );
    let (outcome, shown) = browser_login(&provider, vec![answer_with("c")]).await;
    let error = outcome.unwrap_err();
    assert!(error.to_string().contains("invalid_grant"), "{error}");
    assert!(
        shown[0].0.contains("400") && shown[0].1.contains("invalid_grant"),
        "{shown:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_browser_login_that_nobody_completes_times_out() {
    let provider = Arc::new(Provider::default());
    let keeper = keeper(&provider);
    let loopback = Loopback::bind(None).await.unwrap();
    let error = keeper
        .login_browser(
            &key(),
            client(),
            &metadata(),
            &[],
            loopback,
            Duration::from_secs(120),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no sign-in arrived within 2m"),
        "{error}"
    );
    assert!(matches!(
        error,
        Error::Provider { ref failure, .. } if failure.class == FailureClass::InteractionRequired
    ));
}
