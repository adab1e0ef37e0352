//! Back-channel logout end to end: signing out at the provider's own end-session page ends the
//! cloakroom session of that provider session, and only that one.

use crate::support::*;
use http::Method;
use std::time::Duration;

fn attribute<'a>(html: &'a str, before: &str) -> &'a str {
    let start = html.find(before).unwrap_or_else(|| panic!("{before} not in {html}")) + before.len();
    let end = start + html[start..].find('"').unwrap();
    &html[start..end]
}

/// Walks the provider's own logout page, as a user signing out there (not through cloakroom).
async fn sign_out_at_provider(browser: &mut Browser, issuer: &str) {
    let page = browser.get(&format!("{issuer}/session/end"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let action = attribute(&html, "method=\"post\" action=\"").to_string();
    let xsrf = attribute(&html, "name=\"xsrf\" value=\"").to_string();
    let target = url::Url::parse(issuer).unwrap().join(&action).unwrap().to_string();
    let confirmed = browser
        .request(
            Method::POST,
            &target,
            Some(("application/x-www-form-urlencoded", format!("xsrf={xsrf}&logout=yes"))),
            &[],
        )
        .await;
    assert!(confirmed.status == 303 || confirmed.status == 302 || confirmed.status == 200, "{}", confirmed.text());
}

async fn eventually_signed_out(bff: &Bff, browser: &mut Browser) -> bool {
    for _ in 0..100 {
        if bff.user(browser).await.status == 401 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn logging_out_at_the_provider_ends_that_session_and_only_that_one() {
    let bff = Bff::start().await;
    let mut first = Browser::new();
    let mut second = Browser::new();
    let mut bob = Browser::new();
    bff.login(&mut first, "alice", "/").await;
    bff.login(&mut second, "alice", "/").await; // the same user, another provider session
    bff.login(&mut bob, "bob", "/").await;
    assert_eq!(bff.session_count().await, 3);

    sign_out_at_provider(&mut first, &bff.issuer).await;
    assert!(eventually_signed_out(&bff, &mut first).await, "the back-channel logout did not end the session");
    assert_eq!(bff.user(&mut second).await.status, 200, "another provider session of the same user ended");
    assert_eq!(bff.user(&mut bob).await.status, 200, "another user's session ended");
    let api = first.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!(api.status, 401);
    assert_eq!(bff.upstream.count(), 0);
}

#[tokio::test]
async fn the_endpoint_refuses_what_is_not_a_valid_logout_token() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let url = bff.url("/bff/backchannel-logout");
    let form = |body: &str| Some(("application/x-www-form-urlencoded", body.to_string()));
    let cases = [
        (form(""), "missing"),
        (form("logout_token=a&logout_token=b"), "repeated"),
        (form("logout_token=not-a-jwt"), "not a signed JWT"),
        (form("logout_token=eyJhbGciOiJub25lIn0.e30."), "alg"),
        (Some(("application/json", "{\"logout_token\":\"x\"}".to_string())), "urlencoded"),
    ];
    for (body, expected) in cases {
        let reply = http_call(Method::POST, &url, body, &[]).await;
        assert_eq!(reply.status, 400, "{expected}: {}", reply.text());
        assert_eq!(reply.json()["error"], "invalid_request");
        assert!(reply.json()["error_description"].as_str().unwrap().contains(expected), "{}", reply.text());
    }
    // An ID token is a signed JWT from the provider too, but it is no logout token.
    let hinted =
        Bff::start_with(BffOptions { oidc_toml: "logout_id_token_hint = true".into(), ..Default::default() }).await;
    let mut other = Browser::new();
    hinted.login(&mut other, "alice", "/").await;
    let logout = other.request(Method::POST, &hinted.url("/bff/logout"), None, &[CSRF]).await;
    let logout_url = url::Url::parse(logout.json()["logout_url"].as_str().unwrap()).unwrap();
    let id_token = logout_url.query_pairs().find(|(k, _)| k == "id_token_hint").unwrap().1.into_owned();
    let reply =
        http_call(Method::POST, &hinted.url("/bff/backchannel-logout"), form(&format!("logout_token={id_token}")), &[])
            .await;
    assert_eq!(reply.status, 400, "{}", reply.text());

    assert_eq!(http_call(Method::GET, &url, None, &[]).await.status, 405);
    assert_eq!(bff.user(&mut browser).await.status, 200, "a refused logout token ended a session");
}

/// Signing out through cloakroom, then at the provider's end-session page it points to: the
/// provider's back-channel call for the session already ended counts no second logout (issue 15,
/// defect 4).
#[tokio::test]
async fn a_logout_through_cloakroom_and_its_back_channel_echo_count_once() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let logout = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(logout.status, 200);
    sign_out_at_provider(&mut browser, &bff.issuer).await;
    let count = || async {
        let metrics = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("cloakroom_logouts_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Give the provider's back-channel call time to arrive.
    let mut seen = 0.0;
    for _ in 0..50 {
        seen = count().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 1.0, "one sign-out counted {seen} times");
}
