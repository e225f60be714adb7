//! Request counters: how many requests each endpoint answered, and for the token
//! endpoint how many per grant type and outcome, so tests and benchmarks can assert how
//! much network traffic a client caused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The outcome recorded for a token request that succeeded.
pub const OUTCOME_OK: &str = "ok";
/// The outcome recorded for a token request answered by the fault plan.
pub const OUTCOME_FAULT: &str = "fault";
/// The grant type recorded for a token request that named none.
pub const GRANT_UNKNOWN: &str = "unknown";

/// A snapshot of the provider's request counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    /// Token requests by `grant_type` (`"unknown"` when absent), then by outcome:
    /// `"ok"`, `"fault"`, or the OAuth error code answered (`"invalid_grant"`, …; a
    /// device code poll that waits is `"authorization_pending"` or `"slow_down"`).
    pub token_requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Discovery document requests.
    pub discovery_requests: u64,
    /// Introspection requests.
    pub introspection_requests: u64,
    /// Userinfo requests.
    pub userinfo_requests: u64,
    /// Revocation requests.
    pub revocation_requests: u64,
    /// Grants revoked, by reuse detection, revocation or an admin call; a grant counts once.
    pub grants_revoked: u64,
    /// Device authorization requests (RFC 8628 §3.1), answered or refused.
    #[serde(default)]
    pub device_authorization_requests: u64,
    /// Requests to the authorization endpoint: consent pages shown and consent forms
    /// posted.
    #[serde(default)]
    pub authorization_requests: u64,
    /// Requests for the device verification page and posts of its form.
    #[serde(default)]
    pub device_verification_requests: u64,
}

impl Counters {
    /// Token requests with this grant type, whatever their outcome.
    pub fn token_requests_for(&self, grant: &str) -> u64 {
        self.token_requests
            .get(grant)
            .map_or(0, |outcomes| outcomes.values().sum())
    }

    /// Token requests with this grant type and outcome.
    pub fn outcome(&self, grant: &str, outcome: &str) -> u64 {
        self.token_requests
            .get(grant)
            .and_then(|outcomes| outcomes.get(outcome))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn record_token(&mut self, grant: &str, outcome: &str) {
        *self
            .token_requests
            .entry(grant.to_owned())
            .or_default()
            .entry(outcome.to_owned())
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_outcomes_per_grant() {
        let mut counters = Counters::default();
        counters.record_token("refresh_token", "ok");
        counters.record_token("refresh_token", "ok");
        counters.record_token("refresh_token", "invalid_grant");
        counters.record_token("client_credentials", "fault");

        assert_eq!(counters.token_requests_for("refresh_token"), 3);
        assert_eq!(counters.outcome("refresh_token", "ok"), 2);
        assert_eq!(counters.outcome("refresh_token", "invalid_grant"), 1);
        assert_eq!(counters.outcome("client_credentials", "fault"), 1);
        assert_eq!(counters.token_requests_for("password"), 0);
        assert_eq!(counters.outcome("refresh_token", "fault"), 0);
    }

    #[test]
    fn round_trips_through_json() {
        let mut counters = Counters::default();
        counters.record_token("refresh_token", "ok");
        counters.discovery_requests = 2;
        counters.grants_revoked = 1;
        let json = serde_json::to_string(&counters).unwrap();
        let back: Counters = serde_json::from_str(&json).unwrap();
        assert_eq!(back, counters);
    }
}
