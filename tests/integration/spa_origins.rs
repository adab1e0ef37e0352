//! The SPA served from another origin of the same site (issue 31, item 4): a CDN on one host,
//! cloakroom on another. `[spa] origins` lists the SPA's; only those get CORS answers with
//! credentials (preflights included), pass the anti-CSRF guard as `same-site`, and may be
//! returned to after a sign-in; cookies stay `__Host-` on cloakroom's origin. The journey runs
//! in Chromium across the two origins with the token scan.

use crate::browser::{SPA, assert_token_free, run_journey};
use crate::support::*;
use http::Method;

async fn two_origins() -> (Bff, SpaServer) {
    let spa_port = free_port();
    let spa_origin = format!("http://127.0.0.1:{spa_port}");
    let bff = Bff::start_with(BffOptions {
        extra_toml: format!("[spa]\norigins = [\"{spa_origin}\"]\n"),
        extra_routes: "[[routes]]\nprefix = \"/reports/\"\nupstream = \"{upstream}/reports/\"\nmethods = [\"GET\"]\n"
            .into(),
        post_logout_redirect: Some(format!("{spa_origin}/")),
        ..Default::default()
    })
    .await;
    let spa = SpaServer::start(spa_port, SPA, &bff.origin).await;
    (bff, spa)
}

fn preflight<'a>(origin: &'a str, method: &'a str) -> [(&'a str, &'a str); 3] {
    [("origin", origin), ("access-control-request-method", method), ("access-control-request-headers", "accept,x-csrf")]
}

#[tokio::test]
async fn only_the_spas_listed_origins_get_cors_answers_and_may_be_returned_to() {
    let (bff, spa) = two_origins().await;
    let evil = "http://127.0.0.1:1";

    // Preflights: answered for the SPA's origin, on the routes it calls, for the methods they take.
    let answered = http_call(Method::OPTIONS, &bff.url("/bff/user"), None, &preflight(&spa.origin, "GET")).await;
    assert_eq!(answered.status, 204);
    assert_eq!(answered.header("access-control-allow-origin"), Some(spa.origin.as_str()));
    assert_eq!(answered.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(answered.header("access-control-allow-headers"), Some("accept,x-csrf"));
    let api = http_call(Method::OPTIONS, &bff.url("/api/items"), None, &preflight(&spa.origin, "DELETE")).await;
    assert_eq!((api.status, api.header("access-control-allow-methods")), (204, Some("DELETE")));
    let outside = http_call(Method::OPTIONS, &bff.url("/reports/q1"), None, &preflight(&spa.origin, "POST")).await;
    assert_eq!(
        (outside.status, outside.header("access-control-allow-origin")),
        (204, None),
        "a method the route refuses"
    );
    for (path, origin) in [("/bff/user", evil), ("/api/items", evil), ("/bff/callback", spa.origin.as_str())] {
        let reply = http_call(Method::OPTIONS, &bff.url(path), None, &preflight(origin, "GET")).await;
        assert!(reply.header("access-control-allow-origin").is_none(), "{path} from {origin}: {}", reply.status);
        assert_ne!(reply.status, 204, "{path} from {origin}");
    }
    assert_eq!(bff.upstream.count(), 0, "a preflight reached the upstream");

    // Sign-in returning to the SPA's origin; nothing else of its shape.
    let mut browser = Browser::new();
    let landed = bff.login(&mut browser, "alice", &format!("{}/orders?id=7", spa.origin)).await;
    assert!(landed.text().contains(&format!("url={}/orders?id=7", spa.origin)), "{}", landed.text());
    for foreign in
        [format!("{evil}/"), format!("{}.evil.example/", spa.origin), format!("{}//evil.example/", spa.origin)]
    {
        let mut other = Browser::new();
        let landed = bff.login(&mut other, "bob", &foreign).await;
        assert!(landed.text().contains("url=/\""), "{foreign}: {}", landed.text());
    }

    // Calls from the SPA's origin: same-site, with the header: answered, readable there.
    let from_spa = [CSRF, ("origin", spa.origin.as_str()), ("sec-fetch-site", "same-site")];
    let user = browser.get(&bff.url("/bff/user"), &from_spa).await;
    assert_eq!((user.status, user.header("access-control-allow-origin")), (200, Some(spa.origin.as_str())));
    assert_eq!(user.header("access-control-allow-credentials"), Some("true"));
    let call = browser.get(&bff.url("/api/items"), &from_spa).await;
    assert_eq!((call.status, call.header("access-control-allow-origin")), (200, Some(spa.origin.as_str())));
    assert!(bff.upstream.requests().pop().unwrap().headers["authorization"].to_str().unwrap().starts_with("Bearer "));
    // Refused: without the header, cross-site, from another origin; nothing forwarded. The
    // SPA's origin may read why (its refusal is JSON like any); another origin reads nothing.
    let before = bff.upstream.count();
    for headers in [
        vec![("origin", spa.origin.as_str()), ("sec-fetch-site", "same-site")],
        vec![CSRF, ("origin", spa.origin.as_str()), ("sec-fetch-site", "cross-site")],
        vec![CSRF, ("origin", evil), ("sec-fetch-site", "same-site")],
    ] {
        let reply = browser.get(&bff.url("/api/items"), &headers).await;
        assert_eq!(reply.status, 403, "{headers:?}");
        let readable_by = reply.header("access-control-allow-origin");
        assert!(readable_by.is_none_or(|o| o == spa.origin), "{headers:?}: {readable_by:?}");
    }
    assert_eq!(bff.upstream.count(), before);
    // The cookie is still cloakroom's own: __Host-, Secure, HttpOnly, SameSite.
    let set = landed_cookie(&bff).await;
    assert!(
        set.starts_with("__Host-")
            && set.contains("Secure")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict"),
        "{set}"
    );
}

/// The session cookie as a fresh sign-in sets it.
async fn landed_cookie(bff: &Bff) -> String {
    let mut browser = Browser::new();
    let callback = bff.authorize(&mut browser, "alice", "/").await;
    let reply = browser.get(&callback, &[]).await;
    reply.set_cookies().into_iter().find(|c| c.starts_with(bff.cookie_name())).expect("the session cookie")
}

#[tokio::test]
async fn in_a_real_browser_the_spa_on_another_origin_signs_in_calls_and_signs_out_token_free() {
    let (bff, spa) = two_origins().await;
    let record = run_journey(&spa.origin, false).await;
    assert!(record["claimsText"].as_str().unwrap().contains("alice@example.com"));
    assert!(record["apiResult"].as_str().unwrap().contains("\"authorization\": true"), "{}", record["apiResult"]);
    // The page's calls went to cloakroom's origin, from the SPA's.
    let requests = record["requests"].as_array().unwrap();
    assert!(requests.iter().any(|r| r["url"].as_str().unwrap().starts_with(&bff.url("/bff/user"))));
    assert!(requests.iter().any(|r| r["url"].as_str().unwrap().starts_with(&spa.url("/app.js"))));
    assert_token_free(&record, &tokens_issued(&bff.issuer, &bff.client).await, &spa.origin);
}

#[test]
fn an_origin_that_is_not_one_is_refused_by_name() {
    let base = "[server]\npublic_url = \"https://bff.example.com\"\n[oidc]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";
    for (origins, why) in [
        ("[\"https://app.example.com/path\"]", "an origin alone"),
        ("[\"http://app.example.com\"]", "must use https"),
        ("[\"https://bff.example.com\"]", "needs no listing"),
        ("[\"*\"]", "not a URL"),
    ] {
        let toml = format!("{base}[spa]\norigins = {origins}\n");
        let error = cloakroom::config::Config::from_toml(&toml, Vec::new()).unwrap_err().to_string();
        assert!(error.contains("spa.origins[0]") && error.contains(why), "{origins}: {error}");
    }
    let other_site = format!("{base}[spa]\norigins = [\"https://app.example.org\"]\n");
    let config = cloakroom::config::Config::from_toml(&other_site, Vec::new()).unwrap();
    assert!(config.warnings.iter().any(|w| w.contains("another site")), "{:?}", config.warnings);
}
