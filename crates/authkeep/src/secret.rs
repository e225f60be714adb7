//! Redacting newtypes for every secret authkeep handles.
//!
//! A secret's `Debug` prints `[redacted]`; none implements `Display`; the value is
//! reached only through `expose_secret()`, so every use is greppable; the bytes are
//! zeroized when dropped. Because the leaves hide themselves, larger types holding
//! them may derive `Debug` safely.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq)]
        pub struct $name(Zeroizing<String>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Zeroizing::new(value.into()))
            }

            /// The secret itself. Every use of this method is a place where the
            /// secret leaves its wrapper: keep them few and never log the result.
            pub fn expose_secret(&self) -> &str {
                &self.0
            }

            /// Whether the secret is the empty string.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::new)
            }
        }
    };
}

secret_type!(
    /// An OAuth 2.0 access token (RFC 6749 §1.4).
    AccessToken
);
secret_type!(
    /// An OAuth 2.0 refresh token (RFC 6749 §1.5).
    RefreshToken
);
secret_type!(
    /// An OpenID Connect ID token.
    IdToken
);
secret_type!(
    /// A confidential client's secret (RFC 6749 §2.3.1).
    ClientSecret
);
secret_type!(
    /// An authorization code (RFC 6749 §4.1.2).
    AuthorizationCode
);
secret_type!(
    /// A PKCE code verifier (RFC 7636).
    PkceVerifier
);
secret_type!(
    /// A device code (RFC 8628).
    DeviceCode
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_is_redacted() {
        let token = AccessToken::new("eyJhbGciOi.secret.value");
        let refresh = RefreshToken::new("rt-very-secret");
        let shown = format!(
            "{token:?} {refresh:?} {:?}",
            Some(ClientSecret::new("s3cr3t"))
        );
        assert_eq!(
            shown,
            "AccessToken([redacted]) RefreshToken([redacted]) Some(ClientSecret([redacted]))"
        );
        assert!(!shown.contains("secret.value"));
    }

    #[test]
    fn serde_round_trip_keeps_the_value() {
        let token = RefreshToken::new("abc");
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, "\"abc\"");
        let back: RefreshToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose_secret(), "abc");
    }
}
