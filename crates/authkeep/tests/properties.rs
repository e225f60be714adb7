//! Bad input never panics: arbitrary durations, instants, records, token
//! responses, provider answers and session files are fed through the refresh
//! decision and the parsers. Where a property holds for every input (a token
//! handed out is usable; sanitised text carries no secret or control character),
//! it is asserted too.

use authkeep::oauth::discovery;
use authkeep::oauth::{Secrets, parse_token_response, sanitize};
use authkeep::{
    AccessToken, Client, Decision, Demand, ExpirySource, Failure, FailureClass, FileStore, Health,
    Origin, Policy, Record, RefreshToken, SessionKey, TokenResponse, TokenSet,
};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

/// Cases per property; the suite's whole run stays within seconds.
pub const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

/// Any instant jiff can represent, weighted towards its ends and today.
fn instant() -> impl Strategy<Value = Timestamp> {
    let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    prop_oneof![
        min..=max,
        Just(min),
        Just(max),
        (max - 100_000)..=max,
        min..=(min + 100_000),
        1_700_000_000i64..1_900_000_000,
    ]
    .prop_map(|s| Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Any signed duration, huge ones included.
fn duration() -> impl Strategy<Value = SignedDuration> {
    prop_oneof![
        any::<i64>(),
        -1000i64..100_000,
        Just(i64::MAX),
        Just(i64::MIN),
    ]
    .prop_map(SignedDuration::from_secs)
}

fn fraction() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0f64..=1.0,
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0)
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (duration(), fraction(), proptest::option::of(duration())).prop_map(
        |(threshold, fraction, max_age)| {
            let policy = Policy::default()
                .with_threshold(threshold)
                .with_fraction(fraction);
            match max_age {
                Some(age) => policy.with_max_age(age),
                None => policy,
            }
        },
    )
}

fn demand() -> impl Strategy<Value = Demand> {
    (proptest::option::of(duration()), any::<bool>()).prop_map(|(min_valid, force)| {
        let mut demand = Demand::new();
        if let Some(min_valid) = min_valid {
            demand = demand.min_valid(min_valid);
        }
        if force { demand.force() } else { demand }
    })
}

fn source() -> impl Strategy<Value = ExpirySource> {
    prop_oneof![
        Just(ExpirySource::ExpiresIn),
        Just(ExpirySource::Explicit),
        Just(ExpirySource::JwtExp),
        Just(ExpirySource::ProviderGivesNone),
        Just(ExpirySource::Unknown),
    ]
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::Import),
        Just(Origin::Login),
        Just(Origin::Refresh)
    ]
}

fn tokens() -> impl Strategy<Value = TokenSet> {
    (
        (
            prop_oneof!["", "at", "x.y.z"],
            proptest::option::of("[a-z]{0,3}"),
        ),
        (
            proptest::option::of(instant()),
            proptest::option::of(instant()),
            proptest::option::of(instant()),
        ),
        (source(), instant(), origin()),
    )
        .prop_map(
            |(
                (access, refresh),
                (expires_at, issued_at, refresh_expires_at),
                (source, obtained_at, origin),
            )| {
                TokenSet {
                    access_token: AccessToken::new(access),
                    token_type: "Bearer".into(),
                    refresh_token: refresh.map(RefreshToken::new),
                    scope: None,
                    id_token: None,
                    expires_at,
                    issued_at,
                    refresh_expires_at,
                    expiry_source: source,
                    obtained_at,
                    origin,
                }
            },
        )
}

fn health() -> impl Strategy<Value = Health> {
    (
        proptest::option::of(instant()),
        proptest::option::of(instant()),
        any::<u32>(),
    )
        .prop_map(
            |(next_attempt_at, retry_after, consecutive_failures)| Health {
                next_attempt_at,
                retry_after,
                consecutive_failures,
                ..Health::default()
            },
        )
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<bool>(),
        proptest::option::of(tokens()),
        health(),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(client, tokens, health, skew)| Record {
            client: client.then(|| Client::new("https://idp.example", "c")),
            tokens,
            health,
            clock_skew_secs: skew,
        })
}

/// A JSON value of the shapes providers and files send, oddities included.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
        any::<i64>().prop_map(|n| Value::String(n.to_string())),
        prop_oneof![
            Just("1e400"),
            Just("-0"),
            Just("NaN"),
            Just("9999-12-31T23:59:59Z"),
            Just("-009999-01-01T00:00:00Z"),
            Just("2026-01-01T00:00:00.999999999+14:00"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
        Just(json!([1, 2])),
        Just(json!({"nested": true})),
    ]
}

const FIELDS: [&str; 14] = [
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "scope",
    "id_token",
    "refresh_expires_in",
    "expires_at",
    "access_token_expires_at",
    "expiry",
    "issued_at",
    "refresh_expires_at",
    "error",
    "error_description",
];

fn fields() -> impl Strategy<Value = serde_json::Map<String, serde_json::Value>> {
    proptest::collection::vec((0..FIELDS.len(), json_value()), 0..10).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(i, v)| (FIELDS[i].to_owned(), v))
            .collect()
    })
}

proptest! {
    #![proptest_config(config())]

    /// The decision never panics, and never hands out a token that is not usable.
    #[test]
    fn the_decision_never_panics_nor_serves_an_unusable_token(
        policy in policy(), record in record(), demand in demand(), now in instant()
    ) {
        let decision = policy.decide(Some(&record), demand, now);
        if let Decision::UseStored(_) = decision {
            let tokens = record.tokens.as_ref();
            prop_assert!(tokens.is_some_and(|t| t.is_usable(now)), "{decision:?}");
        }
        let state = policy.state(Some(&record), now);
        prop_assert!(!state.as_str().is_empty());
        let _ = policy.window(record.tokens.as_ref().and_then(TokenSet::lifetime));
    }

    /// Skew, back-off and health arithmetic saturate rather than overflow.
    #[test]
    fn skew_and_back_off_never_overflow(
        mut record in record(), skew in any::<i64>(), at in instant(),
        retry_after in proptest::option::of(instant()), valid_until in proptest::option::of(instant())
    ) {
        record.apply_issuer_skew(skew);
        let mut health = record.health.clone();
        health.record_failure(
            Failure { class: FailureClass::Transient, message: String::new(), at },
            retry_after,
            valid_until,
        );
        if let (Some(next), Some(until)) = (health.next_attempt_at, valid_until) {
            prop_assert!(next <= until, "never past the token's expiry");
        }
    }

    /// Token responses and import records of any shape become token sets.
    #[test]
    fn token_responses_of_any_shape_become_token_sets(
        fields in fields(), at in instant(), skew in duration(), origin in origin()
    ) {
        let response = TokenResponse::from_fields(&fields);
        let set = response.into_token_set(at, origin, skew);
        if set.expiry_source == ExpirySource::ExpiresIn {
            prop_assert!(set.expires_at.is_some_and(|e| e > set.obtained_at));
        }
        let _ = set.lifetime();
    }

    /// A provider's answer of any status, headers and body is classified, and
    /// what is kept of its text carries no secret and no control character.
    #[test]
    fn provider_answers_never_panic_and_never_echo_secrets(
        status in 100u16..=599,
        body in prop_oneof![
            fields().prop_map(|f| serde_json::Value::Object(f).to_string().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..300),
            ".{0,200}".prop_map(String::into_bytes),
        ],
        retry_after in proptest::option::of(prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            Just("Mon, 01 Jun 2026 12:05:00 GMT".to_owned()),
            Just("Fri, 31 Dec 9999 23:59:59 GMT".to_owned()),
            "[ -~]{0,30}",
        ]),
        now in instant(),
        // Long enough that authkeep's own words cannot contain it by chance.
        secret in "[A-Za-z0-9._~+/-]{12,40}",
    ) {
        let body = {
            // Some bodies carry the secret, as an echoing provider would.
            let mut with_secret = String::from_utf8_lossy(&body).into_owned();
            let middle = (0..=with_secret.len() / 2)
                .rev()
                .find(|i| with_secret.is_char_boundary(*i))
                .unwrap_or(0);
            with_secret.insert_str(middle, &secret);
            if status % 2 == 0 {
                format!(r#"{{"error":"x{secret}\u001b[31m","error_description":"{}"}}"#,
                    with_secret.replace(['"', '\\'], ""))
                    .into_bytes()
            } else {
                body
            }
        };
        let mut builder = http::Response::builder().status(status);
        if let Some(value) = retry_after.as_deref()
            && http::HeaderValue::from_str(value).is_ok()
        {
            builder = builder.header(http::header::RETRY_AFTER, value);
        }
        let response = builder.body(body).expect("a valid status and header");
        let mut secrets = Secrets::new();
        secrets.add(&secret);
        if let Err(failure) = parse_token_response(&response, now, &secrets) {
            let summary = failure.summary();
            prop_assert!(!summary.contains(secret.as_str()), "{summary}");
            prop_assert!(!summary.chars().any(|c| c.is_control()), "{summary:?}");
        }
        let _ = sanitize(&String::from_utf8_lossy(response.body()), &secrets, 300);
        let _ = discovery::parse("https://idp.example", &response, false);
    }

    /// Session files of any content are read leniently or refused, never a panic.
    #[test]
    fn session_files_of_any_content(
        content in prop_oneof![
            fields().prop_map(|f| serde_json::Value::Object(f).to_string().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..200),
            (json_value(), json_value(), json_value()).prop_map(|(version, generation, health)| {
                serde_json::json!({"version": version, "generation": generation, "health": health,
                    "access_token": "a", "expires_at": "9999-12-31T23:59:59Z"}).to_string().into_bytes()
            }),
        ],
        policy in policy(), now in instant(),
    ) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // Permissions are not what is tested: the file is read whatever its mode.
        let store = FileStore::new(dir.path()).with_insecure_permissions(true);
        let key = SessionKey::new("p").expect("a valid name");
        std::fs::write(store.path(&key), &content).expect("written");
        if let Ok(Some(loaded)) = store.load_with_skew_blocking(&key) {
            let _ = policy.decide(Some(&loaded.record), Demand::default(), now);
            let _ = policy.state(Some(&loaded.record), now);
        }
    }
}
