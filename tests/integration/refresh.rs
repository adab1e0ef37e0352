//! Refresh against the real provider (rotating refresh tokens, 300 s access tokens, 30 s margin):
//! single-flight under a storm, rotation, `invalid_grant`, and an outage that is not a logout.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Instant;

fn bearer(bff: &Bff) -> String {
    let request = bff.upstream.requests().pop().expect("a request reached the upstream");
    request.headers["authorization"].to_str().unwrap().to_string()
}

/// A due token is refreshed without the call that finds it due waiting for the provider (issue
/// 27, item 2): that call goes on with its still-valid token, the refresh runs beside it, and
/// the next calls carry the new token; the refresh token rotates.
#[tokio::test]
async fn a_due_access_token_is_refreshed_and_the_refresh_token_rotates() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let first = bearer(&bff);
    let first_refresh_token = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().unwrap();

    bff.clock.advance(240); // 60 s before expiry: not due yet
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(bearer(&bff), first);
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 0);

    bff.clock.advance(40); // 20 s before expiry: inside the 30 s margin
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(bearer(&bff), first, "still valid: forwarded at once, the refresh runs beside the call");
    let started = Instant::now();
    while refreshes_granted(&bff.issuer, &bff.client).await == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the due token was never refreshed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let second = bearer(&bff);
    assert_ne!(second, first, "the refreshed token is not used");
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1);
    let rotated = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().unwrap();
    assert_ne!(rotated, first_refresh_token);
    assert!(!introspect(&bff.issuer, &bff.client, &first_refresh_token).await, "the old refresh token lives on");
    assert!(introspect(&bff.issuer, &bff.client, &rotated).await);

    // The new token is used as is until it is due in turn; claims are still there.
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(bearer(&bff), second);
    assert_eq!(bff.user(&mut browser).await.json()["claims"]["email"], "alice@example.com");

    // And the next refresh uses the rotated refresh token (a replay would revoke the grant):
    // expired by now, so this call waits for it.
    bff.clock.advance(310);
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_ne!(bearer(&bff), second);
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_concurrent_calls_at_expiry_makes_exactly_one_refresh() {
    const CALLS: usize = 100;
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    bff.clock.advance(301); // expired: every call needs the refresh

    let started = Instant::now();
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let (url, cookie) = (bff.url(&format!("/api/storm/{i}")), cookie.clone());
            tokio::spawn(async move {
                let t0 = Instant::now();
                let reply = http_call(http::Method::GET, &url, None, &[CSRF, ("cookie", &cookie)]).await;
                (reply.status, t0.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut served = 0;
    for call in calls {
        let (status, latency) = call.await.unwrap();
        served += usize::from(status == 200);
        latencies.push(latency);
    }
    let storm = started.elapsed();
    latencies.sort();
    let refreshes = refreshes_granted(&bff.issuer, &bff.client).await;
    let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "refresh storm: {CALLS} concurrent calls at expiry -> {refreshes} refresh call(s) at the provider, \
         {served} served, p50 {:?}, p99 {:?}, whole storm {:?}",
        p(0.50),
        p(0.99),
        storm
    );
    assert_eq!(served, CALLS, "some calls failed during the storm");
    assert_eq!(refreshes, 1, "the storm caused {refreshes} refreshes");
    let tokens: std::collections::HashSet<String> =
        bff.upstream.requests().iter().map(|r| r.headers["authorization"].to_str().unwrap().to_string()).collect();
    assert_eq!(tokens.len(), 1, "the storm's calls carried different tokens");

    // The grant is still valid: the next refresh works (started by this due call, beside it).
    bff.clock.advance(290);
    assert_eq!(browser.get(&bff.url("/api/after"), &[CSRF]).await.status, 200);
    let started = Instant::now();
    while refreshes_granted(&bff.issuer, &bff.client).await != 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the next refresh did not happen");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let refresh_token = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().unwrap();
    revoke_at_provider(&bff.issuer, &bff.client, &refresh_token).await;

    // Due but still valid: this call goes on with its token (issue 27, item 2: it does not wait
    // for the provider), and the refresh it started is refused, which ends the session.
    bff.clock.advance(290);
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let forwarded = bff.upstream.count();
    let started = Instant::now();
    while bff.session_count().await != 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the refused refresh did not end the session");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Ended in the background: the cookie opens nothing now, as after any ending elsewhere.
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("unauthenticated")));
    assert!(session_cookie(&browser).is_none(), "the cookie was not cleared");
    assert_eq!(bff.upstream.count(), forwarded, "a call went upstream after the provider refused the grant");
    assert_eq!(bff.user(&mut browser).await.status, 401);

    // An expired token waits for the refresh: refused, no call goes upstream at all.
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let refresh_token = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().unwrap();
    revoke_at_provider(&bff.issuer, &bff.client, &refresh_token).await;
    bff.clock.advance(310);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("session_expired")));
    assert_eq!(bff.upstream.count(), 0, "a call went upstream with a token whose grant is gone");
    assert_eq!(bff.session_count().await, 0);
}

#[tokio::test]
async fn a_provider_outage_is_not_a_logout() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let first = bearer(&bff);
    set_outage(&bff.issuer, &bff.client, true).await;

    // Due but still valid: forwarded with the current token.
    bff.clock.advance(280);
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(bearer(&bff), first);

    // Expired: a 503, and the session is kept.
    bff.clock.advance(30);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (503, Some("provider_unavailable")));
    assert!(session_cookie(&browser).is_some());
    assert_eq!(bff.upstream.count(), 2);
    assert_eq!(bff.user(&mut browser).await.status, 200);

    // The provider is back: the next call refreshes and succeeds.
    set_outage(&bff.issuer, &bff.client, false).await;
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_ne!(bearer(&bff), first);
}

#[tokio::test]
async fn a_refused_client_credential_is_the_operators_problem_not_a_logout() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    // As if the client secret had been rotated at the provider but not here.
    set_token_failure(&bff.issuer, &bff.client, Some("invalid_client")).await;
    bff.clock.advance(310);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (502, Some("provider_error")));
    assert_eq!(bff.user(&mut browser).await.status, 200, "the session is kept");
    assert!(logs().lines().any(|l| l.contains("ERROR") && l.contains("client authentication at a refresh")));
    let metrics = http_call(http::Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert!(metrics.contains("cloakroom_token_refreshes_total{outcome=\"client_refused\"} 1"), "{metrics}");
    // Fixed at the provider: the same session refreshes and carries on.
    set_token_failure(&bff.issuer, &bff.client, None).await;
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1);
}

/// A provider that refuses a revoked grant's refresh with a bare 400 and no body (glewlwyd's
/// way) has answered: the session ends, instead of getting 503s forever (issue 15, defect 1).
#[tokio::test]
async fn a_bare_refusal_of_a_refresh_ends_the_session() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    set_token_failure(&bff.issuer, &bff.client, Some("empty-400")).await;
    bff.clock.advance(310);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("session_expired")), "{}", reply.text());
    assert!(session_cookie(&browser).is_none(), "the cookie was not cleared");
    assert_eq!(bff.user(&mut browser).await.status, 401);
    assert_eq!(bff.upstream.count(), 0);
    set_token_failure(&bff.issuer, &bff.client, None).await;
}

/// Issue 26, item 6: a refresh refused with a bare 401 (no body, so no `invalid_client` to say
/// it is about the client) kept the session, answering 502 on every call until its timeouts,
/// while the docs said any 4xx but 429 ends it. It ends now, as any bare refusal does, and the
/// operator sees it: an ERROR log naming the provider and the refusal counted.
#[tokio::test]
async fn a_bare_401_at_a_refresh_ends_the_session_and_tells_the_operator() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    set_token_failure(&bff.issuer, &bff.client, Some("empty-401")).await;
    bff.clock.advance(310);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    set_token_failure(&bff.issuer, &bff.client, None).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("session_expired")), "{}", reply.text());
    assert_eq!(bff.user(&mut browser).await.status, 401, "a session that can only fail lives on");
    assert_eq!(bff.upstream.count(), 0);
    assert!(
        logs().lines().any(|l| l.contains("ERROR") && l.contains("bare 401") && l.contains("provider=default")),
        "no ERROR naming the provider"
    );
    let metrics = http_call(http::Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert!(metrics.contains("cloakroom_token_refreshes_total{outcome=\"invalid_grant\"} 1"), "{metrics}");
    assert!(metrics.contains("cloakroom_provider_errors_total{kind=\"refused\"}"), "{metrics}");
}

#[tokio::test]
async fn without_a_refresh_token_the_session_ends_when_the_access_token_does() {
    let bff = Bff::start_with(BffOptions { refresh_grant: false, ..Default::default() }).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert!(refresh_tokens_issued(&bff.issuer, &bff.client).await.is_empty());
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let first = bearer(&bff);

    bff.clock.advance(280); // due, nothing to refresh with, still valid: used as is
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(bearer(&bff), first);

    bff.clock.advance(30); // expired
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("session_expired")));
    assert!(session_cookie(&browser).is_none());
    assert_eq!(bff.upstream.count(), 2);
    assert_eq!(bff.session_count().await, 0);
}

#[tokio::test]
async fn an_unreachable_provider_is_not_a_logout_either() {
    // The provider behind a gate that can make it unreachable (connections refused and cut).
    let (gate_listener, gate_addr) = TcpGate::bind();
    let provider = start_provider(&[("ISSUER", &format!("http://{gate_addr}"))]);
    let gate = TcpGate::relay_to(gate_listener, SocketAddr::from(([127, 0, 0, 1], provider.port())));
    // Cut connections may have carried the refresh: its token is not sent again for 60 s.
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        oidc_toml: "timeout = \"2s\"\nrefresh_retry_backoff = \"60s\"".into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let first = bearer(&bff);

    gate.close();
    bff.clock.advance(280);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!(reply.status, 200, "a due but valid token must still be used: {}", reply.text());
    assert_eq!(bearer(&bff), first);
    bff.clock.advance(30);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (503, Some("provider_unavailable")));
    assert!(session_cookie(&browser).is_some());

    gate.open();
    // Within the back-off the refresh token stays unsent; after it, the session recovers.
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (503, Some("provider_unavailable")));
    bff.clock.advance(31);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_ne!(bearer(&bff), first);
    assert!(
        introspect(&bff.issuer, &bff.client, &refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().unwrap())
            .await
    );
}

/// Counts the provider's refresh-token grant events of this client: (successes, errors).
async fn refresh_events(bff: &Bff) -> (usize, usize) {
    let events = provider_events(&bff.issuer).await;
    let count = |kind: &str| {
        events
            .iter()
            .filter(|e| {
                e["type"] == kind
                    && e["grant_type"] == "refresh_token"
                    && e["clientId"] == bff.client.client_id.as_str()
            })
            .count()
    };
    (count("grant.success"), count("grant.error"))
}

/// A provider frozen mid-refresh (a GC pause, a stuck pod) with reuse detection on: cloakroom
/// sends the refresh once and keeps waiting for its answer (`refresh_timeout`, longer than the
/// `timeout` of other calls) while calls holding a still-valid token go on with it at once, not
/// waiting for the provider at all (issue 27, item 2: each waited a full second); once the token
/// has expired, a call is not forwarded with it. When the provider resumes, its late answer
/// carries the rotated refresh token, and the session lives.
#[tokio::test]
async fn a_provider_frozen_mid_refresh_answers_late_and_the_session_survives() {
    let provider = start_provider(&[]);
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        oidc_toml: "timeout = \"1s\"\nrefresh_timeout = \"30s\"".into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let first = bearer(&bff);
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());

    provider.signal("STOP");
    bff.clock.advance(280); // due, still valid
    for _ in 0..8 {
        let started = Instant::now();
        let reply = http_call(http::Method::GET, &bff.url("/api/x"), None, &[CSRF, ("cookie", cookie.as_str())]).await;
        assert_eq!(reply.status, 200, "a valid token must be used while the provider hangs: {}", reply.text());
        assert_eq!(bearer(&bff), first);
        // Far under the second each call waited before: no wait for the provider at all.
        assert!(started.elapsed() < std::time::Duration::from_millis(500), "waited {:?}", started.elapsed());
    }
    // Once the token has expired, a call may wait for the refresh (bounded), and is answered
    // 503, never forwarded with the expired token.
    let forwarded = bff.upstream.count();
    bff.clock.advance(30); // now expired
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (503, Some("provider_unavailable")));
    assert_eq!(bff.upstream.count(), forwarded, "an expired token was forwarded");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await; // frozen past `timeout`

    provider.signal("CONT");
    let mut recovered = false;
    for _ in 0..300 {
        let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
        if reply.status == 200 {
            recovered = true;
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(recovered, "the late answer was not kept");
    assert_ne!(bearer(&bff), first);
    assert_eq!(refresh_events(&bff).await, (1, 0), "one refresh sent, and no replay");
    let latest = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().unwrap();
    assert!(introspect(&bff.issuer, &bff.client, &latest).await, "the grant was revoked");
    assert_eq!(bff.user(&mut browser).await.status, 200);
}

/// The limit that remains, pinned: a provider frozen for longer than `refresh_timeout` still
/// receives the refresh cloakroom gave up on, and processes it when it resumes, spending the
/// refresh token on an answer nobody reads. cloakroom does not send that token again before
/// `refresh_retry_backoff` (one refresh, not one per call, reaches the frozen provider); after
/// it, the token is a replay to the provider, which revokes the grant, and the session ends
/// cleanly. No client can avoid that without a reuse grace period at the provider.
#[tokio::test]
async fn an_answer_given_up_on_is_not_replayed_before_the_backoff_and_then_ends_cleanly() {
    let provider = start_provider(&[]);
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        oidc_toml: "timeout = \"1s\"\nrefresh_timeout = \"1s\"\nrefresh_retry_backoff = \"60s\"".into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    provider.signal("STOP");
    bff.clock.advance(310);
    for _ in 0..3 {
        let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
        assert_eq!((reply.status, reply.json()["error"].as_str()), (503, Some("provider_unavailable")));
    }
    provider.signal("CONT");
    // The one refresh sent reaches the provider late and succeeds for no one.
    for _ in 0..200 {
        if refresh_events(&bff).await.0 == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(refresh_events(&bff).await, (1, 0), "more than one refresh reached the frozen provider");
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!(reply.status, 503, "the spent refresh token was sent again inside the back-off");
    assert_eq!(refresh_events(&bff).await, (1, 0));

    bff.clock.advance(61);
    let reply = browser.get(&bff.url("/api/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("session_expired")));
    assert!(session_cookie(&browser).is_none());
    assert_eq!(bff.upstream.count(), 0, "a dead token was forwarded");
}

fn rejected_metric(metrics: &str, outcome: &str) -> u64 {
    let line = format!("cloakroom_upstream_token_rejected_total{{route=\"/api/\",outcome=\"{outcome}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |n| n.parse().unwrap())
}

/// Issue 27, item 6: an upstream that answers `401` with `WWW-Authenticate: Bearer
/// error="invalid_token"` (a token revoked at the provider, a key rollover) used to be passed
/// through while the session went on with the dead token until it expired. The session now gets
/// one fresh token; a call without a body is sent once more with it; a storm of rejected calls
/// makes one refresh; a call with a body gets the upstream's answer and the next call the fresh
/// token; a refused refresh ends the session; and a token rejected again is not chased (no loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_rejecting_the_token_gets_one_fresh_token_and_the_call_once_more() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    let first = bearer(&bff);
    bff.upstream.reject(first.trim_start_matches("Bearer "));

    // A storm of calls, each rejected: one refresh, each sent again with the fresh token.
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let (url, cookie) = (bff.url(&format!("/api/storm/{i}")), cookie.clone());
            tokio::spawn(async move { http_call(http::Method::GET, &url, None, &[CSRF, ("cookie", &cookie)]).await })
        })
        .collect();
    for call in calls {
        let reply = call.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1, "one refresh for the storm");
    let second = bearer(&bff);
    assert_ne!(second, first);
    // Every call the upstream rejected went once more (calls that began after the refresh carried
    // the fresh token from the start).
    let with_first = bff.upstream.requests().iter().filter(|r| r.headers["authorization"] == first.as_str()).count();
    let rejected = with_first as u64 - 1; // the first call, before the rejection, was answered
    assert!(rejected >= 1, "no call was rejected");
    let metrics = http_call(http::Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert_eq!(rejected_metric(&metrics, "retried"), rejected, "{metrics}");

    // A call with a body is not replayed: the upstream's answer, and the next call is fine.
    bff.upstream.reject(second.trim_start_matches("Bearer "));
    let posted = browser
        .request(http::Method::POST, &bff.url("/api/orders"), Some(("application/json", "{}".into())), &[CSRF])
        .await;
    assert_eq!(posted.status, 401, "{}", posted.text());
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 2);
    assert_eq!(browser.get(&bff.url("/api/after"), &[CSRF]).await.status, 200);
    assert_ne!(bearer(&bff), second);

    // Rejected again after the fresh token: the second answer is the answer, one refresh, no loop.
    bff.upstream.reject("*");
    let before = bff.upstream.count();
    let reply = browser.get(&bff.url("/api/again"), &[CSRF]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(bff.upstream.count(), before + 2, "sent more than twice");
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 3);
    let metrics = http_call(http::Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert_eq!(rejected_metric(&metrics, "refreshed"), 1, "{metrics}");

    // A refused refresh ends the session.
    let latest = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().unwrap();
    revoke_at_provider(&bff.issuer, &bff.client, &latest).await;
    let reply = browser.get(&bff.url("/api/last"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("session_expired")), "{}", reply.text());
    assert!(session_cookie(&browser).is_none(), "the cookie was not cleared");
    assert_eq!(bff.session_count().await, 0);
    let metrics = http_call(http::Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert_eq!(rejected_metric(&metrics, "session_ended"), 1, "{metrics}");
}

/// Issue 29, item 2 (RFC 10017 §6.1.2.2): when the provider says how long the refresh token
/// lives (`refresh_expires_in`, here 20 minutes against a 12-hour absolute timeout), the session
/// ends then, at that moment and without a failing call, and `/bff/user` shows that end; each
/// refresh that says so moves it, never past the absolute timeout.
#[tokio::test]
async fn the_session_ends_when_the_providers_refresh_token_does() {
    let bff = Bff::start_with(BffOptions {
        session_toml: "idle_timeout = \"1h\"\nabsolute_timeout = \"12h\"".into(),
        ..Default::default()
    })
    .await;
    set_refresh_lifetime(&bff.issuer, &bff.client, Some(1200)).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let signed_in_at = bff.clock_now();
    let user = bff.user(&mut browser).await.json();
    assert_eq!(user["session"]["expires_at"], signed_in_at + 1200, "{user}");
    assert_eq!(user["session"]["idle_expires_at"], signed_in_at + 1200, "{user}");

    // A refresh ten minutes in: the new refresh token lives 20 minutes from then.
    bff.clock.advance(600);
    assert_eq!(browser.get(&bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1);
    let refreshed_at = bff.clock_now();
    assert_eq!(bff.user(&mut browser).await.json()["session"]["expires_at"], refreshed_at + 1200);

    // Then nothing for 20 minutes: the session is gone at that moment, without a refresh tried.
    bff.clock.advance(1199);
    assert_eq!(bff.user(&mut browser).await.status, 200, "ended early");
    bff.clock.advance(1);
    let ended = bff.user(&mut browser).await;
    assert_eq!(ended.status, 401, "{}", ended.text());
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1, "a refresh was tried");
    assert_eq!(bff.session_count().await, 0);

    // A provider that says more than the absolute timeout: the absolute timeout stands. One
    // that says 0 (Keycloak's offline tokens: no limit) says nothing.
    for (seconds, lasts) in [(100_000, 12 * 3600), (0, 12 * 3600)] {
        set_refresh_lifetime(&bff.issuer, &bff.client, Some(seconds)).await;
        let mut browser = Browser::new();
        bff.login(&mut browser, "alice", "/").await;
        let now = bff.clock_now();
        assert_eq!(bff.user(&mut browser).await.json()["session"]["expires_at"], now + lasts, "{seconds}");
    }
    set_refresh_lifetime(&bff.issuer, &bff.client, None).await;
}
