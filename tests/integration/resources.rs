//! RFC 8707 per-route audiences against the real provider: each API only ever sees a token
//! whose `aud` is that API.

use crate::journey::jwt_claims;
use crate::support::*;

const DEFAULT_API: &str = "urn:cloakroom:test-api";
const ORDERS_API: &str = "urn:cloakroom:orders-api";
const BILLING_API: &str = "urn:cloakroom:billing-api";

fn options() -> BffOptions {
    BffOptions {
        // The authorization request in the URL, to read its resources (PAR is tested in par.rs).
        oidc_toml: format!("resource = \"{DEFAULT_API}\"\npar = \"off\""),
        extra_routes: format!(
            "[[routes]]\nprefix = \"/orders/\"\nupstream = \"{{upstream}}/api/\"\nresource = \"{ORDERS_API}\"\nscopes = [\"api:read\"]\n\
             [[routes]]\nprefix = \"/billing/\"\nupstream = \"{{upstream}}/api/\"\ntoken = \"client\"\nresource = \"{BILLING_API}\"\n"
        ),
        ..Default::default()
    }
}

fn last_audience(bff: &Bff) -> serde_json::Value {
    let request = bff.upstream.requests().pop().unwrap();
    let bearer = request.headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_string();
    jwt_claims(&bearer)["aud"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_gets_a_token_for_its_own_resource() {
    let bff = Bff::start_with(options()).await;
    let mut browser = Browser::new();
    let authorize = browser.get(&bff.url("/bff/login"), &[]).await;
    let resources: Vec<String> = url::Url::parse(authorize.location().unwrap())
        .unwrap()
        .query_pairs()
        .filter(|(k, _)| k == "resource")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(resources, [DEFAULT_API, ORDERS_API, BILLING_API], "the sign-in must ask for every audience");

    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(last_audience(&bff), DEFAULT_API);

    // First calls to the orders API, concurrently: one refresh for the resource, then cached.
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let (url, cookie) = (bff.url(&format!("/orders/{i}")), cookie.clone());
            tokio::spawn(
                async move { http_call(http::Method::GET, &url, None, &[CSRF, ("cookie", &cookie)]).await.status },
            )
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(last_audience(&bff), ORDERS_API);
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1, "one refresh for the orders audience");
    let orders_tokens: std::collections::HashSet<String> = bff
        .upstream
        .requests()
        .iter()
        .filter(|r| r.uri.starts_with("/api/") && r.uri != "/api/x")
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(orders_tokens.len(), 1);

    // The default route still gets the default audience, without another refresh.
    assert_eq!(browser.get(&bff.url("/api/y"), &[CSRF]).await.status, 200);
    assert_eq!(last_audience(&bff), DEFAULT_API);
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1);

    // A client route with a resource gets a client token for that resource.
    assert_eq!(browser.get(&bff.url("/billing/z"), &[CSRF]).await.status, 200);
    assert_eq!(last_audience(&bff), BILLING_API);

    // When due, each audience is refreshed on its own, and the rotated refresh token is shared.
    bff.clock.advance(310); // expired: this call waits for the refresh
    assert_eq!(browser.get(&bff.url("/orders/again"), &[CSRF]).await.status, 200);
    assert_eq!(last_audience(&bff), ORDERS_API);
    assert_eq!(browser.get(&bff.url("/api/again"), &[CSRF]).await.status, 200);
    assert_eq!(last_audience(&bff), DEFAULT_API);
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 3);
    let latest = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().unwrap();
    assert!(introspect(&bff.issuer, &bff.client, &latest).await, "the grant did not survive the rotations");
}

#[tokio::test]
async fn resource_settings_are_validated() {
    use cloakroom::config::Config;
    let base = "[oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"a\"\nclient_secret = \"b\"\n";
    let bad = format!(
        "{base}resource = \"not a uri\"\n[[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:1/\"\nresource = \"https://api.example.com/#frag\"\n\
         [[routes]]\nprefix = \"/b/\"\nupstream = \"http://127.0.0.1:1/\"\nscopes = [\"x\"]\n\
         [[routes]]\nprefix = \"/c/\"\nupstream = \"http://127.0.0.1:1/\"\ntoken = \"none\"\nresource = \"https://api.example.com\"\n"
    );
    let errors = Config::from_toml(&bad, Vec::new()).unwrap_err();
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["oidc.resource", "routes[0].resource", "routes[1].scopes", "routes[2].resource"], "{errors}");
}
