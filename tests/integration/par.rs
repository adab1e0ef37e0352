//! Pushed Authorization Requests (RFC 9126, issue 15 item 7): with a provider that offers them,
//! the browser carries only `client_id` and a `request_uri`; the parameters went to the provider
//! directly, authenticated as the client.

use crate::support::*;
use std::collections::HashMap;

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

#[tokio::test]
async fn the_browser_carries_only_a_request_uri_and_the_sign_in_completes() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login?returnUrl=%2Fapp"), &[]).await;
    assert_eq!(start.status, 302);
    let authorize = start.location().unwrap().to_string();
    let params = query(&authorize);
    let mut names: Vec<&str> = params.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["client_id", "request_uri"], "{authorize}");
    assert!(params["request_uri"].starts_with("urn:ietf:params:oauth:request_uri:"), "{authorize}");
    // The same sign-in, through the provider, completes.
    let landed = bff.login(&mut browser, "alice", "/app").await;
    assert_eq!(landed.status, 200, "{}", landed.text());
    assert_eq!(bff.user(&mut browser).await.status, 200);
}

#[tokio::test]
async fn par_off_sends_the_request_in_the_url() {
    let bff = Bff::start_with(BffOptions { oidc_toml: "par = \"off\"".into(), ..Default::default() }).await;
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login?returnUrl=%2F"), &[]).await;
    let params = query(start.location().unwrap());
    assert!(
        params.contains_key("code_challenge") && params.contains_key("state") && !params.contains_key("request_uri")
    );
}

/// A push the provider refuses (here: cloakroom's credentials are wrong) is a configuration
/// fault shown as such; the browser is not sent anywhere.
#[tokio::test]
async fn a_refused_push_sends_the_browser_nowhere() {
    let good = Bff::start().await;
    let wrong = RegisteredClient { client_secret: "not-the-secret".into(), ..good.client.clone() };
    let bff = Bff::start_with(BffOptions { client: Some(wrong), ..Default::default() }).await;
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login?returnUrl=%2F"), &[]).await;
    assert_eq!(start.status, 502, "{}", start.text());
    assert!(start.location().is_none());
    assert!(start.text().contains("Sign in again"));
}

/// `par = "required"` with a provider that offers no PAR: not ready, no sign-in starts.
#[cfg(feature = "demo")]
#[tokio::test]
async fn par_required_without_a_par_endpoint_is_not_ready() {
    let issuer_port = free_port();
    let bff = Bff::start_with(BffOptions {
        issuer: Some(format!("http://127.0.0.1:{issuer_port}")),
        client: Some(RegisteredClient {
            client_id: "cloakroom-demo".into(),
            client_secret: "demo-secret".into(),
            key: None,
        }),
        oidc_toml: "par = \"required\"".into(),
        extra_toml: format!("[demo]\nissuer_listen = \"127.0.0.1:{issuer_port}\"\n"),
        wait_ready: false,
        ..Default::default()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let ready = http_call(http::Method::GET, &format!("{}/readyz", bff.admin), None, &[]).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login?returnUrl=%2F"), &[]).await;
    assert!(start.status >= 500 && start.location().is_none(), "{}", start.status);
}

/// Issue 27, item 3: with PAR offered, the sign-in first pushes its request to the provider; a
/// provider that hangs (frozen with SIGSTOP) held the browser's `/bff/login` with no answer for
/// as long as `oidc.timeout`. It now gets a readable error page within a few seconds, with a
/// way to try again, and the sign-in works once the provider is back.
#[tokio::test]
async fn a_hung_provider_gets_the_browser_a_readable_page_in_a_few_seconds() {
    let provider = start_provider(&[]);
    let bff = Bff::start_with(BffOptions { issuer: Some(provider.issuer.clone()), ..Default::default() }).await;
    let mut browser = Browser::new();
    assert_eq!(browser.get(&bff.url("/bff/login?returnUrl=%2F"), &[]).await.status, 302, "PAR works");
    provider.signal("STOP");
    let started = std::time::Instant::now();
    let page = browser.get(&bff.url("/bff/login?returnUrl=%2Fapp"), &[("accept", "text/html")]).await;
    let waited = started.elapsed();
    provider.signal("CONT");
    assert!(page.status >= 500, "{} {}", page.status, page.text());
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")), "not a page");
    assert!(page.text().contains("/bff/login?returnUrl=%2Fapp"), "no way to try again: {}", page.text());
    assert!(waited < std::time::Duration::from_secs(8), "the browser waited {waited:?}");
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200, "the provider is back");
}
