//! What operators see: Prometheus metrics scraped and parsed, and trace-level logs across a
//! whole login, refresh and logout that carry no token, cookie value or secret.

use crate::support::*;
use http::Method;
use std::collections::BTreeMap;

/// Parses the text exposition into `series{labels}` → value, checking every line is well formed.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    assert!(text.trim_end().ends_with("# EOF"), "not an OpenMetrics exposition:\n{text}");
    let mut series = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("malformed value in {line:?}"));
        assert!(name.starts_with("cloakroom_"), "{line}");
        series.insert(name.to_string(), value);
    }
    series
}

async fn scrape(bff: &Bff) -> BTreeMap<String, f64> {
    let reply = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    parse_metrics(&reply.text())
}

#[tokio::test]
async fn metrics_count_requests_sign_ins_refreshes_logouts_and_dependencies() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/dead/\"\nupstream = \"http://127.0.0.1:9/\"\ntoken = \"none\"\n".into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    let forged = Browser::new().get(&bff.url("/bff/callback?code=x&state=forged"), &[]).await;
    assert!(forged.status == 200 && forged.text().contains("resume=1"), "a stale sign-in: {}", forged.text());
    assert_eq!(browser.get(&bff.url("/api/one"), &[CSRF]).await.status, 200);
    let before_logout = scrape(&bff).await;
    assert_eq!(before_logout["cloakroom_active_sessions"], 1.0);
    bff.clock.advance(310); // expired: this call waits for the refresh
    assert_eq!(browser.get(&bff.url("/api/two"), &[CSRF]).await.status, 200);
    assert_eq!(browser.get(&bff.url("/dead/x"), &[CSRF]).await.status, 502);
    assert_eq!(browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await.status, 200);

    let m = scrape(&bff).await;
    assert_eq!(m["cloakroom_http_requests_total{route=\"api\",status=\"200\"}"], 2.0);
    assert_eq!(m["cloakroom_http_requests_total{route=\"api\",status=\"502\"}"], 1.0);
    assert_eq!(m["cloakroom_http_request_duration_seconds_count{route=\"api\"}"], 3.0);
    assert_eq!(m["cloakroom_logins_total{outcome=\"ok\"}"], 1.0);
    assert_eq!(m["cloakroom_logins_total{outcome=\"failed\"}"], 1.0);
    assert_eq!(m["cloakroom_token_refreshes_total{outcome=\"ok\"}"], 1.0);
    assert_eq!(m["cloakroom_logouts_total"], 1.0);
    assert_eq!(m["cloakroom_active_sessions"], 0.0);
    assert_eq!(m["cloakroom_upstream_request_duration_seconds_count{upstream=\"/api/\"}"], 2.0);
    assert_eq!(m["cloakroom_upstream_errors_total{upstream=\"/dead/\",kind=\"connect\"}"], 1.0);
    // Discovery, the JWKS, the code exchange, the refresh and the revocation at least.
    assert!(m["cloakroom_provider_request_duration_seconds_count"] >= 5.0, "{m:?}");
    // Histogram buckets are cumulative.
    let buckets: Vec<f64> = m
        .iter()
        .filter(|(k, _)| {
            k.starts_with("cloakroom_http_request_duration_seconds_bucket{") && k.contains("route=\"api\"")
        })
        .map(|(_, v)| *v)
        .collect();
    assert!(buckets.len() > 10);
    assert!(m.contains_key("cloakroom_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"api\"}"), "{m:?}");
    assert_eq!(m["cloakroom_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"api\"}"], 3.0);
    // No path, user or session ever becomes a label.
    let text = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    for leak in ["/api/one", "alice", &bff.client.client_id] {
        assert!(!text.contains(leak), "the metrics mention {leak}");
    }
}

#[tokio::test]
async fn a_login_refresh_and_logout_at_trace_level_log_no_token_cookie_or_secret() {
    let bff = Bff::start().await; // the harness logs at trace
    let mut browser = Browser::new();
    let callback = bff.authorize(&mut browser, "alice", "/").await;
    let login_cookies: Vec<String> = browser
        .cookie_names()
        .into_iter()
        .filter(|n| n.starts_with("__Host-Http-cloakroom-login-"))
        .filter_map(|n| browser.cookie(&n))
        .collect();
    assert!(!login_cookies.is_empty());
    assert_eq!(browser.get(&callback, &[]).await.status, 200);
    let ticket = session_cookie(&browser).unwrap();
    assert_eq!(browser.get(&bff.url("/api/before"), &[CSRF]).await.status, 200);
    bff.clock.advance(310); // expired: this call waits for the refresh
    assert_eq!(browser.get(&bff.url("/api/after"), &[CSRF]).await.status, 200);
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1);
    assert_eq!(browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await.status, 200);

    let logs = logs();
    // The capture is real: this run's trace-level lines are in it.
    assert!(logs.lines().any(|l| l.contains("TRACE")), "no trace-level line captured");
    assert!(logs.contains("tokens refreshed"));
    let mut secrets: Vec<(&str, String)> = vec![
        ("client secret", bff.client.client_secret.clone()),
        ("session key", test_key()),
        // Past the cookie's first characters, so a short common prefix cannot match by chance.
        ("session cookie", ticket[8..].to_string()),
    ];
    for cookie in &login_cookies {
        secrets.push(("login cookie", cookie[8..].to_string()));
    }
    let issued = tokens_issued(&bff.issuer, &bff.client).await;
    assert!(issued.len() >= 5, "login and refresh tokens: {}", issued.len());
    for token in issued {
        secrets.push(("token", token));
    }
    for (what, secret) in &secrets {
        assert!(!logs.contains(secret.as_str()), "a log line contains a {what}");
    }
    // Nor any JWT from anywhere.
    assert!(received_jwts(&logs).is_empty(), "a log line contains a JWT: {:?}", received_jwts(&logs));
}
