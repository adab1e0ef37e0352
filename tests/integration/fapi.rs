//! The FAPI 2.0 profile (issue 32, item 3): `profile = "fapi2"` refuses every setting that
//! weakens it, with the reason, and runs end to end against oidc-provider in its FAPI 2.0 mode
//! (PAR required, ES256 ID tokens, the client authenticated by `private_key_jwt` and bound to
//! DPoP): sign-in, a DPoP route, refresh, logout; `/bff/providers` and `cloakroom audit` name
//! the profile.

use crate::audit::{Outcome, audit};
use crate::client_auth::generate_key;
use crate::support::*;
use http::Method;
use serde_json::json;

fn oidc_config_error(oidc: &str) -> String {
    let toml = format!(
        "[server]\npublic_url = \"https://app.example\"\n[oidc]\nissuer = \"https://idp.example\"\n\
         client_id = \"c\"\n{oidc}\n[[routes]]\nprefix = \"/api/\"\nupstream = \"http://127.0.0.1:1/\"\n"
    );
    cloakroom::config::Config::from_toml(&toml, Vec::new())
        .map(|_| ())
        .expect_err("the configuration was accepted")
        .to_string()
}

#[test]
fn the_fapi2_profile_refuses_whatever_weakens_it_naming_each() {
    let error =
        oidc_config_error("profile = \"fapi2\"\nclient_secret = \"s\"\npar = \"off\"\nlogout_id_token_hint = true");
    for (key, reason) in [
        ("oidc.client_auth", "needs private_key_jwt"),
        ("oidc.par", "requires pushed authorization requests"),
        ("oidc.dpop", "requires sender-constrained tokens"),
        ("oidc.logout_id_token_hint", "keeps every token from the browser"),
    ] {
        assert!(error.contains(key) && error.contains(reason), "{key}: {error}");
    }
    let key = generate_key("RS256", "k");
    let path = std::env::temp_dir().join("cloakroom-fapi-rs256.pem");
    std::fs::write(&path, &key.pem).unwrap();
    let error = oidc_config_error(&format!(
        "profile = \"fapi2\"\ndpop = true\nclient_auth = \"private_key_jwt\"\nprivate_key_file = {:?}\nprivate_key_alg = \"RS256\"",
        path.display().to_string()
    ));
    assert!(error.contains("oidc.private_key_alg") && error.contains("not RS256"), "{error}");
    assert!(!error.contains("oidc.dpop") && !error.contains("oidc.par"), "{error}");
}

#[tokio::test]
async fn a_fapi2_deployment_signs_in_calls_refreshes_and_logs_out_and_says_so() {
    let provider = start_provider(&[("FAPI", "1"), ("DPOP_REQUIRE_NONCE", "1")]);
    let api = DpopApi::start(&provider.issuer);
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        client_key: Some(generate_key("ES256", "fapi-client")),
        oidc_toml: "profile = \"fapi2\"\ndpop = true".into(),
        client_metadata: Some(json!({ "dpop_bound_access_tokens": true, "id_token_signed_response_alg": "ES256" })),
        extra_routes: format!("[[routes]]\nprefix = \"/bound/\"\nupstream = \"{}/v1/\"\ndpop = true\n", api.origin),
        ..Default::default()
    })
    .await;

    // The sign-in goes through a pushed request: the browser carries only its handle.
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login"), &[]).await;
    let authorize = url::Url::parse(start.location().unwrap()).unwrap();
    let names: Vec<String> = authorize.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(names.len(), 2, "{authorize}");
    assert!(names.contains(&"request_uri".to_string()) && names.contains(&"client_id".to_string()));
    let mut browser = Browser::new();
    let signed_in = bff.login(&mut browser, "alice", "/").await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    // The ID token is ES256 (the provider has an RSA key too, which its access tokens use).
    let headers: Vec<serde_json::Value> = tokens_issued(&provider.issuer, &bff.client)
        .await
        .iter()
        .filter_map(|token| token.split('.').nth(2).and(token.split('.').next()))
        .filter_map(|header| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).ok()?;
            serde_json::from_slice(&bytes).ok()
        })
        .collect();
    assert!(headers.iter().any(|h| h["alg"] == "ES256" && h["typ"] != "at+jwt"), "{headers:?}");

    let called = browser.get(&bff.url("/bound/items"), &[CSRF]).await;
    assert_eq!(called.status, 200, "{}", called.text());
    let jkt = called.json()["jkt"].clone();
    bff.clock.advance(290);
    assert_eq!(browser.get(&bff.url("/bound/items"), &[CSRF]).await.status, 200);
    assert_eq!(grants_once(&provider.issuer, &bff.client, "refresh_token", 1).await, 1, "no refresh under FAPI 2.0");
    let after = browser.get(&bff.url("/bound/items"), &[CSRF]).await;
    assert_eq!((after.status, after.json()["jkt"].clone()), (200, jkt));

    // What it publishes, and what the audit makes of it.
    let listed = http_call(Method::GET, &bff.url("/bff/providers"), None, &[]).await.json();
    assert_eq!(listed["providers"][0]["profile"], "fapi2", "{listed}");
    let report = audit(&bff.origin, None).await;
    assert_eq!(report.outcome("deployment.profile"), Some(Outcome::Pass), "{}", report.stdout);
    assert!(report.stdout.contains("default: fapi2"), "{}", report.stdout);
    assert_eq!(report.outcome("fapi2.pushed"), Some(Outcome::Pass), "{}", report.stdout);

    let out = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(browser.get(&bff.url("/bound/items"), &[CSRF]).await.status, 401);
    assert_no_token_in(&browser.received, &provider.issuer, &bff.client).await;
}
