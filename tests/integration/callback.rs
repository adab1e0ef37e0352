//! `/bff/login` and `/bff/callback`: what must be sent, and every bad callback refused with a
//! readable page, a 4xx, and no session created.

use crate::support::*;
use http::Method;
use std::collections::HashMap;

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

fn with_query(url: &str, change: impl FnOnce(&mut Vec<(String, String)>)) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let mut pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    change(&mut pairs);
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

/// A refused callback: an HTML page with a way to try again, no session, nothing stored.
async fn assert_refused(bff: &Bff, browser: &Browser, reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(reply.text().contains("Sign in again") && reply.text().contains("/bff/login"), "{}", reply.text());
    assert!(!reply.set_cookies().iter().any(|c| c.starts_with("__Host-Http-cloakroom=") && !c.contains("Max-Age=0")));
    assert!(session_cookie(browser).is_none(), "a session cookie was set");
    assert_eq!(bff.session_count().await, 0, "a session was stored");
}

#[tokio::test]
async fn login_sends_pkce_s256_state_and_nonce_and_a_lax_login_cookie() {
    let bff = params_in_the_url().await;
    let mut browser = Browser::new();
    let reply = browser.get(&bff.url("/bff/login?returnUrl=%2Fx"), &[]).await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let params = query(reply.location().unwrap());
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], bff.client.client_id);
    assert_eq!(params["redirect_uri"], bff.url("/bff/callback"));
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43);
    assert!(params["state"].len() >= 43 && params["nonce"].len() >= 43);
    let scopes: Vec<&str> = params["scope"].split(' ').collect();
    assert!(scopes.contains(&"openid") && scopes.contains(&"offline_access"), "{scopes:?}");
    assert_eq!(scopes.iter().filter(|s| **s == "openid").count(), 1);
    let cookie = reply.set_cookies().into_iter().find(|c| c.starts_with("__Host-Http-cloakroom-login-")).unwrap();
    for attribute in ["HttpOnly", "Secure", "Path=/", "SameSite=Lax", "Max-Age=600"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    // Two logins never share state or nonce.
    let again = query(browser.get(&bff.url("/bff/login"), &[]).await.location().unwrap());
    assert_ne!(again["state"], params["state"]);
    assert_ne!(again["nonce"], params["nonce"]);
    assert_ne!(again["code_challenge"], params["code_challenge"]);
}

#[tokio::test]
async fn return_urls_leaving_the_origin_fall_back_to_root() {
    let bff = Bff::start().await;
    for hostile in ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/%2F%2Fevil.example"] {
        let mut browser = Browser::new();
        let page = bff.login(&mut browser, "alice", hostile).await;
        assert_eq!(page.status, 200);
        assert!(page.text().contains(r#"content="0;url=/""#), "{hostile}: {}", page.text());
        assert!(!page.text().contains("evil.example"), "{hostile}");
    }
}

/// A stale callback's first answer: a same-origin page that looks again (`resume=1`), and
/// nothing signed in, stored or set.
async fn assert_looks_again(bff: &Bff, browser: &Browser, reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
    let text = reply.text();
    let start = text.find("url=/bff/callback?resume=1").expect("a page that looks again") + 4;
    let target = text[start..].split('"').next().unwrap().replace("&amp;", "&");
    assert!(session_cookie(browser).is_none(), "a session cookie was set");
    assert_eq!(bff.session_count().await, 0, "a session was stored");
    target
}

#[tokio::test]
async fn a_stale_callback_signs_nobody_in_and_starts_at_most_one_fresh_sign_in() {
    let bff = params_in_the_url().await;
    for stale in ["/bff/callback?code=abc", "/bff/callback?code=abc&state=made-up", "/bff/callback"] {
        let mut browser = Browser::new();
        let reply = browser.get(&bff.url(stale), &[]).await;
        let again = assert_looks_again(&bff, &browser, &reply).await;
        // The second look (same-origin, so a Strict cookie would be here): still no session,
        // so one fresh sign-in, marked.
        let reply = browser.get(&bff.url(&again), &[]).await;
        assert_eq!(reply.status, 302, "{stale}: {}", reply.text());
        assert_eq!(reply.location(), Some("/bff/login?returnUrl=%2F&restart=1"), "{stale}");
        let start = browser.get(&bff.url(reply.location().unwrap()), &[]).await;
        let state = query(start.location().unwrap())["state"].clone();
        assert!(state.ends_with("_restart"), "{state}");
        // That sign-in, stale in turn (its login cookie gone: another browser, or cleared),
        // gets a page to sign in again, never a second sign-in.
        let mut elsewhere = Browser::new();
        let stale_again = format!("/bff/callback?code=abc&state={state}");
        let reply = elsewhere.get(&bff.url(&stale_again), &[]).await;
        let again = assert_looks_again(&bff, &elsewhere, &reply).await;
        let reply = elsewhere.get(&bff.url(&again), &[]).await;
        assert_refused(&bff, &elsewhere, &reply, 400).await;
        assert!(reply.text().contains("already used"), "{}", reply.text());
        // A script's request gets the same as JSON.
        let fetched = elsewhere.get(&bff.url(&again), &[("sec-fetch-mode", "cors")]).await;
        assert_eq!(fetched.status, 400);
        assert_eq!(fetched.json()["error"], "stale_sign_in");
        assert_eq!(fetched.json()["login_url"], "/bff/login?returnUrl=%2F");
    }
    let mut browser = Browser::new();
    let reply = browser.request(Method::POST, &bff.url("/bff/callback?code=abc&state=x"), None, &[]).await;
    assert_eq!(reply.status, 405);
}

/// Signs in through a callback, then puts the login cookie back as it was before (a double
/// submit, or a captured cookie): the callback and the session's ticket.
async fn signed_in_then_login_cookie_put_back(bff: &Bff, browser: &mut Browser, return_to: &str) -> (String, String) {
    let callback = bff.authorize(browser, "alice", return_to).await;
    let login_cookie =
        browser.cookie_names().into_iter().find(|n| n.starts_with("__Host-Http-cloakroom-login-")).unwrap();
    let login_secret = browser.cookie(&login_cookie).unwrap();
    assert_eq!(browser.get(&callback, &[]).await.status, 200);
    let ticket = session_cookie(browser).unwrap();
    browser.set_cookie(&login_cookie, &login_secret);
    (callback, ticket)
}

#[tokio::test]
async fn a_stale_callback_from_a_browser_with_a_session_goes_on_to_the_app() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    // Two submits of the same answer: the second finds its state claimed.
    let (callback, ticket) = signed_in_then_login_cookie_put_back(&bff, &mut browser, "/app/page").await;
    let reply = browser.get(&callback, &[]).await;
    assert_eq!(reply.status, 302, "{}", reply.text());
    assert_eq!(reply.location(), Some("/app/page"), "the return path, read from the login cookie");
    // The back button later (the login cookie long gone): on to `/`.
    let reply = browser.get(&callback, &[]).await;
    assert_eq!((reply.status, reply.location()), (302, Some("/")));
    assert_eq!(session_cookie(&browser), Some(ticket), "the stale callback touched the session");
    assert_eq!(bff.session_count().await, 1);
    assert_eq!(bff.user(&mut browser).await.json()["sub"], "alice");
}

#[tokio::test]
async fn the_providers_error_is_a_page_with_its_code_or_json_for_a_script_never_its_description() {
    let bff = params_in_the_url().await;
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login?returnUrl=%2Fa"), &[]).await;
    let state = query(start.location().unwrap())["state"].clone();
    let denied = format!(
        "/bff/callback?state={state}&error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    );
    let page = browser.get(&bff.url(&denied), &[]).await;
    assert_refused(&bff, &browser, &page, 403).await;
    assert!(page.text().contains("<code>access_denied</code>"), "{}", page.text());
    assert!(!page.text().contains("<script") && !page.text().contains("alert"), "{}", page.text());
    // The same answer, stale now (its state used), asked by a script: JSON, and no new sign-in.
    let fetched = browser.get(&bff.url(&denied), &[("sec-fetch-mode", "cors")]).await;
    assert_eq!(fetched.status, 403, "{}", fetched.text());
    assert_eq!(fetched.json()["error"], "access_denied");
    assert!(!fetched.text().contains("<script") && !fetched.text().contains("alert"), "{}", fetched.text());
    // A silent sign-in's answer on a stale state (prompt=none): its code, never a new sign-in.
    let page = browser.get(&bff.url("/bff/callback?state=gone&error=login_required"), &[]).await;
    assert_eq!(page.status, 400, "{}", page.text());
    assert!(page.text().contains("<code>login_required</code>"), "{}", page.text());
    // A code that is not a plain code is not repeated.
    let page = browser.get(&bff.url("/bff/callback?state=gone&error=%3Cb%3Ex"), &[]).await;
    assert!(page.text().contains("<code>provider_error</code>") && !page.text().contains("<b>"), "{}", page.text());
    assert_eq!(bff.session_count().await, 0);
}

#[tokio::test]
async fn a_callback_delivered_to_another_browser_is_refused_and_the_right_one_still_finishes() {
    let bff = Bff::start().await;
    let mut victim = Browser::new();
    let callback = bff.authorize(&mut victim, "alice", "/").await;
    let mut attacker = Browser::new();
    let reply = attacker.get(&callback, &[]).await;
    let again = assert_looks_again(&bff, &attacker, &reply).await;
    let reply = attacker.get(&bff.url(&again), &[]).await;
    assert_eq!(reply.location(), Some("/bff/login?returnUrl=%2F&restart=1"), "a sign-in of its own, not the victim's");
    assert!(session_cookie(&attacker).is_none());
    assert_eq!(bff.session_count().await, 0);
    // Login CSRF failed, and it did not burn the victim's own login.
    let reply = victim.get(&callback, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(bff.user(&mut victim).await.json()["sub"], "alice");
}

#[tokio::test]
async fn a_replayed_callback_creates_nothing() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    // Even with the login cookie put back (a captured one), the pending login was single use.
    let (callback, ticket) = signed_in_then_login_cookie_put_back(&bff, &mut browser, "/").await;
    let reply = browser.get(&callback, &[]).await;
    assert_eq!((reply.status, reply.location()), (302, Some("/")), "{}", reply.text());
    assert_eq!(session_cookie(&browser), Some(ticket), "the replay touched the session");
    assert_eq!(bff.session_count().await, 1);
}

#[tokio::test]
async fn a_code_replayed_under_a_new_state_is_refused_by_the_provider() {
    let bff = params_in_the_url().await;
    let mut browser = Browser::new();
    let first = bff.authorize(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&first, &[]).await.status, 200);
    let code = query(&first)["code"].clone();

    let mut other = Browser::new();
    let start = other.get(&bff.url("/bff/login"), &[]).await;
    let state = query(start.location().unwrap())["state"].clone();
    let crafted = with_query(&first, |pairs| {
        pairs.retain(|(k, _)| k != "state");
        pairs.push(("state".into(), state));
        pairs.retain(|(k, _)| k != "code");
        pairs.push(("code".into(), code));
    });
    let reply = other.get(&crafted, &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("refused"), "{}", reply.text());
    assert!(session_cookie(&other).is_none());
    assert_eq!(bff.session_count().await, 1);
}

#[tokio::test]
async fn the_issuer_in_the_callback_must_be_ours() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    let callback = bff.authorize(&mut browser, "alice", "/").await;
    assert_eq!(query(&callback)["iss"], bff.issuer, "the provider sends iss (RFC 9207)");
    let forged = with_query(&callback, |pairs| {
        for (k, v) in pairs.iter_mut() {
            if k == "iss" {
                *v = "https://evil.example".into();
            }
        }
    });
    let reply = browser.get(&forged, &[]).await;
    assert_refused(&bff, &browser, &reply, 400).await;
    assert!(reply.text().contains("unexpected identity provider"));

    // The provider promises iss; a callback without it is refused too.
    let callback = bff.authorize(&mut browser, "alice", "/").await;
    let stripped = with_query(&callback, |pairs| pairs.retain(|(k, _)| k != "iss"));
    let reply = browser.get(&stripped, &[]).await;
    assert_refused(&bff, &browser, &reply, 400).await;
}

#[tokio::test]
async fn a_callback_missing_its_code_or_repeating_a_parameter_is_refused() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    let callback = bff.authorize(&mut browser, "alice", "/").await;
    let no_code = with_query(&callback, |pairs| pairs.retain(|(k, _)| k != "code"));
    let reply = browser.get(&no_code, &[]).await;
    assert_refused(&bff, &browser, &reply, 400).await;

    let callback = bff.authorize(&mut browser, "alice", "/").await;
    let state = query(&callback)["state"].clone();
    let doubled = with_query(&callback, |pairs| pairs.push(("state".into(), state)));
    let reply = browser.get(&doubled, &[]).await;
    assert_refused(&bff, &browser, &reply, 400).await;
}

#[tokio::test]
async fn a_cancelled_sign_in_is_a_readable_403() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login?returnUrl=%2Fback"), &[]).await;
    let (page_url, _) = browser.follow(start.location().unwrap(), |_| false).await;
    let uid = page_url.rsplit('/').next().unwrap();
    let aborted = browser.request(Method::POST, &format!("{}/interaction/{uid}/abort", bff.issuer), None, &[]).await;
    let next = url::Url::parse(&bff.issuer).unwrap().join(aborted.location().unwrap()).unwrap().to_string();
    let prefix = bff.url("/bff/callback");
    let (callback, _) = browser.follow(&next, |u| u.starts_with(&prefix)).await;
    assert_eq!(query(&callback)["error"], "access_denied");
    let reply = browser.get(&callback, &[]).await;
    assert_refused(&bff, &browser, &reply, 403).await;
    assert!(reply.text().contains("returnUrl=%2Fback"), "try again keeps the return path: {}", reply.text());
    assert!(!browser.cookie_names().iter().any(|n| n.starts_with("__Host-Http-cloakroom-login-")), "login cookie left");
}

#[tokio::test]
async fn a_pending_login_expires() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    let callback = bff.authorize(&mut browser, "alice", "/").await;
    bff.clock.advance(11 * 60);
    let reply = browser.get(&callback, &[]).await;
    // Stale: the code is not exchanged, nothing is signed in; the browser looks again.
    assert_looks_again(&bff, &browser, &reply).await;
}

fn with_login_params() -> BffOptions {
    let oidc_toml = "login_params = [\"prompt\", \"max_age\", \"login_hint\"]\npar = \"off\"".into();
    BffOptions { oidc_toml, ..Default::default() }
}

/// The authorization request in the URL, where these tests read it (PAR: tests/integration/par.rs).
async fn params_in_the_url() -> Bff {
    Bff::start_with(BffOptions { oidc_toml: "par = \"off\"".into(), ..Default::default() }).await
}

/// Sign-in parameters pass only when allowed, with valid values (issue 16, item 3).
#[tokio::test]
async fn login_parameters_pass_only_when_allowed_and_valid() {
    let closed = Bff::start().await;
    let mut browser = Browser::new();
    let reply = browser.get(&closed.url("/bff/login?prompt=login&returnUrl=%2F"), &[]).await;
    assert_eq!(reply.status, 400, "a parameter not allowed passed");
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
    assert!(reply.set_cookies().is_empty(), "a login was started anyway");

    let open = Bff::start_with(with_login_params()).await;
    let reply = browser.get(&open.url("/bff/login?login_hint=alice&max_age=600&returnUrl=%2F"), &[]).await;
    assert_eq!(reply.status, 302);
    let authorize = url::Url::parse(reply.location().unwrap()).unwrap();
    let params: std::collections::HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!((params["login_hint"].as_str(), params["max_age"].as_str()), ("alice", "600"));
    for bad in ["prompt=none%20login", "max_age=soon", "login_hint=a%0Ab", "ui_locales=fr"] {
        let reply = browser.get(&open.url(&format!("/bff/login?{bad}")), &[]).await;
        assert_eq!(reply.status, 400, "{bad}");
    }
}

/// `prompt=none` that fails comes back to the app with a marker, never an error page, and
/// creates nothing.
#[tokio::test]
async fn a_silent_sign_in_that_fails_returns_to_the_app_with_a_marker() {
    let bff = Bff::start_with(with_login_params()).await;
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login?prompt=none&returnUrl=%2Fapp%3Fx%3D1"), &[]).await;
    assert_eq!(start.status, 302);
    let callback_prefix = bff.url("/bff/callback");
    let (callback, _) = browser.follow(start.location().unwrap(), |u| u.starts_with(&callback_prefix)).await;
    assert!(callback.starts_with(&callback_prefix), "the provider did not come back: {callback}");
    assert!(callback.contains("error=login_required"), "{callback}");
    let reply = browser.get(&callback, &[]).await;
    assert_eq!(reply.status, 302, "{}", reply.text());
    assert_eq!(reply.location(), Some("/app?x=1&login_error=login_required"));
    assert!(session_cookie(&browser).is_none());
    assert!(!browser.cookie_names().iter().any(|n| n.starts_with("__Host-Http-cloakroom-login-")), "login cookie left");
    assert_eq!(bff.session_count().await, 0);
}

/// `max_age` asked: a sign-in whose `auth_time` is older than that is refused (the clock is
/// cloakroom's injected one, five minutes ahead of the provider's).
#[tokio::test]
async fn max_age_is_checked_against_auth_time() {
    let bff = Bff::start_with(with_login_params()).await;
    let mut fresh = Browser::new();
    let callback = bff.authorize_from(&mut fresh, "bob", "/bff/login?max_age=60&returnUrl=%2F").await;
    assert_eq!(fresh.get(&callback, &[]).await.status, 200, "a recent sign-in was refused");

    let mut browser = Browser::new();
    let callback = bff.authorize_from(&mut browser, "alice", "/bff/login?max_age=60&returnUrl=%2F").await;
    bff.clock.advance(300);
    let reply = browser.get(&callback, &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("recent enough"), "{}", reply.text());
    assert!(session_cookie(&browser).is_none());
    assert_eq!(bff.session_count().await, 1, "only bob's session exists");
}
