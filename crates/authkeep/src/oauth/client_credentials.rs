//! The `client_credentials` grant (RFC 6749 §4.4): a service asks for a token in
//! its own name. There is no refresh token; renewing the session repeats the
//! grant. The answer is read by [`super::parse_token_response`].

use http::Request;
use url::Url;

use super::Secrets;
use crate::session::Client;

/// Builds the grant's request, with the scope and any extra parameters (an
/// `audience`, a `resource`) the provider wants. Fails only for an endpoint URL
/// that a request cannot carry.
pub fn request(
    token_endpoint: &Url,
    client: &Client,
    scope: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<Request<Vec<u8>>, String> {
    let mut params = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        params.push(("scope", scope));
    }
    params.extend(
        extra
            .iter()
            .filter(|(name, _)| !matches!(*name, "grant_type" | "scope")),
    );
    super::form_post(token_endpoint, client, params)
}

/// The secrets [`request`] carries, for redacting what the provider answers.
pub fn secrets(client: &Client) -> Secrets {
    super::client_secrets(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ClientSecret;
    use crate::session::ClientAuth;

    #[test]
    fn the_grant_carries_scope_and_extra_parameters_but_never_overrides_its_own() {
        let url = Url::parse("https://idp.example/token").unwrap();
        let client = Client {
            client_id: "svc".into(),
            client_secret: Some(ClientSecret::new("pw")),
            auth: ClientAuth::ClientSecretPost,
            ..Default::default()
        };
        let r = request(
            &url,
            &client,
            Some("read write"),
            &[("audience", "https://api"), ("grant_type", "password")],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r.into_body()).unwrap(),
            "grant_type=client_credentials&scope=read+write&audience=https%3A%2F%2Fapi&client_id=svc&client_secret=pw"
        );
        let r = request(&url, &client, Some(""), &[]).unwrap();
        assert_eq!(
            String::from_utf8(r.into_body()).unwrap(),
            "grant_type=client_credentials&client_id=svc&client_secret=pw"
        );
        assert_eq!(secrets(&client).len(), 1);
    }
}
