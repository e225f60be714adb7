//! authkeep for Node.js: a thin native layer over the authkeep library, no
//! logic of its own. Every decision (when to refresh, one refresh across
//! threads and processes, what a failure means, the 401 rule of `fetch`) is
//! the library's; this file turns JavaScript arguments into library calls
//! and library results into JavaScript values.
//!
//! - Stores and settings come from the library's `config` module, so a Node
//!   program and `authkeep token` read the same `config.toml`, share sessions
//!   and take the same locks: profiles of the file store (one keeper per
//!   profile, built as the command builds it), or accounts of a database
//!   store (`sqlite:PATH`, `postgres://…`; one keeper for all).
//! - Every call that may touch the disk or the network is `async`, run on
//!   napi's tokio runtime, never on the JavaScript thread.
//! - Failures reject with an error whose message starts with one of the codes
//!   of [`Code`] and a colon; `index.js` turns that into the `code` property
//!   (napi-rs gives async rejections its own status names as codes). No
//!   message carries a secret: the library's errors never do.
//! - Events reach JavaScript callbacks through weak threadsafe functions, so
//!   a listener never keeps a process alive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use authkeep::config::{Asked, ConfigError, Home, Settings, StoreChoice};
use authkeep::store::StoreKey;
use authkeep::{
    AccessToken, ChangeKind, Client, Demand, Event, FailureClass, FileStore, LoginReason,
    SessionKey, TokenChange, TokenResponse,
};
use authkeep_db::{DbError, DbOptions, DbStore};
use jiff::SignedDuration;
use napi::bindgen_prelude::{Buffer, Either};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Status, bindgen_prelude::Result};
use napi_derive::napi;

/// The `code` of every error this module raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    /// No usable token without the user: no session, the session ended, or
    /// the provider requires interaction.
    LoginRequired,
    /// Try again later: the provider or the store could not be reached, or
    /// another process held the session's lock for the whole wait.
    RetryLater,
    /// The configuration, the client or the provider's answer says something
    /// must change.
    Misconfigured,
    /// The store failed: a corrupt or newer record, an I/O error, a result that
    /// could not be saved.
    StoreError,
    /// The call's arguments are wrong.
    InvalidArgument,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::LoginRequired => "LOGIN_REQUIRED",
            Code::RetryLater => "RETRY_LATER",
            Code::Misconfigured => "MISCONFIGURED",
            Code::StoreError => "STORE_ERROR",
            Code::InvalidArgument => "INVALID_ARGUMENT",
        }
    }
}

/// An error for JavaScript: `CODE: message`.
fn fail(code: Code, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::new(
        Status::GenericFailure,
        format!("{}: {message}", code.as_str()),
    )
}

/// The code of a library error.
fn keeper_code(error: &authkeep::Error) -> Code {
    if error.is_login_required() {
        Code::LoginRequired
    } else if error.is_transient() {
        Code::RetryLater
    } else if error.is_misconfiguration() {
        Code::Misconfigured
    } else {
        match error {
            authkeep::Error::RefreshFailed { .. } | authkeep::Error::Provider { .. } => {
                Code::Misconfigured
            }
            _ => Code::StoreError,
        }
    }
}

fn keeper_error(error: authkeep::Error) -> napi::Error {
    fail(keeper_code(&error), error)
}

fn store_error(error: authkeep::StoreError) -> napi::Error {
    keeper_error(authkeep::Error::Store(error))
}

fn config_error(error: ConfigError) -> napi::Error {
    let code = match &error {
        ConfigError::Unreadable { .. } => Code::StoreError,
        _ => Code::Misconfigured,
    };
    // The I/O cause is part of the message, as the command shows it.
    match std::error::Error::source(&error) {
        Some(cause) => fail(code, format!("{error}: {cause}")),
        None => fail(code, error),
    }
}

fn db_error(error: DbError) -> napi::Error {
    let code = match &error {
        e if e.is_transient() => Code::RetryLater,
        DbError::UnsupportedUrl { .. }
        | DbError::InvalidUrl(_)
        | DbError::BackendDisabled(_)
        | DbError::InsecurePermissions { .. }
        | DbError::Sealed { .. }
        | DbError::UnknownClient(_) => Code::Misconfigured,
        DbError::InvalidName(_) => Code::InvalidArgument,
        _ => Code::StoreError,
    };
    fail(code, error)
}

fn invalid(message: impl std::fmt::Display) -> napi::Error {
    fail(Code::InvalidArgument, message)
}

/// `Keeper.open`'s options.
#[napi(object)]
pub struct OpenOptions {
    /// One directory for configuration and state (as `AUTHKEEP_HOME`).
    pub home: Option<String>,
    /// `file`, `encrypted-file`, `keyring`, `sqlite:PATH` or `postgres://…`
    /// (as `AUTHKEEP_STORE`).
    pub store: Option<String>,
}

/// `token`'s options.
#[napi(object)]
pub struct TokenOptions {
    /// The token handed out stays valid at least this long: a duration
    /// (`'10m'`) or seconds.
    pub min_valid: Option<Either<String, f64>>,
}

/// An access token handed out.
#[napi(object)]
pub struct TokenInfo {
    /// The token.
    pub access_token: String,
    /// Its type, usually `Bearer`.
    pub token_type: String,
    /// Its expiry (RFC 3339, UTC), or null when unknown.
    pub expires_at: Option<String>,
}

impl From<authkeep::Token> for TokenInfo {
    fn from(token: authkeep::Token) -> Self {
        Self {
            access_token: token.access_token.expose_secret().to_owned(),
            token_type: token.token_type,
            expires_at: token.expires_at.map(instant),
        }
    }
}

/// `importLogin`'s options.
#[napi(object)]
pub struct LoginOptions {
    /// The issuer (file stores).
    pub issuer: Option<String>,
    /// The client id (file stores).
    pub client_id: Option<String>,
    /// The name of a client stored in the database (database stores).
    pub client: Option<String>,
    /// The token response (RFC 6749 §5.1), or another client's token record.
    pub token_response: serde_json::Value,
}

/// A failure recorded in a session's health.
#[napi(object)]
pub struct LastError {
    /// Its class: `session_dead`, `interaction_required`, `misconfiguration`
    /// or `transient`.
    pub class: String,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
}

/// What `status` says of a session: never a secret.
#[napi(object)]
pub struct SessionStatus {
    /// The session.
    pub key: String,
    /// Its issuer, if it has a client.
    pub issuer: Option<String>,
    /// The access token's expiry (RFC 3339, UTC), or null.
    pub expires_at: Option<String>,
    /// Whether it can renew itself.
    pub can_renew: bool,
    /// `none`, `ended`, `valid`, `expired_renewable` or `login_required`.
    pub state: String,
    /// The last failure, cleared by a success.
    pub last_error: Option<LastError>,
}

/// What an event's callback receives.
#[napi(object)]
#[derive(Clone)]
pub struct EventInfo {
    /// The session.
    pub key: String,
    /// The failure's class (`refreshFailed`; `loginRequired` when the provider
    /// ended the session or asks for interaction).
    pub class: Option<String>,
    /// The new expiry (`refreshed`, `stored`), when known.
    pub expires_at: Option<String>,
}

/// `fetch`'s request, as `index.js` takes it apart from a `Request`.
#[napi(object)]
pub struct FetchRequest {
    /// The URL; the token goes only to its origin.
    pub url: String,
    /// The method.
    pub method: String,
    /// The headers, as name-value pairs.
    pub headers: Vec<Vec<String>>,
    /// The body, if any.
    pub body: Option<Buffer>,
    /// Treat a 403 from the origin as a rejection of the token too.
    pub refresh_on_403: Option<bool>,
}

/// `fetch`'s answer, for `index.js` to make a `Response` of.
#[napi(object)]
pub struct FetchResponse {
    /// The status.
    pub status: u16,
    /// Its reason phrase.
    pub status_text: String,
    /// The headers, as name-value pairs.
    pub headers: Vec<Vec<String>>,
    /// The body.
    pub body: Buffer,
    /// The final URL (after redirects).
    pub url: String,
}

/// A listener: a JavaScript callback that does not keep the process alive.
type Listener = ThreadsafeFunction<EventInfo, (), EventInfo, Status, false, true>;

/// The event names, as `on` takes them.
const EVENTS: [&str; 4] = ["refreshed", "refreshFailed", "loginRequired", "stored"];

/// The registered listeners, shared with every keeper's sinks.
#[derive(Default)]
struct Listeners {
    by_event: Mutex<Vec<(&'static str, Arc<Listener>)>>,
}

impl Listeners {
    fn emit(&self, event: &'static str, info: EventInfo) {
        let listeners: Vec<Arc<Listener>> = self
            .by_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(name, _)| *name == event)
            .map(|(_, listener)| Arc::clone(listener))
            .collect();
        for listener in listeners {
            // A closing listener (its environment is going away) misses it.
            listener.call(info.clone(), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// A keeper event, as the events of this module.
    fn on_event(&self, event: &Event) {
        let info = |key: &SessionKey, class: Option<&str>, expires_at| EventInfo {
            key: key.to_string(),
            class: class.map(str::to_owned),
            expires_at,
        };
        match event {
            Event::Refreshed {
                key, expires_at, ..
            } => self.emit("refreshed", info(key, None, expires_at.map(instant))),
            Event::RefreshFailed { key, class, .. } => {
                self.emit("refreshFailed", info(key, Some(class.as_str()), None));
            }
            // The provider rejected the refresh token: a refresh that failed
            // (the library reports it as the session's end) and a login needed.
            Event::SessionEnded { key } => {
                let dead = Some(FailureClass::SessionDead.as_str());
                self.emit("refreshFailed", info(key, dead, None));
                self.emit("loginRequired", info(key, dead, None));
            }
            Event::LoginRequired { key, reason } => {
                let class = match reason {
                    LoginReason::InteractionRequired => {
                        Some(FailureClass::InteractionRequired.as_str())
                    }
                    LoginReason::SessionEnded => Some(FailureClass::SessionDead.as_str()),
                    _ => None,
                };
                self.emit("loginRequired", info(key, class, None));
            }
            _ => {}
        }
    }

    /// A saved change of a session's tokens.
    fn on_change(&self, change: &TokenChange) {
        let expires_at = match change.kind {
            ChangeKind::LoggedIn | ChangeKind::Refreshed => change
                .tokens
                .as_ref()
                .and_then(|t| t.expires_at)
                .map(instant),
            _ => None,
        };
        self.emit(
            "stored",
            EventInfo {
                key: change.key.to_string(),
                class: None,
                expires_at,
            },
        );
    }
}

/// The store behind a keeper.
enum Backing {
    /// Profiles of the file store: one library keeper per profile, built from
    /// that profile's settings, kept for the life of this object.
    Files {
        settings: Box<Settings>,
        keepers: Mutex<HashMap<String, authkeep::Keeper<FileStore>>>,
    },
    /// Accounts of a database store.
    Database { keeper: authkeep::Keeper<DbStore> },
}

/// One library keeper and the session key it answers for.
enum Bound {
    Files(authkeep::Keeper<FileStore>, SessionKey),
    Database(authkeep::Keeper<DbStore>, SessionKey),
}

/// Runs `$body` with `$keeper` bound to the keeper of either kind of store.
macro_rules! with_keeper {
    ($bound:expr, |$keeper:ident, $key:ident| $body:expr) => {
        match $bound {
            Bound::Files($keeper, $key) => $body,
            Bound::Database($keeper, $key) => $body,
        }
    };
}

/// The native keeper; `index.js` wraps it as `Keeper`.
#[napi]
pub struct NativeKeeper {
    backing: Arc<Backing>,
    listeners: Arc<Listeners>,
    /// The client `fetch` sends requests with (built on first use).
    http: tokio::sync::OnceCell<reqwest::Client>,
    network: authkeep::Network,
}

/// Opens a keeper on the store the options and the configuration choose.
#[napi]
pub async fn open(options: Option<OpenOptions>) -> Result<NativeKeeper> {
    let options = options.unwrap_or(OpenOptions {
        home: None,
        store: None,
    });
    let home = match options.home.filter(|h| !h.is_empty()) {
        Some(dir) => Home::at(dir),
        None => Home::locate().map_err(config_error)?,
    };
    let mut asked = Asked::from_env().map_err(config_error)?;
    if let Some(store) = options.store.filter(|s| !s.is_empty()) {
        asked.store = Some(StoreChoice::parse(&store).map_err(invalid)?);
    }
    let settings = Settings::resolve(home, &asked).map_err(config_error)?;
    let listeners = Arc::new(Listeners::default());
    let network = settings.network.clone();
    let backing = match settings.database.clone() {
        None => Backing::Files {
            settings: Box::new(settings),
            keepers: Mutex::new(HashMap::new()),
        },
        Some(url) => Backing::Database {
            keeper: database_keeper(&settings, &url, &listeners).await?,
        },
    };
    Ok(NativeKeeper {
        backing: Arc::new(backing),
        listeners,
        http: tokio::sync::OnceCell::new(),
        network,
    })
}

/// Opens the database store at `url` (`sqlite:` alone is `accounts.db` in the
/// state directory) with the store key the settings name, and a keeper on it.
async fn database_keeper(
    settings: &Settings,
    url: &str,
    listeners: &Arc<Listeners>,
) -> Result<authkeep::Keeper<DbStore>> {
    let url = if url == "sqlite:" {
        let file = settings
            .home
            .state_dir
            .join(authkeep::config::names::DEFAULT_DB_FILE);
        format!("sqlite:{}", file.display())
    } else {
        url.to_owned()
    };
    let authkeep::config::KeySource::File(key_file) = &settings.key_source else {
        return Err(fail(
            Code::Misconfigured,
            "a database store keeps its tokens encrypted and needs a key: make one with \
             `authkeep store keygen --out PATH` and name it with AUTHKEEP_KEY_FILE \
             (or key_file in config.toml)",
        ));
    };
    let key = StoreKey::read_file(key_file).map_err(|e| fail(Code::Misconfigured, e))?;
    let store = DbStore::open_with(&url, key, DbOptions::default())
        .await
        .map_err(db_error)?;
    let policy = settings.top_level_policy().map_err(config_error)?;
    let events = Arc::clone(listeners);
    let changes = Arc::clone(listeners);
    Ok(authkeep::Keeper::builder(store)
        .policy(policy)
        .lock_timeout(settings.lock_timeout)
        .network(settings.network.clone())
        .discovery_cache(settings.home.discovery_cache())
        .on_event(move |event| events.on_event(event))
        .on_token_change(move |change| changes.on_change(change))
        .build())
}

impl NativeKeeper {
    /// The keeper for session `key`: a profile name on a file store, an
    /// account id on a database store.
    fn bind(&self, key: &str) -> Result<Bound> {
        match self.backing.as_ref() {
            Backing::Files { settings, keepers } => {
                let session = SessionKey::new(key).map_err(invalid)?;
                let mut keepers = keepers.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(keeper) = keepers.get(key) {
                    return Ok(Bound::Files(keeper.clone(), session));
                }
                let own = settings.for_profile(key).map_err(config_error)?;
                let events = Arc::clone(&self.listeners);
                let changes = Arc::clone(&self.listeners);
                // The keyring store's fallback to plain files is allowed only
                // by an insecure-named setting; nothing to tell here.
                let keeper = own
                    .keeper_with(|_| {})
                    .on_event(move |event| events.on_event(event))
                    .on_token_change(move |change| changes.on_change(change))
                    .build();
                keepers.insert(key.to_owned(), keeper.clone());
                Ok(Bound::Files(keeper, session))
            }
            Backing::Database { keeper } => {
                let session = SessionKey::account(key).map_err(invalid)?;
                Ok(Bound::Database(keeper.clone(), session))
            }
        }
    }
}

#[napi]
impl NativeKeeper {
    /// A usable access token for the session, refreshed if due.
    #[napi]
    pub async fn token(&self, key: String, options: Option<TokenOptions>) -> Result<TokenInfo> {
        let mut demand = Demand::new();
        if let Some(min_valid) = options.and_then(|o| o.min_valid) {
            demand = demand.min_valid(min_valid_of(min_valid)?);
        }
        let bound = self.bind(&key)?;
        with_keeper!(bound, |keeper, key| keeper.token(&key, demand).await)
            .map(TokenInfo::from)
            .map_err(keeper_error)
    }

    /// A server rejected `token` (a 401): a refresh only if the session still
    /// holds it, else the newer stored token.
    #[napi]
    pub async fn rejected(&self, key: String, token: String) -> Result<TokenInfo> {
        let rejected = AccessToken::new(token);
        let bound = self.bind(&key)?;
        with_keeper!(bound, |keeper, key| keeper
            .token_after_rejection(&key, &rejected)
            .await)
        .map(TokenInfo::from)
        .map_err(keeper_error)
    }

    /// Stores a login obtained elsewhere: `{issuer, clientId, tokenResponse}`
    /// on a file store, `{client, tokenResponse}` on a database store.
    #[napi]
    pub async fn import_login(&self, key: String, login: LoginOptions) -> Result<()> {
        let serde_json::Value::Object(fields) = &login.token_response else {
            return Err(invalid("tokenResponse must be an object"));
        };
        let response = TokenResponse::from_fields(fields);
        if response.access_token.expose_secret().is_empty() {
            return Err(invalid("tokenResponse has no access_token"));
        }
        match self.bind(&key)? {
            Bound::Files(keeper, key) => {
                if login.client.is_some() {
                    return Err(invalid(
                        "a file store takes issuer and clientId, not a named client",
                    ));
                }
                let (Some(issuer), Some(client_id)) = (login.issuer, login.client_id) else {
                    return Err(invalid(
                        "importLogin on a file store needs issuer and clientId",
                    ));
                };
                keeper
                    .import_login(&key, Client::new(issuer, client_id), response)
                    .await
                    .map(drop)
                    .map_err(keeper_error)
            }
            Bound::Database(keeper, key) => {
                let Some(client) = login.client else {
                    return Err(invalid(
                        "importLogin on a database store needs client, the name of a stored client",
                    ));
                };
                let now = keeper.now();
                keeper
                    .store()
                    .put_account(&key, &client, response, now)
                    .await
                    .map_err(db_error)?;
                self.listeners.emit(
                    "stored",
                    EventInfo {
                        key: key.to_string(),
                        class: None,
                        expires_at: None,
                    },
                );
                Ok(())
            }
        }
    }

    /// Removes the session (nothing is sent to the provider). Resolves to
    /// whether there was one.
    #[napi]
    pub async fn logout(&self, key: String) -> Result<bool> {
        let bound = self.bind(&key)?;
        with_keeper!(bound, |keeper, key| keeper.logout(&key).await).map_err(keeper_error)
    }

    /// What the session amounts to now, without a secret and without the
    /// network.
    #[napi]
    pub async fn status(&self, key: String) -> Result<SessionStatus> {
        let bound = self.bind(&key)?;
        let (session, state) = with_keeper!(bound, |keeper, key| {
            let session = keeper.session(&key).await.map_err(store_error)?;
            let state = keeper
                .policy()
                .state(session.as_ref().map(|v| &v.record), keeper.now());
            (session, state)
        });
        let record = session.map(|v| v.record);
        Ok(SessionStatus {
            key,
            issuer: record
                .as_ref()
                .and_then(|r| r.client.as_ref())
                .map(|c| c.issuer.clone()),
            expires_at: record
                .as_ref()
                .and_then(|r| r.tokens.as_ref())
                .and_then(|t| t.expires_at)
                .map(instant),
            can_renew: record.as_ref().is_some_and(authkeep::Record::can_renew),
            state: state.as_str().to_owned(),
            last_error: record.and_then(|r| r.health.last_error).map(|e| LastError {
                class: e.class.as_str().to_owned(),
                at: instant(e.at),
            }),
        })
    }

    /// Calls `callback` with every event of this name: `refreshed`,
    /// `refreshFailed`, `loginRequired` or `stored`.
    #[napi]
    pub fn on(&self, event: String, callback: Listener) -> Result<()> {
        let Some(name) = EVENTS.into_iter().find(|e| *e == event) else {
            return Err(invalid(format!(
                "unknown event {:?}: use one of {}",
                event.chars().take(40).collect::<String>(),
                EVENTS.join(", ")
            )));
        };
        self.listeners
            .by_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, Arc::new(callback)));
        Ok(())
    }

    /// Sends a request with the session's token to the URL's origin, with the
    /// library's 401 rule (its reqwest middleware): a rejection renews the
    /// token (a refresh only if the session still holds it) and the request
    /// is sent once more.
    #[napi]
    pub async fn fetch(&self, key: String, request: FetchRequest) -> Result<FetchResponse> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|_| invalid("fetch needs an absolute URL"))?;
        let origin = url.origin().ascii_serialization();
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| invalid("fetch: not an HTTP method"))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for pair in &request.headers {
            let [name, value] = pair.as_slice() else {
                return Err(invalid("fetch: headers are name-value pairs"));
            };
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid("fetch: not a header name"))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| invalid("fetch: not a header value"))?;
            headers.append(name, value);
        }
        let http = self
            .http
            .get_or_try_init(|| async {
                self.network
                    .client_builder()
                    .and_then(|b| {
                        b.redirect(reqwest::redirect::Policy::limited(10))
                            .build()
                            .map_err(|e| authkeep::TransportError::Setup(e.to_string()))
                    })
                    .map_err(|e| fail(Code::Misconfigured, e))
            })
            .await?
            .clone();
        let on_403 = request.refresh_on_403 == Some(true);
        let bound = self.bind(&key)?;
        let sent = with_keeper!(bound, |keeper, key| {
            let bearer = authkeep::Bearer::new(keeper, key);
            let bearer = if on_403 {
                bearer.refresh_on_403(&origin)
            } else {
                bearer.origin(&origin)
            }
            .map_err(|e| fail(Code::InvalidArgument, e))?;
            let client = reqwest_middleware::ClientBuilder::new(http)
                .with(bearer)
                .build();
            let mut builder = client.request(method, url).headers(headers);
            if let Some(body) = request.body {
                builder = builder.body(body.to_vec());
            }
            builder.send().await
        });
        let response = match sent {
            Ok(response) => response,
            Err(reqwest_middleware::Error::Middleware(e)) => {
                return Err(match e.downcast::<authkeep::Error>() {
                    Ok(error) => keeper_error(error),
                    Err(other) => fail(Code::RetryLater, other),
                });
            }
            Err(reqwest_middleware::Error::Reqwest(e)) => {
                return Err(fail(Code::RetryLater, authkeep::describe_http_error(&e)));
            }
        };
        let status = response.status();
        let final_url = response.url().to_string();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| vec![name.as_str().to_owned(), v.to_owned()])
            })
            .collect();
        let body = response
            .bytes()
            .await
            .map_err(|e| fail(Code::RetryLater, authkeep::describe_http_error(&e)))?;
        Ok(FetchResponse {
            status: status.as_u16(),
            status_text: status.canonical_reason().unwrap_or_default().to_owned(),
            headers,
            body: body.to_vec().into(),
            url: final_url,
        })
    }
}

/// `minValid`: a duration as the command takes it (`'10m'`), or seconds.
fn min_valid_of(value: Either<String, f64>) -> Result<SignedDuration> {
    match value {
        Either::A(text) => authkeep::config::names::parse_duration(&text)
            .map_err(|e| invalid(format!("minValid: {e}"))),
        Either::B(seconds) => {
            let max = authkeep::config::names::MAX_DURATION.as_secs_f64();
            if seconds.is_finite() && (0.0..=max).contains(&seconds) {
                Ok(SignedDuration::from_secs_f64(seconds))
            } else {
                Err(invalid(
                    "minValid: seconds from 0 to 100 years, or a duration such as '10m'",
                ))
            }
        }
    }
}

/// An instant as authkeep prints it: RFC 3339 UTC, to the second.
fn instant(at: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(at.as_second())
        .unwrap_or(at)
        .to_string()
}
