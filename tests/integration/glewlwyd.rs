//! The second real provider, glewlwyd (issue 15): the whole flow as against `oidc-provider`,
//! and the defects only a second implementation showed. Its setup lives in
//! `tests/support/src/glewlwyd.rs`.

use crate::support::*;
use http::Method;

/// A cloakroom whose provider is glewlwyd, with its client registered there.
async fn bff_with_glewlwyd(extra_oidc: &str) -> (Bff, RegisteredClient) {
    // glewlwyd 2.7 implements a draft of Back-Channel Logout: its logout tokens carry no exp.
    bff_with_secret(&format!("logout_token_exp_required = false\n{extra_oidc}"), "s3cret").await
}

async fn bff_with_secret(extra_oidc: &str, secret_prefix: &str) -> (Bff, RegisteredClient) {
    bff_with_secret_and(extra_oidc, secret_prefix, "client_secret_basic").await
}

async fn bff_with_secret_and(
    extra_oidc: &str,
    secret_prefix: &str,
    auth_method: &'static str,
) -> (Bff, RegisteredClient) {
    let glewlwyd = glewlwyd().await;
    let client = Glewlwyd::new_client("cloakroom", secret_prefix);
    let bff = Bff::start_with(BffOptions {
        issuer: Some(glewlwyd.issuer.clone()),
        client: Some(client.clone()),
        auth_method,
        oidc_toml: format!("scopes = [\"openid\", \"profile\"]\n{extra_oidc}"),
        ..Default::default()
    })
    .await;
    glewlwyd.register(&client, &bff.origin).await;
    (bff, client)
}

/// Signs `user` in through cloakroom at glewlwyd; returns the callback's answer.
async fn sign_in(bff: &Bff, browser: &mut Browser, user: &str) -> Reply {
    glewlwyd().await.sign_in_via(bff, browser, user, "/bff/login?returnUrl=%2Fapp").await
}

#[tokio::test]
async fn sign_in_user_api_refresh_and_logout_against_glewlwyd() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, client) = bff_with_glewlwyd("").await;
    let mut browser = Browser::new();
    let landed = sign_in(&bff, &mut browser, "alice").await;
    assert_eq!(landed.status, 200, "{}", landed.text());
    assert!(landed.text().contains("/app"));

    let user = bff.user(&mut browser).await;
    assert_eq!(user.status, 200, "{}", user.text());
    assert!(!user.json()["sub"].as_str().unwrap_or_default().is_empty());

    let call = browser.get(&bff.url("/api/orders"), &[CSRF]).await;
    assert_eq!(call.status, 200, "{}", call.text());
    let bearer =
        |bff: &Bff| bff.upstream.requests().pop().unwrap().headers["authorization"].to_str().unwrap().to_string();
    let first = bearer(&bff);
    assert!(first.starts_with("Bearer ey"), "glewlwyd's access tokens are JWTs");

    // Past the access token's five minutes: one refresh, a new token; the rotated-out refresh
    // token is disabled at glewlwyd (one-time use), the new one enabled.
    bff.clock.advance(310); // expired: this call waits for the refresh
    assert_eq!(browser.get(&bff.url("/api/orders"), &[CSRF]).await.status, 200);
    let second = bearer(&bff);
    assert_ne!(first, second, "no refresh happened");
    let tokens = glewlwyd.refresh_tokens(&mut browser, &client).await;
    assert_eq!(tokens.iter().filter(|(_, enabled)| *enabled).count(), 1, "{tokens:?}");
    assert_eq!(tokens.len(), 2, "{tokens:?}");

    // Logout revokes the refresh token at glewlwyd (RFC 7009) and ends the session.
    let logout = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(logout.status, 200, "{}", logout.text());
    let tokens = glewlwyd.refresh_tokens(&mut browser, &client).await;
    assert!(tokens.iter().all(|(_, enabled)| !enabled), "a refresh token outlived logout: {tokens:?}");
    assert_eq!(bff.user(&mut browser).await.status, 401);
    assert!(!String::from_utf8_lossy(&browser.received).contains(first.trim_start_matches("Bearer ")));
}

/// glewlwyd refuses a revoked refresh token with `400` and an empty body: that is the provider
/// answering (the session ends, 401), not an outage (503 forever) — issue 15, defect 1.
#[tokio::test]
async fn a_refresh_token_revoked_at_glewlwyd_ends_the_session_cleanly() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, client) = bff_with_glewlwyd("").await;
    let mut browser = Browser::new();
    assert_eq!(sign_in(&bff, &mut browser, "bob").await.status, 200);
    let tokens = glewlwyd.refresh_tokens(&mut browser, &client).await;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    for (hash, _) in tokens {
        glewlwyd.revoke_refresh_token(&mut browser, &hash).await;
    }
    bff.clock.advance(310); // expired: this call waits for the refresh
    let reply = browser.get(&bff.url("/api/orders"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("session_expired")), "{}", reply.text());
    assert_eq!(bff.user(&mut browser).await.status, 401, "the session outlived its refused refresh");
    let metrics = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert!(metrics.contains("kind=\"refused\""), "{metrics}");
}

/// Back-channel logout from glewlwyd: ending the user's session there ends cloakroom's.
#[tokio::test]
async fn ending_the_session_at_glewlwyd_ends_it_at_cloakroom() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, _client) = bff_with_glewlwyd("").await;
    let mut browser = Browser::new();
    assert_eq!(sign_in(&bff, &mut browser, "alice").await.status, 200);
    let sid = bff.user(&mut browser).await.json()["claims"]["sid"].as_str().map(String::from);
    let sid = sid.expect("glewlwyd's ID token names its session (sid)");
    // The user ends their glewlwyd session (what its end-session page confirms).
    let url = format!("{}/session/{sid}", glewlwyd.issuer);
    let ended = browser.request(Method::DELETE, &url, None, &[]).await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    let started = std::time::Instant::now();
    while bff.user(&mut browser).await.status != 401 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the back-channel logout did not arrive");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A secret with URL-reserved characters (what `openssl rand -base64` makes) breaks
/// `client_secret_basic` against glewlwyd, which does not decode the form-encoded credentials
/// RFC 6749 §2.3.1 asks clients to send: the sign-in fails as a configuration fault (502 page),
/// and `client_secret_post` with the same secret works (docs/providers.md says so).
#[tokio::test]
async fn a_secret_with_reserved_characters_needs_client_secret_post_at_glewlwyd() {
    let _turn = glewlwyd().await.turn().await;
    let (basic, _) = bff_with_secret("", "s3+cr/t=").await;
    let mut browser = Browser::new();
    // The first request that authenticates is the pushed authorization request (PAR).
    let refused = browser.get(&basic.url("/bff/login?returnUrl=%2Fapp"), &[]).await;
    // glewlwyd answers a bare 403: a refusal of cloakroom's request, shown as a server fault.
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(refused.location().is_none() && refused.text().contains("sign-in request"), "{}", refused.text());
    // Without PAR, the same secret fails at the code exchange, named as a credentials problem.
    let (basic, _) = bff_with_secret("par = \"off\"", "s3+cr/t=").await;
    let mut browser = Browser::new();
    let refused = sign_in(&basic, &mut browser, "alice").await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(refused.text().contains("did not accept this site"), "{}", refused.text());
    assert!(refused.text().contains("did not accept this site"), "{}", refused.text());
    let (post, _) = bff_with_secret_and("", "s3+cr/t=", "client_secret_post").await;
    let mut browser = Browser::new();
    let landed = sign_in(&post, &mut browser, "alice").await;
    assert_eq!(landed.status, 200, "{}", landed.text());
}

/// By default a logout token must carry `exp` (Back-Channel Logout 1.0): glewlwyd's, made to a
/// draft of it, are then refused (400 to glewlwyd, the session kept), which is why its
/// configuration sets `oidc.logout_token_exp_required = false`.
#[tokio::test]
async fn by_default_glewlwyds_draft_logout_tokens_are_refused() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let (bff, client) = bff_with_secret("", "s3cret").await;
    let mut browser = Browser::new();
    assert_eq!(sign_in(&bff, &mut browser, "alice").await.status, 200);
    let sid = bff.user(&mut browser).await.json()["claims"]["sid"].as_str().unwrap().to_string();
    let ended = browser.request(Method::DELETE, &format!("{}/session/{sid}", glewlwyd.issuer), None, &[]).await;
    assert_eq!(ended.status, 200);
    // glewlwyd calls back at once, before answering; give it a moment to be sure.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let refused = format!("backchannel_logout response for client {}, response status 400", client.client_id);
    assert!(glewlwyd.log().contains(&refused), "glewlwyd's logout call was not refused");
    assert_eq!(bff.user(&mut browser).await.status, 200, "a token without exp ended the session");
}
