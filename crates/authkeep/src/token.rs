//! The token set a session holds, and where its expiry comes from.
//!
//! Expiry is inferred once, when a token response is received or imported, from the
//! first source that gives one (docs/DESIGN.md §2): `expires_in` counted from the instant
//! the request was sent, an explicit expiry, the access token's JWT `exp` claim
//! (decoded without verification), otherwise unknown. All instants are kept with
//! second precision, rounded towards the past so that latency errs on the early side.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::secret::{AccessToken, IdToken, RefreshToken};

/// `expires_in` beyond this is treated as absurd and ignored (ten years).
const MAX_SANE_LIFETIME_SECS: i64 = 10 * 366 * 24 * 3600;

/// Where a token set's `expires_at` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpirySource {
    /// The token response's `expires_in`, counted from the request instant.
    ExpiresIn,
    /// An expiry given explicitly at login or import.
    Explicit,
    /// The access token's JWT `exp` claim.
    JwtExp,
    /// The provider answered without any expiry: the token is used until a
    /// resource server rejects it (or a configured maximum age passes).
    ProviderGivesNone,
    /// Never learned: the record was written before its expiry was captured.
    Unknown,
}

/// How a token set was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Imported from a file or another tool.
    Import,
    /// Obtained from the provider by an interactive or programmatic login.
    Login,
    /// Obtained from the provider by a refresh.
    Refresh,
}

impl Origin {
    /// Whether the provider issued this token set moments before it was stored
    /// (an import may be arbitrarily old).
    pub fn from_provider(self) -> bool {
        !matches!(self, Origin::Import)
    }
}

/// The tokens of one session and what is known of their lifetime.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSet {
    /// The access token; an empty one is never usable.
    pub access_token: AccessToken,
    /// Usually `Bearer`.
    pub token_type: String,
    /// The refresh token, when the session can renew itself.
    pub refresh_token: Option<RefreshToken>,
    /// The granted scope, as the provider last reported it.
    pub scope: Option<String>,
    /// The OpenID Connect ID token, if any.
    pub id_token: Option<IdToken>,
    /// When the access token expires (inclusive), if known.
    pub expires_at: Option<Timestamp>,
    /// When the access token was issued, if known.
    pub issued_at: Option<Timestamp>,
    /// When the refresh token expires, where the provider says so.
    pub refresh_expires_at: Option<Timestamp>,
    /// Where `expires_at` came from.
    pub expiry_source: ExpirySource,
    /// When this token set was received or imported.
    pub obtained_at: Timestamp,
    /// How this token set was obtained.
    pub origin: Origin,
}

impl TokenSet {
    /// Whether the access token is expired at `now` (inclusive at the expiry instant).
    /// Unknown expiry is not expired.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whether the access token may still be handed out at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        !self.access_token.is_empty() && !self.is_expired(now)
    }

    /// Completes a token set from a refresh with what the previous one had and
    /// the refresh response left out (RFC 6749 §6: a response without
    /// `refresh_token` keeps the old one; `scope` and `id_token` likewise).
    /// Returns whether the provider rotated the refresh token.
    pub fn keep_from(&mut self, previous: TokenSet) -> bool {
        let rotated = self.refresh_token.is_some() && self.refresh_token != previous.refresh_token;
        if !rotated {
            self.refresh_token = previous.refresh_token;
            self.refresh_expires_at = self.refresh_expires_at.or(previous.refresh_expires_at);
        }
        self.scope = self.scope.take().or(previous.scope);
        self.id_token = self.id_token.take().or(previous.id_token);
        rotated
    }

    /// The token's lifetime, when both ends are known.
    pub fn lifetime(&self) -> Option<SignedDuration> {
        match (self.issued_at, self.expires_at) {
            (Some(issued), Some(expires)) if expires > issued => {
                Some(expires.duration_since(issued))
            }
            _ => None,
        }
    }
}

/// A token endpoint's successful answer (RFC 6749 §5.1), as parsed leniently.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenResponse {
    /// `access_token`.
    pub access_token: AccessToken,
    /// `token_type` (defaults to `Bearer` when absent).
    pub token_type: Option<String>,
    /// `expires_in`, as a number of seconds (numbers and numeric strings accepted).
    pub expires_in: Option<i64>,
    /// `refresh_token`; empty strings and placeholders are dropped.
    pub refresh_token: Option<RefreshToken>,
    /// `scope`.
    pub scope: Option<String>,
    /// `id_token`.
    pub id_token: Option<IdToken>,
    /// `refresh_expires_in`, where a provider sends it.
    pub refresh_expires_in: Option<i64>,
    /// An explicit expiry (import records, `access_token_expires_at`).
    pub expires_at: Option<Timestamp>,
    /// An explicit issue instant (import records).
    pub issued_at: Option<Timestamp>,
    /// An explicit refresh token expiry (import records).
    pub refresh_expires_at: Option<Timestamp>,
    /// Whether the explicit expiry was a Unix time in milliseconds (a number too
    /// large to be seconds), as JavaScript apps write it.
    pub expiry_in_milliseconds: bool,
}

impl TokenResponse {
    /// Reads the fields of a token response or an import record leniently:
    /// numbers or numeric strings for durations, RFC 3339 or Unix seconds for
    /// instants (`expires_at`, or `access_token_expires_at` / `expiry` as other
    /// tools write it), empty strings as absent.
    pub fn from_fields(fields: &serde_json::Map<String, serde_json::Value>) -> Self {
        // The first of several names a field goes by: RFC 6749's, then what
        // other clients write (camelCase in JavaScript apps, `expiry` in Go's
        // oauth2.Token) and what providers add (GitHub's
        // `refresh_token_expires_in`).
        let field = |names: &[&str]| names.iter().find_map(|name| fields.get(*name));
        let text = |names: &[&str]| {
            field(names)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let instant = |names: &[&str]| field(names).and_then(parse_instant);
        let expires_at = field(&[
            "expires_at",
            "expiresAt",
            "access_token_expires_at",
            "expiry",
        ]);
        Self {
            access_token: AccessToken::new(
                text(&["access_token", "accessToken"]).unwrap_or_default(),
            ),
            // RFC 6750 token types are case-insensitive; providers send `bearer`
            // (GitHub) or `BEARER` as often as `Bearer`.
            token_type: text(&["token_type", "tokenType"]).map(|t| {
                if t.eq_ignore_ascii_case("bearer") {
                    "Bearer".to_owned()
                } else {
                    t
                }
            }),
            expires_in: field(&["expires_in", "expiresIn"]).and_then(numeric_seconds),
            refresh_token: text(&["refresh_token", "refreshToken"]).map(RefreshToken::new),
            scope: text(&["scope"]),
            id_token: text(&["id_token", "idToken"]).map(IdToken::new),
            refresh_expires_in: field(&["refresh_expires_in", "refresh_token_expires_in"])
                .and_then(numeric_seconds),
            expires_at: expires_at.and_then(parse_instant),
            issued_at: instant(&["issued_at", "issuedAt"]),
            refresh_expires_at: instant(&["refresh_expires_at", "refreshExpiresAt"]),
            expiry_in_milliseconds: expires_at.is_some_and(is_epoch_milliseconds),
        }
    }

    /// Turns a response into a token set, inferring expiry as docs/DESIGN.md §2 says.
    /// `at` is the instant the request was sent (or the import instant); `skew` is
    /// the issuer's clock minus ours, applied to the JWT's absolute claims.
    pub fn into_token_set(self, at: Timestamp, origin: Origin, skew: SignedDuration) -> TokenSet {
        let at = truncate(at);
        let claims = jwt_claims(self.access_token.expose_secret());
        let from_provider_clock = |secs: i64| {
            Timestamp::from_second(secs)
                .ok()
                .and_then(|t| t.checked_sub(skew).ok())
        };
        let jwt_exp = claims
            .as_ref()
            .and_then(|c| c.exp)
            .and_then(from_provider_clock);
        let jwt_iat = claims
            .as_ref()
            .and_then(|c| c.iat)
            .and_then(from_provider_clock);

        let sane = |secs: i64| (1..=MAX_SANE_LIFETIME_SECS).contains(&secs);
        let after = |secs: i64| at.checked_add(SignedDuration::from_secs(secs)).ok();
        // An instant past the end of time is as absurd as a negative lifetime.
        let from_expires_in = self.expires_in.filter(|s| sane(*s)).and_then(after);
        let (expires_at, issued_at, expiry_source) = match from_expires_in {
            Some(expires_at) => (Some(expires_at), Some(at), ExpirySource::ExpiresIn),
            None => match (self.expires_at, jwt_exp) {
                (Some(explicit), _) => (
                    Some(truncate(explicit)),
                    self.issued_at.or(jwt_iat).or(Some(at)),
                    ExpirySource::Explicit,
                ),
                (None, Some(exp)) => (
                    Some(exp),
                    jwt_iat.or(self.issued_at).or(Some(at)),
                    ExpirySource::JwtExp,
                ),
                (None, None) => (
                    None,
                    self.issued_at.or(jwt_iat).or(Some(at)),
                    unknown_source(origin),
                ),
            },
        };
        let refresh_expires_at = match self.refresh_expires_in.filter(|s| sane(*s)).and_then(after)
        {
            Some(instant) => Some(instant),
            None => self.refresh_expires_at.map(truncate),
        };
        TokenSet {
            access_token: self.access_token,
            token_type: self.token_type.unwrap_or_else(|| "Bearer".to_owned()),
            refresh_token: self
                .refresh_token
                .filter(|rt| !is_placeholder_refresh_token(rt.expose_secret())),
            scope: self.scope,
            id_token: self.id_token,
            expires_at,
            issued_at: issued_at.map(truncate),
            refresh_expires_at,
            expiry_source,
            obtained_at: at,
            origin,
        }
    }
}

/// A provider that answers a refresh or login without any expiry gives none; an
/// import without one simply never learned it.
fn unknown_source(origin: Origin) -> ExpirySource {
    if origin.from_provider() {
        ExpirySource::ProviderGivesNone
    } else {
        ExpirySource::Unknown
    }
}

/// Whether a stored refresh token is really "no refresh token": legacy records and
/// other tools write empty strings or sentinels such as `auto-login`.
pub(crate) fn is_placeholder_refresh_token(value: &str) -> bool {
    let value = value.trim();
    value.is_empty()
        || value.eq_ignore_ascii_case("auto-login")
        || value.eq_ignore_ascii_case("null")
}

/// `t + d`, or the last (first) representable instant where that would overflow.
pub(crate) fn saturating_add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `t − d`, saturating like [`saturating_add`].
pub(crate) fn saturating_sub(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_sub(d).unwrap_or(if d.is_negative() {
        Timestamp::MAX
    } else {
        Timestamp::MIN
    })
}

/// A duration as people write it, to the second: `90s` → `1m30s`.
pub(crate) fn human(d: std::time::Duration) -> String {
    human_signed(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
}

/// A signed duration as people write it, to the second: `-1m40s`.
pub(crate) fn human_signed(d: SignedDuration) -> String {
    use jiff::fmt::friendly::{Designator, Spacing, SpanPrinter};
    let whole = SignedDuration::from_secs(d.as_secs());
    SpanPrinter::new()
        .designator(Designator::Compact)
        .spacing(Spacing::None)
        .duration_to_string(&whole)
}

/// Drops sub-second precision, towards the past.
pub(crate) fn truncate(t: Timestamp) -> Timestamp {
    // `as_second` floors for instants after 1970, which is every instant we see;
    // the fallback keeps the original for the impossible out-of-range case.
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The registered claims authkeep reads from a JWT access token.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct JwtClaims {
    /// `exp`, seconds since the epoch.
    pub(crate) exp: Option<i64>,
    /// `iat`, seconds since the epoch.
    pub(crate) iat: Option<i64>,
}

/// Decodes a JWT's `exp` and `iat` without verifying anything: they only steer
/// when to refresh, never whether to trust the token. Returns `None` for anything
/// that is not a JWS compact serialization with a JSON object payload.
pub(crate) fn jwt_claims(token: &str) -> Option<JwtClaims> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let object = value.as_object()?;
    let number = |name: &str| object.get(name).and_then(numeric_seconds);
    Some(JwtClaims {
        exp: number("exp"),
        iat: number("iat"),
    })
}

/// A number of seconds from a JSON number (integer or float) or a numeric string.
pub(crate) fn numeric_seconds(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        serde_json::Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

/// An instant from an RFC 3339 string or a number of Unix seconds; anything else
/// is `None` (unknown).
pub(crate) fn parse_instant(value: &serde_json::Value) -> Option<Timestamp> {
    let from_number = || {
        let n = numeric_seconds(value)?;
        let secs = if n > LATEST_EPOCH_SECONDS {
            n / 1000
        } else {
            n
        };
        Timestamp::from_second(secs).ok()
    };
    match value {
        serde_json::Value::String(s) => s.trim().parse::<Timestamp>().ok().or_else(from_number),
        serde_json::Value::Number(_) => from_number(),
        _ => None,
    }
}

/// A Unix time in seconds after this (the year 5000) is read as milliseconds: no
/// token lives that long, and JavaScript writes its instants in milliseconds.
const LATEST_EPOCH_SECONDS: i64 = 95_617_584_000;

/// Whether an instant field holds a Unix time in milliseconds.
fn is_epoch_milliseconds(value: &serde_json::Value) -> bool {
    let numeric = matches!(value, serde_json::Value::Number(_))
        || value
            .as_str()
            .is_some_and(|s| s.trim().parse::<Timestamp>().is_err());
    numeric && numeric_seconds(value).is_some_and(|n| n > LATEST_EPOCH_SECONDS)
}

/// Formats an instant as RFC 3339 UTC with second precision.
pub(crate) fn format_instant(t: Timestamp) -> String {
    truncate(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn jwt(payload: serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let body = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{header}.{body}.sig")
    }

    fn response(access: &str) -> TokenResponse {
        TokenResponse {
            access_token: AccessToken::new(access),
            ..Default::default()
        }
    }

    #[test]
    fn expires_in_counts_from_the_request_instant() {
        let mut r = response("opaque");
        r.expires_in = Some(3600);
        let set = r.into_token_set(
            t("2026-01-01T00:00:00.900Z"),
            Origin::Refresh,
            SignedDuration::ZERO,
        );
        assert_eq!(set.expires_at, Some(t("2026-01-01T01:00:00Z")));
        assert_eq!(set.issued_at, Some(t("2026-01-01T00:00:00Z")));
        assert_eq!(set.expiry_source, ExpirySource::ExpiresIn);
    }

    #[test]
    fn absurd_expires_in_falls_back_to_jwt_exp() {
        for absurd in [0, -5, MAX_SANE_LIFETIME_SECS + 1] {
            let mut r = response(&jwt(
                serde_json::json!({"exp": 1_767_229_200, "iat": 1_767_225_600}),
            ));
            r.expires_in = Some(absurd);
            let set = r.into_token_set(
                t("2026-01-01T00:00:00Z"),
                Origin::Refresh,
                SignedDuration::ZERO,
            );
            assert_eq!(
                set.expiry_source,
                ExpirySource::JwtExp,
                "expires_in = {absurd}"
            );
            assert_eq!(set.expires_at, Timestamp::from_second(1_767_229_200).ok());
            assert_eq!(set.issued_at, Timestamp::from_second(1_767_225_600).ok());
        }
    }

    #[test]
    fn explicit_expiry_beats_jwt_exp() {
        let mut r = response(&jwt(serde_json::json!({"exp": 1_767_229_200})));
        r.expires_at = Some(t("2026-03-01T00:00:00Z"));
        let set = r.into_token_set(
            t("2026-01-01T00:00:00Z"),
            Origin::Import,
            SignedDuration::ZERO,
        );
        assert_eq!(set.expiry_source, ExpirySource::Explicit);
        assert_eq!(set.expires_at, Some(t("2026-03-01T00:00:00Z")));
    }

    #[test]
    fn jwt_exp_in_the_past_means_expired_not_absurd() {
        let r = response(&jwt(serde_json::json!({"exp": 1_000_000_000})));
        let set = r.into_token_set(
            t("2026-01-01T00:00:00Z"),
            Origin::Import,
            SignedDuration::ZERO,
        );
        assert_eq!(set.expiry_source, ExpirySource::JwtExp);
        assert!(set.is_expired(t("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn skew_moves_jwt_claims_onto_our_clock() {
        // The provider's clock is two minutes ahead of ours.
        let r = response(&jwt(serde_json::json!({"exp": 1_767_229_200})));
        let set = r.into_token_set(
            t("2026-01-01T00:00:00Z"),
            Origin::Refresh,
            SignedDuration::from_mins(2),
        );
        assert_eq!(
            set.expires_at,
            Timestamp::from_second(1_767_229_200 - 120).ok()
        );
    }

    #[test]
    fn no_expiry_from_the_provider_differs_from_never_learned() {
        let from_refresh = response("opaque").into_token_set(
            t("2026-01-01T00:00:00Z"),
            Origin::Refresh,
            SignedDuration::ZERO,
        );
        assert_eq!(from_refresh.expiry_source, ExpirySource::ProviderGivesNone);
        let imported = response("opaque").into_token_set(
            t("2026-01-01T00:00:00Z"),
            Origin::Import,
            SignedDuration::ZERO,
        );
        assert_eq!(imported.expiry_source, ExpirySource::Unknown);
        assert_eq!(imported.expires_at, None);
    }

    #[test]
    fn placeholder_refresh_tokens_are_none() {
        for placeholder in ["", "  ", "auto-login", "AUTO-LOGIN"] {
            let mut r = response("a");
            r.refresh_token = Some(RefreshToken::new(placeholder));
            let set = r.into_token_set(
                t("2026-01-01T00:00:00Z"),
                Origin::Import,
                SignedDuration::ZERO,
            );
            assert_eq!(set.refresh_token, None, "{placeholder:?}");
        }
    }

    #[test]
    fn numbers_and_numeric_strings_are_seconds() {
        assert_eq!(numeric_seconds(&serde_json::json!(3600)), Some(3600));
        assert_eq!(numeric_seconds(&serde_json::json!("3600")), Some(3600));
        assert_eq!(numeric_seconds(&serde_json::json!(3600.7)), Some(3600));
        assert_eq!(numeric_seconds(&serde_json::json!("soon")), None);
        assert_eq!(numeric_seconds(&serde_json::json!(null)), None);
    }

    #[test]
    fn instants_parse_from_rfc3339_or_unix_seconds() {
        assert_eq!(
            parse_instant(&serde_json::json!("2026-01-01T00:00:00Z")),
            Some(t("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_instant(&serde_json::json!(1_767_225_600)),
            Some(t("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_instant(&serde_json::json!("1767225600")),
            Some(t("2026-01-01T00:00:00Z"))
        );
        assert_eq!(parse_instant(&serde_json::json!("next tuesday")), None);
        assert_eq!(
            format_instant(t("2026-01-01T00:00:00.75Z")),
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn expiry_is_inclusive_and_empty_tokens_are_unusable() {
        let mut r = response("a");
        r.expires_in = Some(60);
        let set = r.into_token_set(
            t("2026-01-01T00:00:00Z"),
            Origin::Refresh,
            SignedDuration::ZERO,
        );
        assert!(set.is_usable(t("2026-01-01T00:00:59Z")));
        assert!(!set.is_usable(t("2026-01-01T00:01:00Z")));
        let empty = response("").into_token_set(
            t("2026-01-01T00:00:00Z"),
            Origin::Import,
            SignedDuration::ZERO,
        );
        assert!(!empty.is_usable(t("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn malformed_jwts_have_no_claims() {
        assert_eq!(jwt_claims("opaque"), None);
        assert_eq!(jwt_claims("a.b"), None);
        assert_eq!(jwt_claims("a.!!!.c"), None);
        assert_eq!(
            jwt_claims(&format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1]"))),
            None
        );
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Anything a JWT-looking token or an instant field carries is read or
        /// refused, never a panic.
        #[test]
        fn jwt_claims_and_instants_of_any_input(
            token in prop_oneof![
                ".{0,100}".prop_map(String::from),
                ("[A-Za-z0-9_-]{0,20}", "[A-Za-z0-9_=-]{0,80}", "[A-Za-z0-9_-]{0,20}")
                    .prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
                ("-?[0-9]{1,25}(\\.[0-9]{0,5})?(e[0-9]{1,3})?", "-?[0-9]{1,25}")
                    .prop_map(|(exp, iat)| format!(
                        "e30.{}.sig",
                        URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp},"iat":"{iat}"}}"#))
                    )),
            ],
            instant_text in ".{0,40}",
            seconds in any::<i64>(),
        ) {
            let _ = jwt_claims(&token);
            let _ = parse_instant(&serde_json::Value::String(instant_text));
            let _ = parse_instant(&serde_json::json!(seconds));
        }
    }
}
