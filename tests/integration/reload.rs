//! Hot reload (issue 31, item 2): a new configuration is validated in full and swapped in
//! whole, over the same sessions; a bad one is refused with every reason and the running one
//! stays; what cannot change at run time is named; in-flight calls finish on their own.
//! (SIGHUP to the binary under load: `tests/cli.rs`.)

use crate::support::*;
use cloakroom::config::Config;
use cloakroom::reload::ReloadError;
use http::Method;

fn config(text: &str) -> Config {
    Config::from_toml(text, Vec::new()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn other_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

async fn metric(bff: &Bff, series: &str) -> String {
    let text = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    text.lines().filter(|l| l.starts_with(series)).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn a_reload_changes_routes_rules_and_keys_and_keeps_every_session() {
    let bff = Bff::start().await;
    let (mut alice, mut bob) = (Browser::new(), Browser::new());
    bff.login(&mut alice, "alice", "/").await;
    assert_eq!(alice.get(&bff.url("/api/before"), &[CSRF]).await.status, 200);
    assert_eq!(alice.get(&bff.url("/extra/x"), &[CSRF]).await.status, 404);

    // The new key first (it seals from now on), the old one kept (it still opens); a route
    // added; /api/ now needs a claim alice does not have.
    let rotated = bff
        .toml
        .replace(&format!("keys = [\"{}\"]", test_key()), &format!("keys = [\"{}\", \"{}\"]", other_key(), test_key()))
        .replace(
            "connect_timeout = \"1s\"\ntimeout = \"2s\"",
            "connect_timeout = \"1s\"\ntimeout = \"2s\"\n[[routes.rules]]\nclaim = \"email\"\nequals = \"nobody@example.com\"\n[[routes]]\nprefix = \"/extra/\"\nupstream = \"UPSTREAM/api/\"\ntoken = \"user\"",
        )
        .replace("UPSTREAM", &format!("http://{}", bff.upstream.addr));
    assert_ne!(rotated, bff.toml);
    assert_eq!(bff.server.reload(config(&rotated)).await.unwrap(), 1);

    // Alice's session, sealed under the old key, opens; the new route serves; the rule refuses.
    assert_eq!(alice.get(&bff.url("/extra/x"), &[CSRF]).await.status, 200, "the added route is not served");
    let refused = alice.get(&bff.url("/api/after"), &[CSRF]).await;
    assert_eq!(refused.status, 403, "the rule added by the reload is not applied: {}", refused.text());
    assert_eq!(bff.user(&mut alice).await.status, 200, "the rotation logged alice out");
    // A sign-in now is sealed under the new key: it survives the old key's retirement.
    bff.login(&mut bob, "bob", "/").await;
    let retired = rotated.replace(&format!(", \"{}\"]", test_key()), "]");
    assert_eq!(bff.server.reload(config(&retired)).await.unwrap(), 2);
    assert_eq!(bff.user(&mut bob).await.status, 200, "a session sealed under the new key did not open");
    assert_eq!(bff.user(&mut alice).await.status, 401, "the retired key still opens sessions");
    assert!(metric(&bff, "cloakroom_config_reloads_total{outcome=\"ok\"}").await.ends_with(" 2"));
}

#[tokio::test]
async fn fixed_settings_and_an_unreachable_provider_refuse_the_reload_and_the_running_one_stays() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    // A file that does not validate is refused by the admin endpoint's test; here what only
    // the reload can judge: settings fixed at start, and a provider that cannot be reached.
    let moved = bff
        .toml
        .replace("[server]", "[server]\nlisten = \"127.0.0.1:1\"\nmax_connections = 7")
        .replace("[session]", "[session]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"");
    match bff.server.reload(config(&moved)).await {
        Err(ReloadError::FixedAtStart(keys)) => {
            assert_eq!(keys, ["server.listen", "server.max_connections", "session.store"]);
        }
        other => panic!("expected the fixed settings to be named, got {other:?}"),
    }
    let unreachable = format!(
        "{}\n[[providers]]\nid = \"partner\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"x\"\nclient_secret = \"y\"\n",
        bff.toml
    );
    match bff.server.reload(config(&unreachable)).await {
        Err(ReloadError::ProviderUnavailable(failed)) => assert_eq!(failed[0].0, "partner"),
        other => panic!("expected the unreachable provider to refuse the reload, got {other:?}"),
    }
    // Still the running configuration: same routes, same providers, the session intact.
    assert_eq!(bff.server.live.generation(), 0);
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let providers = browser.get(&bff.url("/bff/providers"), &[CSRF]).await.text();
    assert!(!providers.contains("partner"), "{providers}");
    assert!(metric(&bff, "cloakroom_config_reloads_total{outcome=\"fixed_at_start\"}").await.ends_with(" 1"));
    assert!(metric(&bff, "cloakroom_config_reloads_total{outcome=\"provider_unavailable\"}").await.ends_with(" 1"));
    assert!(logs().contains("configuration reload refused"), "no ERROR line says the reload was refused");
}

#[tokio::test]
async fn the_admin_endpoint_reloads_the_file_or_refuses_it_naming_each_key() {
    let bff = Bff::start_with(BffOptions { config_file: true, ..Default::default() }).await;
    let file = bff.config_file.clone().unwrap();
    let reload_url = format!("{}/reload", bff.admin);
    let reload = || http_call(Method::POST, &reload_url, None, &[]);
    // Unchanged: a reload that takes effect all the same.
    let reply = reload().await;
    assert_eq!((reply.status, reply.json()["generation"].as_u64()), (200, Some(1)), "{}", reply.text());

    std::fs::write(
        &file,
        bff.toml.replace("timeout = \"2s\"", "timeout = \"soon\"").replace("prefix = \"/api/\"", "prefix = \"api\""),
    )
    .unwrap();
    let reply = reload().await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let body = reply.json();
    let keys: Vec<_> =
        body["refused"]["errors"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys, ["routes[0].prefix", "routes[0].timeout"], "{body}");
    assert_eq!(body["generation"], 1);
    assert!(metric(&bff, "cloakroom_config_reloads_total{outcome=\"invalid\"}").await.ends_with(" 1"));

    std::fs::write(&file, bff.toml.replace("[server]", "[server]\nworker_threads = 3")).unwrap();
    let reply = reload().await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert_eq!(reply.json()["refused"]["keys"], serde_json::json!(["server.worker_threads"]));
    assert_eq!(http_call(Method::GET, &format!("{}/reload", bff.admin), None, &[]).await.status, 405);

    // Started from text, there is no file to read again.
    let text_only = Bff::start().await;
    let reply = http_call(Method::POST, &format!("{}/reload", text_only.admin), None, &[]).await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert_eq!(reply.json()["refused"]["error"], "no_config_file");
}

#[tokio::test]
async fn in_flight_calls_finish_on_the_configuration_they_started_with() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/patient/\"\nupstream = \"{upstream}/api/\"\ntimeout = \"10s\"\n".into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    let url = bff.url("/patient/slow");
    let in_flight = tokio::spawn(async move { http_call(Method::GET, &url, None, &[CSRF, ("cookie", &cookie)]).await });
    while bff.upstream.count() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The route the call is on goes away while the upstream is still answering it.
    let without = bff.toml.replace("prefix = \"/patient/\"", "prefix = \"/elsewhere/\"");
    bff.server.reload(config(&without)).await.unwrap();
    assert_eq!(browser.get(&bff.url("/patient/next"), &[CSRF]).await.status, 404, "the removed route still serves");
    let reply = in_flight.await.unwrap();
    assert_eq!((reply.status, reply.text()), (200, "late".to_string()), "the in-flight call was cut off");
}
