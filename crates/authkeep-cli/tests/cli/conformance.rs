//! `authkeep` against a certified OpenID Provider (`oidc-provider`, see
//! `oidc.rs`): each login method end to end through the provider's own pages,
//! refreshes across rotations without ever presenting a consumed refresh token,
//! and revocation at logout checked by introspection.

use std::process::Stdio;

use crate::harness::Home;
use crate::login::{Running, login_with_token, opened_url, recording_browser, stored, word_after};
use crate::oidc::{
    OidcProvider, Options, PUBLIC_CLIENT, SERVICE_AUDIENCE, SERVICE_CLIENT, SERVICE_SCOPE,
    SERVICE_SECRET,
};

#[test]
fn a_device_login_refreshes_across_rotations_and_logout_revokes() {
    let provider = OidcProvider::start_with(Options {
        access_ttl: Some(60),
    });
    let home = Home::new();
    let mut login = Running::start(
        &home,
        &[
            "login",
            "--device",
            "-p",
            "op",
            "--issuer",
            provider.issuer(),
            "--client-id",
            PUBLIC_CLIENT,
            "--scope",
            "openid",
            "--scope",
            "offline_access",
        ],
        &[],
    );
    let line = login.line_with("enter the code");
    provider.approve_device(word_after(&line, "enter the code "));
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}{}", provider.log());
    let (mut access, refresh) = stored(&home, "op");
    let mut refresh = refresh.expect("a refresh token");
    assert!(provider.is_active(&access));

    // Three refreshes: each rotates, and the one before is consumed. authkeep
    // never presents a consumed one: if it did, the provider would revoke the
    // whole grant, and the newest tokens would be inactive.
    for round in 0..3 {
        home.age_obtained("op", 60);
        let printed = home.run(&["token", "-p", "op", "--force-refresh"]).ok();
        let (new_access, new_refresh) = stored(&home, "op");
        let new_refresh = new_refresh.unwrap();
        assert_eq!(printed, new_access);
        assert_ne!(new_refresh, refresh, "round {round}: rotated");
        assert!(
            !provider.is_active(&refresh),
            "round {round}: the old one is consumed"
        );
        assert!(provider.is_active(&new_refresh) && provider.is_active(&new_access));
        (access, refresh) = (new_access, new_refresh);
    }
    // The warm path reads the store: the same token, no request.
    assert_eq!(home.run(&["token", "-p", "op"]).ok(), access);

    let run = home.run(&["logout", "-p", "op"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("revoked"), "{}", run.stderr());
    let introspected = provider.introspect(&refresh);
    assert_eq!(introspected["active"], false, "{introspected}");
    assert!(!home.record_path("op").exists());
}

#[test]
fn a_browser_login_goes_through_the_providers_pages() {
    let provider = OidcProvider::start();
    let home = Home::new();
    let urls = home.path().join("urls.txt");
    let script = recording_browser(&home, &urls);
    let login = Running::start(
        &home,
        &[
            "login",
            "--browser",
            "-p",
            "op",
            "--issuer",
            provider.issuer(),
            "--client-id",
            PUBLIC_CLIENT,
            "--scope",
            "openid offline_access",
        ],
        &[("BROWSER", &script)],
    );
    let url = opened_url(&urls);
    let location = provider.authorize(&url);
    assert!(
        location.contains("code=") && location.contains("iss="),
        "{location}"
    );
    let landed = reqwest::blocking::get(&location).unwrap();
    assert_eq!(landed.status().as_u16(), 200);
    assert!(landed.text().unwrap().contains("signed in"));
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}{}", provider.log());
    let (access, refresh) = stored(&home, "op");
    assert!(provider.is_active(&access));
    assert!(provider.is_active(&refresh.expect("a refresh token")));
}

#[test]
fn client_credentials_are_granted_and_granted_again_on_refresh() {
    let provider = OidcProvider::start();
    let home = Home::new();
    let output = home
        .command(&[
            "login",
            "--client-credentials",
            "-p",
            "svc",
            "--issuer",
            provider.issuer(),
            "--client-id",
            SERVICE_CLIENT,
            "--client-secret-env",
            "SERVICE_SECRET",
            "--scope",
            SERVICE_SCOPE,
        ])
        .env("SERVICE_SECRET", SERVICE_SECRET)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}{}", provider.log());
    let first = home.run(&["token", "-p", "svc"]).ok();
    let introspected = provider.introspect(&first);
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["aud"], SERVICE_AUDIENCE, "{introspected}");
    // A forced refresh right after a grant shares that grant; a minute later it repeats it.
    home.age_obtained("svc", 60);
    let second = home.run(&["token", "-p", "svc", "--force-refresh"]).ok();
    assert_ne!(first, second);
    assert!(provider.is_active(&second));
}

/// A token response from the provider for the service client, obtained by hand.
fn service_tokens(provider: &OidcProvider) -> serde_json::Value {
    let token_endpoint = provider.endpoint("token_endpoint");
    let response = provider
        .http()
        .post(&token_endpoint)
        .basic_auth(SERVICE_CLIENT, Some(SERVICE_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", SERVICE_SCOPE),
        ])
        .send()
        .unwrap();
    assert!(response.status().is_success());
    serde_json::from_str(&response.text().unwrap()).unwrap()
}

#[test]
fn a_bare_token_and_an_imported_response_are_stored_after_checking_the_issuer() {
    let provider = OidcProvider::start();
    let home = Home::new();
    let tokens = service_tokens(&provider);
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    let (ok, stderr) = login_with_token(
        &home,
        &[
            "login",
            "--with-token",
            "-p",
            "bare",
            "--issuer",
            provider.issuer(),
        ],
        &access,
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("cannot renew itself"), "{stderr}");
    assert_eq!(home.run(&["token", "-p", "bare"]).ok(), access);

    let file = home.input("response.json", &service_tokens(&provider).to_string());
    let run = home.run(&[
        "login",
        "--from-json",
        &file,
        "-p",
        "imported",
        "--issuer",
        provider.issuer(),
        "--client-id",
        SERVICE_CLIENT,
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let (imported, _) = stored(&home, "imported");
    assert!(provider.is_active(&imported));
    // The same import for the issuer with a trailing slash is refused by discovery.
    let slash = format!("{}/", provider.issuer());
    let run = home.run(&[
        "login",
        "--from-json",
        &file,
        "-p",
        "other",
        "--issuer",
        &slash,
        "--client-id",
        SERVICE_CLIENT,
    ]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("trailing slash"), "{}", run.stderr());
    assert!(!home.record_path("other").exists());
}
