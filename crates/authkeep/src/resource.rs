//! Sending a session's access token to resource servers (docs/DESIGN.md §3, the
//! 401 rule), for every caller that does so: the reqwest middleware
//! (`authkeep::middleware`, feature `middleware`) and programs that follow
//! redirects themselves, such as `authkeep request`.
//!
//! A [`ResourceAccess`] names the origins (scheme, host and port, exactly) the
//! token may be sent to. An [`Exchange`] is one request's use of it, redirects
//! and its one retry included:
//!
//! - the token goes only to a configured origin; a request (or a redirect hop) to
//!   any other origin carries none;
//! - a 401 (or a 403, where configured for that origin) answered to a request
//!   that carried token T calls [`Keeper::token_after_rejection`], which refreshes
//!   only if the store still holds T and otherwise returns the newer stored token
//!   without a network request;
//! - the request is then retried once with the new token; a second rejection, or
//!   a rejection the keeper could not answer with a new token, is the final
//!   answer. Never more than one refresh per exchange, never more than one retry.
//!
//! Concurrent rejections of one session's token share one refresh: the keeper's
//! single flight and the session's lock see to that.

use http::header::HeaderValue;
use http::{HeaderMap, StatusCode};
use url::Url;

use crate::error::Error;
use crate::keeper::{Keeper, Token};
use crate::oauth::{EndpointError, check_endpoint, display_url};
use crate::policy::Demand;
use crate::secret::AccessToken;
use crate::session::SessionKey;
use crate::store::Store;

/// A session's token for resource servers: which origins receive it, and which
/// of them answer 403 (as well as 401) to a token they no longer accept.
///
/// ```no_run
/// # fn run(keeper: authkeep::Keeper<authkeep::FileStore>) -> Result<(), authkeep::oauth::EndpointError> {
/// use authkeep::{ResourceAccess, SessionKey};
///
/// let key = SessionKey::new("alice").expect("a valid name");
/// let access = ResourceAccess::new(keeper, key)
///     .origin("https://api.example.com")?
///     .refresh_on_403("https://files.example.com")?;
/// # let _ = access;
/// # Ok(()) }
/// ```
pub struct ResourceAccess<S: Store> {
    keeper: Keeper<S>,
    key: SessionKey,
    origins: Vec<Recipient>,
}

/// One origin that receives the token.
#[derive(Clone, Debug, PartialEq)]
struct Recipient {
    origin: url::Origin,
    refresh_on_403: bool,
}

impl<S: Store> Clone for ResourceAccess<S> {
    fn clone(&self) -> Self {
        Self {
            keeper: self.keeper.clone(),
            key: self.key.clone(),
            origins: self.origins.clone(),
        }
    }
}

impl<S: Store> std::fmt::Debug for ResourceAccess<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origins: Vec<String> = self
            .origins
            .iter()
            .map(|r| r.origin.ascii_serialization())
            .collect();
        let on_403: Vec<String> = self
            .origins
            .iter()
            .filter(|r| r.refresh_on_403)
            .map(|r| r.origin.ascii_serialization())
            .collect();
        f.debug_struct("ResourceAccess")
            .field("key", &self.key)
            .field("origins", &origins)
            .field("refresh_on_403", &on_403)
            .finish_non_exhaustive()
    }
}

impl<S: Store> ResourceAccess<S> {
    /// The token of session `key`, for no origin yet: add each with
    /// [`ResourceAccess::origin`].
    pub fn new(keeper: Keeper<S>, key: SessionKey) -> Self {
        Self {
            keeper,
            key,
            origins: Vec::new(),
        }
    }

    /// Sends the token to `origin` too: `https://host` or `https://host:port`
    /// (a trailing `/` is accepted; a path, query or user information is
    /// refused, since the token goes to the whole origin). Plain http is
    /// accepted only for loopback hosts, unless the keeper's
    /// [`crate::Network`] allows insecure http.
    pub fn origin(mut self, origin: &str) -> Result<Self, EndpointError> {
        let origin = self.parse_origin(origin)?;
        if !self.origins.iter().any(|r| r.origin == origin) {
            self.origins.push(Recipient {
                origin,
                refresh_on_403: false,
            });
        }
        Ok(self)
    }

    /// Treats a 403 from `origin` as a rejection of the token too, as a 401 is
    /// everywhere (some servers answer 403 to an expired token). Sends the token
    /// to `origin` as [`ResourceAccess::origin`] does.
    pub fn refresh_on_403(self, origin: &str) -> Result<Self, EndpointError> {
        let mut access = self.origin(origin)?;
        let origin = access.parse_origin(origin)?;
        for recipient in &mut access.origins {
            if recipient.origin == origin {
                recipient.refresh_on_403 = true;
            }
        }
        Ok(access)
    }

    fn parse_origin(&self, origin: &str) -> Result<url::Origin, EndpointError> {
        let network = &self.keeper.inner.network;
        let url = check_endpoint(origin, network.allow_insecure_http)?;
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !bare {
            return Err(EndpointError::Invalid {
                shown: display_url(origin),
                reason: "an origin is a scheme, a host and an optional port, \
                         without path, query or user information"
                    .to_owned(),
            });
        }
        Ok(url.origin())
    }

    /// The keeper.
    pub fn keeper(&self) -> &Keeper<S> {
        &self.keeper
    }

    /// The session.
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// Whether a request to `url` carries the token: its origin is one of those
    /// configured.
    pub fn carries_token(&self, url: &Url) -> bool {
        self.recipient(url).is_some()
    }

    fn recipient(&self, url: &Url) -> Option<&Recipient> {
        let origin = url.origin();
        self.origins.iter().find(|r| r.origin == origin)
    }

    /// Whether `status`, answered by `url`'s origin to a request that carried
    /// the token, says the token is no longer accepted: 401 from any configured
    /// origin, 403 from one configured with [`ResourceAccess::refresh_on_403`].
    pub fn is_rejection(&self, url: &Url, status: StatusCode) -> bool {
        match self.recipient(url) {
            Some(recipient) => {
                status == StatusCode::UNAUTHORIZED
                    || (status == StatusCode::FORBIDDEN && recipient.refresh_on_403)
            }
            None => false,
        }
    }

    /// One request's use of the token.
    pub fn exchange(&self) -> Exchange<'_, S> {
        Exchange {
            access: self,
            current: None,
            carried: None,
            retried: false,
        }
    }
}

/// One request's use of a session's token, from its first hop to its final
/// answer: which hops carry the token, and the one retry after a rejection.
///
/// For each hop (the request, each redirect followed, the retry), call
/// [`Exchange::authorize`] before sending it and [`Exchange::answered`] with its
/// answer:
///
/// ```no_run
/// # async fn run(access: authkeep::ResourceAccess<authkeep::FileStore>, client: reqwest::Client, url: url::Url) -> Result<(), Box<dyn std::error::Error>> {
/// use authkeep::resource::Verdict;
///
/// let mut exchange = access.exchange();
/// let response = loop {
///     let mut request = client.get(url.as_str()).build()?;
///     exchange.authorize(&url, request.headers_mut()).await?;
///     let response = client.execute(request).await?;
///     match exchange.answered(&url, response.status()).await {
///         Verdict::Retry => continue,
///         // `Keep`, or `NotRenewed` (with the keeper's error): the answer stands.
///         _ => break response,
///     }
/// };
/// # let _ = response;
/// # Ok(()) }
/// ```
pub struct Exchange<'a, S: Store> {
    access: &'a ResourceAccess<S>,
    /// The token this exchange sends, once it has one.
    current: Option<Token>,
    /// The token the last hop carried, if it carried one.
    carried: Option<AccessToken>,
    /// Whether the one retry has been granted.
    retried: bool,
}

impl<S: Store> std::fmt::Debug for Exchange<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("access", self.access)
            .field("has_token", &self.current.is_some())
            .field("last_hop_carried_token", &self.carried.is_some())
            .field("retried", &self.retried)
            .finish()
    }
}

/// What to do with an answer, by [`Exchange::answered`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Verdict {
    /// The answer is final as far as the token is concerned: it is not a
    /// rejection of a token this hop carried, or the one retry has been spent.
    Keep,
    /// The token was rejected and a newer one is at hand: send the same hop
    /// again, once, after [`Exchange::authorize`].
    Retry,
    /// The token was rejected and the keeper could not give a newer one: the
    /// answer is final, and this says why. The keeper reported it as events too
    /// (a failed refresh, a login required).
    NotRenewed(Error),
}

impl<S: Store> Exchange<'_, S> {
    /// Prepares a hop to `url`: for a configured origin, sets `Authorization:
    /// Bearer <token>` in `headers` (replacing any there) and returns `true`;
    /// for any other origin returns `false`, removing the header only if it
    /// holds this exchange's token (a header of the caller's own stays). The
    /// first hop that needs the token gets it from [`Keeper::token`]; its error
    /// (a login required, a refresh that failed with no valid token left) means
    /// the hop must not be sent.
    pub async fn authorize(&mut self, url: &Url, headers: &mut HeaderMap) -> Result<bool, Error> {
        self.carried = None;
        if !self.access.carries_token(url) {
            let ours = self.current.as_ref().and_then(|t| bearer(&t.access_token));
            if ours.is_some() && headers.get(http::header::AUTHORIZATION) == ours.as_ref() {
                headers.remove(http::header::AUTHORIZATION);
            }
            return Ok(false);
        }
        let token = match &self.current {
            Some(token) => token.access_token.clone(),
            None => {
                let token = self
                    .access
                    .keeper
                    .token(&self.access.key, Demand::new())
                    .await?;
                let access_token = token.access_token.clone();
                self.current = Some(token);
                access_token
            }
        };
        let value = bearer(&token).ok_or_else(|| Error::TokenNotSendable {
            key: self.access.key.clone(),
        })?;
        headers.insert(http::header::AUTHORIZATION, value);
        self.carried = Some(token);
        Ok(true)
    }

    /// Judges the answer `status` from `url` to the last hop prepared with
    /// [`Exchange::authorize`] (`url` is where the answer came from: after a
    /// redirect the HTTP client followed itself, the final URL). A rejection of
    /// a token that hop carried asks the keeper for a newer one, once per
    /// exchange.
    pub async fn answered(&mut self, url: &Url, status: StatusCode) -> Verdict {
        let Some(rejected) = self.carried.take() else {
            return Verdict::Keep;
        };
        if self.retried || !self.access.is_rejection(url, status) {
            return Verdict::Keep;
        }
        self.retried = true;
        match self
            .access
            .keeper
            .token_after_rejection(&self.access.key, &rejected)
            .await
        {
            Ok(token) => {
                self.current = Some(token);
                Verdict::Retry
            }
            Err(error) => Verdict::NotRenewed(error),
        }
    }

    /// Whether the one retry has been granted.
    pub fn retried(&self) -> bool {
        self.retried
    }
}

/// `Bearer <token>` as a header value marked sensitive (HTTP libraries leave
/// such values out of their logs and `Debug` output); `None` for a token that
/// a header cannot carry.
fn bearer(token: &AccessToken) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Client, MemoryStore, Network, TokenResponse};

    fn access(insecure: bool) -> ResourceAccess<MemoryStore> {
        let keeper = Keeper::builder(MemoryStore::default())
            .network(Network::default().with_insecure_http_allowed(insecure))
            .build();
        ResourceAccess::new(keeper, SessionKey::new("s").unwrap())
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn an_origin_is_scheme_host_and_port_exactly() {
        let access = access(false)
            .origin("https://api.example.com")
            .unwrap()
            .origin("http://127.0.0.1:8080/")
            .unwrap();
        assert!(access.carries_token(&url("https://api.example.com/v1/x?y=1")));
        assert!(access.carries_token(&url("https://API.example.com:443/")));
        assert!(access.carries_token(&url("http://127.0.0.1:8080/z")));
        assert!(!access.carries_token(&url("http://api.example.com/")));
        assert!(!access.carries_token(&url("https://api.example.com:8443/")));
        assert!(!access.carries_token(&url("https://evil.api.example.com/")));
        assert!(!access.carries_token(&url("https://api.example.com.evil/")));
        assert!(!access.carries_token(&url("http://127.0.0.1:8081/")));
        assert!(!access.carries_token(&url("http://localhost:8080/")));
    }

    #[test]
    fn paths_user_information_and_plain_http_are_refused() {
        for refused in [
            "https://api.example.com/v1",
            "https://api.example.com/?q=1",
            "https://user:pw@api.example.com",
            "http://api.example.com",
            "ftp://api.example.com",
            "api.example.com",
        ] {
            let error = access(false).origin(refused).unwrap_err();
            assert!(!error.to_string().contains("pw"), "{error}");
        }
        assert!(access(true).origin("http://api.example.com").is_ok());
        assert!(access(false).origin("http://localhost:3000").is_ok());
    }

    #[test]
    fn only_configured_origins_count_403_as_a_rejection() {
        let access = access(false)
            .origin("https://a.example")
            .unwrap()
            .refresh_on_403("https://b.example")
            .unwrap();
        let a = url("https://a.example/x");
        let b = url("https://b.example/x");
        let c = url("https://c.example/x");
        assert!(access.is_rejection(&a, StatusCode::UNAUTHORIZED));
        assert!(!access.is_rejection(&a, StatusCode::FORBIDDEN));
        assert!(access.is_rejection(&b, StatusCode::UNAUTHORIZED));
        assert!(access.is_rejection(&b, StatusCode::FORBIDDEN));
        assert!(!access.is_rejection(&c, StatusCode::UNAUTHORIZED));
        assert!(!access.is_rejection(&a, StatusCode::NOT_FOUND));
    }

    #[tokio::test]
    async fn a_hop_to_another_origin_carries_no_token_and_its_401_is_final() {
        let access = access(false).origin("https://a.example").unwrap();
        let key = access.key().clone();
        let response = TokenResponse {
            access_token: crate::AccessToken::new("at-1"),
            ..TokenResponse::default()
        };
        access
            .keeper()
            .import_login(&key, Client::new("https://idp.example", "c"), response)
            .await
            .unwrap();
        let mut exchange = access.exchange();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, "Basic x".parse().unwrap());
        let other = url("https://b.example/");
        assert!(!exchange.authorize(&other, &mut headers).await.unwrap());
        assert_eq!(
            headers[http::header::AUTHORIZATION],
            "Basic x",
            "the caller's own"
        );
        assert!(matches!(
            exchange.answered(&other, StatusCode::UNAUTHORIZED).await,
            Verdict::Keep
        ));

        let mine = url("https://a.example/");
        assert!(exchange.authorize(&mine, &mut headers).await.unwrap());
        let value = headers.get(http::header::AUTHORIZATION).unwrap();
        assert!(value.is_sensitive());
        assert_eq!(format!("{value:?}"), "Sensitive");
        assert!(!format!("{exchange:?}").contains("at-1"));

        // A redirect to another origin with the same headers: the token is removed.
        assert!(!exchange.authorize(&other, &mut headers).await.unwrap());
        assert!(headers.get(http::header::AUTHORIZATION).is_none());
        assert!(!exchange.retried());
    }
}
