//! Several frontends on one instance (issue 31, item 3): each chosen by host, with its own
//! `public_url`, client registration, cookie and routes; a ticket from one opens nothing at
//! another, and nothing is forwarded for it.

use crate::support::*;
use http::Method;

#[tokio::test]
async fn two_frontends_keep_their_own_sign_in_cookie_and_routes_and_no_ticket_crosses() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let issuer = provider().issuer.clone();
    let client = register_client_returning_to(&issuer, &front, "client_secret_basic", true, None, None).await;
    let bff = Bff::start_with(BffOptions {
        main_listener: Some(listener),
        extra_toml: format!(
            "[[frontends]]\npublic_url = \"{front}\"\n[frontends.oidc]\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
             [frontends.session]\ncookie_name = \"__Host-Http-admin\"\n\
             [[frontends.routes]]\nprefix = \"/admin-api/\"\nupstream = \"{{upstream}}/admin/\"\ntoken = \"user\"\n",
            client.client_id, client.client_secret
        ),
        ..Default::default()
    })
    .await;
    let (mut base, mut admin) = (Browser::new(), Browser::new());
    bff.login(&mut base, "alice", "/").await;
    let callback = authorize_at(&mut admin, &front, &issuer, "bob", "/bff/login").await;
    assert!(callback.starts_with(&format!("{front}/bff/callback")), "{callback}");
    assert_eq!(admin.get(&callback, &[]).await.status, 200);
    let admin_ticket = admin.cookie("__Host-Http-admin").expect("the frontend's own cookie");
    assert!(admin.cookie(bff.cookie_name()).is_none(), "the frontend set the top level's cookie");
    let base_ticket = session_cookie(&base).unwrap();

    // Each frontend: its own user, its own routes, the other's not there.
    assert_eq!(bff.user(&mut base).await.json()["sub"], "alice");
    assert_eq!(admin.get(&format!("{front}/bff/user"), &[CSRF]).await.json()["sub"], "bob");
    let reply = admin.get(&format!("{front}/admin-api/reports"), &[CSRF]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = bff.upstream.requests().pop().unwrap();
    assert_eq!(seen.uri, "/admin/reports");
    assert!(seen.headers["authorization"].to_str().unwrap().starts_with("Bearer "));
    assert_eq!(
        admin.get(&format!("{front}/api/x"), &[CSRF]).await.status,
        404,
        "the top level's route at the frontend"
    );
    assert_eq!(base.get(&bff.url("/admin-api/x"), &[CSRF]).await.status, 404, "the frontend's route at the top level");

    // A ticket carried to the other frontend, under that frontend's cookie name: no session,
    // the cookie cleared, nothing forwarded.
    let before = bff.upstream.count();
    let crossed = http_call(
        Method::GET,
        &format!("{front}/admin-api/x"),
        None,
        &[CSRF, ("cookie", &format!("__Host-Http-admin={base_ticket}"))],
    )
    .await;
    assert_eq!(crossed.status, 401, "{}", crossed.text());
    let crossed_back = http_call(
        Method::GET,
        &bff.url("/api/x"),
        None,
        &[CSRF, ("cookie", &format!("{}={admin_ticket}", bff.cookie_name()))],
    )
    .await;
    assert_eq!(crossed_back.status, 401, "{}", crossed_back.text());
    assert_eq!(bff.upstream.count(), before, "a crossed ticket reached the upstream");
    // And both sessions still work where they belong, across a reload too (each frontend's
    // keys are derived again, the same).
    let config = cloakroom::config::Config::from_toml(&bff.toml, Vec::new()).unwrap();
    assert_eq!(bff.server.reload(config).await.unwrap(), 1);
    assert_eq!(base.get(&bff.url("/api/after"), &[CSRF]).await.status, 200);
    assert_eq!(admin.get(&format!("{front}/admin-api/after"), &[CSRF]).await.status, 200);
}
