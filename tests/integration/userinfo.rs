//! The userinfo endpoint (issue 15, item 8), against a provider that keeps the profile and group
//! claims there only (OpenID Connect Core's default): without `oidc.userinfo` the session has
//! just the ID token's claims; with it, they are merged (so routes' rules see `groups`), and
//! `oidc.user_claims` limits what `/bff/user` shows the page.

use crate::support::*;
use std::sync::OnceLock;

fn userinfo_provider() -> &'static ProviderProcess {
    static PROVIDER: OnceLock<ProviderProcess> = OnceLock::new();
    PROVIDER.get_or_init(|| start_provider(&[("USERINFO_CLAIMS", "1")]))
}

fn options(oidc: &str) -> BffOptions {
    BffOptions {
        issuer: Some(userinfo_provider().issuer.clone()),
        oidc_toml: oidc.into(),
        extra_routes: "[[routes]]\nprefix = \"/admin/\"\nupstream = \"{upstream}/api/\"\n\
                       [[routes.rules]]\nclaim = \"groups\"\ncontains_any = [\"admins\"]\n"
            .into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn without_userinfo_the_claims_kept_there_are_missing() {
    let bff = Bff::start_with(options("")).await;
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    let claims = bff.user(&mut browser).await.json()["claims"].clone();
    assert!(claims.get("groups").is_none() && claims.get("email").is_none(), "{claims}");
    assert_eq!(browser.get(&bff.url("/admin/x"), &[CSRF]).await.status, 403, "no groups, no admin");
}

#[tokio::test]
async fn with_userinfo_its_claims_join_the_session_and_the_page_sees_only_the_allowed_ones() {
    let bff = Bff::start_with(options("userinfo = true\nuser_claims = [\"sub\", \"name\"]")).await;
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200, "the sign-in with userinfo failed");
    // The rules see every claim: alice's groups came from userinfo.
    let admitted = browser.get(&bff.url("/admin/x"), &[CSRF]).await;
    assert_eq!(admitted.status, 200, "{}", admitted.text());
    let mut bob = Browser::new();
    bff.login(&mut bob, "bob", "/").await;
    assert_eq!(bob.get(&bff.url("/admin/x"), &[CSRF]).await.status, 403);
    // The page sees only what `user_claims` allows.
    let claims = bff.user(&mut browser).await.json()["claims"].clone();
    let mut names: Vec<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["name", "sub"], "{claims}");
    assert_eq!(claims["name"], "Alice Example", "the name came from userinfo");
    // A refresh keeps them (the refreshed ID token does not repeat them).
    bff.clock.advance(310); // expired: this call waits for the refresh
    assert_eq!(browser.get(&bff.url("/admin/x"), &[CSRF]).await.status, 200, "the groups were lost on refresh");
}

/// `oidc.userinfo_interval` (issue 15, item 8): a refresh fetches the userinfo claims again only
/// once the interval has passed since the last fetch, counted at the provider.
#[tokio::test]
async fn a_refresh_fetches_userinfo_again_only_after_the_interval() {
    let bff = Bff::start_with(options("userinfo = true\nuserinfo_interval = \"20m\"")).await;
    let issuer = userinfo_provider().issuer.clone();
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    assert_eq!(userinfo_answers(&issuer, &bff.client).await, 1, "fetched at sign-in");
    // A refresh (the access token lives 300 s) within the interval: no new fetch.
    bff.clock.advance(310); // expired: this call waits for the refresh
    assert_eq!(browser.get(&bff.url("/admin/x"), &[CSRF]).await.status, 200);
    assert_eq!(refreshes_granted(&issuer, &bff.client).await, 1);
    assert_eq!(userinfo_answers(&issuer, &bff.client).await, 1, "fetched again within the interval");
    // Refreshes until the interval has passed: then exactly one more fetch, and the groups stay.
    for _ in 0..4 {
        bff.clock.advance(310); // expired: this call waits for the refresh
        assert_eq!(browser.get(&bff.url("/admin/x"), &[CSRF]).await.status, 200);
    }
    assert_eq!(refreshes_granted(&issuer, &bff.client).await, 5);
    assert_eq!(userinfo_answers(&issuer, &bff.client).await, 2, "not fetched again after the interval");
}
