//! The development issuer (feature `demo`) refuses what a real provider refuses.

use crate::support::*;
use base64::Engine;
use http::Method;
use std::collections::HashMap;

const SECRET: &str = "demo-secret";

async fn demo() -> (Bff, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let bff = Bff::start_with(BffOptions {
        issuer: Some(issuer.clone()),
        client: Some(RegisteredClient { client_id: "cloakroom-demo".into(), client_secret: SECRET.into(), key: None }),
        extra_toml: format!("[demo]\nissuer_listen = \"127.0.0.1:{port}\"\n"),
        ..Default::default()
    })
    .await;
    (bff, issuer)
}

fn params(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

fn form(pairs: &[(&str, &str)]) -> Option<(&'static str, String)> {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    Some(("application/x-www-form-urlencoded", body))
}

fn basic(secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("cloakroom-demo:{secret}")))
}

/// Signs in as alice by posting the issuer's form; returns (code, the authorization params).
async fn code_for(bff: &Bff, issuer: &str, browser: &mut Browser) -> (String, HashMap<String, String>) {
    let (callback, auth) = callback_for(bff, issuer, browser).await;
    (params(&callback)["code"].clone(), auth)
}

/// Like [`code_for`], returning the whole callback URL the issuer redirected to.
async fn callback_for(bff: &Bff, issuer: &str, browser: &mut Browser) -> (String, HashMap<String, String>) {
    let start = browser.get(&bff.url("/bff/login"), &[]).await;
    let authorize = start.location().unwrap().to_string();
    let page = browser.get(&authorize, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("DEVELOPMENT ONLY"), "every page says so");
    let auth = params(&authorize);
    let mut pairs: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("user", "alice"));
    let decision = browser.request(Method::POST, &format!("{issuer}/authorize"), form(&pairs), &[]).await;
    assert_eq!(decision.status, 303);
    let location = decision.location().unwrap().to_string();
    let callback = params(&location);
    assert_eq!(callback["state"], auth["state"]);
    assert_eq!(callback["iss"], issuer);
    (location, auth)
}

#[tokio::test]
async fn authorization_requests_must_be_exact_and_use_pkce() {
    let (bff, issuer) = demo().await;
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login"), &[]).await;
    let authorize = start.location().unwrap().to_string();
    let auth = params(&authorize);

    let with = |change: &dyn Fn(&mut HashMap<String, String>)| {
        let mut p = auth.clone();
        change(&mut p);
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(p.iter()).finish();
        format!("{issuer}/authorize?{query}")
    };
    // A foreign redirect URI is shown as an error, never redirected to.
    let reply = http_call(
        Method::GET,
        &with(&|p| _ = p.insert("redirect_uri".into(), "https://evil.example/cb".into())),
        None,
        &[],
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.location().is_none());
    let reply = http_call(Method::GET, &with(&|p| _ = p.insert("client_id".into(), "other".into())), None, &[]).await;
    assert_eq!(reply.status, 400);
    // Missing PKCE, a plain PKCE method, no nonce: back to the client with an error.
    for change in [
        &(|p: &mut HashMap<String, String>| _ = p.remove("code_challenge")) as &dyn Fn(&mut HashMap<String, String>),
        &|p| _ = p.insert("code_challenge_method".into(), "plain".into()),
        &|p| _ = p.remove("nonce"),
        &|p| _ = p.insert("response_type".into(), "token".into()),
    ] {
        let reply = http_call(Method::GET, &with(change), None, &[]).await;
        assert_eq!(reply.status, 303, "{}", reply.text());
        let back = params(reply.location().unwrap());
        assert!(back.contains_key("error"), "{back:?}");
        assert!(reply.location().unwrap().starts_with(&bff.url("/bff/callback")));
    }
}

#[tokio::test]
async fn codes_are_single_use_pkce_bound_and_need_the_client_secret() {
    let (bff, issuer) = demo().await;
    let mut browser = Browser::new();
    let (code, auth) = code_for(&bff, &issuer, &mut browser).await;
    let token_url = format!("{issuer}/token");
    let redirect = auth["redirect_uri"].clone();
    let exchange = |code: String, verifier: &'static str, secret: &'static str| {
        let (url, redirect) = (token_url.clone(), redirect.clone());
        async move {
            let body = form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", verifier),
            ]);
            http_call(Method::POST, &url, body, &[("authorization", &basic(secret))]).await
        }
    };
    let reply = exchange(code.clone(), "a-wrong-verifier-of-sufficient-length-0123456789", SECRET).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (400, Some("invalid_grant")), "PKCE mismatch accepted");
    // The code was spent by that attempt too: single use.
    let (code, _) = code_for(&bff, &issuer, &mut browser).await;
    let reply = exchange(code.clone(), "irrelevant", "wrong-secret").await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_family() {
    let (bff, issuer) = demo().await;
    let mut browser = Browser::new();
    // A full sign-in through cloakroom, then refresh twice by hand with the tokens it got.
    let (callback, _) = callback_for(&bff, &issuer, &mut browser).await;
    assert_eq!(browser.get(&callback, &[]).await.status, 200);
    assert_eq!(bff.user(&mut browser).await.json()["sub"], "alice");
    let tokens = bff.server.dev_issuer.as_ref().unwrap().issued_tokens();
    let refresh_token = tokens.iter().find(|t| !t.contains('.')).expect("a refresh token").clone();
    let token_url = format!("{issuer}/token");
    let refresh = |token: String| {
        let url = token_url.clone();
        async move {
            http_call(
                Method::POST,
                &url,
                form(&[("grant_type", "refresh_token"), ("refresh_token", &token)]),
                &[("authorization", &basic(SECRET))],
            )
            .await
        }
    };
    let first = refresh(refresh_token.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let rotated = first.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rotated, refresh_token);
    // Replaying the old one is refused, and kills the rotated one too.
    assert_eq!(refresh(refresh_token).await.status, 400);
    let reply = refresh(rotated).await;
    assert_eq!(
        (reply.status, reply.json()["error"].as_str()),
        (400, Some("invalid_grant")),
        "the family survived a replay"
    );
}

#[tokio::test]
async fn userinfo_needs_a_valid_access_token_and_revocation_ends_the_grant() {
    let (bff, issuer) = demo().await;
    let mut browser = Browser::new();
    let (callback, _) = callback_for(&bff, &issuer, &mut browser).await;
    assert_eq!(browser.get(&callback, &[]).await.status, 200);
    let tokens = bff.server.dev_issuer.as_ref().unwrap().issued_tokens();
    let access_token = tokens
        .iter()
        .find(|t| t.split('.').count() == 3 && crate::journey::jwt_claims(t)["client_id"] == "cloakroom-demo")
        .unwrap();
    let userinfo = format!("{issuer}/userinfo");
    let reply = http_call(Method::GET, &userinfo, None, &[("authorization", &format!("Bearer {access_token}"))]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["email"], "alice@example.com");
    assert_eq!(http_call(Method::GET, &userinfo, None, &[]).await.status, 401);
    let forged = format!("{}x", &access_token[..access_token.len() - 1]);
    assert_eq!(
        http_call(Method::GET, &userinfo, None, &[("authorization", &format!("Bearer {forged}"))]).await.status,
        401
    );

    // Logout through cloakroom revokes the refresh token at the issuer: it no longer refreshes.
    let refresh_token = tokens.iter().find(|t| !t.contains('.')).unwrap().clone();
    let logout = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(logout.status, 200);
    let reply = http_call(
        Method::POST,
        &format!("{issuer}/token"),
        form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh_token)]),
        &[("authorization", &basic(SECRET))],
    )
    .await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (400, Some("invalid_grant")));
}
