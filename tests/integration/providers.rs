//! Several providers in one cloakroom (issue 15, item 9): the default `[oidc]` (oidc-provider)
//! and a `[[providers]]` entry (glewlwyd). A sign-in picks one; the session remembers it, so its
//! refresh, revocation and logout go there; a callback is only ever finished with the provider
//! its sign-in started with.

use crate::journey::jwt_claims;
use crate::support::*;
use http::Method;

/// A cloakroom with oidc-provider as the default and glewlwyd as "glewlwyd".
async fn two_providers(glewlwyd_extra: &str) -> (Bff, RegisteredClient) {
    let glewlwyd = glewlwyd().await;
    let client = Glewlwyd::new_client("multi", "s3cret");
    let bff = Bff::start_with(BffOptions {
        extra_toml: format!(
            "[[providers]]\nid = \"glewlwyd\"\ndisplay_name = \"Glewlwyd SSO\"\nissuer = \"{}\"\nclient_id = \"{}\"\n\
             client_secret = \"{}\"\nscopes = [\"openid\", \"profile\"]\nlogout_token_exp_required = false\n{glewlwyd_extra}",
            glewlwyd.issuer, client.client_id, client.client_secret
        ),
        ..Default::default()
    })
    .await;
    glewlwyd.register(&client, &bff.origin).await;
    // The second provider is discovered in the background too.
    let started = std::time::Instant::now();
    while browser_start(&bff, "glewlwyd").await.status != 302 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "glewlwyd was not discovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (bff, client)
}

async fn browser_start(bff: &Bff, provider: &str) -> Reply {
    http_call(Method::GET, &bff.url(&format!("/bff/login?provider={provider}&returnUrl=%2F")), None, &[]).await
}

async fn sign_in_at_glewlwyd(bff: &Bff, browser: &mut Browser, user: &str) -> Reply {
    glewlwyd().await.sign_in_via(bff, browser, user, "/bff/login?provider=glewlwyd&returnUrl=%2F").await
}

#[tokio::test]
async fn each_session_stays_with_the_provider_it_signed_in_with() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, client) = two_providers("").await;

    let listed = http_call(Method::GET, &bff.url("/bff/providers"), None, &[]).await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(listed["default"], "default");
    let ids: Vec<&str> = listed["providers"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["default", "glewlwyd"]);
    assert_eq!(listed["providers"][1]["name"], "Glewlwyd SSO");

    // At glewlwyd: sign-in, a call with its token, a refresh there, logout revoking there.
    let mut at_glewlwyd = Browser::new();
    assert_eq!(sign_in_at_glewlwyd(&bff, &mut at_glewlwyd, "alice").await.status, 200);
    assert_eq!(at_glewlwyd.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let issuer_of_last_token = |bff: &Bff| {
        let bearer = bff.upstream.requests().pop().unwrap().headers["authorization"].to_str().unwrap().to_string();
        jwt_claims(bearer.trim_start_matches("Bearer "))["iss"].as_str().unwrap().to_string()
    };
    assert_eq!(issuer_of_last_token(&bff), glewlwyd.issuer);

    // At the default provider, in the same cloakroom.
    let mut at_default = Browser::new();
    assert_eq!(bff.login(&mut at_default, "alice", "/").await.status, 200);
    assert_eq!(at_default.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(issuer_of_last_token(&bff), bff.issuer);

    bff.clock.advance(310); // expired: the call waits for the refresh
    assert_eq!(at_glewlwyd.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(issuer_of_last_token(&bff), glewlwyd.issuer, "the refresh went elsewhere");
    let tokens = glewlwyd.refresh_tokens(&mut at_glewlwyd, &client).await;
    assert_eq!(tokens.len(), 2, "no refresh at glewlwyd: {tokens:?}");
    assert_eq!(at_default.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(issuer_of_last_token(&bff), bff.issuer);

    let logout = at_glewlwyd.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(logout.status, 200);
    let logout_url = logout.json()["logout_url"].as_str().unwrap_or_default().to_string();
    assert!(logout_url.starts_with(&glewlwyd.issuer), "logged out at the wrong provider: {logout_url}");
    let tokens = glewlwyd.refresh_tokens(&mut at_glewlwyd, &client).await;
    assert!(tokens.iter().all(|(_, enabled)| !enabled), "not revoked at glewlwyd: {tokens:?}");
    assert_eq!(bff.user(&mut at_default).await.status, 200, "the other provider's session ended too");
}

#[tokio::test]
async fn an_unknown_provider_starts_nothing() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, _) = two_providers("").await;
    let reply = browser_start(&bff, "nosuch").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.location().is_none() && reply.set_cookies().is_empty());
}

/// Mix-up: a callback from the default provider delivered to a sign-in that went to glewlwyd is
/// refused (the default provider's `iss` is not glewlwyd's; without `iss`, glewlwyd does not
/// know the code), and nothing is created.
#[tokio::test]
async fn a_callback_from_another_provider_never_finishes_a_sign_in() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    // The request in the URL here, to read its state.
    let (bff, _) = two_providers("par = \"off\"").await;
    let mut attacker = Browser::new();
    let callback = bff.authorize(&mut attacker, "bob", "/").await;
    for keep_iss in [true, false] {
        let mut victim = Browser::new();
        let start = victim.get(&bff.url("/bff/login?provider=glewlwyd&returnUrl=%2F"), &[]).await;
        let state = url::Url::parse(start.location().unwrap())
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let crafted = with_state(&callback, &state, keep_iss);
        let refused = victim.get(&crafted, &[]).await;
        assert_eq!(refused.status, 400, "{}", refused.text());
        let expected = if keep_iss { "unexpected identity provider" } else { "refused to complete" };
        assert!(refused.text().contains(expected), "{}", refused.text());
        assert!(session_cookie(&victim).is_none());
    }
    assert_eq!(bff.session_count().await, 0);
}

/// `callback` with `state` instead of its own, and its `iss` kept or dropped.
fn with_state(callback: &str, state: &str, keep_iss: bool) -> String {
    {
        let mut url = url::Url::parse(callback).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| k != "state" && (keep_iss || k != "iss"))
            .chain([("state".to_string(), state.to_string())])
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.to_string()
    }
}

/// glewlwyd's back-channel logout ends its session, and only its own.
#[tokio::test]
async fn a_back_channel_logout_ends_only_its_providers_sessions() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, _) = two_providers("").await;
    let mut at_glewlwyd = Browser::new();
    assert_eq!(sign_in_at_glewlwyd(&bff, &mut at_glewlwyd, "bob").await.status, 200);
    let mut at_default = Browser::new();
    assert_eq!(bff.login(&mut at_default, "bob", "/").await.status, 200);
    let sid = bff.user(&mut at_glewlwyd).await.json()["claims"]["sid"].as_str().unwrap().to_string();
    let ended = at_glewlwyd.request(Method::DELETE, &format!("{}/session/{sid}", glewlwyd.issuer), None, &[]).await;
    assert_eq!(ended.status, 200);
    let started = std::time::Instant::now();
    while bff.user(&mut at_glewlwyd).await.status != 401 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the back-channel logout did not arrive");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(bff.user(&mut at_default).await.status, 200, "another provider's session ended");
}

/// Issue 26, item 6: `user_claims` in a `[[providers]]` table was accepted and ignored
/// (`/bff/user` applied `[oidc].user_claims` to every session). Each provider's own list now
/// applies to the sessions signed in with it.
#[tokio::test]
async fn each_providers_user_claims_apply_to_its_own_sessions() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, _) = two_providers("user_claims = [\"sub\"]").await;
    let mut at_glewlwyd = Browser::new();
    assert_eq!(sign_in_at_glewlwyd(&bff, &mut at_glewlwyd, "alice").await.status, 200);
    let shown = bff.user(&mut at_glewlwyd).await.json();
    let names: Vec<String> = shown["claims"].as_object().unwrap().keys().cloned().collect();
    assert!(names.iter().all(|n| n == "sub"), "glewlwyd's user_claims were ignored: {names:?}");
    let mut at_default = Browser::new();
    bff.login(&mut at_default, "alice", "/").await;
    let shown = bff.user(&mut at_default).await.json();
    let names: Vec<String> = shown["claims"].as_object().unwrap().keys().cloned().collect();
    assert!(names.iter().any(|n| n != "sub"), "the default provider's sessions keep every claim: {names:?}");
}

/// Issue 29, item 1: a front-channel logout naming another configured provider's `iss` ends
/// none of this provider's sessions, even with the right `sid`.
#[tokio::test]
async fn a_front_channel_logout_ends_only_its_providers_sessions() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, _) = two_providers("").await;
    let mut at_default = Browser::new();
    assert_eq!(bff.login(&mut at_default, "bob", "/").await.status, 200);
    let sid = bff.user(&mut at_default).await.json()["claims"]["sid"].as_str().unwrap().to_string();
    let logout = |iss: &str| {
        let encode = |t: &str| url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
        bff.url(&format!("/bff/frontchannel-logout?iss={}&sid={}", encode(iss), encode(&sid)))
    };
    let other = Browser::new().get(&logout(&glewlwyd.issuer), &[]).await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(bff.user(&mut at_default).await.status, 200, "another provider's iss ended the session");
    assert_eq!(Browser::new().get(&logout(&bff.issuer), &[]).await.status, 200);
    assert_eq!(bff.user(&mut at_default).await.status, 401);
}
