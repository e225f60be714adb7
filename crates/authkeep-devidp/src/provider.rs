//! The provider's state and rules: grants and the refresh and access tokens they issue,
//! rotation, reuse detection and its grace period, revocation, introspection, and the
//! counters and fault plan. Where the configured flavor changes a rule or the shape of
//! an answer, the code asks the flavor (`flavor.rs`) at that one point.
//!
//! Everything sits behind one `std` mutex that is never held across a wait. Each
//! operation reads the clock once; the `_at` variants take `now` (Unix seconds) so
//! tests can move time. Refresh tokens are kept only as SHA-256 digests. The login
//! flows (device authorization, authorization codes) live in `login`.

pub(crate) mod login;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::http::HeaderValue;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::config::{Config, SessionRequest};
use crate::counters::Counters;
use crate::faults::Faults;
use crate::flavor::{Flavor, Issued, Refusal};
use crate::jwt::{SigningKey, random_string, random_uuid};
use crate::oauth::{self, Client, OFFLINE_ACCESS, Params, Scope, TokenError};
use login::{DEVICE_CODE_GRANT, Logins};

/// How far before its issue an access token of [`AccessExpiry::Past`] expired.
const PAST_EXPIRY_SECS: i64 = 60;

/// When the access tokens of a token response expire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum AccessExpiry {
    /// The grant's lifetime after issue, which `expires_in` states.
    #[default]
    Lifetime,
    /// A minute before issue, and no `expires_in`: a provider whose clock or
    /// configuration is wrong ([`FaultKind::ExpiredAccessToken`]).
    ///
    /// [`FaultKind::ExpiredAccessToken`]: crate::FaultKind::ExpiredAccessToken
    Past,
}

/// The issuing side of one development identity provider.
#[derive(Debug)]
pub(crate) struct Provider {
    issuer: String,
    key: SigningKey,
    config: Config,
    state: Mutex<State>,
}

type GrantId = u64;

/// SHA-256 of a refresh token, device code or authorization code: what the provider
/// remembers instead of the secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Digest([u8; 32]);

impl Digest {
    fn of(token: &str) -> Self {
        Digest(Sha256::digest(token.as_bytes()).into())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest([redacted])")
    }
}

#[derive(Debug, Default)]
struct State {
    grants: HashMap<GrantId, Grant>,
    refresh_owner: HashMap<Digest, GrantId>,
    /// Access tokens by `jti`.
    access: HashMap<String, AccessRecord>,
    /// The `jti` of each opaque access token, by the token's digest.
    opaque_access: HashMap<Digest, String>,
    next_grant: GrantId,
    counters: Counters,
    faults: Faults,
    logins: Logins,
}

/// One authorization: a user (or, for client credentials, a client) and what it may do.
#[derive(Debug)]
struct Grant {
    user: String,
    client_id: String,
    scope: Scope,
    access_ttl: u64,
    /// Issued by the client credentials grant: no ID token, no refresh token.
    for_client: bool,
    revoked: bool,
    refresh: HashMap<Digest, RefreshRecord>,
    /// The refresh token rotated out last, the one a grace period may forgive.
    last_rotated: Option<Digest>,
    /// An identifier of the grant as a session, for flavors that state one.
    session: String,
}

impl Grant {
    fn offline(&self) -> bool {
        self.scope.contains(OFFLINE_ACCESS)
    }
}

#[derive(Debug)]
struct RefreshRecord {
    issued_at: i64,
    expires_at: Option<i64>,
    /// When it was rotated out; presenting it again after that is reuse, unless the
    /// grace period forgives it.
    consumed_at: Option<i64>,
}

#[derive(Debug)]
struct AccessRecord {
    grant: GrantId,
    scope: String,
    issued_at: i64,
    expires_at: i64,
    /// Revoked on its own (RFC 7009), not with its grant.
    revoked: bool,
}

/// A refresh that passed its checks and waits to be carried out.
struct RefreshPlan {
    grant: GrantId,
    presented: Digest,
    scope: Scope,
}

/// Where a presented token lives.
enum Located {
    Access { jti: String, grant: GrantId },
    Refresh { digest: Digest, grant: GrantId },
}

impl Located {
    fn grant(&self) -> GrantId {
        match self {
            Located::Access { grant, .. } | Located::Refresh { grant, .. } => *grant,
        }
    }
}

impl State {
    fn open_grant(&mut self, grant: Grant) -> GrantId {
        self.next_grant += 1;
        self.grants.insert(self.next_grant, grant);
        self.next_grant
    }

    /// Revokes a grant, counting it the first time.
    fn revoke_grant(&mut self, id: GrantId) {
        if let Some(grant) = self.grants.get_mut(&id)
            && !grant.revoked
        {
            grant.revoked = true;
            self.counters.grants_revoked += 1;
        }
    }
}

/// The current time in Unix seconds, from the system clock.
pub(crate) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn seconds(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl Provider {
    pub(crate) fn new(issuer: String, config: Config) -> Self {
        Provider {
            issuer,
            key: SigningKey::random(),
            config,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How far the `Date` header of every answer is moved from the true time.
    pub(crate) fn date_offset(&self) -> jiff::SignedDuration {
        self.config.date_offset
    }

    pub(crate) fn flavor(&self) -> Flavor {
        self.config.flavor
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent enough for a test
        // provider; keep serving rather than poisoning every later request.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn counters(&self) -> Counters {
        self.state().counters.clone()
    }

    pub(crate) fn count(&self, update: impl FnOnce(&mut Counters)) {
        update(&mut self.state().counters);
    }

    pub(crate) fn faults(&self) -> Faults {
        self.state().faults.clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    pub(crate) fn create_session(&self, request: &SessionRequest) -> Value {
        self.create_session_at(request, now())
    }

    fn create_session_at(&self, request: &SessionRequest, now: i64) -> Value {
        let scope = Scope::parse(request.scope());
        let mut state = self.state();
        let grant = state.open_grant(Grant {
            user: request.user().to_owned(),
            client_id: request.client_id().to_owned(),
            scope: scope.clone(),
            access_ttl: request
                .access_ttl_secs
                .unwrap_or(self.config.access_ttl.as_secs()),
            for_client: false,
            revoked: false,
            refresh: HashMap::new(),
            last_rotated: None,
            session: random_uuid(),
        });
        let (refresh_token, refresh_expires_at) = self.mint_refresh(&mut state, grant, now);
        self.respond(
            &mut state,
            grant,
            &scope,
            now,
            (Some(refresh_token), refresh_expires_at),
            AccessExpiry::Lifetime,
        )
    }

    /// Answers a token request (RFC 6749 §5): the token response, its access token
    /// expiring as `access` says, or the error.
    pub(crate) async fn token(
        &self,
        params: &Params,
        authorization: Option<&HeaderValue>,
        access: AccessExpiry,
    ) -> Result<Value, TokenError> {
        let grant_type = params.require("grant_type")?;
        let client = oauth::authenticate(authorization, params, &self.config.clients)?;
        match grant_type {
            "refresh_token" => {
                let token = params.require("refresh_token")?;
                let scope = params.get("scope").map(Scope::parse);
                let Some(latency) = self.config.parallel_latency else {
                    return self.refresh_at(&client, token, scope, now(), access);
                };
                let plan = {
                    let mut state = self.state();
                    self.check_refresh(&mut state, &client, token, scope, now())?
                };
                tokio::time::sleep(latency).await;
                let mut state = self.state();
                self.finish_refresh(&mut state, plan, now(), access)
            }
            "client_credentials" => {
                self.client_credentials_at(&client, params.get("scope"), now(), access)
            }
            "authorization_code" => self.code_token_at(&client, params, now(), access),
            DEVICE_CODE_GRANT => {
                let device_code = params.require("device_code")?;
                self.device_token_at(&client, device_code, now(), access)
            }
            _ => Err(TokenError::unsupported_grant_type(
                "this provider supports authorization_code, refresh_token, client_credentials \
                 and urn:ietf:params:oauth:grant-type:device_code",
            )),
        }
    }

    /// A refresh checked and carried out under one lock: an atomic check-and-consume.
    fn refresh_at(
        &self,
        client: &Client,
        token: &str,
        scope: Option<Scope>,
        now: i64,
        access: AccessExpiry,
    ) -> Result<Value, TokenError> {
        let mut state = self.state();
        let plan = self.check_refresh(&mut state, client, token, scope, now)?;
        self.finish_refresh(&mut state, plan, now, access)
    }

    /// Whether `token` may be refreshed by `client` now. Presenting a consumed token
    /// revokes its grant when reuse detection is on, unless it is the grant's token
    /// rotated out last and its grace period still runs.
    fn check_refresh(
        &self,
        state: &mut State,
        client: &Client,
        token: &str,
        requested: Option<Scope>,
        now: i64,
    ) -> Result<RefreshPlan, TokenError> {
        let digest = Digest::of(token);
        let unknown =
            || TokenError::invalid_grant("the refresh token is unknown").refused(Refusal::Unknown);
        let grant_id = *state.refresh_owner.get(&digest).ok_or_else(unknown)?;
        let grant = state.grants.get(&grant_id).ok_or_else(unknown)?;
        let record = grant.refresh.get(&digest).ok_or_else(unknown)?;
        let offline = grant.offline();

        if grant.revoked {
            return Err(TokenError::invalid_grant("the grant was revoked")
                .refused(Refusal::Revoked { offline }));
        }
        match client.id() {
            None if self.config.client(&grant.client_id).is_some() => {
                return Err(TokenError::invalid_client(
                    "client authentication is required for this client",
                ));
            }
            Some(id) if id != grant.client_id => {
                return Err(TokenError::invalid_grant(
                    "the refresh token was issued to another client",
                )
                .refused(Refusal::OtherClient));
            }
            _ => {}
        }
        if let Some(consumed_at) = record.consumed_at {
            let grace = seconds(self.config.flavor.reuse_grace(&self.config));
            let forgiven =
                grant.last_rotated == Some(digest) && now < consumed_at.saturating_add(grace);
            if !forgiven {
                if self.config.reuse_detection {
                    state.revoke_grant(grant_id);
                    return Err(TokenError::invalid_grant(
                        "the refresh token was already used; its grant is revoked",
                    )
                    .refused(Refusal::Reused));
                }
                return Err(
                    TokenError::invalid_grant("the refresh token was already used")
                        .refused(Refusal::Consumed),
                );
            }
        }
        if record
            .expires_at
            .is_some_and(|expires_at| now >= expires_at)
        {
            let issued_at = record.issued_at;
            return Err(TokenError::invalid_grant("the refresh token expired")
                .refused(Refusal::Expired { issued_at, offline }));
        }
        let scope = match requested {
            None => grant.scope.clone(),
            Some(scope) if scope.is_subset_of(&grant.scope) => scope,
            Some(_) => {
                return Err(TokenError::invalid_scope(
                    "the requested scope exceeds the scope granted",
                ));
            }
        };
        Ok(RefreshPlan {
            grant: grant_id,
            presented: digest,
            scope,
        })
    }

    /// Issues the tokens of a checked refresh. Does not look again at whether the
    /// presented token was consumed meanwhile: in parallel mode, concurrent refreshes
    /// of one token all succeed, as with storage that has no transactions. A token
    /// forgiven by the grace period keeps the time and place of its first rotation.
    fn finish_refresh(
        &self,
        state: &mut State,
        plan: RefreshPlan,
        now: i64,
        access: AccessExpiry,
    ) -> Result<Value, TokenError> {
        let flavor = self.config.flavor;
        let Some(grant) = state.grants.get_mut(&plan.grant).filter(|g| !g.revoked) else {
            let offline = state.grants.get(&plan.grant).is_some_and(Grant::offline);
            return Err(TokenError::invalid_grant("the grant was revoked")
                .refused(Refusal::Revoked { offline }));
        };
        let (refresh_token, refresh_expires_at) =
            if self.config.rotate_refresh_tokens && flavor.rotates() {
                if let Some(record) = grant.refresh.get_mut(&plan.presented)
                    && record.consumed_at.is_none()
                {
                    record.consumed_at = Some(now);
                    grant.last_rotated = Some(plan.presented);
                }
                let (token, expires_at) = self.mint_refresh(state, plan.grant, now);
                (Some(token), expires_at)
            } else {
                let expires_at = grant
                    .refresh
                    .get(&plan.presented)
                    .and_then(|record| record.expires_at);
                (None, expires_at)
            };
        if flavor.refresh_ends_older_access_tokens() {
            for record in state.access.values_mut() {
                if record.grant == plan.grant {
                    record.revoked = true;
                }
            }
        }
        Ok(self.respond(
            state,
            plan.grant,
            &plan.scope,
            now,
            (refresh_token, refresh_expires_at),
            access,
        ))
    }

    fn client_credentials_at(
        &self,
        client: &Client,
        scope: Option<&str>,
        now: i64,
        access: AccessExpiry,
    ) -> Result<Value, TokenError> {
        let client_id = match client {
            Client::Confidential(id) => id,
            Client::Public(_) => {
                return Err(TokenError::unauthorized_client(
                    "client_credentials is only for registered confidential clients",
                ));
            }
            Client::Anonymous => {
                return Err(TokenError::invalid_client(
                    "client authentication is required",
                ));
            }
        };
        let scope = Scope::parse(scope.unwrap_or_default());
        let mut state = self.state();
        let grant = state.open_grant(Grant {
            user: client_id.clone(),
            client_id: client_id.clone(),
            scope: scope.clone(),
            access_ttl: self.config.access_ttl.as_secs(),
            for_client: true,
            revoked: false,
            refresh: HashMap::new(),
            last_rotated: None,
            session: random_uuid(),
        });
        Ok(self.respond(&mut state, grant, &scope, now, (None, None), access))
    }

    /// A new refresh token for `grant`, and when it expires.
    fn mint_refresh(&self, state: &mut State, grant: GrantId, now: i64) -> (String, Option<i64>) {
        let flavor = self.config.flavor;
        let token = format!("{}{}", flavor.refresh_prefix(), random_string(32));
        let digest = Digest::of(&token);
        let offline = state.grants.get(&grant).is_some_and(Grant::offline);
        let expires_at = flavor
            .refresh_ttl(&self.config, offline)
            .map(|ttl| now.saturating_add(seconds(ttl)));
        if let Some(grant) = state.grants.get_mut(&grant) {
            grant.refresh.insert(
                digest,
                RefreshRecord {
                    issued_at: now,
                    expires_at,
                    consumed_at: None,
                },
            );
        }
        state.refresh_owner.insert(digest, grant);
        (token, expires_at)
    }

    /// The token response (RFC 6749 §5.1) for a new access token on `grant_id`,
    /// handing out `refresh`: the refresh token, if any, and when the refresh token
    /// expires. Shaped as the flavor answers.
    fn respond(
        &self,
        state: &mut State,
        grant_id: GrantId,
        scope: &Scope,
        now: i64,
        refresh: (Option<String>, Option<i64>),
        access: AccessExpiry,
    ) -> Value {
        let (refresh_token, refresh_expires_at) = refresh;
        // Every caller found or created this grant under the same lock guard.
        let grant = state.grants.get(&grant_id).expect("the grant exists");
        let scope_text = scope.as_string();
        let jti = random_string(16);
        let lifetime_ends = now.saturating_add(seconds(grant.access_ttl));
        let expires_at = match access {
            AccessExpiry::Lifetime => lifetime_ends,
            AccessExpiry::Past => now.saturating_sub(PAST_EXPIRY_SECS),
        };
        let access_token = match self.config.flavor.opaque_access_prefix() {
            Some(prefix) => {
                let token = format!("{prefix}{}", random_string(27));
                state.opaque_access.insert(Digest::of(&token), jti.clone());
                token
            }
            None => self.key.sign(
                "at+jwt",
                &json!({
                    "iss": self.issuer,
                    "sub": grant.user,
                    "aud": grant.client_id,
                    "client_id": grant.client_id,
                    "scope": scope_text,
                    "iat": now,
                    "exp": expires_at,
                    "jti": jti,
                }),
            ),
        };
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
        });
        if access == AccessExpiry::Lifetime {
            body["expires_in"] = grant.access_ttl.into();
        }
        if let Some(refresh_token) = refresh_token {
            body["refresh_token"] = refresh_token.into();
        }
        if let Some(refresh_expires_at) = refresh_expires_at {
            body["refresh_expires_in"] = refresh_expires_at.saturating_sub(now).max(0).into();
        }
        if !scope.is_empty() {
            body["scope"] = scope_text.clone().into();
        }
        if scope.contains("openid") && !grant.for_client {
            body["id_token"] = self
                .key
                .sign(
                    "JWT",
                    &json!({
                        "iss": self.issuer,
                        "sub": grant.user,
                        "aud": grant.client_id,
                        "iat": now,
                        "exp": lifetime_ends,
                    }),
                )
                .into();
        }
        let issued = Issued {
            offline: grant.offline(),
            session: &grant.session,
        };
        self.config.flavor.shape(&mut body, &issued);
        state.access.insert(
            jti,
            AccessRecord {
                grant: grant_id,
                scope: scope_text,
                issued_at: now,
                expires_at,
                revoked: false,
            },
        );
        body
    }

    fn locate(&self, state: &State, token: &str) -> Option<Located> {
        if let Some(claims) = self.key.verify(token) {
            if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                return None;
            }
            let jti = claims.get("jti")?.as_str()?;
            let record = state.access.get(jti)?;
            return Some(Located::Access {
                jti: jti.to_owned(),
                grant: record.grant,
            });
        }
        let digest = Digest::of(token);
        if let Some(jti) = state.opaque_access.get(&digest) {
            let record = state.access.get(jti)?;
            return Some(Located::Access {
                jti: jti.clone(),
                grant: record.grant,
            });
        }
        let grant = *state.refresh_owner.get(&digest)?;
        Some(Located::Refresh { digest, grant })
    }

    /// What introspection says of an active token; `None` if it is not active.
    fn active_claims(&self, state: &State, token: &str, now: i64) -> Option<Value> {
        let located = self.locate(state, token)?;
        let grant = state.grants.get(&located.grant())?;
        if grant.revoked {
            return None;
        }
        let mut claims = match located {
            Located::Access { jti, .. } => {
                let record = state.access.get(&jti)?;
                if record.revoked || now >= record.expires_at {
                    return None;
                }
                json!({
                    "token_type": "Bearer",
                    "scope": record.scope,
                    "iat": record.issued_at,
                    "exp": record.expires_at,
                    "jti": jti,
                })
            }
            Located::Refresh { digest, .. } => {
                let record = grant.refresh.get(&digest)?;
                if record.consumed_at.is_some() || record.expires_at.is_some_and(|exp| now >= exp) {
                    return None;
                }
                let mut claims = json!({
                    "token_type": "refresh_token",
                    "scope": grant.scope.as_string(),
                    "iat": record.issued_at,
                });
                if let Some(expires_at) = record.expires_at {
                    claims["exp"] = expires_at.into();
                }
                claims
            }
        };
        claims["active"] = true.into();
        claims["iss"] = self.issuer.clone().into();
        claims["sub"] = grant.user.clone().into();
        claims["username"] = grant.user.clone().into();
        claims["client_id"] = grant.client_id.clone().into();
        Some(claims)
    }

    /// The introspection response (RFC 7662) for `token`.
    pub(crate) fn introspect(&self, token: &str) -> Value {
        self.introspect_at(token, now())
    }

    fn introspect_at(&self, token: &str, now: i64) -> Value {
        self.active_claims(&self.state(), token, now)
            .unwrap_or_else(|| json!({ "active": false }))
    }

    pub(crate) fn is_active(&self, token: &str) -> bool {
        self.is_active_at(token, now())
    }

    fn is_active_at(&self, token: &str, now: i64) -> bool {
        self.active_claims(&self.state(), token, now).is_some()
    }

    /// The userinfo claims for an active access token; `None` for anything else.
    pub(crate) fn userinfo(&self, access_token: &str) -> Option<Value> {
        self.userinfo_at(access_token, now())
    }

    fn userinfo_at(&self, access_token: &str, now: i64) -> Option<Value> {
        let claims = self.active_claims(&self.state(), access_token, now)?;
        if claims["token_type"] != "Bearer" {
            return None;
        }
        let user = claims["sub"].as_str()?;
        let mut name = user.to_owned();
        if let Some(first) = name.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        Some(json!({ "sub": user, "name": name, "preferred_username": user }))
    }

    /// One line per grant, in the order they were opened, for soak tests that check
    /// how often each session was refreshed: its user and client, how many refresh
    /// tokens it issued after the first (the refreshes that rotated), the shortest
    /// and longest time between two of those issues (whole seconds), and whether
    /// the grant is revoked. No token, no digest.
    pub(crate) fn grant_report(&self) -> Vec<Value> {
        let state = self.state();
        let mut ids: Vec<&GrantId> = state.grants.keys().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| state.grants.get(id))
            .filter(|grant| !grant.for_client)
            .map(|grant| {
                let mut issued: Vec<i64> = grant.refresh.values().map(|r| r.issued_at).collect();
                issued.sort_unstable();
                let gaps = issued
                    .windows(2)
                    .map(|pair| pair[1].saturating_sub(pair[0]));
                json!({
                    "user": grant.user,
                    "client_id": grant.client_id,
                    "refreshes": issued.len().saturating_sub(1),
                    "min_gap_secs": gaps.clone().min(),
                    "max_gap_secs": gaps.max(),
                    "revoked": grant.revoked,
                })
            })
            .collect()
    }

    /// Revocation (RFC 7009): a refresh token takes its whole grant with it, an access
    /// token goes alone. Unknown tokens are ignored.
    pub(crate) fn revoke(&self, token: &str) {
        let mut state = self.state();
        match self.locate(&state, token) {
            Some(Located::Access { jti, .. }) => {
                if let Some(record) = state.access.get_mut(&jti) {
                    record.revoked = true;
                }
            }
            Some(Located::Refresh { grant, .. }) => state.revoke_grant(grant),
            None => {}
        }
    }

    /// Revokes the grant that issued `token`; false if the token is not ours.
    pub(crate) fn revoke_grant_of(&self, token: &str) -> bool {
        let mut state = self.state();
        let Some(located) = self.locate(&state, token) else {
            return false;
        };
        state.revoke_grant(located.grant());
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::ClientConfig;

    const T0: i64 = 1_700_000_000;

    fn provider(config: Config) -> Provider {
        Provider::new("http://127.0.0.1:1".to_owned(), config)
    }

    fn session(provider: &Provider, request: &SessionRequest) -> (String, String) {
        let response = provider.create_session_at(request, T0);
        (
            response["access_token"].as_str().unwrap().to_owned(),
            response["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    fn demo() -> Client {
        Client::Public("authkeep-demo".to_owned())
    }

    fn refresh(provider: &Provider, token: &str, now: i64) -> Result<Value, TokenError> {
        provider.refresh_at(&demo(), token, None, now, AccessExpiry::Lifetime)
    }

    #[test]
    fn sessions_carry_a_full_token_response() {
        let provider = provider(Config::default());
        let response = provider.create_session_at(&SessionRequest::default(), T0);
        assert_eq!(response["token_type"], "Bearer");
        assert_eq!(response["expires_in"], 300);
        assert_eq!(response["scope"], "openid profile offline_access");
        assert!(response["id_token"].is_string());
        assert!(response.get("refresh_expires_in").is_none());

        let access = response["access_token"].as_str().unwrap();
        let claims = provider.key.verify(access).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "authkeep-demo");
        assert_eq!(claims["client_id"], "authkeep-demo");
        assert_eq!(claims["iat"], T0);
        assert_eq!(claims["exp"], T0 + 300);
        assert_eq!(claims["iss"], "http://127.0.0.1:1");
    }

    #[test]
    fn access_tokens_expire_at_their_expiry_instant() {
        let provider = provider(Config::default());
        let request = SessionRequest {
            access_ttl_secs: Some(60),
            ..SessionRequest::default()
        };
        let (access, _) = session(&provider, &request);
        assert!(provider.is_active_at(&access, T0 + 59));
        assert!(!provider.is_active_at(&access, T0 + 60));
    }

    #[test]
    fn rotation_consumes_the_presented_refresh_token() {
        let provider = provider(Config::default());
        let (access, old) = session(&provider, &SessionRequest::default());
        let response = refresh(&provider, &old, T0 + 1).unwrap();
        let new = response["refresh_token"].as_str().unwrap();
        assert_ne!(new, old);
        assert!(!provider.is_active_at(&old, T0 + 1));
        assert!(provider.is_active_at(new, T0 + 1));
        assert!(
            provider.is_active_at(&access, T0 + 1),
            "rotation keeps old access tokens"
        );
    }

    #[test]
    fn a_past_expiry_hands_out_an_expired_access_token_and_still_rotates() {
        let provider = provider(Config::default());
        let (_, old) = session(&provider, &SessionRequest::default());
        let response = provider
            .refresh_at(&demo(), &old, None, T0 + 1, AccessExpiry::Past)
            .unwrap();
        assert!(response.get("expires_in").is_none());
        let access = response["access_token"].as_str().unwrap();
        let claims = provider.key.verify(access).unwrap();
        assert_eq!(claims["iat"], T0 + 1);
        assert_eq!(claims["exp"], T0 + 1 - 60);
        assert!(!provider.is_active_at(access, T0 + 1));
        let id_claims = provider
            .key
            .verify(response["id_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            id_claims["exp"],
            T0 + 1 + 300,
            "only the access token expired"
        );

        assert!(
            !provider.is_active_at(&old, T0 + 1),
            "the old token is consumed"
        );
        let new = response["refresh_token"].as_str().unwrap();
        assert!(refresh(&provider, new, T0 + 2).is_ok());
    }

    #[test]
    fn reuse_revokes_the_grant() {
        let provider = provider(Config::default());
        let (access, old) = session(&provider, &SessionRequest::default());
        let response = refresh(&provider, &old, T0 + 1).unwrap();
        let new_refresh = response["refresh_token"].as_str().unwrap();
        let new_access = response["access_token"].as_str().unwrap();

        let error = refresh(&provider, &old, T0 + 2).unwrap_err();
        assert_eq!(error.error, "invalid_grant");
        for token in [&access, new_access, new_refresh] {
            assert!(!provider.is_active_at(token, T0 + 2));
        }
        assert_eq!(
            refresh(&provider, new_refresh, T0 + 3).unwrap_err().error,
            "invalid_grant"
        );
        assert_eq!(provider.counters().grants_revoked, 1);
    }

    #[test]
    fn reuse_without_detection_fails_but_keeps_the_grant() {
        let provider = provider(Config {
            reuse_detection: false,
            ..Config::default()
        });
        let (_, old) = session(&provider, &SessionRequest::default());
        let new = refresh(&provider, &old, T0).unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            refresh(&provider, &old, T0).unwrap_err().error,
            "invalid_grant"
        );
        assert!(provider.is_active_at(&new, T0));
        assert_eq!(provider.counters().grants_revoked, 0);
    }

    #[test]
    fn without_rotation_the_refresh_token_stays() {
        let provider = provider(Config {
            rotate_refresh_tokens: false,
            ..Config::default()
        });
        let (_, token) = session(&provider, &SessionRequest::default());
        for _ in 0..3 {
            let response = refresh(&provider, &token, T0).unwrap();
            assert!(response.get("refresh_token").is_none());
        }
        assert!(provider.is_active_at(&token, T0));
    }

    #[test]
    fn refresh_tokens_expire_when_configured() {
        let provider = provider(Config {
            refresh_ttl: Some(Duration::from_secs(3600)),
            ..Config::default()
        });
        let response = provider.create_session_at(&SessionRequest::default(), T0);
        assert_eq!(response["refresh_expires_in"], 3600);
        let token = response["refresh_token"].as_str().unwrap();
        assert!(provider.is_active_at(token, T0 + 3599));
        assert!(!provider.is_active_at(token, T0 + 3600));
        let error = refresh(&provider, token, T0 + 3600).unwrap_err();
        assert_eq!(error.error, "invalid_grant");
        assert_eq!(provider.counters().grants_revoked, 0);

        let rotated = refresh(&provider, token, T0 + 100).unwrap();
        assert_eq!(rotated["refresh_expires_in"], 3600);
    }

    #[test]
    fn refresh_tokens_are_bound_to_their_client() {
        let provider = provider(Config {
            clients: vec![ClientConfig::new("svc", "s3cret")],
            ..Config::default()
        });
        let (_, token) = session(&provider, &SessionRequest::default());
        let other = Client::Public("other".to_owned());
        let error = provider
            .refresh_at(&other, &token, None, T0, AccessExpiry::Lifetime)
            .unwrap_err();
        assert_eq!(error.error, "invalid_grant");
        assert!(
            provider.is_active_at(&token, T0),
            "a refused client consumes nothing"
        );
        assert!(
            provider
                .refresh_at(&Client::Anonymous, &token, None, T0, AccessExpiry::Lifetime)
                .is_ok()
        );

        let request = SessionRequest {
            client_id: "svc".to_owned(),
            ..SessionRequest::default()
        };
        let (_, confidential) = session(&provider, &request);
        let error = provider
            .refresh_at(
                &Client::Anonymous,
                &confidential,
                None,
                T0,
                AccessExpiry::Lifetime,
            )
            .unwrap_err();
        assert_eq!(error.error, "invalid_client");
        let svc = Client::Confidential("svc".to_owned());
        assert!(
            provider
                .refresh_at(&svc, &confidential, None, T0, AccessExpiry::Lifetime)
                .is_ok()
        );
    }

    #[test]
    fn a_refresh_may_narrow_the_scope_but_not_widen_it() {
        let provider = provider(Config::default());
        let (_, token) = session(&provider, &SessionRequest::default());
        let error = provider
            .refresh_at(
                &demo(),
                &token,
                Some(Scope::parse("openid email")),
                T0,
                AccessExpiry::Lifetime,
            )
            .unwrap_err();
        assert_eq!(error.error, "invalid_scope");

        let narrowed = provider
            .refresh_at(
                &demo(),
                &token,
                Some(Scope::parse("profile")),
                T0,
                AccessExpiry::Lifetime,
            )
            .unwrap();
        assert_eq!(narrowed["scope"], "profile");
        assert!(narrowed.get("id_token").is_none(), "no openid, no ID token");

        let again = refresh(&provider, narrowed["refresh_token"].as_str().unwrap(), T0).unwrap();
        assert_eq!(again["scope"], "openid profile offline_access");
        assert!(again["id_token"].is_string());
    }

    #[test]
    fn unknown_refresh_tokens_are_invalid_grant() {
        let provider = provider(Config::default());
        assert_eq!(
            refresh(&provider, "nope", T0).unwrap_err().error,
            "invalid_grant"
        );
        assert!(!provider.is_active_at("nope", T0));
        assert!(!provider.revoke_grant_of("nope"));
    }

    #[test]
    fn client_credentials_only_for_confidential_clients() {
        let provider = provider(Config {
            clients: vec![ClientConfig::new("svc", "s3cret")],
            ..Config::default()
        });
        let svc = Client::Confidential("svc".to_owned());
        let response = provider
            .client_credentials_at(&svc, Some("read"), T0, AccessExpiry::Lifetime)
            .unwrap();
        assert_eq!(response["scope"], "read");
        assert!(response.get("refresh_token").is_none());
        assert!(response.get("id_token").is_none());
        let access = response["access_token"].as_str().unwrap();
        assert_eq!(provider.introspect_at(access, T0)["sub"], "svc");

        let public = Client::Public("cli".to_owned());
        let error = provider
            .client_credentials_at(&public, None, T0, AccessExpiry::Lifetime)
            .unwrap_err();
        assert_eq!(error.error, "unauthorized_client");
        let error = provider
            .client_credentials_at(&Client::Anonymous, None, T0, AccessExpiry::Lifetime)
            .unwrap_err();
        assert_eq!(error.error, "invalid_client");
    }

    #[test]
    fn revoking_an_access_token_leaves_its_grant() {
        let provider = provider(Config::default());
        let (access, refresh_token) = session(&provider, &SessionRequest::default());
        provider.revoke(&access);
        assert!(!provider.is_active_at(&access, T0));
        assert!(provider.is_active_at(&refresh_token, T0));
        assert_eq!(provider.counters().grants_revoked, 0);

        provider.revoke(&refresh_token);
        assert!(!provider.is_active_at(&refresh_token, T0));
        assert_eq!(provider.counters().grants_revoked, 1);
        provider.revoke(&refresh_token);
        assert_eq!(provider.counters().grants_revoked, 1, "a grant counts once");
    }

    #[test]
    fn revoke_grant_of_an_access_token_takes_the_refresh_token_too() {
        let provider = provider(Config::default());
        let (access, refresh_token) = session(&provider, &SessionRequest::default());
        assert!(provider.revoke_grant_of(&access));
        assert!(!provider.is_active_at(&refresh_token, T0));
        assert_eq!(
            refresh(&provider, &refresh_token, T0).unwrap_err().error,
            "invalid_grant"
        );
    }

    #[test]
    fn introspection_describes_active_tokens() {
        let provider = provider(Config::default());
        let (access, refresh_token) = session(&provider, &SessionRequest::default());
        let info = provider.introspect_at(&access, T0);
        assert_eq!(info["active"], true);
        assert_eq!(info["token_type"], "Bearer");
        assert_eq!(info["sub"], "alice");
        assert_eq!(info["client_id"], "authkeep-demo");
        assert_eq!(info["exp"], T0 + 300);
        assert_eq!(info["iat"], T0);
        assert_eq!(info["scope"], "openid profile offline_access");

        let info = provider.introspect_at(&refresh_token, T0);
        assert_eq!(info["active"], true);
        assert_eq!(info["token_type"], "refresh_token");
        assert!(info.get("exp").is_none());

        assert_eq!(
            provider.introspect_at("junk", T0),
            json!({ "active": false })
        );
    }

    #[test]
    fn tokens_of_another_instance_are_not_ours() {
        let ours = provider(Config::default());
        let theirs = provider(Config::default());
        let (access, _) = session(&theirs, &SessionRequest::default());
        assert!(!ours.is_active_at(&access, T0));
    }

    #[test]
    fn userinfo_accepts_only_active_access_tokens() {
        let provider = provider(Config::default());
        let (access, refresh_token) = session(&provider, &SessionRequest::default());
        assert_eq!(
            provider.userinfo_at(&access, T0).unwrap(),
            json!({ "sub": "alice", "name": "Alice", "preferred_username": "alice" })
        );
        assert!(provider.userinfo_at(&refresh_token, T0).is_none());
        assert!(provider.userinfo_at(&access, T0 + 300).is_none());
        provider.revoke(&access);
        assert!(provider.userinfo_at(&access, T0).is_none());
    }

    fn flavored(flavor: Flavor) -> Provider {
        provider(Config::for_flavor(flavor))
    }

    fn refresh_token_of(response: &Value) -> String {
        response["refresh_token"].as_str().unwrap().to_owned()
    }

    #[test]
    fn the_token_rotated_out_last_is_forgiven_within_the_grace_period() {
        let provider = flavored(Flavor::Okta);
        let (_, first) = session(&provider, &SessionRequest::default());
        let second = refresh_token_of(&refresh(&provider, &first, T0 + 1).unwrap());

        let again = refresh(&provider, &first, T0 + 30).unwrap();
        let forked = refresh_token_of(&again);
        assert_ne!(forked, second, "a forgiven reuse gets new tokens");
        assert!(provider.is_active_at(&second, T0 + 30));
        assert!(provider.is_active_at(&forked, T0 + 30));
        assert!(
            !provider.is_active_at(&first, T0 + 30),
            "a forgiven token is still consumed"
        );

        let error = refresh(&provider, &first, T0 + 31).unwrap_err();
        assert_eq!(error.refusal, Some(Refusal::Reused));
        assert!(!provider.is_active_at(&second, T0 + 31));
        assert!(!provider.is_active_at(&forked, T0 + 31));
        assert_eq!(provider.counters().grants_revoked, 1);
    }

    #[test]
    fn only_the_token_rotated_out_last_is_forgiven() {
        let provider = flavored(Flavor::Okta);
        let (_, first) = session(&provider, &SessionRequest::default());
        let second = refresh_token_of(&refresh(&provider, &first, T0).unwrap());
        let third = refresh_token_of(&refresh(&provider, &second, T0 + 1).unwrap());
        let error = refresh(&provider, &first, T0 + 2).unwrap_err();
        assert_eq!(error.refusal, Some(Refusal::Reused));
        assert!(!provider.is_active_at(&third, T0 + 2));
    }

    #[test]
    fn without_a_grace_period_reuse_is_refused_at_once() {
        for flavor in [Flavor::Standard, Flavor::Auth0] {
            let provider = flavored(flavor);
            let (_, first) = session(&provider, &SessionRequest::default());
            refresh(&provider, &first, T0).unwrap();
            let error = refresh(&provider, &first, T0).unwrap_err();
            assert_eq!(error.refusal, Some(Refusal::Reused), "{flavor}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let provider = provider(Config {
            refresh_ttl: Some(Duration::from_secs(10)),
            reuse_detection: false,
            ..Config::default()
        });
        let (_, token) = session(&provider, &SessionRequest::default());
        assert_eq!(
            refresh(&provider, "nope", T0).unwrap_err().refusal,
            Some(Refusal::Unknown)
        );
        let other = Client::Public("other".to_owned());
        let error = provider
            .refresh_at(&other, &token, None, T0, AccessExpiry::Lifetime)
            .unwrap_err();
        assert_eq!(error.refusal, Some(Refusal::OtherClient));
        assert_eq!(
            refresh(&provider, &token, T0 + 10).unwrap_err().refusal,
            Some(Refusal::Expired {
                issued_at: T0,
                offline: true
            })
        );
        refresh(&provider, &token, T0 + 1).unwrap();
        assert_eq!(
            refresh(&provider, &token, T0 + 2).unwrap_err().refusal,
            Some(Refusal::Consumed)
        );
        provider.revoke(&token);
        assert_eq!(
            refresh(&provider, &token, T0 + 2).unwrap_err().refusal,
            Some(Refusal::Revoked { offline: true })
        );
    }

    #[test]
    fn opaque_access_tokens_are_found_by_introspection_and_userinfo() {
        let provider = flavored(Flavor::GitHub);
        let response = provider.create_session_at(&SessionRequest::default(), T0);
        let access = response["access_token"].as_str().unwrap();
        assert!(access.starts_with("ghu_"), "{access}");
        assert!(provider.key.verify(access).is_none(), "not a JWT");
        assert!(
            response["refresh_token"]
                .as_str()
                .unwrap()
                .starts_with("ghr_")
        );
        assert_eq!(provider.introspect_at(access, T0)["sub"], "alice");
        assert_eq!(provider.userinfo_at(access, T0).unwrap()["sub"], "alice");
        assert!(!provider.is_active_at(access, T0 + 28_800));
        assert!(provider.revoke_grant_of(access));
        assert!(!provider.is_active_at(access, T0));
    }

    #[test]
    fn a_github_refresh_ends_the_access_tokens_before_it() {
        let provider = flavored(Flavor::GitHub);
        let (old_access, token) = session(&provider, &SessionRequest::default());
        let response = refresh(&provider, &token, T0 + 1).unwrap();
        let new_access = response["access_token"].as_str().unwrap();
        assert!(!provider.is_active_at(&old_access, T0 + 1));
        assert!(provider.is_active_at(new_access, T0 + 1));
        assert_eq!(response["refresh_token_expires_in"], 15_897_600);
    }

    #[test]
    fn google_never_rotates() {
        let provider = flavored(Flavor::Google);
        assert!(provider.config.rotate_refresh_tokens);
        let (old_access, token) = session(&provider, &SessionRequest::default());
        assert!(token.starts_with("1//"), "{token}");
        for at in [T0 + 1, T0 + 2] {
            let response = refresh(&provider, &token, at).unwrap();
            assert!(response.get("refresh_token").is_none());
            assert!(
                response["access_token"]
                    .as_str()
                    .unwrap()
                    .starts_with("ya29.")
            );
        }
        assert!(provider.is_active_at(&token, T0 + 2));
        assert!(provider.is_active_at(&old_access, T0 + 2));
    }

    #[test]
    fn keycloak_bounds_online_sessions_by_the_sso_idle_time() {
        let provider = flavored(Flavor::Keycloak);
        let online = SessionRequest {
            scope: Some("openid profile".to_owned()),
            ..SessionRequest::default()
        };
        let response = provider.create_session_at(&online, T0);
        assert_eq!(response["refresh_expires_in"], 1800);
        let token = refresh_token_of(&response);
        let error = refresh(&provider, &token, T0 + 1800).unwrap_err();
        assert_eq!(
            error.refusal,
            Some(Refusal::Expired {
                issued_at: T0,
                offline: false
            })
        );

        let offline = provider.create_session_at(&SessionRequest::default(), T0);
        assert_eq!(offline["refresh_expires_in"], 0);
        assert!(refresh(&provider, &refresh_token_of(&offline), T0 + 86_400 * 365).is_ok());
    }
}
