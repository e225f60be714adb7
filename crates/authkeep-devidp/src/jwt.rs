//! Token material: HS256 JSON Web Tokens signed with a key made per provider instance,
//! and the random strings used for refresh tokens, opaque access tokens and
//! identifiers.
//!
//! The randomness comes from `fastrand`, seeded per thread: good enough to make tokens
//! distinct and unguessable by accident, not by an attacker. This is a development
//! provider on a loopback address, never a production one.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key the provider signs its tokens with. `Debug` hides it.
pub(crate) struct SigningKey([u8; 32]);

impl SigningKey {
    pub(crate) fn random() -> Self {
        let mut key = [0; 32];
        fastrand::fill(&mut key);
        SigningKey(key)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so a 32-byte key is always valid.
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    /// A compact JWS over `claims` with header `{"alg":"HS256","typ":typ}`.
    pub(crate) fn sign(&self, typ: &str, claims: &Value) -> String {
        let header = serde_json::json!({ "alg": "HS256", "typ": typ });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// The claims of a token this key signed, or `None` for anything else.
    pub(crate) fn verify(&self, token: &str) -> Option<Map<String, Value>> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(claims.as_bytes());
        mac.verify_slice(&signature).ok()?;

        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")? != "HS256" {
            return None;
        }
        match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()? {
            Value::Object(claims) => Some(claims),
            _ => None,
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// `bytes` random bytes, base64url-encoded without padding.
pub(crate) fn random_string(bytes: usize) -> String {
    let mut buffer = vec![0; bytes];
    fastrand::fill(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// The letters of user codes: consonants only, without ones easily mistaken for
/// another (no vowels, so no words; no Y), as RFC 8628 §6.1 suggests.
pub(crate) const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// How many letters a user code has.
pub(crate) const USER_CODE_LETTERS: usize = 8;

/// A random user code of [`USER_CODE_LETTERS`] letters from [`USER_CODE_ALPHABET`],
/// without the dash it is shown with.
pub(crate) fn random_user_code() -> String {
    (0..USER_CODE_LETTERS)
        .map(|_| char::from(USER_CODE_ALPHABET[fastrand::usize(..USER_CODE_ALPHABET.len())]))
        .collect()
}

/// A random version 4 UUID in its hyphenated lowercase form, as providers write their
/// session, trace and correlation identifiers.
pub(crate) fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    fastrand::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_carry_their_claims() {
        let key = SigningKey::random();
        let token = key.sign("at+jwt", &serde_json::json!({ "sub": "alice", "exp": 10 }));
        let claims = key.verify(&token).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["exp"], 10);

        let header = token.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({ "alg": "HS256", "typ": "at+jwt" })
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_do_not_verify() {
        let key = SigningKey::random();
        let token = key.sign("at+jwt", &serde_json::json!({ "sub": "alice" }));

        let other = SigningKey::random();
        assert!(other.verify(&token).is_none());

        let forged_claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory"}"#);
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_claims;
        assert!(key.verify(&parts.join(".")).is_none());

        assert!(key.verify("not-a-jwt").is_none());
        assert!(key.verify(&format!("{token}.extra")).is_none());
    }

    #[test]
    fn key_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", SigningKey::random()),
            "SigningKey([redacted])"
        );
    }

    #[test]
    fn random_strings_are_distinct_and_url_safe() {
        let a = random_string(32);
        let b = random_string(32);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn user_codes_use_only_the_unambiguous_letters() {
        let code = random_user_code();
        assert_eq!(code.len(), USER_CODE_LETTERS);
        assert!(
            code.bytes().all(|c| USER_CODE_ALPHABET.contains(&c)),
            "{code}"
        );
        let codes: std::collections::HashSet<String> =
            (0..50).map(|_| random_user_code()).collect();
        assert!(codes.len() > 45, "user codes repeat too often");
    }

    #[test]
    fn random_uuids_have_the_version_4_form() {
        let uuid = random_uuid();
        assert_ne!(uuid, random_uuid());
        let groups: Vec<&str> = uuid.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12], "{uuid}");
        assert!(groups[2].starts_with('4'), "{uuid}");
        assert!(groups[3].starts_with(['8', '9', 'a', 'b']), "{uuid}");
        assert!(
            uuid.bytes()
                .all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
