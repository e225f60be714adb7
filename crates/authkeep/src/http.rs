//! The one place that does HTTP. The protocol ([`crate::oauth`]) builds an
//! `http::Request<Vec<u8>>` and reads an `http::Response<Vec<u8>>`; a
//! [`Transport`] carries one to the other. The default transport is a
//! `reqwest::Client`: the caller's own (so its proxies, roots and time-outs
//! apply) or one built here, only when a request is due, with a connect
//! time-out, no redirects (credentials never follow one) and extra CA
//! certificates from `SSL_CERT_FILE`. Either way the answer's body is capped.
//! Tests use a closure as the transport and feed canned answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};

/// A boxed future, as [`Transport::send`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries a request to its endpoint and brings the answer back.
///
/// A closure `Fn(http::Request<Vec<u8>>) -> impl Future<Output =
/// Result<http::Response<Vec<u8>>, TransportError>>` is a transport, which is how
/// tests feed canned answers.
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` and reads the whole answer.
    fn send(
        &self,
        request: Request<Vec<u8>>,
    ) -> BoxFuture<'_, Result<Response<Vec<u8>>, TransportError>>;
}

impl<F, Fut> Transport for F
where
    F: Fn(Request<Vec<u8>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Vec<u8>>, TransportError>> + Send + 'static,
{
    fn send(
        &self,
        request: Request<Vec<u8>>,
    ) -> BoxFuture<'_, Result<Response<Vec<u8>>, TransportError>> {
        Box::pin(self(request))
    }
}

/// A transport failure: no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The HTTP client could not be set up (for example a bad `SSL_CERT_FILE`).
    #[error("cannot set up HTTP: {0}")]
    Setup(String),
    /// Connecting, sending or receiving failed.
    #[error("{0}")]
    Failed(String),
    /// The answer was larger than the cap.
    #[error("the answer exceeded {0} bytes")]
    TooLarge(usize),
}

/// How the network is used.
///
/// ```
/// # use authkeep::Network;
/// # use std::time::Duration;
/// let network = Network::default().with_timeout(Duration::from_secs(5));
/// assert_eq!(network.timeout, Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Network {
    /// Per-connection time-out of the client built here (a caller's own
    /// `reqwest::Client` keeps its own).
    pub connect_timeout: Duration,
    /// Bound on a whole network step (discovery and request together), whatever
    /// the client.
    pub timeout: Duration,
    /// Largest answer body read.
    pub max_body_bytes: usize,
    /// Allow plain http to hosts other than loopback.
    pub allow_insecure_http: bool,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            max_body_bytes: 1024 * 1024,
            allow_insecure_http: false,
        }
    }
}

impl Network {
    /// The per-connection time-out of the client built here.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The bound on a whole network step.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest answer body read.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Allows plain http to hosts other than loopback. Dangerous: anyone on the
    /// path can read the tokens.
    pub fn with_insecure_http_allowed(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// A `reqwest` client builder set up as the keeper sets up its own: the
    /// connect time-out, no redirects (credentials never follow one), authkeep's
    /// user agent, and the extra CA certificates of `SSL_CERT_FILE`. For a
    /// program that also calls resource servers and wants one connection pool:
    /// build it, then hand it to [`crate::KeeperBuilder::http_client`].
    pub fn client_builder(&self) -> Result<reqwest::ClientBuilder, TransportError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authkeep/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
            let pem = std::fs::read(&path).map_err(|e| {
                TransportError::Setup(format!(
                    "cannot read SSL_CERT_FILE {}: {e}",
                    path.to_string_lossy()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                TransportError::Setup(format!(
                    "SSL_CERT_FILE {} holds no usable certificate: {e}",
                    path.to_string_lossy()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(builder)
    }
}

/// A `reqwest::Client` as a transport, with the body cap.
#[derive(Clone, Debug)]
pub(crate) struct Reqwest {
    client: reqwest::Client,
    max_body_bytes: usize,
}

impl Reqwest {
    /// The caller's client.
    pub(crate) fn with_client(client: reqwest::Client, network: &Network) -> Self {
        Self {
            client,
            max_body_bytes: network.max_body_bytes,
        }
    }

    /// A client built for token endpoints.
    pub(crate) fn new(network: &Network) -> Result<Self, TransportError> {
        // The keeper bounds each network step by `network.timeout` itself and
        // names it in the failure; the client's own time-out is only a backstop,
        // a second later, so that the two never race to report one time-out.
        let backstop = network.timeout.saturating_add(Duration::from_secs(1));
        let client = network
            .client_builder()?
            .timeout(backstop)
            .build()
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        Ok(Self::with_client(client, network))
    }

    async fn fetch(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let origin = request.uri().authority().map(|a| a.to_string());
        let request = reqwest::Request::try_from(request)
            .map_err(|e| TransportError::Failed(describe_http_error(&e)))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| TransportError::Failed(describe_http_error(&e)))?;
        // A caller's client may follow redirects; an answer from another origin
        // is not the endpoint's.
        if response.url().authority() != origin.as_deref().unwrap_or_default() {
            return Err(TransportError::Failed(
                "the answer came from another origin (a redirect was followed)".into(),
            ));
        }
        let mut builder = Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| TransportError::Failed(describe_http_error(&e)))?
        {
            if body.len().saturating_add(chunk.len()) > self.max_body_bytes {
                return Err(TransportError::TooLarge(self.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|e| TransportError::Failed(e.to_string()))
    }
}

impl Transport for Reqwest {
    fn send(
        &self,
        request: Request<Vec<u8>>,
    ) -> BoxFuture<'_, Result<Response<Vec<u8>>, TransportError>> {
        Box::pin(self.fetch(request))
    }
}

/// The transport a keeper uses: the caller's, or a `reqwest::Client` built
/// on first use (the warm path never builds one).
pub(crate) enum Carrier {
    /// Given by the caller.
    Given(Arc<dyn Transport>),
    /// Built when first needed.
    Lazy(tokio::sync::OnceCell<Arc<dyn Transport>>),
}

impl Carrier {
    /// The transport, building the default one if need be.
    pub(crate) async fn get(
        &self,
        network: &Network,
    ) -> Result<Arc<dyn Transport>, TransportError> {
        match self {
            Carrier::Given(transport) => Ok(Arc::clone(transport)),
            Carrier::Lazy(cell) => cell
                .get_or_try_init(|| async {
                    Reqwest::new(network).map(|t| Arc::new(t) as Arc<dyn Transport>)
                })
                .await
                .map(Arc::clone),
        }
    }
}

/// Describes a failed `reqwest` exchange in one line: what went wrong, the URL
/// (without user information, query or fragment) and the innermost cause. For
/// programs that call resource servers with the same client and want their
/// failures told as the keeper tells its own.
pub fn describe_http_error(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the connection broke while reading the answer"
    } else if error.is_request() {
        "the request failed"
    } else {
        "HTTP error"
    };
    // A query or user information in the URL is not worth the risk of showing.
    let shown = error.url().map(|u| {
        let mut u = u.clone();
        u.set_query(None);
        u.set_fragment(None);
        crate::oauth::display_url(u.as_str())
    });
    let mut out = match shown {
        Some(url) => format!("{what} ({url})"),
        None => what.to_owned(),
    };
    // The innermost cause says what happened on the wire ("connection closed
    // before message completed", "Connection refused"); it never holds the
    // request, whose body is where secrets travel.
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    if !std::ptr::addr_eq(cause, error) {
        out.push_str(&format!(": {cause}"));
    }
    out
}
