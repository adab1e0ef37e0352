//! `client` and `user-or-client` routes: cloakroom's own client-credentials token, cached until
//! due, fetched once for concurrent callers, shared by all users.

use crate::journey::jwt_claims;
use crate::support::*;

fn routes() -> BffOptions {
    BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/svc/\"\nupstream = \"{upstream}/api/\"\ntoken = \"client\"\n\
                       [[routes]]\nprefix = \"/mixed/\"\nupstream = \"{upstream}/api/\"\ntoken = \"user-or-client\"\n"
            .into(),
        ..Default::default()
    }
}

fn last_token_claims(bff: &Bff) -> serde_json::Value {
    let request = bff.upstream.requests().pop().unwrap();
    let bearer = request.headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_string();
    jwt_claims(&bearer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_token_is_fetched_once_shared_and_renewed_when_due() {
    let bff = Bff::start_with(routes()).await;
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let url = bff.url(&format!("/svc/items/{i}"));
            tokio::spawn(async move { http_call(http::Method::GET, &url, None, &[CSRF]).await.status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(grants(&bff.issuer, &bff.client, "client_credentials").await, 1, "not single-flight");
    let tokens: std::collections::HashSet<String> =
        bff.upstream.requests().iter().map(|r| r.headers["authorization"].to_str().unwrap().to_string()).collect();
    assert_eq!(tokens.len(), 1);
    let claims = last_token_claims(&bff);
    assert_eq!(claims["client_id"], bff.client.client_id);
    assert_ne!(claims["sub"], "alice");

    // Signed-in users share it too: a client route never sends a user's token.
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/svc/x"), &[CSRF]).await.status, 200);
    assert_eq!(last_token_claims(&bff)["client_id"], bff.client.client_id);
    assert_ne!(last_token_claims(&bff)["sub"], "alice");
    assert_eq!(grants(&bff.issuer, &bff.client, "client_credentials").await, 1);

    // Due: renewed once.
    bff.clock.advance(290);
    assert_eq!(browser.get(&bff.url("/svc/x"), &[CSRF]).await.status, 200);
    assert_eq!(grants(&bff.issuer, &bff.client, "client_credentials").await, 2);

    // Client routes still demand the anti-CSRF header.
    let reply = http_call(http::Method::GET, &bff.url("/svc/x"), None, &[]).await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn user_or_client_sends_the_users_token_when_signed_in_and_the_client_token_otherwise() {
    let bff = Bff::start_with(routes()).await;
    let reply = http_call(http::Method::GET, &bff.url("/mixed/x"), None, &[CSRF]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(last_token_claims(&bff)["client_id"], bff.client.client_id);
    assert_ne!(last_token_claims(&bff)["sub"], "alice");

    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/mixed/x"), &[CSRF]).await.status, 200);
    assert_eq!(last_token_claims(&bff)["sub"], "alice");
}

#[tokio::test]
async fn an_outage_keeps_a_valid_client_token_and_is_a_503_once_it_expires() {
    let bff = Bff::start_with(routes()).await;
    assert_eq!(http_call(http::Method::GET, &bff.url("/svc/x"), None, &[CSRF]).await.status, 200);
    set_outage(&bff.issuer, &bff.client, true).await;
    bff.clock.advance(280);
    assert_eq!(http_call(http::Method::GET, &bff.url("/svc/x"), None, &[CSRF]).await.status, 200);
    bff.clock.advance(30);
    let reply = http_call(http::Method::GET, &bff.url("/svc/x"), None, &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (503, Some("provider_unavailable")));
    set_outage(&bff.issuer, &bff.client, false).await;
    assert_eq!(http_call(http::Method::GET, &bff.url("/svc/x"), None, &[CSRF]).await.status, 200);
}

/// A provider that refuses client credentials with a bare 403 (glewlwyd's way): the documented
/// 502, not an outage; and cloakroom asks again once it is fixed (issue 15, defect 1).
#[tokio::test]
async fn a_bare_refusal_of_client_credentials_is_a_502_not_an_outage() {
    let bff = Bff::start_with(routes()).await;
    set_token_failure(&bff.issuer, &bff.client, Some("empty-403")).await;
    let reply = http_call(http::Method::GET, &bff.url("/svc/x"), None, &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (502, Some("provider_error")), "{}", reply.text());
    assert_eq!(bff.upstream.count(), 0);
    let metrics = http_call(http::Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert!(metrics.lines().any(|l| l.starts_with("cloakroom_provider_errors_total{kind=\"refused\"}")), "{metrics}");
    set_token_failure(&bff.issuer, &bff.client, None).await;
    assert_eq!(http_call(http::Method::GET, &bff.url("/svc/x"), None, &[CSRF]).await.status, 200);
}

/// A `client` route may ask for scopes without a resource (providers such as glewlwyd require a
/// scope on client credentials): the token comes with them (issue 15, defect 2).
#[tokio::test]
async fn a_client_route_asks_for_scopes_without_a_resource() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/scoped/\"\nupstream = \"{upstream}/api/\"\ntoken = \"client\"\n\
                       scopes = [\"api:read\"]\n"
            .into(),
        ..Default::default()
    })
    .await;
    let reply = http_call(http::Method::GET, &bff.url("/scoped/x"), None, &[CSRF]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let claims = last_token_claims(&bff);
    assert_eq!(claims["client_id"], bff.client.client_id);
    let scope = claims["scope"].as_str().unwrap_or_default();
    assert!(scope.split(' ').any(|s| s == "api:read"), "{claims}");
}
