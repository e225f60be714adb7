//! The `refresh_token` grant (RFC 6749 §6).

use http::Request;
use url::Url;

use super::Secrets;
use crate::secret::RefreshToken;
use crate::session::Client;

/// Builds the refresh request. The scope is not sent: omitting it asks for the
/// scope originally granted, which is what keeping a session alive needs. Fails
/// only for an endpoint URL that a request cannot carry.
pub fn request(
    token_endpoint: &Url,
    client: &Client,
    refresh_token: &RefreshToken,
) -> Result<Request<Vec<u8>>, String> {
    super::form_post(
        token_endpoint,
        client,
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ],
    )
}

/// The secrets [`request`] carries, for redacting what the provider answers.
pub fn secrets(client: &Client, refresh_token: &RefreshToken) -> Secrets {
    let mut secrets = super::client_secrets(client);
    secrets.add(refresh_token.expose_secret());
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ClientSecret;
    use crate::session::ClientAuth;

    fn body(req: &Request<Vec<u8>>) -> String {
        String::from_utf8(req.body().clone()).unwrap()
    }

    #[test]
    fn an_endpoint_too_long_for_a_request_is_an_error_not_a_panic() {
        let long = format!("https://idp.example/{}", "a".repeat(70_000));
        let url = Url::parse(&long).unwrap();
        let error = request(&url, &Client::default(), &RefreshToken::new("rt")).unwrap_err();
        assert!(error.starts_with("unusable URL"), "{error}");
        assert!(error.len() < 400, "the URL is shortened in the message");
    }

    #[test]
    fn public_client_sends_its_id_in_the_body() {
        let client = Client {
            client_id: "cli".into(),
            ..Default::default()
        };
        let url = Url::parse("https://idp.example/token").unwrap();
        let req = request(&url, &client, &RefreshToken::new("r/t+1")).unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(
            body(&req),
            "grant_type=refresh_token&refresh_token=r%2Ft%2B1&client_id=cli"
        );
        assert!(req.headers().get(http::header::AUTHORIZATION).is_none());
    }

    #[test]
    fn confidential_clients_authenticate_as_configured() {
        let url = Url::parse("https://idp.example/token").unwrap();
        let mut client = Client {
            client_id: "svc".into(),
            client_secret: Some(ClientSecret::new("pw")),
            auth: ClientAuth::ClientSecretBasic,
            ..Default::default()
        };
        let req = request(&url, &client, &RefreshToken::new("rt")).unwrap();
        assert_eq!(body(&req), "grant_type=refresh_token&refresh_token=rt");
        assert_eq!(req.headers()[http::header::AUTHORIZATION], "Basic c3ZjOnB3");
        client.auth = ClientAuth::ClientSecretPost;
        let req = request(&url, &client, &RefreshToken::new("rt")).unwrap();
        assert_eq!(
            body(&req),
            "grant_type=refresh_token&refresh_token=rt&client_id=svc&client_secret=pw"
        );
    }
}
