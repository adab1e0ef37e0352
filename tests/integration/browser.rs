//! The journey in a real browser (headless Chromium) against the real provider, serving the
//! demo SPA: sign in through the provider's form, claims, API call, session list, sign out.
//! Everything the browser received or could read is scanned for the actual token values the
//! provider issued (taken from the provider's side) and for anything shaped like a JWT.

use crate::support::*;
use serde_json::Value;

fn jwt_shaped(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|part| {
            let pieces: Vec<&str> = part.split('.').collect();
            pieces.len() == 3 && pieces[0].starts_with("eyJ") && pieces[1].len() > 10
        })
        .map(String::from)
        .collect()
}

pub(crate) const SPA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/spa-demo");

/// Runs `tests/browser/journey.mjs` against `origin` (with the demo's step-up when asked);
/// returns its record (failing loudly).
pub(crate) async fn run_journey(origin: &str, step_up: bool) -> Value {
    run_journey_with(origin, step_up, &[]).await
}

/// With extra environment for the journey (e.g. `GLEWLWYD_PASSWORD`: sign in at glewlwyd's page).
async fn run_journey_with(origin: &str, step_up: bool, env: &[(&str, &str)]) -> Value {
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(browser_dir).join("node_modules/playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "browser tests need Debian's chromium and playwright-core (./scripts/test installs both)"
    );
    // One file per cloakroom (its port): journeys of parallel tests must not share a record.
    let port = origin.rsplit(':').next().unwrap_or("0");
    let output = std::env::temp_dir().join(format!("cloakroom-journey-{}-{port}.json", std::process::id()));
    let status = tokio::process::Command::new("node")
        .arg("journey.mjs")
        .arg(origin)
        .arg(&output)
        .args(if step_up { &["alice", "step-up"][..] } else { &[] })
        .envs(env.iter().copied())
        .current_dir(browser_dir)
        .status()
        .await
        .expect("node runs");
    let text = std::fs::read_to_string(&output).expect("the journey wrote its record");
    let record: Value = serde_json::from_str(&text).unwrap();
    assert!(
        status.success(),
        "the browser journey failed after {}: {} (record kept in {})",
        record["steps"],
        record["error"],
        output.display()
    );
    let _ = std::fs::remove_file(&output);
    assert_eq!(record["steps"].as_array().unwrap().len(), if step_up { 7 } else { 5 }, "{}", record["steps"]);
    record
}

/// Everything the browser received, sent or could read is free of `tokens` and of JWT shapes;
/// the cookie is stored as specified; the first page after login carried it.
pub(crate) fn assert_token_free(record: &Value, tokens: &[String], origin: &str) {
    assert!(tokens.len() >= 3, "expected access, refresh and ID tokens, got {}", tokens.len());
    for (what, value) in [
        ("responses", &record["responses"]),
        ("requests", &record["requests"]),
        ("page state", &record["pageState"]),
        ("cookies", &record["cookies"]),
    ] {
        let text = value.to_string();
        for token in tokens {
            assert!(!text.contains(token.as_str()), "a real token appears in the browser's {what}");
        }
        assert!(jwt_shaped(&text).is_empty(), "JWT-shaped strings in the browser's {what}: {:?}", jwt_shaped(&text));
    }
    let responses = record["responses"].as_array().unwrap();
    assert!(responses.len() > 10, "too few responses recorded to mean anything: {}", responses.len());
    assert!(
        responses.iter().any(|r| r["url"].as_str().unwrap().contains("/bff/callback")),
        "the callback was not recorded"
    );
    let page_state = &record["pageState"];
    assert!(
        !page_state["documentCookie"].as_str().unwrap().contains("cloakroom"),
        "the page can read the session cookie"
    );
    assert_eq!(page_state["localStorage"], "[]");
    assert_eq!(page_state["sessionStorage"], "[]");

    let cookie = record["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-Http-cloakroom")
        .expect("the session cookie is stored")
        .clone();
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["secure"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert_eq!(cookie["path"], "/");
    assert_eq!(cookie["domain"], "127.0.0.1", "host-only: no Domain attribute");
    assert_eq!(cookie["expires"], -1, "a browser-session cookie unless 'keep me signed in'");
    assert!(
        !record["cookiesAfter"].as_array().unwrap().iter().any(|c| c["name"] == "__Host-Http-cloakroom"),
        "the cookie outlived sign-out"
    );

    // SameSite=Strict does not break the first page after login: the navigation that follows the
    // callback's same-origin hop carries the new cookie.
    let requests = record["requests"].as_array().unwrap();
    let callback = requests.iter().position(|r| r["url"].as_str().unwrap().contains("/bff/callback")).unwrap();
    let first_page =
        requests[callback + 1..].iter().find(|r| r["navigation"] == true).expect("a navigation after the callback");
    assert_eq!(first_page["url"], format!("{origin}/"));
    let sent = first_page["headers"]["cookie"].as_str().unwrap_or("");
    assert!(
        sent.contains("__Host-Http-cloakroom="),
        "the first page after login went without the session cookie: {sent:?}"
    );
}

#[tokio::test]
async fn in_a_real_browser_against_the_real_provider_no_token_reaches_the_page() {
    let bff = Bff::start_with(BffOptions { extra_toml: format!("[spa]\ndir = {SPA:?}\n"), ..Default::default() }).await;
    let record = run_journey(&bff.origin, false).await;
    assert!(record["claimsText"].as_str().unwrap().contains("alice@example.com"));
    assert!(record["apiResult"].as_str().unwrap().contains("\"authorization\": true"), "{}", record["apiResult"]);
    assert!(record["sessionsText"].as_str().unwrap().contains("(this browser)"));

    // The real tokens, from the provider's side; the one the API received is among them.
    let tokens = tokens_issued(&bff.issuer, &bff.client).await;
    let upstream = bff.upstream.requests().pop().expect("the API call reached the upstream");
    let bearer = upstream.headers["authorization"].to_str().unwrap().trim_start_matches("Bearer ").to_string();
    assert!(tokens.contains(&bearer), "the scan must use the real token values");
    assert_token_free(&record, &tokens, &bff.origin);
}

#[cfg(feature = "demo")]
#[tokio::test]
async fn in_a_real_browser_against_the_development_issuer_the_demo_works_token_free() {
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (issuer_port, api_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{issuer_port}");
    let bff = Bff::start_with(BffOptions {
        issuer: Some(issuer),
        client: Some(RegisteredClient { client_id: "cloakroom-demo".into(), client_secret: "demo-secret".into(), key: None }),
        api_upstream: Some(format!("http://127.0.0.1:{api_port}/api/")),
        extra_toml: format!(
            "[spa]\ndir = {SPA:?}\n[demo]\nissuer_listen = \"127.0.0.1:{issuer_port}\"\napi_listen = \"127.0.0.1:{api_port}\"\n"
        ),
        // The demo's own routes, as config.toml has them: an admin API and a payment needing MFA.
        oidc_toml: "login_params = [\"acr_values\", \"max_age\"]".into(),
        extra_routes: format!(
            "[[routes]]\nprefix = \"/api/admin/\"\nupstream = \"http://127.0.0.1:{api_port}/api/admin/\"\n\
             [[routes.rules]]\nclaim = \"groups\"\ncontains_any = [\"admins\"]\n\
             [[routes]]\nprefix = \"/api/payments/\"\nupstream = \"http://127.0.0.1:{api_port}/api/payments/\"\n\
             methods = [\"POST\"]\nstep_up = {{ acr_values = [\"mfa\"] }}\n"
        ),
        ..Default::default()
    })
    .await;
    let record = run_journey(&bff.origin, true).await;
    // The step-up walk: refused with a sign-in link, then through after the MFA sign-in.
    let refused = record["paymentRefused"].as_str().unwrap();
    assert!(refused.contains("HTTP 401") && refused.contains("\"acr_values\": \"mfa\""), "{refused}");
    let admin = record["adminResult"].as_str().unwrap();
    assert!(admin.contains("HTTP 200") && admin.contains("/api/admin/users"), "alice is an admin: {admin}");
    let paid = record["paymentAfterStepUp"].as_str().unwrap();
    assert!(paid.contains("HTTP 200") && paid.contains("\"bearer_token_received\": true"), "{paid}");
    assert!(record["claimsAfterStepUp"].as_str().unwrap().contains("mfa"), "{}", record["claimsAfterStepUp"]);
    assert!(record["claimsText"].as_str().unwrap().contains("alice@example.com"));
    let api = record["apiResult"].as_str().unwrap();
    assert!(api.starts_with("HTTP 200") && api.contains("\"bearer_token_received\": true"), "{api}");
    assert!(api.contains("\"aud\": \"urn:cloakroom:demo-api\"") && api.contains("\"sub\": \"alice\""), "{api}");
    let tokens = bff.server.dev_issuer.as_ref().expect("the development issuer runs").issued_tokens();
    assert_token_free(&record, &tokens, &bff.origin);
}

/// The second provider's real login page (glewlwyd's React app) in Chromium: sign in, claims,
/// API call, session list, sign out, and nothing token-shaped reaches the browser.
#[tokio::test]
async fn in_a_real_browser_against_glewlwyd_no_token_reaches_the_page() {
    let glewlwyd = glewlwyd().await;
    let _turn = glewlwyd.turn().await;
    let client = Glewlwyd::new_client("browser", "s3cret");
    let bff = Bff::start_with(BffOptions {
        issuer: Some(glewlwyd.issuer.clone()),
        client: Some(client.clone()),
        // Without the hint, glewlwyd's end-session endpoint leaves the user on a blank page.
        oidc_toml: "scopes = [\"openid\", \"profile\"]\nlogout_token_exp_required = false\nlogout_id_token_hint = true"
            .into(),
        extra_toml: format!("[spa]\ndir = {SPA:?}\n"),
        ..Default::default()
    })
    .await;
    glewlwyd.register(&client, &bff.origin).await;
    let password = GLEWLWYD_USERS[0].1;
    let record = run_journey_with(&bff.origin, false, &[("GLEWLWYD_PASSWORD", password)]).await;
    assert!(record["apiResult"].as_str().unwrap().contains("\"authorization\": true"), "{}", record["apiResult"]);
    // The tokens glewlwyd issued are not at hand from its side; what the API received is.
    let upstream = bff.upstream.requests().pop().expect("the API call reached the upstream");
    let bearer = upstream.headers["authorization"].to_str().unwrap().trim_start_matches("Bearer ").to_string();
    let text = record.to_string();
    assert!(!text.contains(&bearer), "the access token reached the browser");
    // The one token that crosses, opted into with `logout_id_token_hint` (which glewlwyd needs
    // for its end-session page): the ID token, as the hint in the logout URL, nowhere else.
    let responses = record["responses"].to_string();
    for jwt in jwt_shaped(&responses) {
        let elsewhere = responses.replace(&format!("id_token_hint={jwt}"), "");
        assert!(!elsewhere.contains(&jwt), "a JWT reached the browser other than as the logout hint");
    }
    assert_eq!(record["providerSessionEnded"], 200, "glewlwyd's own session did not end");
    let cookies_after = record["cookiesAfter"].as_array().unwrap();
    assert!(!cookies_after.iter().any(|c| c["name"] == "__Host-Http-cloakroom"), "the cookie outlived sign-out");
}

/// Stale sign-in answers in Chromium (issue 29, item 3): the used callback opened again from
/// another site (no `SameSite=Strict` cookie on that navigation) and the back button land on the
/// app signed in; without a session the same link starts one fresh sign-in, and the stale
/// answer itself signs nobody in.
#[tokio::test]
async fn in_a_real_browser_a_stale_sign_in_answer_leads_to_the_app_not_an_error_page() {
    let bff = Bff::start_with(BffOptions { extra_toml: format!("[spa]\ndir = {SPA:?}\n"), ..Default::default() }).await;
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let output = std::env::temp_dir().join(format!("cloakroom-stale-{}.json", std::process::id()));
    let status = tokio::process::Command::new("node")
        .arg("stale.mjs")
        .arg(&bff.origin)
        .arg(&output)
        .current_dir(browser_dir)
        .status()
        .await
        .expect("node runs");
    let record: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let _ = std::fs::remove_file(&output);
    assert!(status.success(), "{}", record);
    assert_eq!(record["afterCrossSite"], format!("{}/", bff.origin), "{record}");
    let back = record["afterBackText"].as_str().unwrap();
    assert!(!back.contains("did not complete") && !back.contains("Sign in again"), "{record}");
    // Two sign-ins, two sessions: the stale answers created none.
    assert_eq!(bff.session_count().await, 2);
}
