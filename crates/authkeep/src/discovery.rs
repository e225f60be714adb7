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
        check_endpoint(&client.issuer, insecure).map_err(endpoint_failure)?;
        let metadata = match self.cached(&client.issuer, now) {
            Some(metadata) => metadata,
            None => {
                let request = discovery::request(&client.issuer).map_err(|e| {
                    ProviderFailure::local(FailureClass::Misconfiguration, Cause::Local, e)
                })?;
                let response = transport
                    .send(request)
                    .await
                    .map_err(|e| ProviderFailure::transport(format!("discovery: {e}")))?;
                let metadata =
                    discovery::parse(&client.issuer, &response, insecure).map_err(|e| match e {
                        DiscoveryError::Transient(message) => ProviderFailure::transport(message),
                        DiscoveryError::Endpoint(e) => endpoint_failure(e),
                        other => ProviderFailure::local(
                            FailureClass::Misconfiguration,
                            Cause::Answer,
                            other.to_string(),
                        ),
                    })?;
                if let Err(message) = self.remember(&metadata, now) {
                    cache_error(message);
                }
                metadata
            }
        };
        check_endpoint(&metadata.token_endpoint, insecure).map_err(endpoint_failure)
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

/// An endpoint that may not be used is the configuration's fault (or the
/// provider metadata's): retrying will not help.
pub(crate) fn endpoint_failure(error: EndpointError) -> ProviderFailure {
    let cause = match error {
        EndpointError::PlainHttp { .. } => Cause::InsecureEndpoint,
        _ => Cause::Local,
    };
    ProviderFailure::local(FailureClass::Misconfiguration, cause, error.to_string())
}
