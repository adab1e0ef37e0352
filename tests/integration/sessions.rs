//! Session cookies: bad ones are "no session" (cleared, JSON 401, never a 500), and both
//! timeouts hold, driven by the injected clock.

use crate::support::*;
use http::Method;

fn cleared(reply: &Reply) -> bool {
    reply.set_cookies().iter().any(|c| c.starts_with("__Host-Http-cloakroom=;") && c.contains("Max-Age=0"))
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
        browser.set_cookie("__Host-Http-cloakroom", bad);
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
    use cloakroom::crypto::seal::{KeyRing, MasterKey};
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
        reply.set_cookies().into_iter().find(|c| c.starts_with("__Host-Http-cloakroom=")).expect("a session cookie")
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

#[tokio::test]
async fn users_see_and_end_their_own_sessions_only() {
    let bff = Bff::start().await;
    let mut laptop = Browser::new();
    laptop.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0".into());
    let mut phone = Browser::new();
    phone.user_agent =
        Some("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36".into());
    let mut bob = Browser::new();
    bff.login(&mut laptop, "alice", "/").await;
    bff.login(&mut phone, "alice", "/").await;
    bff.login(&mut bob, "bob", "/").await;
    bff.clock.advance(60);
    assert_eq!(bff.user(&mut phone).await.status, 200);
    bff.clock.advance(60);

    // Listing is itself a use of the laptop's session: it comes first, then the phone.
    let reply = list(&bff, &mut laptop).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let sessions = reply.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(
        (sessions[0]["device"].as_str(), sessions[0]["current"].as_bool()),
        (Some("Firefox on Linux"), Some(true))
    );
    assert_eq!(
        (sessions[1]["device"].as_str(), sessions[1]["current"].as_bool()),
        (Some("Chrome on Android"), Some(false))
    );
    let (laptop_seen, phone_seen) =
        (sessions[0]["last_seen"].as_u64().unwrap(), sessions[1]["last_seen"].as_u64().unwrap());
    assert_eq!(laptop_seen - phone_seen, 60, "last_seen is not the time of last use");
    for session in &sessions {
        assert_eq!(session["ip"], "127.0.0.1");
        let id = session["id"].as_str().unwrap();
        assert_eq!(id.len(), 22);
        for ticket in [session_cookie(&laptop).unwrap(), session_cookie(&phone).unwrap()] {
            assert!(!ticket.contains(id), "a listing id is ticket material");
        }
    }
    let laptop_id = sessions[0]["id"].as_str().unwrap().to_string();
    let phone_id = sessions[1]["id"].as_str().unwrap().to_string();
    let bobs = list(&bff, &mut bob).await.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(bobs.len(), 1);
    let bob_id = bobs[0]["id"].as_str().unwrap().to_string();

    // Refusals: no header, no session, someone else's session, an unknown id.
    assert_eq!(laptop.get(&bff.url("/bff/sessions"), &[]).await.status, 403);
    assert_eq!(delete(&bff, &mut laptop, &phone_id, vec![]).await.status, 403);
    assert_eq!(list(&bff, &mut Browser::new()).await.status, 401);
    let reply = delete(&bff, &mut laptop, &bob_id, vec![CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (404, Some("not_found")));
    assert_eq!(delete(&bff, &mut laptop, "no-such-session-id", vec![CSRF]).await.status, 404);
    assert_eq!(bff.user(&mut bob).await.status, 200, "another user's session was touched");
    assert_eq!(bff.user(&mut phone).await.status, 200);

    // Ending the phone's session from the laptop.
    let reply = delete(&bff, &mut laptop, &phone_id, vec![CSRF]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(bff.user(&mut phone).await.status, 401);
    assert_eq!(bff.user(&mut laptop).await.status, 200);
    assert_eq!(list(&bff, &mut laptop).await.json()["sessions"].as_array().unwrap().len(), 1);

    // Ending its own session signs the laptop out and clears its cookie.
    let reply = delete(&bff, &mut laptop, &laptop_id, vec![CSRF]).await;
    assert_eq!(reply.status, 200);
    assert!(session_cookie(&laptop).is_none());
    assert_eq!(bff.user(&mut laptop).await.status, 401);
}

async fn list(bff: &Bff, browser: &mut Browser) -> Reply {
    browser.get(&bff.url("/bff/sessions"), &[CSRF]).await
}

async fn delete(bff: &Bff, browser: &mut Browser, id: &str, headers: Vec<(&str, &str)>) -> Reply {
    browser.request(http::Method::DELETE, &bff.url(&format!("/bff/sessions/{id}")), None, &headers).await
}

/// `/bff/user?slide=false` answers without counting as a use (issue 16, item 5): an SPA that
/// polls still idles out (idle timeout 30 min); the same polling with sliding keeps it alive.
#[tokio::test]
async fn polling_without_sliding_lets_the_session_idle_out() {
    use cloakroom::clock::Clock;
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let signed_in_at = bff.clock.now();
    bff.clock.advance(20 * 60);
    let reply = browser.get(&bff.url("/bff/user?slide=false"), &[CSRF]).await;
    assert_eq!(reply.status, 200);
    let deadline = reply.json()["session"]["idle_expires_at"].as_u64().unwrap();
    assert_eq!(deadline, signed_in_at + 30 * 60, "the deadline reported moved");
    bff.clock.advance(20 * 60);
    let reply = browser.get(&bff.url("/bff/user?slide=false"), &[CSRF]).await;
    assert_eq!(reply.status, 401, "polls without sliding kept the session alive");
    assert!(cleared(&reply));

    // The same polling, sliding: alive.
    let mut sliding = Browser::new();
    bff.login(&mut sliding, "bob", "/").await;
    for _ in 0..2 {
        bff.clock.advance(20 * 60);
        assert_eq!(sliding.get(&bff.url("/bff/user"), &[CSRF]).await.status, 200);
    }
}

/// The session cookie's name follows RFC 10017 (`__Host-Http-`, issue 16, item 6); a session
/// under the name earlier versions used keeps working, moves to the new name with the next
/// answer, and never goes upstream; `legacy_cookie_names = []` stops reading it.
#[tokio::test]
async fn a_session_under_the_previous_cookie_name_is_kept_and_renamed() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/open/\"\nupstream = \"{upstream}/api/\"\ntoken = \"none\"\n".into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(bff.cookie_name(), "__Host-Http-cloakroom");
    let ticket = session_cookie(&browser).unwrap();
    let old = format!("__Host-cloakroom={ticket}");

    let user = http_call(Method::GET, &bff.url("/bff/user"), None, &[CSRF, ("cookie", &old)]).await;
    assert_eq!(user.status, 200, "{}", user.text());
    let set = user.set_cookies();
    assert!(
        set.iter().any(|c| c.starts_with(&format!("__Host-Http-cloakroom={ticket};")) && c.contains("HttpOnly")),
        "{set:?}"
    );
    assert!(set.iter().any(|c| c.starts_with("__Host-cloakroom=;") && c.contains("Max-Age=0")), "{set:?}");

    let api = http_call(Method::GET, &bff.url("/api/x"), None, &[CSRF, ("cookie", &format!("a=1; {old}"))]).await;
    assert_eq!(api.status, 200);
    let open = http_call(Method::GET, &bff.url("/open/x"), None, &[CSRF, ("cookie", &format!("a=1; {old}"))]).await;
    assert_eq!(open.status, 200);
    // Issue 26, item 3: the rename rides only on answers cloakroom makes itself; a proxied answer
    // a shared cache may keep (`public, max-age=600`) carries no ticket, and keeps its caching.
    for path in ["/open/public", "/api/public"] {
        let public = http_call(Method::GET, &bff.url(path), None, &[CSRF, ("cookie", &old)]).await;
        assert_eq!(public.status, 200, "{path}");
        assert_eq!(public.header("cache-control"), Some("public, max-age=600"), "{path}");
        assert!(public.set_cookies().iter().all(|c| !c.contains("cloakroom")), "{path}: {:?}", public.set_cookies());
    }
    assert_eq!(user.header("cache-control"), Some("no-store"), "the answer that renames is never stored");
    for seen in bff.upstream.requests() {
        let cookie = seen.headers.get("cookie").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(!cookie.contains("cloakroom"), "the earlier cookie went upstream: {cookie}");
    }

    // Both names: the current one wins, the earlier one is only deleted.
    let both = format!("__Host-cloakroom=junk; __Host-Http-cloakroom={ticket}");
    let user = http_call(Method::GET, &bff.url("/bff/user"), None, &[CSRF, ("cookie", &both)]).await;
    assert_eq!(user.status, 200);
    assert_eq!(user.set_cookies().len(), 1, "{:?}", user.set_cookies());

    let strict =
        Bff::start_with(BffOptions { session_toml: "legacy_cookie_names = []".into(), ..Default::default() }).await;
    let mut browser = Browser::new();
    strict.login(&mut browser, "alice", "/").await;
    let old = format!("__Host-cloakroom={}", session_cookie(&browser).unwrap());
    let user = http_call(Method::GET, &strict.url("/bff/user"), None, &[CSRF, ("cookie", &old)]).await;
    assert_eq!(user.status, 401, "an earlier name was read although none is configured");
    assert!(user.set_cookies().iter().all(|c| !c.starts_with("__Host-Http-cloakroom=e")));
}
