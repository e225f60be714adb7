//! Where a session's token endpoint comes from: given explicitly, or from the
//! issuer's OpenID Connect discovery document, fetched only when a request is
//! due and cached with a lifetime, in memory and (for one-shot processes) in a
//! directory. The document itself is built and read by [`crate::oauth::discovery`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::error::FailureClass;
use crate::http::{Network, Transport};
use crate::oauth::discovery::{self, DiscoveryError, Metadata};
use crate::oauth::{Cause, EndpointError, ProviderFailure, check_endpoint};
use crate::session::Client;
use crate::token::{saturating_add, truncate};

/// Provider metadata, cached.
#[derive(Debug)]
pub(crate) struct Discovery {
    dir: Option<PathBuf>,
    ttl: SignedDuration,
    memory: Mutex<HashMap<String, (Metadata, Timestamp)>>,
}

/// A cache entry on disk.
#[derive(Serialize, Deserialize)]
struct Cached {
    fetched_at: Timestamp,
    metadata: Metadata,
}

impl Discovery {
    /// A cache in `dir` (`None`: in memory only) whose entries live `ttl`.
    pub(crate) fn new(dir: Option<PathBuf>, ttl: SignedDuration) -> Self {
        Self {
            dir,
            ttl,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The token endpoint of `client`'s provider. `cache_error` hears of a
    /// cache that could not be written (it only costs a discovery next time).
    pub(crate) async fn token_endpoint(
        &self,
        client: &Client,
        transport: &dyn Transport,
        network: &Network,
        now: Timestamp,
        cache_error: impl Fn(String),
    ) -> Result<Url, ProviderFailure> {
        let insecure = network.allow_insecure_http;
        if let Some(explicit) = &client.token_endpoint {
            return check_endpoint(explicit, insecure).map_err(endpoint_failure);
        }
        let metadata = self
            .metadata(&client.issuer, transport, network, now, cache_error)
            .await?;
        check_endpoint(&metadata.token_endpoint, insecure).map_err(endpoint_failure)
    }

    /// The metadata of `issuer`: from the cache while it is fresh, else fetched,
    /// from the OpenID Connect discovery URL or, when that document is not
    /// served, the RFC 8414 URL. A plain http issuer off loopback is refused
    /// before any request. The caller bounds the time it takes.
    pub(crate) async fn metadata(
        &self,
        issuer: &str,
        transport: &dyn Transport,
        network: &Network,
        now: Timestamp,
        cache_error: impl Fn(String),
    ) -> Result<Metadata, ProviderFailure> {
        let insecure = network.allow_insecure_http;
        discovery::check_issuer(issuer, insecure).map_err(|e| match e {
            DiscoveryError::InsecureIssuer(_) => discovery_failure(e),
            other => ProviderFailure::local(
                FailureClass::Misconfiguration,
                Cause::Local,
                other.to_string(),
            ),
        })?;
        if let Some(metadata) = self.cached(issuer, now) {
            return Ok(metadata);
        }
        let first = fetch(transport, issuer, discovery::request, |response| {
            discovery::parse(issuer, response, insecure)
        })
        .await;
        let metadata = match first {
            Ok(metadata) => metadata,
            Err(Fetch::Failed(failure)) => return Err(failure),
            Err(Fetch::Refused(not_served @ DiscoveryError::NotServed(_))) => {
                fetch(transport, issuer, discovery::oauth_request, |response| {
                    discovery::parse_oauth(issuer, response, insecure)
                })
                .await
                .map_err(|fallback| match fallback {
                    Fetch::Failed(failure) => failure,
                    Fetch::Refused(e) => {
                        discovery_failure(discovery::after_fallback(&not_served, e))
                    }
                })?
            }
            Err(Fetch::Refused(e)) => return Err(discovery_failure(e)),
        };
        if let Err(message) = self.remember(&metadata, now) {
            cache_error(message);
        }
        Ok(metadata)
    }

    fn path(&self, issuer: &str) -> Option<PathBuf> {
        // A digest, not the URL: issuers hold characters no file name may, and
        // two URLs must never share a file.
        let digest = Sha256::digest(issuer.as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{name}.json")))
    }

    fn cached(&self, issuer: &str, now: Timestamp) -> Option<Metadata> {
        let fresh = |fetched: Timestamp| fetched <= now && now < saturating_add(fetched, self.ttl);
        let in_memory = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer)
            .filter(|(_, fetched)| fresh(*fetched))
            .map(|(m, _)| m.clone());
        if in_memory.is_some() {
            return in_memory;
        }
        // A cache file that cannot be read or parsed is a cache miss.
        let bytes = std::fs::read(self.path(issuer)?).ok()?;
        let cached: Cached = serde_json::from_slice(&bytes).ok()?;
        (cached.metadata.issuer == issuer && fresh(cached.fetched_at)).then_some(cached.metadata)
    }

    fn remember(&self, metadata: &Metadata, now: Timestamp) -> Result<(), String> {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(metadata.issuer.clone(), (metadata.clone(), now));
        let Some(path) = self.path(&metadata.issuer) else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&Cached {
            fetched_at: truncate(now),
            metadata: metadata.clone(),
        })
        .map_err(|e| e.to_string())?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        crate::lock::create_private_dir(dir)
            .and_then(|()| crate::lock::write_atomically(&path, ".metadata.", &bytes))
            .map_err(|e| e.to_string())
    }
}

/// Why one metadata request failed: before an answer (the transport), or in
/// what the answer said.
enum Fetch {
    Failed(ProviderFailure),
    Refused(DiscoveryError),
}

/// Sends one metadata request and reads its answer.
async fn fetch(
    transport: &dyn Transport,
    issuer: &str,
    build: fn(&str) -> Result<http::Request<Vec<u8>>, String>,
    read: impl FnOnce(&http::Response<Vec<u8>>) -> Result<Metadata, DiscoveryError>,
) -> Result<Metadata, Fetch> {
    let request = build(issuer).map_err(|e| {
        Fetch::Failed(ProviderFailure::local(
            FailureClass::Misconfiguration,
            Cause::Local,
            e,
        ))
    })?;
    let response = transport
        .send(request)
        .await
        .map_err(|e| Fetch::Failed(ProviderFailure::transport(format!("discovery: {e}"))))?;
    read(&response).map_err(Fetch::Refused)
}

/// What a discovery failure means: transient answers may be retried; anything
/// else is the issuer's configuration (or the provider's metadata).
pub(crate) fn discovery_failure(error: DiscoveryError) -> ProviderFailure {
    match error {
        DiscoveryError::Transient(message) => ProviderFailure::transport(message),
        DiscoveryError::Endpoint(e) => endpoint_failure(e),
        DiscoveryError::InsecureIssuer(message) => ProviderFailure::local(
            FailureClass::Misconfiguration,
            Cause::InsecureEndpoint,
            message,
        ),
        other => ProviderFailure::local(
            FailureClass::Misconfiguration,
            Cause::Answer,
            other.to_string(),
        ),
    }
}

/// An endpoint that may not be used is the configuration's fault (or the
/// provider metadata's): retrying will not help.
pub(crate) fn endpoint_failure(error: EndpointError) -> ProviderFailure {
    let cause = match error {
        EndpointError::PlainHttp { .. } => Cause::InsecureEndpoint,
        _ => Cause::Local,
    };
    ProviderFailure::local(FailureClass::Misconfiguration, cause, error.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::{Request, Response};

    use super::*;
    use crate::http::TransportError;

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    /// A transport that answers from a queue and records the URLs asked.
    fn canned(
        answers: Vec<Result<(u16, String), String>>,
    ) -> (impl Transport, Arc<Mutex<Vec<String>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers));
        let seen = asked.clone();
        let transport = move |request: Request<Vec<u8>>| {
            seen.lock().unwrap().push(request.uri().to_string());
            let next = answers.lock().unwrap().remove(0);
            async move {
                match next {
                    Ok((status, body)) => Ok(Response::builder()
                        .status(status)
                        .body(body.into_bytes())
                        .unwrap()),
                    Err(message) => Err(TransportError::Failed(message)),
                }
            }
        };
        (transport, asked)
    }

    fn document(issuer: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
        })
        .to_string()
    }

    async fn metadata(
        discovery: &Discovery,
        transport: &impl Transport,
        issuer: &str,
    ) -> Result<Metadata, ProviderFailure> {
        discovery
            .metadata(issuer, transport, &Network::default(), now(), |m| {
                panic!("cache not written: {m}")
            })
            .await
    }

    fn fresh() -> Discovery {
        Discovery::new(None, SignedDuration::from_hours(1))
    }

    const OIDC: &str = "https://h/tenant/.well-known/openid-configuration";
    const RFC8414: &str = "https://h/.well-known/oauth-authorization-server/tenant";

    #[tokio::test]
    async fn not_served_falls_back_to_rfc_8414_and_is_cached() {
        let (transport, asked) = canned(vec![
            Ok((404, String::new())),
            Ok((200, document("https://h/tenant"))),
        ]);
        let discovery = fresh();
        let m = metadata(&discovery, &transport, "https://h/tenant")
            .await
            .unwrap();
        assert_eq!(
            m.revocation_endpoint.as_deref(),
            Some("https://h/tenant/revoke")
        );
        assert_eq!(*asked.lock().unwrap(), [OIDC, RFC8414]);
        // Cached: no third request (the queue is empty and would panic).
        let again = metadata(&discovery, &transport, "https://h/tenant")
            .await
            .unwrap();
        assert_eq!(again, m);
        assert_eq!(asked.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_transient_answer_does_not_fall_back() {
        for first in [
            Ok((503, String::new())),
            Ok((429, String::new())),
            Ok((200, "<html>".to_owned())),
            Err("connection refused".to_owned()),
        ] {
            let (transport, asked) = canned(vec![first]);
            let failure = metadata(&fresh(), &transport, "https://h/tenant")
                .await
                .unwrap_err();
            assert_eq!(failure.class, FailureClass::Transient, "{failure:?}");
            assert_eq!(*asked.lock().unwrap(), [OIDC]);
        }
    }

    #[tokio::test]
    async fn when_both_fail_the_failure_names_both_urls() {
        let (transport, _) = canned(vec![Ok((404, String::new())), Ok((403, String::new()))]);
        let failure = metadata(&fresh(), &transport, "https://h/tenant")
            .await
            .unwrap_err();
        assert_eq!(failure.class, FailureClass::Misconfiguration);
        let shown = failure.summary();
        assert!(shown.contains(OIDC) && shown.contains(RFC8414), "{shown}");
        let (transport, _) = canned(vec![Ok((404, String::new())), Err("reset".into())]);
        let failure = metadata(&fresh(), &transport, "https://h/tenant")
            .await
            .unwrap_err();
        assert_eq!(failure.class, FailureClass::Transient);
    }

    #[tokio::test]
    async fn an_issuer_mismatch_in_the_first_document_does_not_fall_back() {
        let (transport, asked) = canned(vec![Ok((200, document("https://h/tenant/")))]);
        let failure = metadata(&fresh(), &transport, "https://h/tenant")
            .await
            .unwrap_err();
        assert!(failure.summary().contains("trailing slash"), "{failure:?}");
        assert_eq!(asked.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_plain_http_issuer_is_refused_before_any_request() {
        let (transport, asked) = canned(vec![]);
        let failure = metadata(&fresh(), &transport, "http://idp.example")
            .await
            .unwrap_err();
        assert_eq!(failure.cause, Cause::InsecureEndpoint);
        assert!(
            failure.summary().contains("https is required"),
            "{failure:?}"
        );
        assert!(asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_cache_file_of_an_older_version_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let discovery = Discovery::new(Some(dir.path().to_owned()), SignedDuration::from_hours(1));
        let path = discovery.path("https://h").unwrap();
        let old = r#"{"fetched_at":"2026-06-01T11:30:00Z","metadata":{"issuer":"https://h","token_endpoint":"https://h/token","revocation_endpoint":"https://h/revoke"}}"#;
        std::fs::write(&path, old).unwrap();
        let (transport, asked) = canned(vec![]);
        let m = metadata(&discovery, &transport, "https://h").await.unwrap();
        assert_eq!(m.revocation_endpoint.as_deref(), Some("https://h/revoke"));
        assert_eq!(m.introspection_endpoint, None);
        assert!(asked.lock().unwrap().is_empty());
    }
}
