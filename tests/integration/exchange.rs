//! Token exchange per route (issue 30, item 3, RFC 8693) against the real provider with the
//! token-exchange grant registered: the route's API gets a token made for it (never the
//! sign-in's), cached in the session until due, obtained once for a storm of calls (across
//! replicas sharing Redis too); a refusal is a 403 naming the route, nothing forwarded, the
//! session kept; a token the API rejects is exchanged again on the next call.

use crate::support::*;
use http::Method;
use serde_json::Value;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ROUTES: &str = "[[routes]]\nprefix = \"/orders/\"\nupstream = \"{upstream}/orders/\"\n\
                      [routes.exchange]\naudience = \"urn:cloakroom:orders\"\nscopes = [\"orders:read\"]\n\
                      [[routes]]\nprefix = \"/vault/\"\nupstream = \"{upstream}/vault/\"\n\
                      [routes.exchange]\naudience = \"urn:cloakroom:forbidden\"\n";

fn bearer(recorded: &Recorded) -> String {
    recorded.headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_string()
}

async fn issued_for(issuer: &str, token: &str) -> Value {
    http_call(Method::GET, &format!("{issuer}/__test/exchanged?token={token}"), None, &[]).await.json()
}

#[tokio::test]
async fn a_route_gets_a_token_exchanged_for_its_api_once_for_a_storm_and_refusals_forward_nothing() {
    let bff = Bff::start_with(BffOptions { extra_routes: ROUTES.into(), ..Default::default() }).await;
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    let cookie = format!("{}={}", bff.cookie_name(), session_cookie(&browser).unwrap());

    // A storm of calls on a session that has no exchanged token yet: one exchange.
    let (url, headers) = (bff.url("/orders/list"), [CSRF, ("cookie", cookie.as_str())]);
    let calls = (0..16).map(|_| http_call(Method::GET, &url, None, &headers));
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a.status == 200), "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    assert_eq!(grants(&bff.issuer, &bff.client, EXCHANGE).await, 1, "one exchange for the storm");
    let seen = bff.upstream.requests();
    let token = bearer(seen.last().unwrap());
    assert!(seen.iter().all(|r| bearer(r) == token), "every call carried the one exchanged token");
    let issued = issued_for(&bff.issuer, &token).await;
    assert_eq!(
        (issued["audience"].as_str(), issued["scope"].as_str(), issued["sub"].as_str()),
        (Some("urn:cloakroom:orders"), Some("orders:read"), Some("alice")),
        "{issued}"
    );
    assert_eq!(issued["clientId"], bff.client.client_id.as_str());
    // The sign-in's own token goes to /api/, never to /orders/.
    assert_eq!(browser.get(&bff.url("/api/me"), &[CSRF]).await.status, 200);
    assert_ne!(bearer(&bff.upstream.requests().pop().unwrap()), token);

    // Cached until due; then one exchange more (the sign-in's token refreshed first).
    assert_eq!(browser.get(&bff.url("/orders/list"), &[CSRF]).await.status, 200);
    assert_eq!(grants(&bff.issuer, &bff.client, EXCHANGE).await, 1);
    bff.clock.advance(290);
    assert_eq!(browser.get(&bff.url("/orders/list"), &[CSRF]).await.status, 200);
    assert_eq!(grants(&bff.issuer, &bff.client, EXCHANGE).await, 2, "due: exchanged again");
    let renewed = bearer(&bff.upstream.requests().pop().unwrap());
    assert_ne!(renewed, token);

    // The API rejects the exchanged token: its answer stands (never the sign-in's token
    // instead), and the next call exchanges again.
    bff.upstream.reject(&renewed);
    let before = bff.upstream.count();
    assert_eq!(browser.get(&bff.url("/orders/list"), &[CSRF]).await.status, 401);
    assert_eq!(bff.upstream.count(), before + 1, "not replayed with another token");
    assert_eq!(browser.get(&bff.url("/orders/list"), &[CSRF]).await.status, 200);
    assert_eq!(grants(&bff.issuer, &bff.client, EXCHANGE).await, 3);

    // Refused by the provider: 403 naming the route, nothing forwarded, the session kept; a
    // second call within the half minute does not ask again.
    let before = bff.upstream.count();
    let refused = browser.get(&bff.url("/vault/secret"), &[CSRF]).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["error"], "token_exchange_refused");
    assert_eq!(refused.json()["route"], "/vault/");
    assert_eq!(browser.get(&bff.url("/vault/secret"), &[CSRF]).await.status, 403);
    assert_eq!(bff.upstream.count(), before, "a refused exchange forwarded something");
    let errors = provider_events(&bff.issuer).await;
    let refusals = errors
        .iter()
        .filter(|e| {
            e["type"] == "grant.error" && e["grant_type"] == EXCHANGE && e["clientId"] == bff.client.client_id.as_str()
        })
        .count();
    assert_eq!(refusals, 1, "the refusal is remembered");
    assert_eq!(bff.user(&mut browser).await.status, 200, "the session outlives a refused exchange");

    // None of it reaches the browser.
    assert_no_token_in(&browser.received, &bff.issuer, &bff.client).await;
}

#[tokio::test]
async fn on_redis_a_storm_across_two_replicas_exchanges_once() {
    let redis = RedisServer::start();
    let toml = format!("store = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"xc:\"", redis.url());
    let (a, b) = crate::replicas::replicas_routed(&toml, [None, None], ROUTES).await;
    let mut browser = Browser::new();
    let callback = a.authorize_from(&mut browser, "alice", &a.direct("/bff/login")).await;
    assert_eq!(browser.get(&a.direct(&callback[a.origin.len()..]), &[]).await.status, 200);
    let cookie = format!("{}={}", a.cookie_name(), session_cookie(&browser).unwrap());
    let urls = [a.direct("/orders/list"), b.direct("/orders/list")];
    let headers = [CSRF, ("cookie", cookie.as_str())];
    let calls = (0..16).map(|i| http_call(Method::GET, &urls[i % 2], None, &headers));
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|r| r.status == 200), "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(grants(&a.issuer, &a.client, EXCHANGE).await, 1, "one exchange across both replicas");
    let tokens: std::collections::HashSet<String> =
        a.upstream.requests().iter().chain(b.upstream.requests().iter()).map(bearer).collect();
    assert_eq!(tokens.len(), 1, "both replicas carried the one exchanged token");
}

#[test]
fn an_exchange_that_cannot_work_is_refused_by_name() {
    for (route, key, why) in [
        ("token = \"client\"\n[routes.exchange]\naudience = \"a\"\n", "routes[0].exchange", "only on token = \"user\""),
        ("[routes.exchange]\nscopes = [\"a\"]\n", "routes[0].exchange", "needs an audience, a resource or both"),
        (
            "resource = \"https://x.example\"\n[routes.exchange]\naudience = \"a\"\n",
            "routes[0].exchange",
            "replaces the route's resource",
        ),
        ("[routes.exchange]\nresource = \"not a uri\"\n", "routes[0].exchange.resource", "absolute URI"),
        ("[routes.exchange]\naudience = \"a\"\nscopes = [\"a b\"]\n", "routes[0].exchange.scopes", "is not a scope"),
    ] {
        let error = route_config_error(route);
        assert!(error.contains(key) && error.contains(why), "{route}: {error}");
    }
}
