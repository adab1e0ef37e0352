//! OpenTelemetry traces, as a collector receives them: cloakroom's own `telemetry::init` with
//! `[traces]` exports over OTLP/HTTP to a receiver that decodes the protocol's protobuf.
//!
//! Its own test binary: the subscriber is global to a process, and this one carries the
//! OpenTelemetry layer (the other binaries log only). One test walks a sign-in, calls, a
//! refresh, a logout and two failed sign-ins, then checks the spans' shape, the W3C trace
//! context (believed from a trusted proxy only, sent on to the upstream) and that no token,
//! ticket, cookie, code, `state` or secret is in any span, attribute or event.

// In a module, so that SECURITY.md can name it (`traces::…`) as it names the others.
mod traces {
    use cloakroom_test_support as support;
    use std::time::Duration;
    use support::*;

    const SERVER: i32 = 2;
    const CLIENT: i32 = 3;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_a_real_otlp_receiver_with_trace_context_and_nothing_secret() {
        let receiver = OtlpReceiver::start().await;
        let export = cloakroom::telemetry::TraceExport {
            endpoint: format!("http://{}/v1/traces", receiver.addr).parse().unwrap(),
            sample_ratio: 1.0,
            service_name: "cloakroom-under-test".into(),
            queue_size: 4096,
            export_timeout: Duration::from_secs(5),
            export_interval: Duration::from_millis(100),
            tls: cloakroom::tls::system_client_config(),
        };
        let telemetry = cloakroom::telemetry::init("info", false, Some(&export)).unwrap();
        let bff = Bff::start().await;
        let mut browser = Browser::new();

        // A sign-in, with the login cookies and the ticket kept for the scan.
        let callback = bff.authorize(&mut browser, "alice", "/").await;
        let login_cookies: Vec<String> = browser
            .cookie_names()
            .into_iter()
            .filter(|n| n.starts_with("__Host-Http-cloakroom-login-"))
            .filter_map(|n| browser.cookie(&n))
            .collect();
        let state = query_value(&callback, "state");
        let code = query_value(&callback, "code");
        assert_eq!(browser.get(&callback, &[]).await.status, 200);
        let ticket = session_cookie(&browser).unwrap();

        // A call from a client that is not a trusted proxy: its trace context is not believed.
        let forged_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let forged = format!("00-{forged_trace}-00f067aa0ba902b7-01");
        let call =
            browser.get(&bff.url("/api/first"), &[CSRF, ("traceparent", &forged), ("tracestate", "x=forged")]).await;
        assert_eq!(call.status, 200);
        let server =
            receiver.wait_for("GET /api/", |s| s.kind == SERVER && s.attribute("http.route") == Some("/api/")).await;
        assert_ne!(server.trace_id, forged_trace, "a client's traceparent was believed");
        assert_eq!(server.parent_span_id, "", "the server span has a parent a client chose");
        assert_eq!(server.name, "GET /api/");
        assert_eq!(server.service, "cloakroom-under-test");
        assert_eq!(server.attribute("http.response.status_code"), Some("200"));
        assert_eq!(server.attribute("http.request.method"), Some("GET"));
        // The upstream call is a client span of the same trace, and the upstream got its context.
        let upstream = receiver
            .wait_for("the upstream call", |s| {
                s.kind == CLIENT && s.trace_id == server.trace_id && s.name.starts_with("GET 127.0.0.1")
            })
            .await;
        let seen = bff.upstream.requests().into_iter().find(|r| r.uri.ends_with("/api/first")).unwrap();
        let traceparent = seen.headers.get("traceparent").unwrap().to_str().unwrap().to_string();
        assert_eq!(traceparent, format!("00-{}-{}-01", server.trace_id, upstream.span_id));
        assert!(seen.headers.get("tracestate").is_none(), "the client's tracestate went upstream");
        // Each phase is a span of that trace; the store lookup is one too.
        for phase in ["admit", "credential", "upstream_answer"] {
            receiver.wait_for(phase, |s| s.name == phase && s.trace_id == server.trace_id).await;
        }
        let store = receiver.wait_for("store load", |s| s.name == "store load" && s.trace_id == server.trace_id).await;
        assert_eq!(store.attribute("db.system.name"), Some("memory"));

        // The sign-in: the callback's steps and the provider's token endpoint.
        let callback_span = receiver.wait_for("the callback", |s| s.name == "GET /bff/callback").await;
        for step in ["code_exchange", "create_session"] {
            receiver.wait_for(step, |s| s.name == step && s.trace_id == callback_span.trace_id).await;
        }
        let token_call = receiver
            .wait_for("the token endpoint", |s| {
                s.kind == CLIENT && s.trace_id == callback_span.trace_id && s.attribute("url.path") == Some("/token")
            })
            .await;
        assert_eq!(token_call.attribute("http.response.status_code"), Some("200"));

        // A refresh, with its provider call, inside the call that waited for it.
        bff.clock.advance(310);
        assert_eq!(browser.get(&bff.url("/api/after"), &[CSRF]).await.status, 200);
        assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1);
        let refresh = receiver.wait_for("refresh", |s| s.name == "refresh").await;
        receiver
            .wait_for("the refresh's token call", |s| {
                s.trace_id == refresh.trace_id
                    && s.parent_span_id == refresh.span_id
                    && s.attribute("url.path") == Some("/token")
            })
            .await;

        assert_eq!(browser.request(http::Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await.status, 200);
        receiver.wait_for("logout", |s| s.name == "POST /bff/logout").await;

        // Failed sign-ins: a code the provider refuses (with the real state), and a stale state.
        let mut other = Browser::new();
        let callback = bff.authorize(&mut other, "bob", "/").await;
        let failed_state = query_value(&callback, "state");
        let refused_code = "refused-code-7f3a9c";
        let tampered = callback.replace(&query_value(&callback, "code"), refused_code);
        let failed = other.get(&tampered, &[]).await;
        assert!(failed.status >= 400, "{}", failed.status);
        let failure = receiver
            .wait_for("the failed callback", |s| {
                s.name == "GET /bff/callback" && s.attribute("error.type") == Some("code_rejected")
            })
            .await;
        assert!(
            receiver.spans().iter().any(|s| s.trace_id == failure.trace_id && !s.events.is_empty()),
            "the code exchange's warning is not an event of the failed sign-in's trace"
        );
        // The provider says no (the person declined), with the pending sign-in's own state.
        let mut declining = Browser::new();
        let declined_state = query_value(&bff.authorize(&mut declining, "bob", "/").await, "state");
        let declined =
            declining.get(&bff.url(&format!("/bff/callback?error=access_denied&state={declined_state}")), &[]).await;
        assert_eq!(declined.status, 403, "{}", declined.text());
        receiver.wait_for("the declined sign-in", |s| s.attribute("error.type") == Some("provider_denied")).await;

        // A trusted proxy's trace context is continued, its sampling decision included.
        let trusted = Bff::start_with(BffOptions {
            server_toml: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
            ..Default::default()
        })
        .await;
        let proxy_trace = "0af7651916cd43dd8448eb211c80319c";
        let sampled = format!("00-{proxy_trace}-b7ad6b7169203331-01");
        let reply =
            http_call(http::Method::GET, &trusted.url("/bff/user"), None, &[CSRF, ("traceparent", &sampled)]).await;
        assert_eq!(reply.status, 401);
        let continued = receiver.wait_for("the trusted proxy's trace", |s| s.trace_id == proxy_trace).await;
        assert_eq!(continued.parent_span_id, "b7ad6b7169203331");
        let unsampled = "00-1af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-00";
        let reply =
            http_call(http::Method::GET, &trusted.url("/api/unsampled"), None, &[CSRF, ("traceparent", unsampled)])
                .await;
        assert_eq!(reply.status, 401, "an anonymous call to a user route");

        // Everything has arrived once the last request's span has.
        receiver
            .wait_for("the last call", |s| s.attribute("http.route") == Some("/api/") && s.trace_id != server.trace_id)
            .await;
        telemetry.shutdown().await;
        let spans = receiver.spans();
        assert!(
            spans.iter().all(|s| !s.trace_id.starts_with("1af7651916cd43dd")),
            "a trusted proxy's unsampled trace was exported"
        );

        let mut secrets: Vec<(&str, String)> = vec![
            ("client secret", bff.client.client_secret.clone()),
            ("session key", test_key()),
            ("session cookie", ticket[8..].to_string()),
            ("authorization code", code),
            ("state", state),
            ("failed sign-in's state", failed_state),
            ("refused code", refused_code.to_string()),
            ("declined sign-in's state", declined_state),
        ];
        for cookie in login_cookies {
            secrets.push(("login cookie", cookie[8..].to_string()));
        }
        let issued = tokens_issued(&bff.issuer, &bff.client).await;
        assert!(issued.len() >= 5, "sign-in and refresh tokens: {}", issued.len());
        for token in issued {
            secrets.push(("token", token));
        }
        let decoded = format!("{spans:?}");
        let raw = receiver.raw_text();
        assert!(raw.contains("cloakroom-under-test") && decoded.contains("GET /bff/callback"), "the scan sees nothing");
        for (what, secret) in &secrets {
            assert!(!decoded.contains(secret.as_str()), "a span carries a {what}");
            assert!(!raw.contains(secret.as_str()), "an export carries a {what}");
        }
        assert!(received_jwts(&raw).is_empty(), "an export carries a JWT: {:?}", received_jwts(&raw));
    }

    fn query_value(url: &str, name: &str) -> String {
        let url = url::Url::parse(url).unwrap();
        url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
    }
}
