//! Front-channel logout (issue 29, item 1): the provider's logout page frames
//! `/bff/frontchannel-logout?iss=…&sid=…`; the cross-site frame carries no cookie, so the session
//! is found by `iss` and `sid` alone, and only that provider's origin may frame the answer.

use crate::support::*;
use serde_json::Value;

fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn logout_url(bff: &Bff, iss: &str, sid: &str) -> String {
    bff.url(&format!("/bff/frontchannel-logout?iss={}&sid={}", encoded(iss), encoded(sid)))
}

async fn signed_in_with_sid(bff: &Bff, user: &str) -> (Browser, String) {
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, user, "/").await.status, 200);
    let sid =
        bff.user(&mut browser).await.json()["claims"]["sid"].as_str().expect("oidc-provider sends sid").to_string();
    (browser, sid)
}

#[tokio::test]
async fn the_providers_sid_ends_that_session_and_nothing_else_does() {
    let bff = Bff::start().await;
    let (mut alice, sid) = signed_in_with_sid(&bff, "alice").await;
    let (mut bob, _) = signed_in_with_sid(&bff, "bob").await;
    // Each from a browser without cookies, as the provider's cross-site frame is. Refused or
    // ending nothing: no sid, no iss, an issuer that is not configured, a sid unknown.
    for (url, status) in [
        (bff.url(&format!("/bff/frontchannel-logout?iss={}", encoded(&bff.issuer))), 400),
        (bff.url(&format!("/bff/frontchannel-logout?sid={}", encoded(&sid))), 400),
        (logout_url(&bff, "https://id.elsewhere.example", &sid), 400),
        (logout_url(&bff, &format!("{}/", bff.issuer), &sid), 400),
        (logout_url(&bff, &bff.issuer, "not-a-sid-of-ours"), 200),
    ] {
        let reply = Browser::new().get(&url, &[]).await;
        assert_eq!(reply.status, status, "{url}: {}", reply.text());
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(bff.user(&mut alice).await.status, 200, "{url} ended the session");
    }
    let post = Browser::new().request(http::Method::POST, &logout_url(&bff, &bff.issuer, &sid), None, &[]).await;
    assert_eq!(post.status, 405);
    assert_eq!(bff.session_count().await, 2);
    // The provider's own: without any cookie, alice's session ends, bob's stays.
    let reply = Browser::new().get(&logout_url(&bff, &bff.issuer, &sid), &[]).await;
    assert_eq!(reply.status, 200);
    let origin = url::Url::parse(&bff.issuer).unwrap().origin().ascii_serialization();
    let policy = reply.header("content-security-policy").unwrap();
    assert!(policy.contains(&format!("frame-ancestors {origin};")), "{policy}");
    assert_eq!(bff.user(&mut alice).await.status, 401);
    assert_eq!(bff.user(&mut bob).await.status, 200);
    assert_eq!(bff.session_count().await, 1);
}

/// Runs `tests/browser/frame.mjs` on a page that frames a logout URL.
async fn framed(page: &str) -> Value {
    let output = tokio::process::Command::new("node")
        .arg("frame.mjs")
        .arg(page)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"))
        .output()
        .await
        .expect("node runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(output.status.success(), "{result}");
    result
}

#[tokio::test]
async fn in_a_real_browser_the_providers_logout_page_ends_the_session_through_an_iframe() {
    let bff = Bff::start().await;
    let (mut alice, sid) = signed_in_with_sid(&bff, "alice").await;
    let (mut bob, _) = signed_in_with_sid(&bff, "bob").await;
    // A page of another site framing the URL: the browser refuses to show the answer there
    // (an unknown sid: the request itself is made before the browser applies frame-ancestors).
    // `localhost` is another origin (and site) than the provider's `127.0.0.1`.
    let elsewhere = bff.issuer.replace("127.0.0.1", "localhost");
    let foreign = format!("{elsewhere}/__test/frame?src={}", encoded(&logout_url(&bff, &bff.issuer, "unknown")));
    let result = framed(&foreign).await;
    assert_eq!(result["rendered"], false, "framed by another origin: {result}");
    // The provider's logout page: rendered in the frame, and alice's session ended though the
    // frame carried no cookie.
    let page = format!("{}/__test/frame?src={}", bff.issuer, encoded(&logout_url(&bff, &bff.issuer, &sid)));
    let result = framed(&page).await;
    assert_eq!((result["status"].as_u64(), &result["rendered"]), (Some(200), &Value::Bool(true)), "{result}");
    assert_eq!(bff.user(&mut alice).await.status, 401, "the front-channel logout did not end the session");
    assert_eq!(bff.user(&mut bob).await.status, 200, "another user's session ended");
}
