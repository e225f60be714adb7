//! A [`reqwest_middleware`] middleware that sends a session's access token to
//! the resource servers it is meant for, and applies the 401 rule
//! (docs/DESIGN.md §3) when one of them rejects it. Needs the `middleware`
//! feature.
//!
//! ```no_run
//! # async fn run(keeper: authkeep::Keeper<authkeep::FileStore>) -> Result<(), Box<dyn std::error::Error>> {
//! use authkeep::SessionKey;
//! use authkeep::middleware::Bearer;
//!
//! let key = SessionKey::new("alice")?;
//! let bearer = Bearer::new(keeper, key).origin("https://api.example.com")?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(bearer)
//!     .build();
//! let answer = client.get("https://api.example.com/v1/me").send().await?;
//! # let _ = answer;
//! # Ok(()) }
//! ```
//!
//! Why a `reqwest-middleware` middleware and not a tower layer: programs that
//! use reqwest already compose a [`reqwest_middleware::ClientWithMiddleware`]
//! (retries, tracing, caching), so this fits beside what they have; and
//! reqwest's own redirect handling stays in reqwest, below the middleware, where
//! it drops the `Authorization` header on a redirect to another host or port.
//!
//! What the caller sees:
//!
//! - A request to a configured origin (scheme, host and port, exactly) carries
//!   `Authorization: Bearer <token>` from [`Keeper::token`], replacing any such
//!   header. A request to any other origin passes through untouched.
//! - If no token can be had (a login is required, a refresh failed and no
//!   valid token is left), the request is not sent: the call fails with
//!   [`reqwest_middleware::Error::Middleware`] wrapping the [`crate::Error`],
//!   which `downcast_ref::<authkeep::Error>()` recovers.
//! - A 401 (or a 403 from an origin configured with [`Bearer::refresh_on_403`])
//!   to the token T makes the keeper renew it ([`Keeper::token_after_rejection`]:
//!   a refresh only if the store still holds T, else the newer stored token),
//!   and the request is sent once more with the new token. Its answer is
//!   returned whatever it is: never more than one retry.
//! - If the keeper cannot renew the token, the rejection itself is returned,
//!   with a [`NotRenewed`] in its extensions (`response.extensions()`) saying
//!   why; the keeper has also reported it as events.
//! - A request whose body cannot be cloned (a stream) is not retried: its
//!   rejection is returned. The token is renewed all the same, so the caller's
//!   own next attempt carries the new one.
//! - Concurrent rejections of one session's token cause one refresh.
//!
//! Redirects: reqwest follows them below the middleware, so the rule judges
//! the final answer, and only when it came from the origin the request was
//! sent to. A chain that leaves the origin and comes back reaches it without
//! the token (reqwest does not put it back), and a 401 there still counts as
//! a rejection: at worst one needless refresh. reqwest compares host and port
//! only, so a client that must never follow a redirect from https to http on
//! the same explicit port should refuse such redirects in its redirect policy.

use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::error::Error;
use crate::keeper::Keeper;
use crate::oauth::EndpointError;
use crate::resource::{ResourceAccess, Verdict};
use crate::session::SessionKey;
use crate::store::Store;

/// Attaches a session's access token to requests for the configured origins,
/// and renews it and retries once when one of them rejects it.
pub struct Bearer<S: Store> {
    access: Arc<ResourceAccess<S>>,
}

impl<S: Store> Clone for Bearer<S> {
    fn clone(&self) -> Self {
        Self {
            access: Arc::clone(&self.access),
        }
    }
}

impl<S: Store> std::fmt::Debug for Bearer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Bearer").field(&self.access).finish()
    }
}

impl<S: Store> Bearer<S> {
    /// The token of session `key`, sent to no origin yet: add each with
    /// [`Bearer::origin`].
    pub fn new(keeper: Keeper<S>, key: SessionKey) -> Self {
        ResourceAccess::new(keeper, key).into()
    }

    /// Sends the token to `origin` too (`https://host[:port]`); see
    /// [`ResourceAccess::origin`].
    pub fn origin(self, origin: &str) -> Result<Self, EndpointError> {
        self.rebuild(|access| access.origin(origin))
    }

    /// Treats a 403 from `origin` as a rejection too, and sends the token there;
    /// see [`ResourceAccess::refresh_on_403`].
    pub fn refresh_on_403(self, origin: &str) -> Result<Self, EndpointError> {
        self.rebuild(|access| access.refresh_on_403(origin))
    }

    /// Which origins receive the token.
    pub fn access(&self) -> &ResourceAccess<S> {
        &self.access
    }

    fn rebuild(
        self,
        change: impl FnOnce(ResourceAccess<S>) -> Result<ResourceAccess<S>, EndpointError>,
    ) -> Result<Self, EndpointError> {
        let access = Arc::unwrap_or_clone(self.access);
        change(access).map(Self::from)
    }
}

impl<S: Store> From<ResourceAccess<S>> for Bearer<S> {
    fn from(access: ResourceAccess<S>) -> Self {
        Self {
            access: Arc::new(access),
        }
    }
}

/// In the extensions of a rejection the middleware passed through because the
/// keeper could not renew the token: why.
#[derive(Clone, Debug)]
pub struct NotRenewed(pub Error);

#[async_trait::async_trait]
impl<S: Store> Middleware for Bearer<S> {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let url = request.url().clone();
        let mut exchange = self.access.exchange();
        let carried = exchange
            .authorize(&url, request.headers_mut())
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        if !carried {
            return next.run(request, extensions).await;
        }
        let spare = request.try_clone();
        let mut response = next.clone().run(request, extensions).await?;
        match exchange.answered(response.url(), response.status()).await {
            Verdict::Retry => {}
            Verdict::NotRenewed(error) => {
                response.extensions_mut().insert(NotRenewed(error));
                return Ok(response);
            }
            Verdict::Keep => return Ok(response),
        }
        let Some(mut retry) = spare else {
            return Ok(response);
        };
        exchange
            .authorize(&url, retry.headers_mut())
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        drop(response);
        next.run(retry, extensions).await
    }
}
