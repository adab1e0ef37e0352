//! Step-up authentication (issue 16, item 4): routes that need a stronger (`acr`) or more recent
//! (`auth_time`) sign-in, and upstreams that ask for one themselves (RFC 9470), against the real
//! provider, which offers a password and an "MFA" sign-in and prompts again when a stronger one
//! is asked for.

use crate::support::*;
use http::Method;

fn options() -> BffOptions {
    BffOptions {
        oidc_toml: "login_params = [\"acr_values\", \"max_age\"]".into(),
        extra_routes: "[[routes]]\nprefix = \"/pay/\"\nupstream = \"{upstream}/api/\"\n\
                       step_up = { acr_values = [\"mfa\"] }\n\
                       [[routes]]\nprefix = \"/recent/\"\nupstream = \"{upstream}/api/\"\n\
                       step_up = { max_age = \"5m\" }\n\
                       [[routes]]\nprefix = \"/open/\"\nupstream = \"{upstream}/api/\"\ntoken = \"none\"\n"
            .into(),
        ..Default::default()
    }
}

/// The `login_url` of a `step_up_required` answer, completed with a return path.
fn step_up_login(reply: &Reply, return_to: &str) -> String {
    let login = reply.json()["login_url"].as_str().unwrap().to_string();
    assert!(login.starts_with("/bff/login?") && login.ends_with("&returnUrl="), "{login}");
    format!("{login}{}", url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>())
}

#[tokio::test]
async fn a_route_needing_mfa_refuses_a_password_session_until_the_step_up() {
    let bff = Bff::start_with(options()).await;
    let mut alice = Browser::new();
    bff.login(&mut alice, "alice", "/").await;
    let password_ticket = session_cookie(&alice).unwrap();
    let acr = bff.user(&mut alice).await.json()["claims"]["acr"].clone();
    assert!(acr.is_null() || acr == "pwd", "{acr}");

    let refused = alice.get(&bff.url("/pay/transfer"), &[CSRF]).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let body = refused.json();
    assert_eq!((body["error"].as_str(), body["acr_values"].as_str()), (Some("step_up_required"), Some("mfa")));
    assert!(refused.location().is_none() && refused.headers.get("set-cookie").is_none());
    assert_eq!(bff.upstream.count(), 0, "a call short of the step-up reached the upstream");
    assert_eq!(alice.get(&bff.url("/api/x"), &[CSRF]).await.status, 200, "other routes need no step-up");

    // The step-up: the provider prompts again (its session is only `pwd`), the user uses MFA.
    let callback = bff.authorize_from(&mut alice, "alice&mfa=1", &step_up_login(&refused, "/pay-page")).await;
    let landed = alice.get(&callback, &[]).await;
    assert_eq!(landed.status, 200, "{}", landed.text());
    assert!(landed.text().contains("/pay-page"));
    let mfa_ticket = session_cookie(&alice).unwrap();
    assert_ne!(mfa_ticket, password_ticket, "the stronger session has a new ticket");
    assert_eq!(bff.user(&mut alice).await.json()["claims"]["acr"], "mfa");
    let admitted = alice.get(&bff.url("/pay/transfer"), &[CSRF]).await;
    assert_eq!(admitted.status, 200, "{}", admitted.text());
    assert!(bff.upstream.requests().pop().unwrap().headers.contains_key("authorization"));

    // The weaker session ended with the step-up.
    let old = http_call(
        Method::GET,
        &bff.url("/api/x"),
        None,
        &[CSRF, ("cookie", &format!("__Host-Http-cloakroom={password_ticket}"))],
    )
    .await;
    assert_eq!(old.status, 401, "the password session outlived its step-up");
    assert_eq!(bff.session_count().await, 1);
    let metrics = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert!(metrics.contains("cloakroom_step_up_required_total{route=\"/pay/\"} 1"), "{metrics}");
}

/// Issue 26, item 5: with the provider on another site (every real deployment), the provider's
/// redirect to the callback is cross-site and carries no `SameSite=Strict` session cookie. The
/// weaker session still ends at the step-up (and at a plain re-login): `/bff/login`, a same-site
/// navigation, saw it, and the pending login remembers it. Two step-ups leave one session.
#[tokio::test]
async fn a_step_up_through_a_provider_on_another_site_ends_the_weaker_session() {
    let bff = Bff::start_with(options()).await;
    let mut alice = Browser::new();
    bff.login(&mut alice, "alice", "/").await;
    let mut tickets = vec![session_cookie(&alice).unwrap()];
    for round in 0..2 {
        let refused = alice.get(&bff.url("/pay/transfer"), &[CSRF]).await;
        let login = if round == 0 { step_up_login(&refused, "/pay-page") } else { "/bff/login?returnUrl=%2F".into() };
        let callback = bff.authorize_from(&mut alice, "alice&mfa=1", &login).await;
        // The provider's redirect back is cross-site: the Strict session cookie stays home.
        alice.forget(bff.cookie_name());
        let landed = alice.get(&callback, &[]).await;
        assert_eq!(landed.status, 200, "{}", landed.text());
        let ticket = session_cookie(&alice).unwrap();
        assert!(!tickets.contains(&ticket), "a new ticket at each sign-in");
        tickets.push(ticket);
        assert_eq!(bff.session_count().await, 1, "round {round}: the session the sign-in replaced lives on");
    }
    for old in &tickets[..2] {
        let cookie = format!("{}={old}", bff.cookie_name());
        let reply = http_call(Method::GET, &bff.url("/api/x"), None, &[CSRF, ("cookie", &cookie)]).await;
        assert_eq!(reply.status, 401, "a replaced session still answers");
    }
    assert_eq!(alice.get(&bff.url("/api/x"), &[CSRF]).await.status, 200, "the latest session works");
    let sessions = alice.get(&bff.url("/bff/sessions"), &[CSRF]).await;
    assert_eq!(sessions.json()["sessions"].as_array().map(Vec::len), Some(1), "{}", sessions.text());
}

/// The provider is free to answer a weaker `acr` than asked (it is a voluntary claim): that
/// sign-in does not succeed, and the browser keeps the session it had.
#[tokio::test]
async fn a_step_up_that_comes_back_weaker_is_refused_and_the_old_session_kept() {
    let bff = Bff::start_with(options()).await;
    let mut alice = Browser::new();
    bff.login(&mut alice, "alice", "/").await;
    let ticket = session_cookie(&alice).unwrap();
    let refused = alice.get(&bff.url("/pay/transfer"), &[CSRF]).await;
    // At the provider's prompt the user signs in with the password again.
    let callback = bff.authorize_from(&mut alice, "alice", &step_up_login(&refused, "/")).await;
    let reply = alice.get(&callback, &[]).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("stronger sign-in"), "{}", reply.text());
    assert_eq!(session_cookie(&alice).as_deref(), Some(ticket.as_str()), "the session changed");
    assert_eq!(bff.session_count().await, 1, "a weaker sign-in created a session");
    assert_eq!(bff.user(&mut alice).await.status, 200, "the session the browser had was ended");
    assert_eq!(alice.get(&bff.url("/pay/transfer"), &[CSRF]).await.status, 401);
    assert_eq!(bff.upstream.count(), 0);
}

/// `max_age` on a route: the sign-in must be that recent by cloakroom's (injected) clock; a
/// step-up sign-in with `max_age` makes it so, until the time passes again.
#[tokio::test]
async fn a_route_needing_a_recent_sign_in_asks_again_once_it_is_old() {
    let bff = Bff::start_with(options()).await;
    let mut alice = Browser::new();
    bff.login(&mut alice, "alice", "/").await;
    let first = alice.get(&bff.url("/recent/x"), &[CSRF]).await;
    let asked = first.json();
    // Whether or not the first sign-in's ID token carried auth_time, ten minutes on it is too old.
    if first.status == 200 {
        bff.clock.advance(600);
        let again = alice.get(&bff.url("/recent/x"), &[CSRF]).await;
        assert_eq!(again.status, 401, "{}", again.text());
    } else {
        assert_eq!((first.status, asked["error"].as_str()), (401, Some("step_up_required")), "{}", first.text());
    }
    let refused = alice.get(&bff.url("/recent/x"), &[CSRF]).await;
    assert_eq!(refused.json()["max_age"], 300);
    let before = bff.upstream.count();
    let login = step_up_login(&refused, "/");
    assert!(login.contains("max_age=300"), "{login}");
    let callback = bff.authorize_from(&mut alice, "alice", &login).await;
    let landed = alice.get(&callback, &[]).await;
    assert_eq!(landed.status, 200, "{}", landed.text());
    assert_eq!(alice.get(&bff.url("/recent/x"), &[CSRF]).await.status, 200);
    assert_eq!(bff.upstream.count(), before + 1);
    // Well past max_age and the clock skew allowed for the provider's clock (oidc.clock_skew, 60 s,
    // as at the callback), too old again (a refresh happens on the way: the access token lives
    // five minutes).
    bff.clock.advance(420);
    let stale = alice.get(&bff.url("/recent/x"), &[CSRF]).await;
    assert_eq!((stale.status, stale.json()["error"].as_str()), (401, Some("step_up_required")), "{}", stale.text());
    assert_eq!(bff.upstream.count(), before + 1);
    assert_eq!(alice.get(&bff.url("/api/x"), &[CSRF]).await.status, 200, "the session itself goes on");
}

/// An upstream's own RFC 9470 challenge becomes the same answer; on a route that sent no user
/// token it is the upstream's answer as it is.
#[tokio::test]
async fn an_upstreams_rfc_9470_challenge_becomes_step_up_required() {
    let bff = Bff::start_with(options()).await;
    let mut alice = Browser::new();
    bff.login(&mut alice, "alice", "/").await;
    let reply = alice.get(&bff.url("/api/payments/step-up"), &[CSRF]).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"], "step_up_required");
    assert_eq!((body["acr_values"].as_str(), body["max_age"].as_u64()), (Some("mfa"), Some(120)));
    assert_eq!(body["login_url"], "/bff/login?acr_values=mfa&max_age=120&returnUrl=");
    assert!(!reply.text().contains("mfa please"), "the upstream's body went to the SPA");
    assert!(reply.headers.get("www-authenticate").is_none());
    assert_eq!(bff.upstream.count(), 1);

    let anonymous = http_call(Method::GET, &bff.url("/open/step-up"), None, &[CSRF]).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.text().contains("mfa please"), "{}", anonymous.text());
    assert!(anonymous.headers.get("www-authenticate").is_some());
}
