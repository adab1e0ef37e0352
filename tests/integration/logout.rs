//! `/bff/logout`: JSON for fetch, 303 for a same-origin form post, refused cross-site.

use crate::support::*;
use http::Method;

#[tokio::test]
async fn a_plain_same_origin_form_post_gets_a_303_to_the_provider() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let origin = bff.origin.clone();
    let reply = browser
        .request(
            Method::POST,
            &bff.url("/bff/logout"),
            Some(("application/x-www-form-urlencoded", String::new())),
            &[("origin", &origin), ("sec-fetch-site", "same-origin"), ("accept", "text/html")],
        )
        .await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert!(reply.location().unwrap().starts_with(&format!("{}/session/end?", bff.issuer)));
    assert_eq!(reply.header("clear-site-data"), Some("\"cookies\""));
    assert!(session_cookie(&browser).is_none());
    assert_eq!(bff.session_count().await, 0);

    // The provider accepts that URL and sends the browser back to us.
    let (end_url, end_page) = browser.follow(reply.location().unwrap(), |_| false).await;
    assert_eq!(end_page.status, 200, "{end_url}: {}", end_page.text());
}

#[tokio::test]
async fn cross_site_or_unmarked_logout_posts_are_refused_and_the_session_stays() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let form = || Some(("application/x-www-form-urlencoded", String::new()));
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "https://evil.example"), CSRF],
        vec![("sec-fetch-site", "cross-site"), CSRF],
        vec![],
    ] {
        let reply = browser.request(Method::POST, &bff.url("/bff/logout"), form(), &headers).await;
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.text());
        assert!(reply.header("clear-site-data").is_none());
    }
    assert_eq!(browser.get(&bff.url("/bff/logout"), &[CSRF]).await.status, 405);
    assert_eq!(bff.user(&mut browser).await.status, 200, "a refused logout ended the session");
}

#[tokio::test]
async fn logout_without_a_session_still_clears_and_answers() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    browser.set_cookie("__Host-Http-cloakroom", "stale");
    let reply = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.json()["logout_url"].as_str().is_some());
    assert!(session_cookie(&browser).is_none());
}

#[tokio::test]
async fn the_id_token_hint_is_sent_only_when_opted_in() {
    let bff =
        Bff::start_with(BffOptions { oidc_toml: "logout_id_token_hint = true".into(), ..Default::default() }).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let reply = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    let logout_url = url::Url::parse(reply.json()["logout_url"].as_str().unwrap()).unwrap();
    let hint = logout_url.query_pairs().find(|(k, _)| k == "id_token_hint").map(|(_, v)| v.into_owned());
    let hint = hint.expect("the opted-in ID token hint");
    let claims = crate::journey::jwt_claims(&hint);
    assert_eq!(claims["aud"], bff.client.client_id);
    assert_eq!(claims["sub"], "alice");
    // The provider takes it.
    let (_, end_page) = browser.follow(logout_url.as_str(), |_| false).await;
    assert_eq!(end_page.status, 200, "{}", end_page.text());
}

#[tokio::test]
async fn clear_site_data_can_be_turned_off_for_shared_domains() {
    let bff =
        Bff::start_with(BffOptions { session_toml: "clear_site_data = false".into(), ..Default::default() }).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let reply = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("clear-site-data").is_none());
    assert!(session_cookie(&browser).is_none(), "the session cookie must still be cleared");
    assert_eq!(bff.user(&mut browser).await.status, 401);
}

/// A provider that hangs at logout (a GC pause, a stuck pod) and a browser that gives up on the
/// answer: the session has ended anyway (the copied ticket opens nothing), and the refresh
/// token's revocation, which was under way, still reaches the provider when it resumes.
#[tokio::test]
async fn a_hung_provider_and_an_abandoned_logout_still_end_the_session_and_revoke() {
    let provider = start_provider(&[]);
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        oidc_toml: "timeout = \"5s\"".into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    let refresh_token = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().expect("a refresh token");
    assert_eq!(bff.session_count().await, 1);

    provider.signal("STOP");
    let url = bff.url("/bff/logout");
    let (header, ticket) = (CSRF, cookie.clone());
    let logout = tokio::spawn(async move { http_call(Method::POST, &url, None, &[header, ("cookie", &ticket)]).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    logout.abort(); // the browser gives up while the provider hangs
    let _ = logout.await;
    assert_eq!(bff.session_count().await, 0, "an abandoned logout left the session alive");
    let mut thief = Browser::new();
    thief.set_cookie("__Host-Http-cloakroom", cookie.split_once('=').unwrap().1);
    assert_eq!(thief.get(&bff.url("/api/x"), &[CSRF]).await.status, 401, "the ticket still opens a session");

    provider.signal("CONT");
    let mut revoked = false;
    for _ in 0..100 {
        if !introspect(&bff.issuer, &bff.client, &refresh_token).await {
            revoked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(revoked, "the abandoned logout's revocation never reached the provider");
}
