//! What real providers mean by their error answers, where RFC 6749's codes
//! alone would misclassify them (docs/DESIGN.md §1.5, and `docs/providers.md`
//! for each provider). Only a code documented to mean "this refresh token is
//! dead" may end a session; every table here errs towards keeping it.

use serde_json::{Map, Value};

use crate::error::FailureClass;

/// A provider's own error code documented to mean that the refresh token is
/// dead, handled exactly as `invalid_grant`, in a 200 or any status.
pub(crate) fn dead_refresh_token_code(code: &str) -> bool {
    // GitHub Apps, "Refreshing user access tokens": an expired, revoked or
    // already used refresh token is `bad_refresh_token`, inside an HTTP 200.
    code == "bad_refresh_token"
}

/// The class a Microsoft Entra answer's AADSTS code gives it, when the code is
/// one whose meaning is documented ("Microsoft Entra authentication and
/// authorization error codes"). The code comes from `error_codes` or from the
/// start of `error_description`; the rest of the text (timestamps, trace and
/// correlation ids) is never matched.
pub(crate) fn entra_class(fields: &Map<String, Value>, description: &str) -> Option<FailureClass> {
    entra_codes(fields, description)
        .into_iter()
        .find_map(class_of_entra_code)
}

fn class_of_entra_code(code: u64) -> Option<FailureClass> {
    match code {
        // The refresh token or its grant is gone: expired by inactivity
        // (700082), expired for a single-page app (700084), past its maximum
        // lifetime (700081), revoked (50173: the grant was revoked, e.g. after a
        // password change; 50133: the session is invalid after a password
        // change), the device object deleted (700003), or the grant invalid
        // (70000, 70008: expired or revoked).
        700082 | 700084 | 700081 | 50173 | 50133 | 700003 | 70000 | 70008 => {
            Some(FailureClass::SessionDead)
        }
        // The user must act: multi-factor authentication (50076, 50079,
        // 50074, 50158), conditional access (53003, 53000, 53001), consent
        // (65001), an expired password (50055), a new sign-in (50058, 16000).
        50076 | 50079 | 50074 | 50158 | 53003 | 53000 | 53001 | 65001 | 50055 | 50058 | 16000 => {
            Some(FailureClass::InteractionRequired)
        }
        // The client is wrong: an invalid, missing or expired secret (7000215,
        // 7000218, 7000222), an unknown application (700016), an unknown
        // tenant (90002).
        7000215 | 7000218 | 7000222 | 700016 | 90002 => Some(FailureClass::Misconfiguration),
        _ => None,
    }
}

/// The AADSTS codes an answer carries: `error_codes` first, then an
/// `AADSTS<digits>` at the start of the description.
fn entra_codes(fields: &Map<String, Value>, description: &str) -> Vec<u64> {
    let mut codes: Vec<u64> = fields
        .get("error_codes")
        .and_then(Value::as_array)
        .map(|codes| codes.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    if let Some(rest) = description.trim_start().strip_prefix("AADSTS") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(code) = digits.parse() {
            codes.push(code);
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn entra_codes_come_from_the_list_or_the_start_of_the_description() {
        let f = fields(r#"{"error_codes":[50076]}"#);
        assert_eq!(
            entra_class(&f, "anything"),
            Some(FailureClass::InteractionRequired)
        );
        let none = Map::new();
        assert_eq!(
            entra_class(
                &none,
                "AADSTS700082: The refresh token has expired due to inactivity."
            ),
            Some(FailureClass::SessionDead)
        );
        // A code inside the text (a trace id, a timestamp) is not a code.
        assert_eq!(
            entra_class(&none, "Trace ID: 700082 Correlation ID: 50076"),
            None
        );
        assert_eq!(entra_class(&none, "AADSTS12345: unknown"), None);
    }

    #[test]
    fn only_githubs_dead_token_code_is_dead() {
        assert!(dead_refresh_token_code("bad_refresh_token"));
        assert!(!dead_refresh_token_code("bad_verification_code"));
        assert!(!dead_refresh_token_code("incorrect_client_credentials"));
    }
}
