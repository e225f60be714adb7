//! Logins that involve a person: the device authorization grant (RFC 8628) and
//! the authorization code grant with PKCE and a loopback redirect (RFC 8252),
//! driven over the sans-I/O protocol of [`crate::oauth::device`] and
//! [`crate::oauth::authorization`].
//!
//! A login holds the session's lock from before the person is asked until the
//! tokens are stored, so two logins of one session at once ask once: the second
//! waits, finds the session the first one stored, and joins it
//! ([`LoggedIn::Joined`]). Nothing is written before the provider has issued
//! tokens: a login abandoned at any point (its future dropped, on Ctrl-C say)
//! leaves the store as it was.

use std::net::SocketAddr;
use std::time::Duration;

use jiff::Timestamp;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use crate::Keeper;
use crate::error::{Error, FailureClass, Step};
use crate::oauth::authorization::{self, AuthorizationRequest, Callback, CallbackError};
use crate::oauth::device::{self, DeviceAuthorization, Poll};
use crate::oauth::discovery::Metadata;
use crate::oauth::{Cause, ProviderFailure, check_endpoint, display_url, parse_token_response};
use crate::session::{Client, SessionKey, Versioned};
use crate::store::Store;
use crate::token::{Origin, TokenResponse, human};

/// The largest request head the loopback listener reads; a redirect carries a
/// code and a state in its query, far less than this.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long one connection to the loopback listener may take to send its
/// request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The path a loopback redirect URI gets when none is given.
pub const DEFAULT_REDIRECT_PATH: &str = "/callback";

/// How a login ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoggedIn {
    /// This login obtained and stored the session.
    Stored(Versioned),
    /// Another login of the same session finished while this one waited for
    /// it; its session is used, and the person was not asked again.
    Joined(Versioned),
}

impl LoggedIn {
    /// The stored session, whichever login stored it.
    pub fn session(&self) -> &Versioned {
        match self {
            LoggedIn::Stored(v) | LoggedIn::Joined(v) => v,
        }
    }
}

/// A listener on a loopback address for the authorization redirect.
#[derive(Debug)]
pub struct Loopback {
    listener: TcpListener,
    redirect_uri: String,
    path: String,
}

/// Why the loopback listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoopbackError {
    /// The redirect URI is not one a local listener can serve.
    #[error("{0}")]
    InvalidUri(String),
    /// The redirect URI's port is taken by another program.
    #[error("cannot listen on {addr} for the redirect: the port is in use by another program")]
    InUse {
        /// The address.
        addr: SocketAddr,
    },
    /// Listening failed otherwise.
    #[error("cannot listen on {addr} for the redirect: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

impl Loopback {
    /// Listens for the redirect: on `redirect_uri` exactly when given (for
    /// providers that require a registered URI; see
    /// [`authorization::check_redirect_uri`]), else on 127.0.0.1 with a port the
    /// OS chooses and the path [`DEFAULT_REDIRECT_PATH`].
    pub async fn bind(redirect_uri: Option<&str>) -> Result<Self, LoopbackError> {
        let (addr, path) = match redirect_uri {
            Some(uri) => {
                authorization::check_redirect_uri(uri).map_err(LoopbackError::InvalidUri)?
            }
            None => (
                SocketAddr::from(([127, 0, 0, 1], 0)),
                DEFAULT_REDIRECT_PATH.to_owned(),
            ),
        };
        let listener = TcpListener::bind(addr).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                LoopbackError::InUse { addr }
            } else {
                LoopbackError::Io { addr, source }
            }
        })?;
        let redirect_uri = match redirect_uri {
            Some(uri) => uri.to_owned(),
            None => {
                let port = listener
                    .local_addr()
                    .map_err(|source| LoopbackError::Io { addr, source })?
                    .port();
                authorization::loopback_redirect_uri(port, &path)
            }
        };
        Ok(Self {
            listener,
            redirect_uri,
            path,
        })
    }

    /// The redirect URI to send to the provider.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits for the redirect of this login: the first request to the
    /// expected path whose state matches. Requests to other paths (a browser's
    /// favicon) are answered 404 and a redirect with another state (a stale tab,
    /// or a forgery) is answered with a failure page; both are otherwise ignored.
    async fn receive(
        &self,
        state: &str,
        issuer: &str,
        iss_required: bool,
    ) -> Result<(Callback, TcpStream), (CallbackError, TcpStream)> {
        loop {
            let Ok((mut stream, _)) = self.listener.accept().await else {
                // A connection that failed before it was accepted concerns
                // nobody; wait for the next.
                continue;
            };
            let Some(target) = read_target(&mut stream).await else {
                respond(
                    &mut stream,
                    400,
                    &page("Bad request", "authkeep could not read this request."),
                )
                .await;
                continue;
            };
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            if path != self.path {
                respond(&mut stream, 404, &page("Not found", "Nothing here.")).await;
                continue;
            }
            match authorization::parse_callback(query, state, Some(issuer), iss_required) {
                Ok(callback) => return Ok((callback, stream)),
                Err(CallbackError::StateMismatch) => {
                    let text =
                        "This answer does not belong to the sign-in in progress; it was ignored.";
                    respond(&mut stream, 400, &page("Sign-in not recognised", text)).await;
                }
                Err(other) => return Err((other, stream)),
            }
        }
    }
}

/// Reads a request head and returns its target (path and query), or `None`
/// for anything that is not a complete, small GET request head.
///
/// `httparse` reads the head; the listener answers one redirect and needs no
/// HTTP server beyond that.
async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 2048];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(chunk.get(..n)?);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buffer) {
                Ok(httparse::Status::Complete(_)) => {
                    return (request.method == Some("GET"))
                        .then(|| request.path.map(str::to_owned))
                        .flatten();
                }
                Ok(httparse::Status::Partial) if buffer.len() < MAX_REQUEST_HEAD => {}
                _ => return None,
            }
        }
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

/// Writes a small HTML answer and closes the connection. A browser that went
/// away meanwhile misses the page; the login's outcome does not depend on it.
async fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(READ_TIMEOUT, write).await.is_err() {
        // Nobody reads the page: nothing more to do for it.
    }
}

/// A small self-contained page.
fn page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>authkeep: {title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}</style>\
</head><body><h1>{title}</h1><p>{text}</p></body></html>",
        title = escape_html(title),
        text = escape_html(text)
    )
}

/// Escapes text for HTML element content and attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Cryptographically random bytes, or the login's error.
fn random<const N: usize>(key: &SessionKey) -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        login_error(
            key,
            ProviderFailure::local(
                FailureClass::Misconfiguration,
                Cause::Local,
                format!("the system's random number generator failed: {e}"),
            ),
        )
    })?;
    Ok(bytes)
}

fn login_error(key: &SessionKey, failure: ProviderFailure) -> Error {
    Error::Provider {
        key: key.clone(),
        step: Step::Login,
        failure,
    }
}

/// A failure found on this side that retrying will not mend.
fn misconfigured(key: &SessionKey, description: impl Into<String>) -> Error {
    login_error(
        key,
        ProviderFailure::local(FailureClass::Misconfiguration, Cause::Local, description),
    )
}

/// A refusal by the person or the provider: the session still needs a login.
fn refused(mut failure: ProviderFailure) -> ProviderFailure {
    failure.class = FailureClass::InteractionRequired;
    failure
}

impl<S: Store> Keeper<S> {
    /// Logs in with the device authorization grant (RFC 8628): asks the
    /// provider for a user code, hands it to `show` for the person to enter at
    /// the verification URI, and polls the token endpoint at the provider's
    /// interval (five seconds more after each `slow_down`) until the person
    /// approves, refuses, or the code expires. A network failure while polling
    /// is retried at the next interval.
    ///
    /// `extra` parameters go into the device authorization request (an
    /// `audience`, say). `wait` bounds the wait for another login of the same
    /// session to finish.
    pub async fn login_device(
        &self,
        key: &SessionKey,
        client: Client,
        metadata: &Metadata,
        extra: &[(String, String)],
        wait: Duration,
        show: impl FnOnce(&DeviceAuthorization) + Send,
    ) -> Result<LoggedIn, Error> {
        let insecure = self.inner.network.allow_insecure_http;
        let device_endpoint = metadata
            .device_authorization_endpoint
            .as_deref()
            .ok_or_else(|| {
                misconfigured(
                    key,
                    format!(
                        "the provider {} offers no device authorization endpoint",
                        display_url(&metadata.issuer)
                    ),
                )
            })?;
        let device_endpoint = check_endpoint(device_endpoint, insecure)
            .map_err(|e| misconfigured(key, e.to_string()))?;
        let token_endpoint = check_endpoint(&metadata.token_endpoint, insecure)
            .map_err(|e| misconfigured(key, e.to_string()))?;
        self.logging_in(key, wait, async {
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let request = device::authorization_request(
                &device_endpoint,
                &client,
                client.scope.as_deref(),
                &extra,
            )
            .map_err(|e| misconfigured(key, e))?;
            let secrets = crate::oauth::client_secrets(&client);
            let (_, response) = self
                .exchange(request)
                .await
                .map_err(|f| login_error(key, f))?;
            let authorization = device::parse_authorization(&response, self.now(), &secrets)
                .map_err(|f| login_error(key, f))?;
            show(&authorization);
            let secrets = device::secrets(&client, &authorization.device_code);
            let mut interval = authorization.interval;
            loop {
                tokio::time::sleep(interval).await;
                if self.now() >= authorization.expires_at {
                    return Err(login_error(
                        key,
                        ProviderFailure::local(
                            FailureClass::InteractionRequired,
                            Cause::Local,
                            "the user code expired before the sign-in was approved",
                        ),
                    ));
                }
                let request =
                    device::token_request(&token_endpoint, &client, &authorization.device_code)
                        .map_err(|e| misconfigured(key, e))?;
                let poll = match self.exchange(request).await {
                    Ok((sent_at, response)) => {
                        match device::parse_poll(&response, self.now(), &secrets) {
                            Poll::Granted(tokens) => return Ok((client, tokens, sent_at)),
                            poll => poll,
                        }
                    }
                    // Nobody has been refused yet: try again at the next interval.
                    Err(failure) if failure.class == FailureClass::Transient => Poll::Pending,
                    Err(failure) => return Err(login_error(key, failure)),
                };
                interval = device::next_interval(interval, &poll);
                match poll {
                    Poll::Denied(failure) | Poll::Expired(failure) => {
                        return Err(login_error(key, refused(failure)));
                    }
                    Poll::Failed(failure) if failure.class != FailureClass::Transient => {
                        return Err(login_error(key, failure));
                    }
                    // Pending, slow_down, or a failure worth another poll.
                    _ => {}
                }
            }
        })
        .await
    }

    /// Logs in with the authorization code grant, PKCE S256 and a loopback
    /// redirect (RFC 8252): hands the authorization URL to `open` (to open a
    /// browser, or print it), waits for the redirect on `loopback` for at most
    /// `timeout`, checks its `state` and `iss` (RFC 9207; required when the
    /// metadata promises it), and exchanges the code. The browser is shown a
    /// small page saying how it ended.
    ///
    /// `extra` parameters go into the authorization URL (`audience`, `prompt`,
    /// …). `timeout` also bounds the wait for another login of the same session.
    #[allow(clippy::too_many_arguments)]
    pub async fn login_browser(
        &self,
        key: &SessionKey,
        client: Client,
        metadata: &Metadata,
        extra: &[(String, String)],
        loopback: Loopback,
        timeout: Duration,
        open: impl FnOnce(&Url) + Send,
    ) -> Result<LoggedIn, Error> {
        let insecure = self.inner.network.allow_insecure_http;
        let endpoint = metadata.authorization_endpoint.as_deref().ok_or_else(|| {
            misconfigured(
                key,
                format!(
                    "the provider {} offers no authorization endpoint",
                    display_url(&metadata.issuer)
                ),
            )
        })?;
        let endpoint =
            check_endpoint(endpoint, insecure).map_err(|e| misconfigured(key, e.to_string()))?;
        let token_endpoint = check_endpoint(&metadata.token_endpoint, insecure)
            .map_err(|e| misconfigured(key, e.to_string()))?;
        let methods = &metadata.code_challenge_methods_supported;
        if !methods.is_empty() && !methods.iter().any(|m| m == "S256") {
            return Err(misconfigured(
                key,
                format!(
                    "the provider {} does not accept PKCE with S256 (it lists {}); authkeep does not log in without it",
                    display_url(&metadata.issuer),
                    methods.join(", ")
                ),
            ));
        }
        let flow = async {
            let pkce = authorization::new_pkce(random(key)?);
            let state = authorization::new_state(random(key)?);
            let url = authorization::authorization_url(&AuthorizationRequest {
                endpoint: &endpoint,
                client_id: &client.client_id,
                redirect_uri: loopback.redirect_uri(),
                scope: client.scope.as_deref(),
                state: &state,
                challenge: &pkce.challenge,
                extra,
            });
            open(&url);
            let iss_required = metadata.authorization_response_iss_parameter_supported;
            let (callback, mut stream) = match loopback
                .receive(&state, &metadata.issuer, iss_required)
                .await
            {
                Ok(received) => received,
                Err((error, mut stream)) => {
                    let text = format!("Sign-in failed: {error}.");
                    respond(&mut stream, 400, &page("Sign-in failed", &text)).await;
                    return Err(misconfigured(key, error.to_string()));
                }
            };
            let code = match callback {
                Callback::Code { code } => code,
                Callback::Error { code, description } => {
                    let said = if description.is_empty() {
                        code.clone()
                    } else {
                        format!("{code}: {description}")
                    };
                    let text = format!("The provider refused the sign-in ({said}).");
                    respond(&mut stream, 400, &page("Sign-in refused", &text)).await;
                    let class = if code == "access_denied" {
                        FailureClass::InteractionRequired
                    } else {
                        FailureClass::Misconfiguration
                    };
                    let failure = ProviderFailure {
                        code: Some(code),
                        ..ProviderFailure::local(
                            class,
                            Cause::Answer,
                            format!("the provider refused the sign-in ({said})"),
                        )
                    };
                    return Err(login_error(key, failure));
                }
                // `Callback` may grow; anything else is not a code to exchange.
                #[allow(unreachable_patterns)]
                _ => return Err(misconfigured(key, "the redirect carried no code")),
            };
            let request = authorization::token_request(
                &token_endpoint,
                &client,
                &code,
                loopback.redirect_uri(),
                &pkce.verifier,
            )
            .map_err(|e| misconfigured(key, e))?;
            let secrets = authorization::secrets(&client, &code, &pkce.verifier);
            let exchanged = self
                .exchange(request)
                .await
                .and_then(|(sent_at, response)| {
                    parse_token_response(&response, self.now(), &secrets)
                        .map(|tokens| (tokens, sent_at))
                });
            match exchanged {
                Ok((tokens, sent_at)) => {
                    let text =
                        "You are signed in. You can close this tab and return to the terminal.";
                    respond(&mut stream, 200, &page("Signed in", text)).await;
                    Ok((client, tokens, sent_at))
                }
                Err(failure) => {
                    let text = format!("Sign-in failed: {}.", failure.summary());
                    respond(&mut stream, 400, &page("Sign-in failed", &text)).await;
                    Err(login_error(key, failure))
                }
            }
        };
        let timed = async {
            tokio::time::timeout(timeout, flow)
                .await
                .unwrap_or_else(|_| {
                    Err(login_error(
                        key,
                        ProviderFailure::local(
                            FailureClass::InteractionRequired,
                            Cause::TimedOut,
                            format!("no sign-in arrived within {}", human(timeout)),
                        ),
                    ))
                })
        };
        self.logging_in(key, timeout, timed).await
    }

    /// Runs a login under the session's lock, waiting at most `wait` for
    /// another login of the session; if one stored a session meanwhile, joins
    /// it instead of running `flow`. Stores what `flow` obtained.
    async fn logging_in(
        &self,
        key: &SessionKey,
        wait: Duration,
        flow: impl Future<Output = Result<(Client, TokenResponse, Timestamp), Error>>,
    ) -> Result<LoggedIn, Error> {
        let store = &self.inner.store;
        let before = store.load(key).await?.map(|v| v.generation);
        let on_wait = || {
            self.emit(crate::Event::WaitingForLock { key: key.clone() });
        };
        let guard = store.lock(key, wait, on_wait).await?;
        if let Some(current) = store.load(key).await?
            && Some(current.generation) != before
            && current
                .record
                .tokens
                .as_ref()
                .is_some_and(|t| t.origin == Origin::Login)
        {
            return Ok(LoggedIn::Joined(current));
        }
        let (client, tokens, sent_at) = flow.await?;
        self.write_login(&guard, key, client, tokens, Origin::Login, sent_at)
            .await
            .map(LoggedIn::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let shown = page("a<b", "\"x\" & 'y' <script>");
        assert!(shown.contains("a&lt;b"), "{shown}");
        assert!(
            shown.contains("&quot;x&quot; &amp; &#39;y&#39; &lt;script&gt;"),
            "{shown}"
        );
        assert!(!shown.contains("<script>"));
    }

    #[tokio::test]
    async fn a_loopback_listener_reports_a_port_in_use() {
        let first = Loopback::bind(None).await.unwrap();
        let uri = first.redirect_uri().to_owned();
        assert!(
            uri.starts_with("http://127.0.0.1:") && uri.ends_with("/callback"),
            "{uri}"
        );
        let error = Loopback::bind(Some(&uri)).await.unwrap_err();
        assert!(matches!(error, LoopbackError::InUse { .. }), "{error:?}");
        assert!(error.to_string().contains("in use"), "{error}");
        let error = Loopback::bind(Some("https://127.0.0.1:1234/cb"))
            .await
            .unwrap_err();
        assert!(matches!(error, LoopbackError::InvalidUri(_)), "{error:?}");
    }
}
