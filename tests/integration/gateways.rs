//! Forward-auth (issue 30, item 1): cloakroom as a gateway's authentication step. The endpoint
//! answers only a trusted gateway with its token; it applies a proxied call's checks to the
//! call the gateway names; real nginx (`auth_request`) and real Caddy (`forward_auth`), run
//! from docs/gateways as written, forward a signed-in browser's API calls with the token and
//! without cloakroom's cookie or a spoofed identity, and refuse what cloakroom refuses.

use crate::browser::{SPA, assert_token_free, run_journey};
use crate::support::*;

const TOKEN: &str = "gateway-secret-0123456789abcdef0123456789abcdef";

fn forward_auth_toml(trusted: &str) -> String {
    format!("trusted_proxies = [\"{trusted}\"]\nforward_auth_token = \"{TOKEN}\"")
}

/// The gateway's subrequest about `method uri`, with `extra` headers (the call's own).
async fn ask(bff: &Bff, browser: &mut Browser, query: &str, method: &str, uri: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers =
        vec![("x-forwarded-uri", uri), ("x-forwarded-method", method), ("x-cloakroom-gateway-token", TOKEN)];
    headers.extend_from_slice(extra);
    browser.get(&bff.direct(&format!("/bff/forward-auth{query}")), &headers).await
}

#[tokio::test]
async fn forward_auth_answers_a_trusted_gateway_with_the_proxied_calls_own_decision() {
    let bff = Bff::start_with(BffOptions {
        server_toml: forward_auth_toml("127.0.0.1/32"),
        extra_routes: "[[routes]]\nprefix = \"/reports/\"\nupstream = \"{upstream}/reports/\"\nmethods = [\"GET\"]\n\
                       [routes.identity]\nassertion = true\n"
            .into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    browser.set_cookie("theme", "dark");
    let ticket = session_cookie(&browser).unwrap();

    // Only with the token: none, another, or the token under another name.
    for headers in [
        vec![("x-forwarded-uri", "/api/items")],
        vec![("x-forwarded-uri", "/api/items"), ("x-cloakroom-gateway-token", "not-the-token")],
        vec![("x-forwarded-uri", "/api/items"), ("authorization", &*format!("Bearer {TOKEN}"))],
    ] {
        let headers: Vec<(&str, &str)> = headers.into_iter().chain([CSRF]).collect();
        let reply = browser.get(&bff.direct("/bff/forward-auth"), &headers).await;
        assert_eq!((reply.status, reply.json()["error"].as_str()), (403, Some("gateway_untrusted")), "{headers:?}");
        assert!(reply.header("authorization").is_none());
    }

    // Granted: the route's token, the cookies without cloakroom's, every identity name.
    let granted = ask(&bff, &mut browser, "", "GET", "/api/items?page=2", &[CSRF]).await;
    assert_eq!(granted.status, 200, "{}", granted.text());
    let bearer = granted.header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_string();
    assert!(tokens_issued(&bff.issuer, &bff.client).await.contains(&bearer), "the session's real token");
    // The jar holds the provider's cookies too (same host, another port): kept, like the app's.
    let kept = granted.header("cookie").unwrap();
    assert!(kept.ends_with("theme=dark") && !kept.contains(&ticket) && !kept.contains("cloakroom"), "{kept}");
    assert!(!granted.text().contains(&ticket));
    assert_eq!(granted.header("x-auth-request-user"), Some(""), "a route without identity: the names, empty");
    assert_eq!(granted.header("cache-control"), Some("no-store"));
    let identity = ask(&bff, &mut browser, "", "GET", "/reports/q1", &[CSRF]).await;
    assert_eq!(identity.header("x-auth-request-user"), Some("alice"));
    assert!(identity.header("x-cloakroom-assertion").is_some_and(|a| a.starts_with("eyJ")));

    // The proxied call's refusals, with no token in them.
    let refusals = [
        ("GET", "/api/items", vec![], 403, "csrf_header_missing"),
        ("GET", "/api/items", vec![CSRF, ("sec-fetch-site", "cross-site")], 403, "cross_site_request"),
        ("POST", "/reports/q1", vec![CSRF], 405, "method_not_allowed"),
        ("GET", "/api/%2e%2e/bff/user", vec![CSRF], 400, "bad_path"),
    ];
    for (method, uri, extra, status, code) in refusals {
        let reply = ask(&bff, &mut browser, "", method, uri, &extra).await;
        assert_eq!((reply.status, reply.json()["error"].as_str()), (status, Some(code)), "{method} {uri}");
        assert!(reply.header("authorization").is_none(), "{method} {uri}");
    }
    // The original call, exactly once: missing, both spellings (one a client's), twice, not a path.
    for headers in [
        vec![],
        vec![("x-forwarded-uri", "/api/items"), ("x-original-uri", "/public")],
        vec![("x-forwarded-uri", "/api/items"), ("x-forwarded-uri", "/api/items")],
        vec![("x-forwarded-uri", "https://evil.example/api/items")],
        vec![("x-forwarded-uri", "/api/items"), ("x-forwarded-method", "GET"), ("x-original-method", "POST")],
    ] {
        let headers: Vec<(&str, &str)> =
            headers.into_iter().chain([CSRF, ("x-cloakroom-gateway-token", TOKEN)]).collect();
        let reply = browser.get(&bff.direct("/bff/forward-auth"), &headers).await;
        assert_eq!((reply.status, reply.json()["error"].as_str()), (400, Some("bad_forwarded_request")), "{headers:?}");
    }

    // Without a session: 401 JSON for an API call; a page goes to the sign-in (nginx: 401).
    let mut stranger = Browser::new();
    let api = ask(&bff, &mut stranger, "", "GET", "/api/items", &[CSRF]).await;
    assert_eq!((api.status, api.json()["error"].as_str()), (401, Some("unauthenticated")));
    let page = ask(&bff, &mut stranger, "", "GET", "/dashboard?tab=2", &[("sec-fetch-mode", "navigate")]).await;
    assert_eq!((page.status, page.location()), (302, Some("/bff/login?returnUrl=%2Fdashboard%3Ftab%3D2")));
    let nginx = ask(&bff, &mut stranger, "?gateway=nginx", "GET", "/dashboard", &[]).await;
    assert_eq!(nginx.status, 401);
    let nginx = ask(&bff, &mut browser, "?gateway=nginx", "POST", "/reports/q1", &[CSRF]).await;
    assert_eq!(nginx.status, 403, "nginx passes on 401 and 403 only: a client's other faults are 403");
    // A page for a signed-in browser; cloakroom's own endpoints keep its cookie.
    let page = ask(&bff, &mut browser, "", "GET", "/dashboard", &[]).await;
    assert!(page.status == 200 && !page.header("cookie").unwrap().contains(&ticket), "{}", page.status);
    let own = ask(&bff, &mut browser, "", "GET", "/bff/user", &[]).await;
    assert!(own.status == 200 && own.header("cookie").unwrap().contains(&ticket));
    assert_eq!(bff.upstream.count(), 0, "forward-auth forwards nothing itself");
    // Cookies in several headers (as HTTP/2 sends them) come back as one, every piece kept but
    // cloakroom's own (which its own endpoints keep).
    let own = format!("{}={ticket}", bff.cookie_name());
    for (uri, expected) in
        [("/api/items", "theme=dark; lang=en".to_string()), ("/bff/user", format!("theme=dark; {own}; lang=en"))]
    {
        let headers = [
            ("x-forwarded-uri", uri),
            ("x-cloakroom-gateway-token", TOKEN),
            CSRF,
            ("cookie", "theme=dark"),
            ("cookie", own.as_str()),
            ("cookie", "lang=en"),
        ];
        let reply = http_call(http::Method::GET, &bff.direct("/bff/forward-auth"), None, &headers).await;
        assert_eq!((reply.status, reply.header("cookie")), (200, Some(expected.as_str())), "{uri}");
    }

    // A caller that is not a trusted proxy is refused, token or not.
    let untrusted =
        Bff::start_with(BffOptions { server_toml: forward_auth_toml("10.0.0.0/8"), ..Default::default() }).await;
    let mut browser = Browser::new();
    assert_eq!(untrusted.login(&mut browser, "alice", "/").await.status, 200);
    let reply = ask(&untrusted, &mut browser, "", "GET", "/api/items", &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (403, Some("gateway_untrusted")));
    assert!(reply.header("authorization").is_none());
    // Not configured: no such endpoint.
    let plain = Bff::start().await;
    assert_eq!(ask(&plain, &mut Browser::new(), "", "GET", "/api/items", &[CSRF]).await.status, 404);
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    Caddy,
}

/// A signed-in browser's API calls through a real gateway: forwarded with the session's token,
/// without cloakroom's cookie or a spoofed identity; refused as cloakroom says otherwise; the
/// whole journey in Chromium, token-free.
async fn through(kind: Kind) {
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let bff = Bff::start_with(BffOptions {
        public_url: Some(origin.clone()),
        server_toml: forward_auth_toml("127.0.0.1/32"),
        extra_toml: format!("[spa]\ndir = {SPA:?}\n"),
        ..Default::default()
    })
    .await;
    let gateway = match kind {
        Kind::Nginx => Gateway::nginx(port, bff.server.addr, bff.upstream.addr, TOKEN).await,
        Kind::Caddy => Gateway::caddy(port, bff.server.addr, bff.upstream.addr, TOKEN).await,
    };
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200, "{kind:?}: the sign-in through the gateway");
    browser.set_cookie("theme", "dark");
    let ticket = session_cookie(&browser).unwrap();

    let spoofed = [CSRF, ("x-auth-request-user", "admin"), ("x-auth-request-email", "root@evil.example")];
    let reply = browser.get(&gateway.url("/api/items"), &spoofed).await;
    assert_eq!(reply.status, 200, "{kind:?}: {}", reply.text());
    let seen = bff.upstream.requests().pop().expect("the gateway forwarded the call");
    let bearer = seen.headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_string();
    assert!(tokens_issued(&bff.issuer, &bff.client).await.contains(&bearer), "{kind:?}");
    let cookies = seen.headers.get("cookie").map(|c| c.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(!cookies.contains(&ticket) && !cookies.contains("cloakroom"), "{kind:?}: the ticket reached the API");
    assert!(cookies.contains("theme=dark"), "{kind:?}: the app's own cookie is kept: {cookies:?}");
    for name in ["x-auth-request-user", "x-auth-request-email", "x-cloakroom-gateway-token"] {
        let value = seen.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("");
        assert_eq!(value, "", "{kind:?}: {name} reached the API");
    }

    // Refused as cloakroom refuses, nothing forwarded: cross-site, without the anti-CSRF
    // header, without a session; the endpoint itself is not reachable from outside.
    let before = bff.upstream.count();
    let cross = browser.get(&gateway.url("/api/items"), &[CSRF, ("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status, 403, "{kind:?}");
    assert_eq!(browser.get(&gateway.url("/api/items"), &[]).await.status, 403, "{kind:?}");
    assert_eq!(Browser::new().get(&gateway.url("/api/items"), &[CSRF]).await.status, 401, "{kind:?}");
    let outside = [("x-forwarded-uri", "/api/items"), ("x-cloakroom-gateway-token", TOKEN), CSRF];
    assert_eq!(browser.get(&gateway.url("/bff/forward-auth"), &outside).await.status, 404, "{kind:?}");
    assert_eq!(bff.upstream.count(), before, "{kind:?}: a refused call reached the API");
    let received = String::from_utf8_lossy(&browser.received).to_string();
    assert!(!received.contains(&bearer), "{kind:?}: the token reached the browser");

    // The whole journey in Chromium through the gateway: the token scan holds.
    let record = run_journey(&gateway.origin, false).await;
    assert!(record["apiResult"].as_str().unwrap().contains("\"authorization\": true"), "{}", record["apiResult"]);
    assert_token_free(&record, &tokens_issued(&bff.issuer, &bff.client).await, &gateway.origin);
}

#[tokio::test]
async fn through_real_nginx_auth_request_the_api_gets_the_token_and_the_browser_never_does() {
    through(Kind::Nginx).await;
}

#[tokio::test]
async fn through_real_caddy_forward_auth_the_api_gets_the_token_and_the_browser_never_does() {
    through(Kind::Caddy).await;
}
