//! Logging out, and telling the provider (RFC 7009): the session is removed
//! locally first, under its lock (compare-and-delete on the generation), and
//! only then, with the lock released, are its tokens revoked at the revocation
//! endpoint the issuer's metadata names: the refresh token first (revoking it
//! usually ends the whole grant), then the access token, each request within the
//! network time-out and authenticated as the client is at the token endpoint. A
//! session that renews by repeating the client credentials grant holds only an
//! access token. Nothing the provider answers, and no failure to reach it, brings
//! a removed session back: a failed revocation is reported, never undone.

use crate::error::{Error, FailureClass};
use crate::events::ChangeKind;
use crate::keeper::Keeper;
use crate::oauth::revocation::{self, Revoked, TokenKind};
use crate::oauth::{Cause, ProviderFailure, check_endpoint};
use crate::session::{Client, Record, Renewal, SessionKey};
use crate::store::Store;

/// What a logout did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Logout {
    /// Whether there was a session, now removed.
    pub removed: bool,
    /// What became of its tokens at the provider.
    pub revocation: Revocation,
}

/// What became of a logged-out session's tokens at the provider. Never holds a
/// secret.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Revocation {
    /// Revocation was not asked for.
    NotAsked,
    /// The session held no token to revoke (or there was no session).
    NothingToRevoke,
    /// The provider's metadata names no revocation endpoint.
    NotOffered,
    /// The provider answered every revocation request. Each flag says whether
    /// that token was revoked; false when the session held none or the provider
    /// does not revoke that kind (`unsupported_token_type`, common for JWT
    /// access tokens).
    Revoked {
        /// The refresh token was revoked.
        refresh_token: bool,
        /// The access token was revoked.
        access_token: bool,
    },
    /// Finding the endpoint or a revocation request failed; the session is
    /// removed locally all the same. Requests stop at the first failure.
    Failed {
        /// What went wrong (sanitised, without secrets).
        failure: ProviderFailure,
        /// Whether the refresh token had been revoked before the failure.
        refresh_token_revoked: bool,
    },
}

impl<S: Store> Keeper<S> {
    /// Removes a session under its lock and, when `revoke` is set, then revokes
    /// its tokens at the provider (RFC 7009) as the module documentation
    /// describes. Errors are the store's alone: what happens at the provider is
    /// reported in [`Logout::revocation`].
    pub async fn logout_and_revoke(&self, key: &SessionKey, revoke: bool) -> Result<Logout, Error> {
        let removed = {
            let guard = self.lock(key).await?;
            match self.inner.store.load(key).await? {
                Some(current) => {
                    self.inner.store.remove(&guard, current.generation).await?;
                    Some(current.record)
                }
                None => None,
            }
            // The lock is released here, before any request.
        };
        let Some(record) = removed else {
            let revocation = if revoke {
                Revocation::NothingToRevoke
            } else {
                Revocation::NotAsked
            };
            return Ok(Logout {
                removed: false,
                revocation,
            });
        };
        self.changed(key, ChangeKind::LoggedOut, None);
        let revocation = if revoke {
            self.revoke(key, &record).await
        } else {
            Revocation::NotAsked
        };
        Ok(Logout {
            removed: true,
            revocation,
        })
    }

    /// Revokes what `record` holds: the refresh token, then the access token.
    async fn revoke(&self, key: &SessionKey, record: &Record) -> Revocation {
        let Some(tokens) = record.tokens.as_ref() else {
            return Revocation::NothingToRevoke;
        };
        let refresh_token = tokens
            .refresh_token
            .as_ref()
            .filter(|_| {
                record.client.as_ref().map(|c| c.renewal) != Some(Renewal::ClientCredentials)
            })
            .map(|t| t.expose_secret());
        let access_token = Some(tokens.access_token.expose_secret()).filter(|t| !t.is_empty());
        if refresh_token.is_none() && access_token.is_none() {
            return Revocation::NothingToRevoke;
        }
        let failed = |failure, refresh_token_revoked| Revocation::Failed {
            failure,
            refresh_token_revoked,
        };
        let Some(client) = record.client.as_ref() else {
            return failed(
                ProviderFailure::local(
                    FailureClass::Misconfiguration,
                    Cause::Local,
                    "the session names no client, so its provider is unknown",
                ),
                false,
            );
        };
        let metadata = match self.metadata(key, &client.issuer).await {
            Ok(metadata) => metadata,
            Err(Error::Provider { failure, .. }) => return failed(failure, false),
            Err(other) => {
                return failed(
                    ProviderFailure::local(
                        FailureClass::Misconfiguration,
                        Cause::Local,
                        other.to_string(),
                    ),
                    false,
                );
            }
        };
        let Some(endpoint) = metadata.revocation_endpoint.as_deref() else {
            return Revocation::NotOffered;
        };
        let mut revoked_refresh_token = false;
        for (token, kind) in [
            (refresh_token, TokenKind::RefreshToken),
            (access_token, TokenKind::AccessToken),
        ] {
            let Some(token) = token else {
                continue;
            };
            match self.revoke_one(endpoint, client, token, kind).await {
                Ok(done) if kind == TokenKind::RefreshToken => revoked_refresh_token = done,
                Ok(done) => {
                    return Revocation::Revoked {
                        refresh_token: revoked_refresh_token,
                        access_token: done,
                    };
                }
                Err(failure) => return failed(failure, revoked_refresh_token),
            }
        }
        Revocation::Revoked {
            refresh_token: revoked_refresh_token,
            access_token: false,
        }
    }

    /// One revocation request within the network time-out: whether the token
    /// was revoked (false: the provider does not revoke its kind).
    async fn revoke_one(
        &self,
        endpoint: &str,
        client: &Client,
        token: &str,
        kind: TokenKind,
    ) -> Result<bool, ProviderFailure> {
        let network = &self.inner.network;
        let local = |message: String| {
            ProviderFailure::local(FailureClass::Misconfiguration, Cause::Local, message)
        };
        // Checked again: the metadata may come from a cache file.
        let endpoint = check_endpoint(endpoint, network.allow_insecure_http)
            .map_err(crate::discovery::endpoint_failure)?;
        let request = revocation::request(&endpoint, client, token, kind).map_err(local)?;
        let (_, response) = self.exchange(request).await?;
        let secrets = revocation::secrets(client, token);
        revocation::parse(&response, self.now(), &secrets).map(|revoked| revoked == Revoked::Done)
    }
}
