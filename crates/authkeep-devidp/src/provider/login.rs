//! The login flows' state and rules: pending device authorizations (RFC 8628) with
//! their user codes, polling interval and the user's decision, and authorization codes
//! (RFC 6749 §4.1) bound to a client, a redirect URI and a PKCE S256 challenge
//! (RFC 7636). An approved login opens a grant like any other, with a refresh token
//! when the scope has `offline_access`.
//!
//! Device codes and authorization codes are kept only as digests. A code is
//! single-use: presenting it again revokes the grant it opened (RFC 6749 §4.1.2). Each
//! operation reads the clock once; the `_at` variants take `now` (Unix seconds).

use std::collections::HashMap;

use axum::http::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{AccessExpiry, Digest, Grant, GrantId, Provider, State, now, seconds};
use crate::authorize::{AuthorizeRequest, is_code_verifier};
use crate::config::DEFAULT_SCOPE;
use crate::jwt::{USER_CODE_LETTERS, random_string, random_user_code, random_uuid};
use crate::oauth::{self, Client, OFFLINE_ACCESS, Params, Scope, TokenError, constant_time_eq};

/// The grant type of a device code exchange (RFC 8628 §3.4).
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Where the user enters a user code, under the issuer.
pub(crate) const VERIFICATION_PATH: &str = "/device";
/// Lifetime of an authorization code.
const CODE_TTL_SECS: i64 = 60;
/// What a `slow_down` adds to a device code's interval (RFC 8628 §3.5).
const SLOW_DOWN_SECS: i64 = 5;
/// How long an expired device code or authorization code is remembered, so that a late
/// poll still hears `expired_token` and a reused code still revokes its grant.
const RETENTION_SECS: i64 = 3600;
/// Longest user name a login may be approved for.
const USER_MAX_CHARS: usize = 64;

/// Pending and finished logins.
#[derive(Debug, Default)]
pub(super) struct Logins {
    devices: HashMap<Digest, Device>,
    /// The device code digest of each user code, by the user code's letters.
    user_codes: HashMap<String, Digest>,
    codes: HashMap<Digest, Code>,
}

impl Logins {
    /// Forgets logins that expired more than [`RETENTION_SECS`] ago.
    fn prune(&mut self, now: i64) {
        let keep = |expires_at: i64| now < expires_at.saturating_add(RETENTION_SECS);
        self.devices.retain(|_, device| keep(device.expires_at));
        let devices = &self.devices;
        self.user_codes
            .retain(|_, digest| devices.contains_key(digest));
        self.codes.retain(|_, code| keep(code.expires_at));
    }
}

/// One device authorization, from its request until its device code is exchanged.
#[derive(Debug)]
struct Device {
    client_id: String,
    scope: Scope,
    expires_at: i64,
    /// The least seconds between polls; grows with each `slow_down`.
    interval: i64,
    last_poll: Option<i64>,
    decision: Decision,
}

/// What the user said to a device authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Pending,
    Approved { user: String },
    Denied,
}

/// Why a user code could not be approved or denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecisionRefused {
    /// Not a user code of a live device authorization (unknown, expired or exchanged).
    Unknown,
    /// Already approved or denied.
    Decided,
}

/// One authorization code.
#[derive(Debug)]
struct Code {
    client_id: String,
    redirect_uri: String,
    scope: Scope,
    user: String,
    code_challenge: String,
    expires_at: i64,
    /// The grant its exchange opened; a code with one is used up.
    redeemed: Option<GrantId>,
}

/// The user code as people type it, `XXXX-XXXX`: its letters, uppercase, without the
/// dash or spaces; `None` if that is not a user code this provider could have made.
pub(crate) fn normalize_user_code(input: &str) -> Option<String> {
    let letters: String = input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid = letters.len() == USER_CODE_LETTERS
        && letters
            .bytes()
            .all(|c| crate::jwt::USER_CODE_ALPHABET.contains(&c));
    valid.then_some(letters)
}

/// A user code's letters as they are shown: `XXXX-XXXX`.
pub(crate) fn display_user_code(letters: &str) -> String {
    let half = letters.len() / 2;
    match (letters.get(..half), letters.get(half..)) {
        (Some(first), Some(second)) => format!("{first}-{second}"),
        _ => letters.to_owned(),
    }
}

/// The user a login is approved for: `alice` when empty; `None` when too long or
/// holding control characters.
pub(crate) fn login_user(input: Option<&str>) -> Option<String> {
    let user = input.map(str::trim).unwrap_or_default();
    if user.is_empty() {
        return Some(crate::config::DEFAULT_USER.to_owned());
    }
    let valid = user.chars().count() <= USER_MAX_CHARS && !user.chars().any(char::is_control);
    valid.then(|| user.to_owned())
}

/// BASE64URL(SHA256(verifier)), the S256 code challenge of a verifier (RFC 7636 §4.2).
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Provider {
    /// Answers a device authorization request (RFC 8628 §3.1, §3.2): the client
    /// authenticates as at the token endpoint and asks for `scope` (the default scope
    /// when absent).
    pub(crate) fn authorize_device(
        &self,
        params: &Params,
        authorization: Option<&HeaderValue>,
    ) -> Result<Value, TokenError> {
        let client = oauth::authenticate(authorization, params, &self.config.clients)?;
        self.authorize_device_at(&client, params.get("scope"), now())
    }

    pub(super) fn authorize_device_at(
        &self,
        client: &Client,
        scope: Option<&str>,
        now: i64,
    ) -> Result<Value, TokenError> {
        let Some(client_id) = client.id() else {
            return Err(TokenError::invalid_request("missing parameter client_id"));
        };
        let device_code = random_string(32);
        let expires_in = seconds(self.config.device_code_ttl.as_secs());
        let interval = seconds(self.config.device_interval.as_secs());
        let mut state = self.state();
        state.logins.prune(now);
        let user_code = loop {
            let candidate = random_user_code();
            if !state.logins.user_codes.contains_key(&candidate) {
                break candidate;
            }
        };
        let digest = Digest::of(&device_code);
        state.logins.user_codes.insert(user_code.clone(), digest);
        state.logins.devices.insert(
            digest,
            Device {
                client_id: client_id.to_owned(),
                scope: Scope::parse(scope.unwrap_or(DEFAULT_SCOPE)),
                expires_at: now.saturating_add(expires_in),
                interval,
                last_poll: None,
                decision: Decision::Pending,
            },
        );
        let shown = display_user_code(&user_code);
        let verification_uri = format!("{}{VERIFICATION_PATH}", self.issuer);
        Ok(json!({
            "device_code": device_code,
            "user_code": shown,
            "verification_uri_complete": format!("{verification_uri}?user_code={shown}"),
            "verification_uri": verification_uri,
            "expires_in": expires_in,
            "interval": interval,
        }))
    }

    /// Records the user's answer to the device authorization with this user code
    /// (typed in any case, with or without the dash). Returns the user code as shown.
    pub(crate) fn decide_device(
        &self,
        user_code: &str,
        decision: Decision,
    ) -> Result<String, DecisionRefused> {
        self.decide_device_at(user_code, decision, now())
    }

    pub(super) fn decide_device_at(
        &self,
        user_code: &str,
        decision: Decision,
        now: i64,
    ) -> Result<String, DecisionRefused> {
        let letters = normalize_user_code(user_code).ok_or(DecisionRefused::Unknown)?;
        let mut state = self.state();
        let digest = *state
            .logins
            .user_codes
            .get(&letters)
            .ok_or(DecisionRefused::Unknown)?;
        let device = state
            .logins
            .devices
            .get_mut(&digest)
            .filter(|device| now < device.expires_at)
            .ok_or(DecisionRefused::Unknown)?;
        if device.decision != Decision::Pending {
            return Err(DecisionRefused::Decided);
        }
        device.decision = decision;
        Ok(display_user_code(&letters))
    }

    /// A device code exchange (RFC 8628 §3.4, §3.5): tokens once approved, else why
    /// the client must wait or stop. Polling sooner than the interval while the user
    /// has not answered is `slow_down`, and adds 5 s to the interval.
    pub(super) fn device_token_at(
        &self,
        client: &Client,
        device_code: &str,
        now: i64,
        access: AccessExpiry,
    ) -> Result<Value, TokenError> {
        let digest = Digest::of(device_code);
        let mut state = self.state();
        let unknown =
            || TokenError::invalid_grant("the device code is unknown or was already used");
        let device = state.logins.devices.get_mut(&digest).ok_or_else(unknown)?;
        self.check_login_client(client, &device.client_id)?;
        if now >= device.expires_at {
            return Err(TokenError::expired_token("the device code expired"));
        }
        let user = match &device.decision {
            Decision::Denied => {
                return Err(TokenError::access_denied("the user denied the request"));
            }
            Decision::Pending => {
                let too_soon = device
                    .last_poll
                    .is_some_and(|last| now < last.saturating_add(device.interval));
                device.last_poll = Some(now);
                if too_soon {
                    device.interval = device.interval.saturating_add(SLOW_DOWN_SECS);
                    return Err(TokenError::slow_down(format!(
                        "polled too soon; wait {} s between polls",
                        device.interval
                    )));
                }
                return Err(TokenError::authorization_pending(
                    "the user has not answered yet",
                ));
            }
            Decision::Approved { user } => user.clone(),
        };
        let (client_id, scope) = (device.client_id.clone(), device.scope.clone());
        state.logins.devices.remove(&digest);
        state.logins.user_codes.retain(|_, owner| *owner != digest);
        let (_, body) = self.open_login_grant(&mut state, user, client_id, &scope, now, access);
        Ok(body)
    }

    /// A new authorization code for an approved `request`, for `user`.
    pub(crate) fn issue_code(&self, request: &AuthorizeRequest, user: &str) -> String {
        self.issue_code_at(request, user, now())
    }

    pub(super) fn issue_code_at(&self, request: &AuthorizeRequest, user: &str, now: i64) -> String {
        let code = random_string(32);
        let mut state = self.state();
        state.logins.prune(now);
        state.logins.codes.insert(
            Digest::of(&code),
            Code {
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                scope: Scope::parse(&request.scope),
                user: user.to_owned(),
                code_challenge: request.code_challenge.clone(),
                expires_at: now.saturating_add(CODE_TTL_SECS),
                redeemed: None,
            },
        );
        code
    }

    /// An authorization code exchange (RFC 6749 §4.1.3, RFC 7636 §4.6). A code already
    /// exchanged is refused and the grant it opened revoked. A refused exchange of an
    /// unused code leaves it usable.
    pub(super) fn code_token_at(
        &self,
        client: &Client,
        params: &Params,
        now: i64,
        access: AccessExpiry,
    ) -> Result<Value, TokenError> {
        let digest = Digest::of(params.require("code")?);
        let mut state = self.state();
        let code = state
            .logins
            .codes
            .get(&digest)
            .ok_or_else(|| TokenError::invalid_grant("the authorization code is unknown"))?;
        if let Some(grant) = code.redeemed {
            state.revoke_grant(grant);
            return Err(TokenError::invalid_grant(
                "the authorization code was already used; the tokens issued for it are revoked",
            ));
        }
        if now >= code.expires_at {
            return Err(TokenError::invalid_grant("the authorization code expired"));
        }
        self.check_login_client(client, &code.client_id)?;
        if params.get("redirect_uri") != Some(code.redirect_uri.as_str()) {
            return Err(TokenError::invalid_grant(
                "redirect_uri differs from the one in the authorization request",
            ));
        }
        let verified = params.get("code_verifier").is_some_and(|verifier| {
            is_code_verifier(verifier) && constant_time_eq(&s256(verifier), &code.code_challenge)
        });
        if !verified {
            return Err(TokenError::invalid_grant(
                "the code_verifier is missing or does not match the code_challenge",
            ));
        }
        let (user, client_id, scope) = (
            code.user.clone(),
            code.client_id.clone(),
            code.scope.clone(),
        );
        let (grant, body) = self.open_login_grant(&mut state, user, client_id, &scope, now, access);
        if let Some(code) = state.logins.codes.get_mut(&digest) {
            code.redeemed = Some(grant);
        }
        Ok(body)
    }

    /// Whether `client` may exchange a code issued to `issued_to`.
    fn check_login_client(&self, client: &Client, issued_to: &str) -> Result<(), TokenError> {
        match client.id() {
            Some(id) if id == issued_to => Ok(()),
            Some(_) => Err(TokenError::invalid_grant(
                "the code was issued to another client",
            )),
            None if self.config.client(issued_to).is_some() => Err(TokenError::invalid_client(
                "client authentication is required for this client",
            )),
            None => Err(TokenError::invalid_request("missing parameter client_id")),
        }
    }

    /// Opens the grant of an approved login and answers with its tokens: a refresh
    /// token when `scope` has `offline_access`.
    fn open_login_grant(
        &self,
        state: &mut State,
        user: String,
        client_id: String,
        scope: &Scope,
        now: i64,
        access: AccessExpiry,
    ) -> (GrantId, Value) {
        let grant = state.open_grant(Grant {
            user,
            client_id,
            scope: scope.clone(),
            access_ttl: self.config.access_ttl.as_secs(),
            for_client: false,
            revoked: false,
            refresh: HashMap::new(),
            last_rotated: None,
            session: random_uuid(),
        });
        let refresh = if scope.contains(OFFLINE_ACCESS) {
            let (token, expires_at) = self.mint_refresh(state, grant, now);
            (Some(token), expires_at)
        } else {
            (None, None)
        };
        (
            grant,
            self.respond(state, grant, scope, now, refresh, access),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{ClientConfig, Config};
    use crate::counters::Counters;

    const T0: i64 = 1_700_000_000;
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT: &str = "http://127.0.0.1:4321/cb";

    fn provider(config: Config) -> Provider {
        Provider::new("http://127.0.0.1:1".to_owned(), config)
    }

    fn cli() -> Client {
        Client::Public("cli".to_owned())
    }

    fn device(provider: &Provider, scope: Option<&str>) -> (String, String) {
        let answer = provider.authorize_device_at(&cli(), scope, T0).unwrap();
        (
            answer["device_code"].as_str().unwrap().to_owned(),
            answer["user_code"].as_str().unwrap().to_owned(),
        )
    }

    fn poll(provider: &Provider, device_code: &str, now: i64) -> Result<Value, TokenError> {
        provider.device_token_at(&cli(), device_code, now, AccessExpiry::Lifetime)
    }

    fn error_of(result: Result<Value, TokenError>) -> &'static str {
        result.unwrap_err().error
    }

    fn approve(provider: &Provider, user_code: &str, now: i64) {
        let decision = Decision::Approved {
            user: "bob".to_owned(),
        };
        provider.decide_device_at(user_code, decision, now).unwrap();
    }

    fn counters(provider: &Provider) -> Counters {
        provider.counters()
    }

    #[test]
    fn user_codes_compare_ignoring_case_dash_and_spaces() {
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code(" BCDF GHJK ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDFGHJ"), None);
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels are never used"
        );
        assert_eq!(normalize_user_code("BCDF-GHJKL"), None);
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
    }

    #[test]
    fn login_users_default_to_alice_and_are_bounded() {
        assert_eq!(login_user(None).as_deref(), Some("alice"));
        assert_eq!(login_user(Some("  ")).as_deref(), Some("alice"));
        assert_eq!(login_user(Some(" bob ")).as_deref(), Some("bob"));
        assert_eq!(login_user(Some("a\nb")), None);
        assert_eq!(login_user(Some(&"x".repeat(65))), None);
    }

    #[test]
    fn a_device_authorization_names_codes_uris_and_timing() {
        let provider = provider(Config {
            device_code_ttl: Duration::from_secs(120),
            device_interval: Duration::from_secs(2),
            ..Config::default()
        });
        let answer = provider.authorize_device_at(&cli(), None, T0).unwrap();
        let user_code = answer["user_code"].as_str().unwrap();
        assert_eq!(user_code.len(), 9);
        assert_eq!(user_code.as_bytes()[4], b'-');
        assert_eq!(answer["verification_uri"], "http://127.0.0.1:1/device");
        assert_eq!(
            answer["verification_uri_complete"],
            format!("http://127.0.0.1:1/device?user_code={user_code}")
        );
        assert_eq!(answer["expires_in"], 120);
        assert_eq!(answer["interval"], 2);
        assert!(answer["device_code"].as_str().unwrap().len() >= 43);

        let error = provider
            .authorize_device_at(&Client::Anonymous, None, T0)
            .unwrap_err();
        assert_eq!(error.error, "invalid_request");
    }

    #[test]
    fn polling_waits_slows_down_and_then_hands_out_tokens_once() {
        let provider = provider(Config::default());
        let (device_code, user_code) = device(&provider, None);
        assert_eq!(
            error_of(poll(&provider, &device_code, T0)),
            "authorization_pending"
        );
        assert_eq!(error_of(poll(&provider, &device_code, T0 + 4)), "slow_down");
        // The interval is now 10 s, counted from the last poll (T0 + 4).
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 13)),
            "slow_down"
        );
        // Now 15 s, from T0 + 13.
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 27)),
            "slow_down"
        );
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 47)),
            "authorization_pending"
        );
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 67)),
            "authorization_pending"
        );

        approve(&provider, &user_code.to_lowercase(), T0 + 68);
        let tokens = poll(&provider, &device_code, T0 + 68).unwrap();
        assert_eq!(tokens["scope"], DEFAULT_SCOPE);
        assert!(
            tokens["refresh_token"].is_string(),
            "offline_access gives one"
        );
        let access = tokens["access_token"].as_str().unwrap();
        let info = provider.introspect_at(access, T0 + 68);
        assert_eq!(
            (info["sub"].as_str(), info["client_id"].as_str()),
            (Some("bob"), Some("cli"))
        );

        let again = poll(&provider, &device_code, T0 + 80).unwrap_err();
        assert_eq!(again.error, "invalid_grant");
        assert!(
            provider.is_active_at(access, T0 + 80),
            "a used device code revokes nothing"
        );
        assert_eq!(
            provider.decide_device_at(&user_code, Decision::Denied, T0 + 80),
            Err(DecisionRefused::Unknown),
            "an exchanged user code is gone"
        );
    }

    #[test]
    fn an_approved_device_code_is_answered_however_soon_it_is_polled() {
        let provider = provider(Config::default());
        let (device_code, user_code) = device(&provider, Some("openid"));
        assert!(poll(&provider, &device_code, T0).is_err());
        approve(&provider, &user_code, T0);
        let tokens = poll(&provider, &device_code, T0).unwrap();
        assert!(
            tokens.get("refresh_token").is_none(),
            "no offline_access, no refresh token"
        );
        assert!(tokens["id_token"].is_string());
    }

    #[test]
    fn a_denied_device_code_is_access_denied() {
        let provider = provider(Config::default());
        let (device_code, user_code) = device(&provider, None);
        provider
            .decide_device_at(&user_code, Decision::Denied, T0 + 1)
            .unwrap();
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 1)),
            "access_denied"
        );
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 2)),
            "access_denied"
        );
        assert_eq!(
            provider.decide_device_at(&user_code, Decision::Pending, T0 + 2),
            Err(DecisionRefused::Decided)
        );
    }

    #[test]
    fn a_device_code_expires_at_its_expiry_instant() {
        let provider = provider(Config {
            device_code_ttl: Duration::from_secs(60),
            ..Config::default()
        });
        let (device_code, user_code) = device(&provider, None);
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 59)),
            "authorization_pending"
        );
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 60)),
            "expired_token"
        );
        assert_eq!(
            provider.decide_device_at(&user_code, Decision::Denied, T0 + 60),
            Err(DecisionRefused::Unknown)
        );
        // Remembered for an hour after expiry, then forgotten.
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 3659)),
            "expired_token"
        );
        provider
            .authorize_device_at(&cli(), None, T0 + 3660)
            .unwrap();
        assert_eq!(
            error_of(poll(&provider, &device_code, T0 + 3660)),
            "invalid_grant"
        );
    }

    #[test]
    fn a_device_code_is_bound_to_its_client() {
        let provider = provider(Config {
            clients: vec![ClientConfig::new("svc", "s3cret")],
            ..Config::default()
        });
        let (device_code, _) = device(&provider, None);
        let other = Client::Public("other".to_owned());
        let error = provider
            .device_token_at(&other, &device_code, T0, AccessExpiry::Lifetime)
            .unwrap_err();
        assert_eq!(error.error, "invalid_grant");
        let error = provider
            .device_token_at(&Client::Anonymous, &device_code, T0, AccessExpiry::Lifetime)
            .unwrap_err();
        assert_eq!(error.error, "invalid_request");

        let svc = Client::Confidential("svc".to_owned());
        let answer = provider.authorize_device_at(&svc, None, T0).unwrap();
        let svc_code = answer["device_code"].as_str().unwrap();
        let error = provider
            .device_token_at(&Client::Anonymous, svc_code, T0, AccessExpiry::Lifetime)
            .unwrap_err();
        assert_eq!(error.error, "invalid_client");
        assert_eq!(
            error_of(provider.device_token_at(&svc, svc_code, T0, AccessExpiry::Lifetime)),
            "authorization_pending"
        );
        assert_eq!(counters(&provider).grants_revoked, 0);
    }

    fn request() -> AuthorizeRequest {
        let pairs = [
            ("response_type", "code"),
            ("client_id", "cli"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid offline_access"),
            ("state", "s"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        let pairs = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AuthorizeRequest::parse(pairs, "http://127.0.0.1:1").unwrap()
    }

    fn exchange(
        provider: &Provider,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        now: i64,
    ) -> Result<Value, TokenError> {
        let params = Params::from_pairs(vec![
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), redirect_uri.to_owned()),
            ("code_verifier".to_owned(), verifier.to_owned()),
        ])
        .unwrap();
        provider.code_token_at(&cli(), &params, now, AccessExpiry::Lifetime)
    }

    #[test]
    fn rfc_7636_appendix_b_verifier_matches_its_challenge() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
    }

    #[test]
    fn a_code_exchanges_once_with_its_verifier_and_redirect_uri() {
        let provider = provider(Config::default());
        let code = provider.issue_code_at(&request(), "carol", T0);
        let wrong_verifier = "a".repeat(43);
        for (redirect, verifier) in [
            (REDIRECT, wrong_verifier.as_str()),
            (REDIRECT, ""),
            ("http://127.0.0.1:4321/cb/", VERIFIER),
            ("", VERIFIER),
        ] {
            let error = exchange(&provider, &code, redirect, verifier, T0 + 1).unwrap_err();
            assert_eq!(error.error, "invalid_grant", "{redirect} {verifier}");
        }
        let tokens = exchange(&provider, &code, REDIRECT, VERIFIER, T0 + 1).unwrap();
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
        assert_eq!(provider.introspect_at(&access, T0 + 1)["sub"], "carol");
        assert_eq!(tokens["scope"], "openid offline_access");

        let error = exchange(&provider, &code, REDIRECT, VERIFIER, T0 + 2).unwrap_err();
        assert_eq!(error.error, "invalid_grant");
        assert!(
            !provider.is_active_at(&access, T0 + 2),
            "reuse revokes the first tokens"
        );
        assert!(!provider.is_active_at(&refresh, T0 + 2));
        assert_eq!(counters(&provider).grants_revoked, 1);
    }

    #[test]
    fn a_code_lives_sixty_seconds_and_belongs_to_its_client() {
        let provider = provider(Config::default());
        let code = provider.issue_code_at(&request(), "alice", T0);
        let error = exchange(&provider, &code, REDIRECT, VERIFIER, T0 + 60).unwrap_err();
        assert_eq!(error.error, "invalid_grant");
        assert_eq!(
            error_of(exchange(&provider, "unknown", REDIRECT, VERIFIER, T0)),
            "invalid_grant"
        );

        let params = Params::from_pairs(vec![
            ("code".to_owned(), code.clone()),
            ("redirect_uri".to_owned(), REDIRECT.to_owned()),
            ("code_verifier".to_owned(), VERIFIER.to_owned()),
        ])
        .unwrap();
        let other = Client::Public("other".to_owned());
        let error = provider
            .code_token_at(&other, &params, T0, AccessExpiry::Lifetime)
            .unwrap_err();
        assert_eq!(error.error, "invalid_grant");
        assert!(exchange(&provider, &code, REDIRECT, VERIFIER, T0 + 59).is_ok());
    }
}
