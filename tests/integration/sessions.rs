//! Session cookies: bad ones are "no session" (cleared, JSON 401, never a 500), and both
//! timeouts hold, driven by the injected clock.

use crate::support::*;

fn cleared(reply: &Reply) -> bool {
    reply.set_cookies().iter().any(|c| c.starts_with("__Host-cloakroom=;") && c.contains("Max-Age=0"))
}

#[tokio::test]
async fn user_needs_a_session_the_csrf_header_and_a_same_origin_caller() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    let reply = bff.user(&mut browser).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"], "unauthenticated");
    assert!(reply.location().is_none(), "an API-style call got a redirect");

    bff.login(&mut browser, "alice", "/").await;
    let reply = browser.get(&bff.url("/bff/user"), &[]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"], "csrf_header_missing");
    let reply = browser.get(&bff.url("/bff/user"), &[CSRF, ("origin", "https://evil.example")]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"], "cross_site_request");
    let reply = browser.get(&bff.url("/bff/user"), &[CSRF, ("sec-fetch-site", "cross-site")]).await;
    assert_eq!(reply.status, 403);
    let origin = bff.origin.clone();
    let reply =
        browser.get(&bff.url("/bff/user"), &[CSRF, ("origin", &origin), ("sec-fetch-site", "same-origin")]).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn malformed_forged_and_tampered_tickets_are_no_session_and_get_cleared() {
    let bff = Bff::start().await;
    let mut owner = Browser::new();
    bff.login(&mut owner, "alice", "/").await;
    let ticket = session_cookie(&owner).unwrap();
    let mut flipped = ticket.clone().into_bytes();
    flipped[70] = if flipped[70] == b'A' { b'B' } else { b'A' };
    let forged = "A".repeat(86);
    for bad in ["garbage", "", &"%".repeat(86), &forged, &String::from_utf8(flipped).unwrap(), &ticket[..85]] {
        let mut browser = Browser::new();
        browser.set_cookie("__Host-cloakroom", bad);
        let reply = bff.user(&mut browser).await;
        assert_eq!(reply.status, 401, "{bad:?}: {}", reply.text());
        assert_eq!(reply.json()["error"], "unauthenticated");
        if !bad.is_empty() {
            assert!(cleared(&reply), "{bad:?} was not cleared: {:?}", reply.set_cookies());
        }
        let api = browser.get(&bff.url("/api/x"), &[CSRF]).await;
        assert_eq!(api.status, 401, "{bad:?}");
    }
    assert_eq!(bff.upstream.count(), 0);
    // None of that hurt the real session.
    assert_eq!(bff.user(&mut owner).await.status, 200);
}

#[tokio::test]
async fn idle_timeout_slides_with_use_and_ends_unused_sessions() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    for _ in 0..4 {
        bff.clock.advance(20 * 60);
        assert_eq!(bff.user(&mut browser).await.status, 200, "a session in use expired");
    }
    bff.clock.advance(30 * 60);
    let reply = bff.user(&mut browser).await;
    assert_eq!(reply.status, 401);
    assert!(cleared(&reply));
}

#[tokio::test]
async fn absolute_timeout_ends_even_a_busy_session() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    // Used every 25 minutes (idle timeout 30 m) for 11 h 40 m: still signed in.
    for _ in 0..28 {
        bff.clock.advance(25 * 60);
        assert_eq!(bff.user(&mut browser).await.status, 200);
    }
    bff.clock.advance(25 * 60);
    let reply = bff.user(&mut browser).await;
    assert_eq!(reply.status, 401, "the 12 h absolute timeout did not end the session");
    assert!(cleared(&reply));
}

#[tokio::test]
async fn sessions_survive_a_key_rotation_and_die_with_a_retired_key() {
    use cloakroom::session::seal::{KeyRing, MasterKey};
    use cloakroom::session::{Sealer, Session, SessionTicket};
    // Rotation is a property of the sealer the store uses; pinned here at the session level.
    let old = KeyRing::new(vec![MasterKey::from_bytes([1; 32])]).unwrap();
    let rotated = KeyRing::new(vec![MasterKey::from_bytes([2; 32]), MasterKey::from_bytes([1; 32])]).unwrap();
    let retired = KeyRing::new(vec![MasterKey::from_bytes([2; 32])]).unwrap();
    let session: Session = serde_json::from_value(serde_json::json!({
        "sub": "alice", "sid": null, "claims": {}, "access_token": "at", "access_token_expires_at": null,
        "refresh_token": null, "id_token": null, "created_at": 1, "expires_at": 2
    }))
    .unwrap();
    let ticket = SessionTicket::generate();
    let sealed = Sealer::new(old).seal_session(&ticket, &session);
    assert_eq!(Sealer::new(rotated).open_session(&ticket, &sealed.sealed).unwrap().sub, "alice");
    assert!(Sealer::new(retired).open_session(&ticket, &sealed.sealed).is_none());
}

#[tokio::test]
async fn keep_me_signed_in_gives_a_persistent_cookie_only_when_allowed() {
    let session_cookie_header = |reply: &Reply| {
        reply.set_cookies().into_iter().find(|c| c.starts_with("__Host-cloakroom=")).expect("a session cookie")
    };
    let allowed =
        Bff::start_with(BffOptions { session_toml: "allow_remember = true".into(), ..Default::default() }).await;
    let mut browser = Browser::new();
    let callback = allowed.authorize_from(&mut browser, "alice", "/bff/login?returnUrl=%2F&remember=1").await;
    let remembered = session_cookie_header(&browser.get(&callback, &[]).await);
    assert!(remembered.contains("Max-Age=43200"), "{remembered}");

    let mut browser = Browser::new();
    let callback = allowed.authorize_from(&mut browser, "alice", "/bff/login?returnUrl=%2F").await;
    let session_only = session_cookie_header(&browser.get(&callback, &[]).await);
    assert!(!session_only.contains("Max-Age") && !session_only.contains("Expires"), "{session_only}");

    // Not allowed (the default): remember=1 is ignored.
    let strict = Bff::start().await;
    let mut browser = Browser::new();
    let callback = strict.authorize_from(&mut browser, "alice", "/bff/login?remember=1").await;
    let ignored = session_cookie_header(&browser.get(&callback, &[]).await);
    assert!(!ignored.contains("Max-Age"), "{ignored}");

    // A remembered session still ends server-side when idle.
    let mut browser = Browser::new();
    let callback = allowed.authorize_from(&mut browser, "alice", "/bff/login?remember=1").await;
    browser.get(&callback, &[]).await;
    allowed.clock.advance(31 * 60);
    assert_eq!(allowed.user(&mut browser).await.status, 401);
}
