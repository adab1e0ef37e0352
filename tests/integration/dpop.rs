//! DPoP (RFC 9449, issue 32 item 1) end to end: the real provider with DPoP required for the
//! client (`dpop_bound_access_tokens`) and nonces required (`use_dpop_nonce` on a first
//! proof), and an API verifying each proof with `jose` (`tests/provider/dpop-api.mjs`). Each
//! session has its own key; sign-in, calls, refresh and logout work; the API refuses a
//! replayed proof, a proof for another URL, the token without its proof, as Bearer, or with a
//! proof of another key; Bearer routes keep Bearer; nothing of it reaches the browser.

use crate::support::*;
use http::Method;
use serde_json::{Value, json};

fn bound_routes(api: &DpopApi) -> String {
    format!("[[routes]]\nprefix = \"/bound/\"\nupstream = \"{}/v1/\"\ntoken = \"user\"\ndpop = true\n", api.origin)
}

async fn start(provider: &ProviderProcess, api: &DpopApi) -> Bff {
    Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        oidc_toml: "dpop = true".into(),
        client_metadata: Some(json!({ "dpop_bound_access_tokens": true })),
        extra_routes: bound_routes(api),
        ..Default::default()
    })
    .await
}

fn header<'a>(request: &'a Value, name: &str) -> &'a str {
    request["headers"][name].as_str().unwrap_or_default()
}

fn grants(events: &[Value], client: &RegisteredClient, grant_type: &str) -> usize {
    let ours = |e: &&Value| e["clientId"] == client.client_id.as_str() && e["grant_type"] == grant_type;
    events.iter().filter(|e| e["type"] == "grant.success").filter(ours).count()
}

#[tokio::test]
async fn dpop_bound_tokens_go_with_a_fresh_proof_per_call_keep_their_key_across_refresh_and_work_nowhere_else() {
    let provider = start_provider(&[("DPOP_REQUIRE_NONCE", "1")]);
    let api = DpopApi::start(&provider.issuer);
    let bff = start(&provider, &api).await;
    let mut browser = Browser::new();
    // The client is registered with dpop_bound_access_tokens: the provider refuses a code
    // exchange without a proof, and asks for its nonce first.
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    let events = provider_events(&provider.issuer).await;
    assert_eq!(grants(&events, &bff.client, "authorization_code"), 1);

    // The first call: the API asks for its nonce, and the call goes once more with it.
    let first = browser.get(&bff.url("/bound/items?page=2"), &[CSRF]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let (jkt, sub) = (first.json()["jkt"].as_str().unwrap().to_string(), first.json()["sub"].clone());
    assert_eq!(sub, "alice");
    let seen = api.seen().await;
    let verdicts: Vec<&str> = seen.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["use the nonce", "ok"]);
    for request in &seen {
        assert!(header(request, "authorization").starts_with("DPoP "), "{request}");
        assert!(
            !header(request, "cookie").contains(bff.cookie_name()),
            "cloakroom's cookie reached the API: {request}"
        );
    }
    assert_ne!(header(&seen[0], "dpop"), header(&seen[1], "dpop"), "a proof per request");

    // Then each call carries the nonce from the start: one request each, a body too, and a
    // proof of the browser's own is never what the API gets.
    let forged = ("dpop", "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.forged");
    assert_eq!(browser.get(&bff.url("/bound/items"), &[CSRF, forged]).await.status, 200);
    let posted =
        browser.request(Method::POST, &bff.url("/bound/items"), Some(("application/json", "{}".into())), &[CSRF]).await;
    assert_eq!(posted.status, 200, "{}", posted.text());
    let seen = api.seen().await;
    assert_eq!(seen.len(), 4);
    assert!(seen[2..].iter().all(|r| r["verdict"] == "ok"), "{seen:?}");

    // Bearer routes keep Bearer, and get no proof, not even the browser's.
    assert_eq!(browser.get(&bff.url("/api/me"), &[CSRF, forged]).await.status, 200);
    let plain = bff.upstream.requests().pop().unwrap();
    assert!(plain.headers["authorization"].to_str().unwrap().starts_with("Bearer "));
    assert!(plain.headers.get("dpop").is_none(), "a proof reached a Bearer route");

    // What the API refuses, sent to it directly with what cloakroom sent it: the same proof
    // again, the proof at another URL, the token without a proof, as Bearer, or with a proof
    // of another key.
    let (authorization, proof) = (header(&seen[2], "authorization"), header(&seen[2], "dpop"));
    let token = authorization.strip_prefix("DPoP ").unwrap();
    let at = |path: &str| format!("{}/v1/{path}", api.origin);
    let direct = async |path: &str, headers: &[(&str, &str)]| {
        let reply = http_call(Method::GET, &at(path), None, headers).await;
        (reply.status, reply.json()["reason"].as_str().unwrap_or_default().to_string())
    };
    let replayed = direct("items", &[("authorization", authorization), ("dpop", proof)]).await;
    assert_eq!(replayed, (401, "the proof was used before (jti)".into()));
    let (status, reason) = direct("other", &[("authorization", authorization), ("dpop", proof)]).await;
    assert_eq!(status, 401);
    assert!(reason.starts_with("htu mismatch"), "{reason}");
    assert_eq!(direct("items", &[("authorization", authorization)]).await, (401, "0 DPoP proofs".into()));
    let as_bearer = format!("Bearer {token}");
    let bearer = direct("items", &[("authorization", &as_bearer), ("dpop", proof)]).await;
    assert_eq!(bearer, (401, "a DPoP-bound token presented as Bearer".into()));
    let stranger = cloakroom::crypto::dpop::DpopKey::generate().unwrap();
    let foreign = stranger.proof(&Method::GET, &at("items"), Some(token), None, bff.clock_now()).unwrap();
    let foreign = direct("items", &[("authorization", authorization), ("dpop", &foreign)]).await;
    assert_eq!(foreign, (401, "the proof is signed by another key than the token is bound to".into()));

    // The access token falls due: a refresh (in the background: the token still held is
    // valid for seconds more) proves the same key, and the new token is bound to it (the
    // binding survives the refresh token's rotation).
    bff.clock.advance(290);
    assert_eq!(browser.get(&bff.url("/bound/items"), &[CSRF]).await.status, 200);
    for _ in 0..100 {
        if grants(&provider_events(&provider.issuer).await, &bff.client, "refresh_token") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(grants(&provider_events(&provider.issuer).await, &bff.client, "refresh_token"), 1);
    let refreshed = browser.get(&bff.url("/bound/items"), &[CSRF]).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    assert_eq!(refreshed.json()["jkt"], jkt.as_str(), "the refreshed token is bound to the session's key");
    let last = api.seen().await.pop().unwrap();
    assert_ne!(header(&last, "authorization"), authorization, "a new access token");

    // The API rotates its nonce: the next call is answered use_dpop_nonce once, then goes.
    api.rotate_nonce().await;
    let before = api.seen().await.len();
    assert_eq!(browser.get(&bff.url("/bound/items"), &[CSRF]).await.status, 200);
    assert_eq!(api.seen().await.len(), before + 2);

    // Another session has a key of its own.
    let mut other = Browser::new();
    assert_eq!(bff.login(&mut other, "bob", "/").await.status, 200);
    let bobs = other.get(&bff.url("/bound/items"), &[CSRF]).await;
    assert_eq!((bobs.status, bobs.json()["sub"].as_str()), (200, Some("bob")));
    assert_ne!(bobs.json()["jkt"], jkt.as_str(), "two sessions share a DPoP key");

    // Logout ends it all.
    let out = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(out.status, 200, "{}", out.text());
    let before = api.seen().await.len();
    assert_eq!(browser.get(&bff.url("/bound/items"), &[CSRF]).await.status, 401);
    assert_eq!(api.seen().await.len(), before, "a call after logout reached the API");

    // Nothing of it reached the browser: no token, no proof.
    let received = String::from_utf8_lossy(&browser.received).to_string();
    let tokens = tokens_issued(&provider.issuer, &bff.client).await;
    assert!(tokens.len() >= 4, "{}", tokens.len());
    for token in tokens {
        assert!(!received.contains(&token), "a token reached the browser");
    }
    for request in api.seen().await {
        let proof = header(&request, "dpop");
        assert!(proof.is_empty() || !received.contains(proof), "a proof reached the browser");
    }
}

/// A session whose provider binds no tokens has no DPoP key: a DPoP route refuses it (403,
/// nothing forwarded, never its token as Bearer instead); a session of a provider with `dpop`
/// on the same instance goes.
#[tokio::test]
async fn a_session_without_a_dpop_key_is_refused_by_a_dpop_route_and_nothing_is_forwarded() {
    let provider = provider();
    let api = DpopApi::start(&provider.issuer);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let client = register_client(&provider.issuer, &origin, "client_secret_basic", true).await;
    let bff = Bff::start_with(BffOptions {
        main_listener: Some(listener),
        client: Some(client.clone()),
        extra_routes: bound_routes(&api),
        extra_toml: format!(
            "[[providers]]\nid = \"bound\"\nissuer = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\ndpop = true\n",
            provider.issuer, client.client_id, client.client_secret
        ),
        ..Default::default()
    })
    .await;
    let mut plain = Browser::new();
    assert_eq!(bff.login(&mut plain, "alice", "/").await.status, 200);
    let refused = plain.get(&bff.url("/bound/items"), &[CSRF]).await;
    assert_eq!((refused.status, refused.json()["error"].as_str()), (403, Some("forbidden")), "{}", refused.text());
    assert!(api.seen().await.is_empty(), "a call without a DPoP key reached the API");
    assert_eq!(plain.get(&bff.url("/api/me"), &[CSRF]).await.status, 200, "its Bearer routes still go");

    let mut bound = Browser::new();
    let callback = bff.authorize_from(&mut bound, "alice", "/bff/login?provider=bound").await;
    assert_eq!(bound.get(&callback, &[]).await.status, 200);
    let called = bound.get(&bff.url("/bound/items"), &[CSRF]).await;
    assert_eq!(called.status, 200, "{}", called.text());
    assert!(called.json()["jkt"].as_str().is_some_and(|jkt| !jkt.is_empty()));
}

/// The userinfo endpoint takes the DPoP-bound token only with a proof (oidc-provider refuses it
/// as Bearer), and asks for its nonce first: the sign-in gets the claims kept there.
#[tokio::test]
async fn userinfo_is_called_with_a_proof_and_its_nonce() {
    let provider = start_provider(&[("DPOP_REQUIRE_NONCE", "1"), ("USERINFO_CLAIMS", "1")]);
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        oidc_toml: "dpop = true\nuserinfo = true".into(),
        client_metadata: Some(json!({ "dpop_bound_access_tokens": true })),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    let signed_in = bff.login(&mut browser, "alice", "/").await;
    assert_eq!(signed_in.status, 200, "the sign-in with userinfo failed: {}", signed_in.text());
    let claims = bff.user(&mut browser).await.json()["claims"].clone();
    assert_eq!(claims["groups"], json!(["staff", "admins"]), "{claims}");
    assert_eq!(userinfo_answers(&provider.issuer, &bff.client).await, 1);
}

#[test]
fn dpop_routes_need_the_users_token_and_a_provider_that_binds_it() {
    let error = route_config_error("token = \"client\"\ndpop = true");
    assert!(error.contains("routes[0].dpop") && error.contains("only on token = \"user\" routes"), "{error}");
    let error = route_config_error("dpop = true\n[routes.exchange]\naudience = \"urn:x\"");
    assert!(error.contains("routes[0].dpop") && error.contains("exchanged tokens are Bearer"), "{error}");
    let error =
        route_config_error("dpop = true\n[routes.identity]\nbearer = false\nheaders = { \"x-user\" = \"sub\" }");
    assert!(error.contains("routes[0].dpop") && error.contains("bearer = false"), "{error}");
    let error = route_config_error("dpop = true");
    assert!(error.contains("routes[0].dpop") && error.contains("needs a provider with dpop = true"), "{error}");
}
