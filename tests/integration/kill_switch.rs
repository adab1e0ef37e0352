//! The operator's kill switch (issue 29, item 4): the admin listener lists a user's sessions
//! (never a token or a ticket), ends one, all of a user's, or every session; with a token
//! configured, nothing without it; with the Redis store, for every replica at once.

use crate::support::*;
use http::Method;
use serde_json::Value;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

async fn admin(bff: &Bff, method: Method, target: &str, token: Option<&str>) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
    http_call(method, &format!("{}{target}", bff.admin), None, &headers).await
}

async fn signed_in(bff: &Bff, user: &str) -> Browser {
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, user, "/").await.status, 200);
    browser
}

#[tokio::test]
async fn the_operator_lists_and_ends_a_users_sessions_and_every_session_with_the_token_only() {
    let bff =
        Bff::start_with(BffOptions { server_toml: format!("admin_token = \"{TOKEN}\""), ..Default::default() }).await;
    let (mut phone, mut laptop, mut bob) =
        (signed_in(&bff, "alice").await, signed_in(&bff, "alice").await, signed_in(&bff, "bob").await);
    // Without the token, or with another: refused, nothing listed or ended.
    for token in [None, Some("not-the-token"), Some(&TOKEN[1..])] {
        for (method, target) in [
            (Method::GET, "/sessions?sub=alice"),
            (Method::DELETE, "/sessions?sub=alice"),
            (Method::DELETE, "/sessions?all=true"),
        ] {
            let reply = admin(&bff, method.clone(), target, token).await;
            assert_eq!(reply.status, 401, "{method} {target} with {token:?}: {}", reply.text());
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
    assert_eq!(bff.session_count().await, 3, "a refused call ended something");
    // Health and metrics are as they were: no token needed.
    assert_eq!(admin(&bff, Method::GET, "/healthz", None).await.status, 200);

    let listed = admin(&bff, Method::GET, "/sessions?sub=alice", Some(TOKEN)).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let sessions = listed.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{}", listed.text());
    for session in &sessions {
        for field in ["id", "device", "ip", "created_at", "last_seen"] {
            assert!(!session[field].is_null(), "{field} missing: {session}");
        }
    }
    // Never a ticket or a token in what the operator sees.
    let text = listed.text();
    for browser in [&phone, &laptop] {
        assert!(!text.contains(&session_cookie(browser).unwrap()), "a ticket in the listing");
    }
    for token in tokens_issued(&bff.issuer, &bff.client).await {
        assert!(!text.contains(&token), "a token in the listing");
    }
    assert_eq!(listed.json()["provider"], "default");

    // One session, by its id: only under its own user.
    let id = sessions[0]["id"].as_str().unwrap();
    assert_eq!(admin(&bff, Method::DELETE, &format!("/sessions/{id}?sub=bob"), Some(TOKEN)).await.status, 404);
    let one = admin(&bff, Method::DELETE, &format!("/sessions/{id}?sub=alice"), Some(TOKEN)).await;
    assert_eq!((one.status, one.json()["ended"].as_u64()), (200, Some(1)), "{}", one.text());
    let still: Vec<u16> = [bff.user(&mut phone).await.status, bff.user(&mut laptop).await.status].into();
    assert!(still.contains(&401) && still.contains(&200), "{still:?}");
    assert_eq!(bff.session_count().await, 2);
    // All of alice's; bob's stays.
    let all_alices = admin(&bff, Method::DELETE, "/sessions?sub=alice", Some(TOKEN)).await;
    assert_eq!(all_alices.json()["ended"], 1, "{}", all_alices.text());
    assert_eq!((bff.user(&mut phone).await.status, bff.user(&mut laptop).await.status), (401, 401));
    assert_eq!(bff.user(&mut bob).await.status, 200);
    // Bad asks: an unknown provider, no user, a wrong method.
    assert_eq!(admin(&bff, Method::GET, "/sessions?sub=bob&provider=nope", Some(TOKEN)).await.status, 400);
    assert_eq!(admin(&bff, Method::GET, "/sessions", Some(TOKEN)).await.status, 400);
    assert_eq!(admin(&bff, Method::GET, "/sessions?all=true", Some(TOKEN)).await.status, 405);
    assert_eq!(bff.user(&mut bob).await.status, 200);
    // Every session.
    let everything = admin(&bff, Method::DELETE, "/sessions?all=true", Some(TOKEN)).await;
    assert_eq!(everything.json()["ended"], 1, "{}", everything.text());
    assert_eq!(bff.user(&mut bob).await.status, 401);
    assert_eq!(bff.session_count().await, 0);
    // Sign-in works on after it.
    let mut again = signed_in(&bff, "alice").await;
    assert_eq!(bff.user(&mut again).await.status, 200);
}

#[tokio::test]
async fn on_redis_the_kill_switch_of_one_replica_ends_sessions_on_every_replica() {
    let redis = RedisServer::start();
    let toml = format!("store = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"ks:\"", redis.url());
    let (a, b) = crate::replicas::replicas_with(&toml, [None, None]).await;
    let mut alice = Browser::new();
    let callback = a.authorize_from(&mut alice, "alice", &a.direct("/bff/login")).await;
    assert_eq!(alice.get(&a.direct(&callback[a.origin.len()..]), &[]).await.status, 200);
    let mut bob = Browser::new();
    let callback = a.authorize_from(&mut bob, "bob", &a.direct("/bff/login")).await;
    assert_eq!(bob.get(&a.direct(&callback[a.origin.len()..]), &[]).await.status, 200);
    // Signed in through replica a; listed and ended through replica b's admin listener.
    let listed = admin(&b, Method::GET, "/sessions?sub=alice", None).await;
    assert_eq!(listed.json()["sessions"].as_array().map(Vec::len), Some(1), "{}", listed.text());
    let ended = admin(&b, Method::DELETE, "/sessions?sub=alice", None).await;
    assert_eq!(ended.json()["ended"], 1, "{}", ended.text());
    assert_eq!(user_status(&mut alice, &a).await, 401, "alice's session lives on replica a");
    assert_eq!(user_status(&mut bob, &a).await, 200);
    let everything: Value = admin(&b, Method::DELETE, "/sessions?all=true", None).await.json();
    assert_eq!(everything["ended"], 1, "{everything}");
    for replica in [&a, &b] {
        assert_eq!(user_status(&mut bob, replica).await, 401, "bob's session lives on");
    }
}

async fn user_status(browser: &mut Browser, replica: &Bff) -> u16 {
    browser.get(&replica.direct("/bff/user"), &[CSRF]).await.status
}
