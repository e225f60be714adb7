//! The one place that does HTTP. It turns a request built by [`crate::oauth`] into
//! bytes on the wire and the answer back into an `http::Response<Vec<u8>>`, with a
//! connect time-out, a size cap on the body, no redirects (credentials never follow
//! a redirect to another origin) and extra CA certificates from `SSL_CERT_FILE`.
//! The client is built only when a request is due: the warm path never gets here.

use std::time::Duration;

use http::{Request, Response};

/// Settings of the HTTP client.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    /// Per-connection time-out.
    pub connect_timeout: Duration,
    /// Bound on a whole network step (discovery and request together).
    pub timeout: Duration,
    /// Largest response body read.
    pub max_body_bytes: usize,
    /// Allow plain http to hosts other than loopback.
    pub allow_insecure_http: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            max_body_bytes: 1024 * 1024,
            allow_insecure_http: false,
        }
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

/// An HTTP client for token endpoints.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    max_body_bytes: usize,
}

impl HttpClient {
    /// Builds the client.
    pub fn new(settings: &HttpSettings) -> Result<Self, TransportError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
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
        let client = builder
            .build()
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        Ok(Self {
            client,
            max_body_bytes: settings.max_body_bytes,
        })
    }

    /// Sends a request and reads the answer, up to the size cap.
    pub async fn send(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, TransportError> {
        let request = reqwest::Request::try_from(request)
            .map_err(|e| TransportError::Failed(describe(&e)))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| TransportError::Failed(describe(&e)))?;
        let mut builder = Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| TransportError::Failed(describe(&e)))?
        {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(TransportError::TooLarge(self.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|e| TransportError::Failed(e.to_string()))
    }
}

/// Describes a reqwest error in one line without its URL's query (which never
/// carries secrets here, but a line is easier to read without it).
fn describe(error: &reqwest::Error) -> String {
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
    // Only scheme, host and path: a query or user information in the URL is not
    // worth the risk of showing.
    let host = error.url().map(|u| {
        let mut u = u.clone();
        u.set_query(None);
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.to_string()
    });
    let mut out = match host {
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
