//! The whole journey: login → /bff/user → API call with Bearer → logout → signed out.

use crate::support::*;
use http::Method;
use serde_json::Value;
#[tokio::test]
async fn login_user_api_logout_and_no_token_reaches_the_browser() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();

    // Sign in, coming back to /app/page.
    let landing = bff.login(&mut browser, "alice", "/app/page?tab=1").await;
    assert_eq!(landing.status, 200, "{}", landing.text());
    assert!(landing.text().contains(r#"content="0;url=/app/page?tab=1""#), "{}", landing.text());
    let set_cookie =
        landing.set_cookies().into_iter().find(|c| c.starts_with("__Host-Http-cloakroom=")).expect("a session cookie");
    let attributes: Vec<String> = set_cookie.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect();
    for required in ["httponly", "secure", "path=/", "samesite=strict"] {
        assert!(attributes.contains(&required.to_string()), "{required} missing: {set_cookie}");
    }
    assert!(!attributes.iter().any(|a| a.starts_with("domain")), "{set_cookie}");
    let ticket = session_cookie(&browser).unwrap();
    assert_eq!(ticket.len(), 86, "the ticket is 512 bits of base64url");
    assert!(
        !browser.cookie_names().iter().any(|n| n.starts_with("__Host-Http-cloakroom-login-")),
        "login cookie left behind"
    );

    // Who am I: claims, no tokens.
    let user = bff.user(&mut browser).await;
    assert_eq!(user.status, 200, "{}", user.text());
    assert_eq!(user.header("cache-control"), Some("no-store"));
    let json = user.json();
    assert_eq!(json["sub"], "alice");
    assert_eq!(json["claims"]["email"], "alice@example.com");
    assert_eq!(json["claims"]["name"], "Alice Example");
    assert!(json["claims"].get("nonce").is_none() && json["claims"].get("at_hash").is_none());
    assert!(json["session"]["expires_at"].as_u64().unwrap() > json["session"]["created_at"].as_u64().unwrap());

    // An API call: the upstream gets the Bearer token, not the browser's cookie.
    let api = browser
        .get(
            &bff.url("/api/things?limit=5"),
            &[CSRF, ("authorization", "Bearer browser-chosen"), ("cookie-extra", "x")],
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(api.json()["path"], "/api/things");
    let seen = bff.upstream.requests();
    assert_eq!(seen.len(), 1);
    let upstream = &seen[0];
    assert_eq!(upstream.uri, "/api/things?limit=5");
    let authorization = upstream.headers["authorization"].to_str().unwrap().to_string();
    let access_token = authorization.strip_prefix("Bearer ").expect("a Bearer token").to_string();
    assert_ne!(access_token, "browser-chosen");
    assert_eq!(access_token.split('.').count(), 3, "the provider issues JWT access tokens for the API resource");
    let claims = jwt_claims(&access_token);
    assert_eq!(claims["aud"], "urn:cloakroom:test-api");
    assert_eq!(claims["sub"], "alice");
    let cookies = upstream.headers.get("cookie").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(!cookies.contains("__Host-Http-cloakroom"), "cloakroom's cookie went upstream: {cookies}");
    assert_eq!(upstream.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(upstream.headers["x-forwarded-proto"], "http");
    assert_eq!(upstream.headers["x-forwarded-host"], bff.origin.trim_start_matches("http://"));
    assert!(api.header("x-upstream-hop").is_none(), "a hop-by-hop header named in Connection came back");

    let refresh_tokens = refresh_tokens_issued(&bff.issuer, &bff.client).await;
    assert_eq!(refresh_tokens.len(), 1, "one login, one refresh token");
    let refresh_token = refresh_tokens[0].clone();
    assert!(introspect(&bff.issuer, &bff.client, &refresh_token).await);

    // Logout: revoke at the provider, forget the session, clear the cookie.
    let logout = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(logout.status, 200, "{}", logout.text());
    assert_eq!(logout.header("clear-site-data"), Some("\"cookies\""));
    assert_eq!(logout.header("cache-control"), Some("no-store"));
    let logout_url = url::Url::parse(logout.json()["logout_url"].as_str().unwrap()).unwrap();
    assert!(logout_url.as_str().starts_with(&format!("{}/session/end", bff.issuer)), "{logout_url}");
    let params: std::collections::HashMap<_, _> = logout_url.query_pairs().into_owned().collect();
    assert_eq!(params["client_id"], bff.client.client_id);
    assert_eq!(params["post_logout_redirect_uri"], format!("{}/", bff.origin));
    assert!(!params.contains_key("id_token_hint"), "an ID token went to the browser without the opt-in");
    assert!(session_cookie(&browser).is_none(), "the cookie was not cleared");
    assert!(!introspect(&bff.issuer, &bff.client, &refresh_token).await, "the refresh token is still active");

    // Signed out, and the old ticket opens nothing.
    assert_eq!(bff.user(&mut browser).await.status, 401);
    browser.set_cookie("__Host-Http-cloakroom", &ticket);
    let replay = bff.user(&mut browser).await;
    assert_eq!(replay.status, 401);
    assert_eq!(replay.json()["error"], "unauthenticated");

    // Nothing the browser received carries a token, and no log line does either.
    let received = String::from_utf8_lossy(&browser.received).into_owned();
    let logs = logs();
    for (what, secret) in [
        ("access token", &access_token),
        ("refresh token", &refresh_token),
        ("client secret", &bff.client.client_secret),
    ] {
        assert!(!received.contains(secret.as_str()), "the browser received the {what}");
        assert!(!logs.contains(secret.as_str()), "a log line contains the {what}");
    }
    assert!(!logs.contains(&ticket[20..]), "a log line contains the session ticket");
    assert!(received_jwts(&received).is_empty(), "the browser received a JWT: {:?}", received_jwts(&received));
}

#[tokio::test]
async fn two_tabs_can_sign_in_at_once_and_each_returns_to_its_page() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    // Both logins start before either finishes: two login cookies, two pending logins.
    let first = bff.authorize(&mut browser, "alice", "/first").await;
    let second = bff.authorize(&mut browser, "alice", "/second").await;
    let logins = browser.cookie_names().into_iter().filter(|n| n.starts_with("__Host-Http-cloakroom-login-")).count();
    assert_eq!(logins, 2);

    let landed_second = browser.get(&second, &[]).await;
    assert_eq!(landed_second.status, 200, "{}", landed_second.text());
    assert!(landed_second.text().contains("url=/second"));
    let ticket_second = session_cookie(&browser).unwrap();

    let landed_first = browser.get(&first, &[]).await;
    assert_eq!(landed_first.status, 200, "{}", landed_first.text());
    assert!(landed_first.text().contains("url=/first"));
    let ticket_first = session_cookie(&browser).unwrap();
    assert_ne!(ticket_first, ticket_second, "a login reused a session id");
    assert_eq!(bff.user(&mut browser).await.status, 200);

    // Each login rotated the id and ended the session the browser held before.
    let mut old = Browser::new();
    old.set_cookie("__Host-Http-cloakroom", &ticket_second);
    assert_eq!(bff.user(&mut old).await.status, 401);
    assert_eq!(bff.session_count().await, 1);
}

#[tokio::test]
async fn client_secret_post_works_for_the_exchange_and_the_revocation() {
    let bff = Bff::start_with(BffOptions { auth_method: "client_secret_post", ..Default::default() }).await;
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "bob", "/").await.status, 200);
    assert_eq!(bff.user(&mut browser).await.json()["sub"], "bob");
    let refresh_token = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().expect("a refresh token");
    assert!(introspect(&bff.issuer, &bff.client, &refresh_token).await);
    let logout = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(logout.status, 200);
    assert!(!introspect(&bff.issuer, &bff.client, &refresh_token).await);
}

#[tokio::test]
async fn health_and_readiness() {
    let bff = Bff::start().await;
    let health = http_call(Method::GET, &format!("{}/healthz", bff.admin), None, &[]).await;
    assert_eq!(health.status, 200);
    let ready = http_call(Method::GET, &format!("{}/readyz", bff.admin), None, &[]).await;
    assert_eq!(ready.status, 200);

    // A provider that cannot be reached: alive, not ready, and logins say so plainly.
    let down = Bff::start_with(BffOptions {
        issuer: Some("http://127.0.0.1:9".into()),
        wait_ready: false,
        ..Default::default()
    })
    .await;
    assert_eq!(http_call(Method::GET, &format!("{}/healthz", down.admin), None, &[]).await.status, 200);
    assert_eq!(http_call(Method::GET, &format!("{}/readyz", down.admin), None, &[]).await.status, 503);
    let mut browser = Browser::new();
    let login = browser.get(&down.url("/bff/login"), &[]).await;
    assert_eq!(login.status, 502);
    assert!(login.header("content-type").unwrap().starts_with("text/html"));
    assert!(login.text().contains("Sign in again"));
    assert!(session_cookie(&browser).is_none());
}

pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
