//! The API proxy: refusals never reach the upstream; policies, hygiene and failures as specified.

use crate::support::*;
use cloakroom::upstream::HttpClient;
use http::Method;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn routes() -> BffOptions {
    BffOptions {
        extra_routes: r#"
[[routes]]
prefix = "/maybe/"
upstream = "{upstream}/api/"
token = "user-or-none"
[[routes]]
prefix = "/open/"
upstream = "{upstream}/api/"
token = "none"
[[routes]]
prefix = "/down/"
upstream = "http://127.0.0.1:9/"
connect_timeout = "1s"
[[routes]]
prefix = "/hurry/"
upstream = "{upstream}/api/"
timeout = "300ms"
"#
        .into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn refused_calls_never_reach_the_upstream() {
    let bff = Bff::start_with(routes()).await;
    let mut browser = Browser::new();

    let reply = browser.get(&bff.url("/api/things"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("unauthenticated")));
    assert!(reply.location().is_none(), "an API call got a redirect");
    assert_eq!(reply.header("content-type"), Some("application/json"));

    bff.login(&mut browser, "alice", "/").await;
    // (path, headers, expected status, expected error code)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("/api/things", vec![], 403, "csrf_header_missing"),
        ("/api/things", vec![("x-csrf", "true")], 403, "csrf_header_missing"),
        ("/api/things", vec![CSRF, ("sec-fetch-site", "cross-site")], 403, "cross_site_request"),
        ("/api/things", vec![CSRF, ("origin", "https://evil.example")], 403, "cross_site_request"),
        ("/open/things", vec![], 403, "csrf_header_missing"),
        ("/api/../admin", vec![CSRF], 400, "bad_path"),
        ("/api/%2e%2e/admin", vec![CSRF], 400, "bad_path"),
        ("/api/a%2fb", vec![CSRF], 400, "bad_path"),
        ("/nowhere", vec![CSRF], 404, "not_found"),
        ("/bff/nothing", vec![CSRF], 404, "not_found"),
    ];
    for (path, headers, status, error) in cases {
        let reply = browser.get(&bff.url(path), &headers).await;
        assert_eq!(reply.status, status, "{path} {headers:?}: {}", reply.text());
        assert_eq!(reply.json()["error"], error, "{path} {headers:?}");
    }
    assert_eq!(bff.upstream.count(), 0, "a refused call reached the upstream");
}

#[tokio::test]
async fn each_token_policy_attaches_what_it_says() {
    let bff = Bff::start_with(routes()).await;
    let mut anonymous = Browser::new();
    let mut signed_in = Browser::new();
    bff.login(&mut signed_in, "alice", "/").await;
    let spoof = ("authorization", "Bearer chosen-by-the-browser");

    let authorization = |bff: &Bff| {
        bff.upstream.requests().last().unwrap().headers.get("authorization").map(|v| v.to_str().unwrap().to_string())
    };

    // user-or-none: the token when signed in, nothing otherwise; the browser's never.
    assert_eq!(anonymous.get(&bff.url("/maybe/x"), &[CSRF, spoof]).await.status, 200);
    assert_eq!(authorization(&bff), None);
    assert_eq!(signed_in.get(&bff.url("/maybe/x"), &[CSRF, spoof]).await.status, 200);
    let token = authorization(&bff).unwrap();
    assert!(token.starts_with("Bearer ey"), "{token}");

    // user: the session's token replaces the browser's.
    assert_eq!(signed_in.get(&bff.url("/api/x"), &[CSRF, spoof]).await.status, 200);
    assert_eq!(authorization(&bff).as_deref(), Some(token.as_str()));

    // none: forwarded as is, no token attached even with a session, and still no cookie of ours.
    assert_eq!(signed_in.get(&bff.url("/open/x"), &[CSRF, spoof]).await.status, 200);
    assert_eq!(authorization(&bff).as_deref(), Some("Bearer chosen-by-the-browser"));
    assert_eq!(signed_in.get(&bff.url("/open/x"), &[CSRF]).await.status, 200);
    assert_eq!(authorization(&bff), None);
    for request in bff.upstream.requests() {
        let cookies = request.headers.get("cookie").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(!cookies.contains("__Host-Http-cloakroom"), "{cookies}");
    }
}

#[tokio::test]
async fn headers_are_cleaned_both_ways() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    browser.set_cookie("theme", "dark");
    let reply = browser
        .get(
            &bff.url("/api/set-cookie"),
            &[
                CSRF,
                ("connection", "x-private-hop"),
                ("x-private-hop", "1"),
                ("x-forwarded-for", "6.6.6.6"),
                ("forwarded", "for=6.6.6.6"),
                ("x-forwarded-host", "evil.example"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    let upstream = bff.upstream.requests().pop().unwrap();
    assert!(!upstream.headers.contains_key("x-private-hop"));
    assert!(!upstream.headers.contains_key("forwarded"));
    assert_eq!(upstream.headers["x-forwarded-for"], "127.0.0.1");
    assert_ne!(upstream.headers["x-forwarded-host"], "evil.example");
    // Other cookies pass (the provider's share this host: cookies are not port-scoped); ours never.
    let cookies = upstream.headers["cookie"].to_str().unwrap();
    assert!(cookies.split("; ").any(|c| c == "theme=dark"), "{cookies}");
    assert!(!cookies.contains("__Host-Http-cloakroom"), "{cookies}");
    assert_eq!(upstream.headers["host"], bff.upstream.addr.to_string());
    // The upstream tried to plant cloakroom's cookie: only its own cookie comes through.
    assert_eq!(reply.set_cookies(), vec!["app=1; Path=/".to_string()]);
    assert!(reply.header("x-upstream-hop").is_none());
    assert_eq!(bff.user(&mut browser).await.status, 200, "the session survived the upstream's attempt");
}

#[tokio::test]
async fn upstream_failures_are_json_502_and_504() {
    let bff = Bff::start_with(routes()).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let reply = browser.get(&bff.url("/down/x"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (502, Some("upstream_unreachable")));
    let started = std::time::Instant::now();
    let reply = browser.get(&bff.url("/hurry/slow"), &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (504, Some("upstream_timeout")));
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "the route timeout was not applied");
    assert_eq!(bff.user(&mut browser).await.status, 200, "an upstream failure ended the session");
}

#[tokio::test]
async fn methods_bodies_and_queries_pass_through() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let reply = browser
        .request(
            Method::POST,
            &bff.url("/api/upload?x=1&y=%20"),
            Some(("application/json", "{\"a\":1}".into())),
            &[CSRF],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["bytes"], 7);
    let seen = bff.upstream.requests().pop().unwrap();
    assert_eq!((seen.method.as_str(), seen.uri.as_str()), ("POST", "/api/upload?x=1&y=%20"));
}

#[tokio::test]
async fn the_listener_speaks_h2c() {
    use http_body_util::BodyExt;
    let bff = Bff::start().await;
    let (mut sender, _connection) = h2c_connect(bff.server.addr).await;
    let request =
        http::Request::get(bff.url("/bff/user")).header("x-csrf", "1").body(cloakroom::respond::empty()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 401);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("unauthenticated"));
}

#[tokio::test]
async fn stopping_lets_in_flight_requests_finish() {
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
    // Wait until the slow request is at the upstream, then stop.
    while bff.upstream.count() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let addr = bff.server.addr;
    let app = bff.server.app();
    let stopping = tokio::spawn(bff.server.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!app.is_ready(), "readiness stayed true while shutting down");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting new connections");
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight request was cut off: {}", reply.text());
    assert_eq!(reply.text(), "late");
    stopping.await.unwrap();
}

#[tokio::test]
async fn request_ids_and_trace_context_follow_the_call_upstream() {
    // The test client plays the load balancer: only a trusted proxy's request id is adopted
    // (a client's is not: `hostile::finding_9_and_10_upstream_cookies_and_repeated_guards`).
    let bff = Bff::start_with(BffOptions {
        server_toml: r#"trusted_proxies = ["127.0.0.1/32"]"#.into(),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply =
        browser.get(&bff.url("/api/x"), &[CSRF, ("x-request-id", "lb-1234"), ("traceparent", traceparent)]).await;
    assert_eq!(reply.header("x-request-id"), Some("lb-1234"));
    let upstream = bff.upstream.requests().pop().unwrap();
    assert_eq!(upstream.headers["x-request-id"], "lb-1234");
    assert_eq!(upstream.headers["traceparent"], traceparent);
    assert!(logs().contains("lb-1234"), "the access log does not carry the request id");

    // Without one (or with junk), cloakroom makes one and uses it both ways.
    let reply = browser.get(&bff.url("/api/y"), &[CSRF, ("x-request-id", "bad id; with junk")]).await;
    let id = reply.header("x-request-id").unwrap().to_string();
    assert!(!id.contains(' '));
    assert_eq!(bff.upstream.requests().pop().unwrap().headers["x-request-id"], id.as_str());
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_scheme_and_nobody_else_can() {
    // Loopback (where the test connects from) is the load balancer here.
    let bff = Bff::start_with(BffOptions {
        server_toml: "trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]".into(),
        ..Default::default()
    })
    .await;
    let via_lb = [("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.3"), ("x-forwarded-proto", "https")];
    let mut browser = Browser::new();
    let callback = bff.authorize(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&callback, &via_lb).await.status, 200);
    let call = browser.get(&bff.url("/api/where"), &[CSRF, via_lb[0], via_lb[1]]).await;
    assert_eq!(call.status, 200);
    let upstream = bff.upstream.requests().pop().unwrap();
    // 6.6.6.6 was the client's own claim, outside the trusted chain.
    assert_eq!(upstream.headers["x-forwarded-for"], "198.51.100.4");
    assert_eq!(upstream.headers["x-forwarded-proto"], "https");
    // The session list shows where the sign-in came from, not the load balancer.
    let listed = browser.get(&bff.url("/bff/sessions"), &[CSRF]).await.json();
    assert_eq!(listed["sessions"][0]["ip"], "198.51.100.4", "{listed}");

    // Without trusted_proxies the same headers are somebody's claim, and are replaced.
    let plain = Bff::start().await;
    let mut browser = Browser::new();
    let callback = plain.authorize(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&callback, &via_lb).await.status, 200);
    assert_eq!(browser.get(&plain.url("/api/where"), &[CSRF, via_lb[0], via_lb[1]]).await.status, 200);
    let upstream = plain.upstream.requests().pop().unwrap();
    assert_eq!(upstream.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(upstream.headers["x-forwarded-proto"], "http");
    let listed = browser.get(&plain.url("/bff/sessions"), &[CSRF]).await.json();
    assert_eq!(listed["sessions"][0]["ip"], "127.0.0.1", "{listed}");
}

#[tokio::test]
async fn a_shutdown_under_load_fails_no_request() {
    // Like a load balancer: workers send only while /readyz says ready, over keep-alive
    // connections, with some requests slow enough to be in flight when the listener closes.
    let bff = Bff::start_with(BffOptions {
        server_toml: "shutdown_delay = \"1s\"".into(),
        extra_routes:
            "[[routes]]\nprefix = \"/open/\"\nupstream = \"{upstream}/open/\"\ntoken = \"none\"\ntimeout = \"10s\"\n"
                .into(),
        ..Default::default()
    })
    .await;
    let routable = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let health = {
        let (routable, admin) = (routable.clone(), bff.admin.clone());
        tokio::spawn(async move {
            while routable.load(Ordering::SeqCst) {
                let ready = http_call(Method::GET, &format!("{admin}/readyz"), None, &[]).await;
                routable.store(ready.status == 200, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (routable, ok, failed, origin) = (routable.clone(), ok.clone(), failed.clone(), bff.origin.clone());
        workers.push(tokio::spawn(async move {
            let client = HttpClient::new(Duration::from_secs(2));
            let mut n = 0;
            while routable.load(Ordering::SeqCst) {
                let path = if worker == 0 && n % 5 == 0 { "/open/slow" } else { "/open/fast" };
                let request = http::Request::get(format!("{origin}{path}"))
                    .header(CSRF.0, CSRF.1)
                    .body(cloakroom::respond::empty())
                    .unwrap();
                let answered = match client.send(request, Duration::from_secs(10)).await {
                    Ok(response) if response.status() == 200 => response.into_body().collect().await.is_ok(),
                    _ => false,
                };
                if answered {
                    ok.fetch_add(1, Ordering::SeqCst)
                } else {
                    failed.fetch_add(1, Ordering::SeqCst)
                };
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let addr = bff.server.addr;
    let stopping = tokio::spawn(bff.server.stop());
    for worker in workers {
        worker.await.unwrap();
    }
    health.await.unwrap();
    stopping.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "{failed} of {} requests failed across the shutdown", ok + failed);
    assert!(ok > 50, "too little load to mean anything: {ok}");
    assert!(bff.upstream.requests().iter().any(|r| r.uri.ends_with("/slow")), "no slow request was in flight");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after the shutdown");
}

#[tokio::test]
async fn during_the_shutdown_delay_keep_alive_clients_are_asked_to_leave() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bff = Bff::start_with(BffOptions { server_toml: "shutdown_delay = \"3s\"".into(), ..Default::default() }).await;
    let addr = bff.server.addr;
    let request = b"GET /bff/user HTTP/1.1\r\nHost: x\r\nx-csrf: 1\r\n\r\n";
    // An HTTP/1.1 keep-alive connection, and an HTTP/2 one, each with a request answered.
    let mut h1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    h1.write_all(request).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = h1.read(&mut buffer).await.unwrap();
    let first = String::from_utf8_lossy(&buffer[..n]).to_ascii_lowercase();
    assert!(first.starts_with("http/1.1 401") && !first.contains("connection: close"), "{first}");
    let (mut h2, h2_open) = h2c_connect(addr).await;
    let user_url = bff.url("/bff/user");
    let call = http::Request::get(&user_url).header("x-csrf", "1").body(cloakroom::respond::empty()).unwrap();
    assert_eq!(h2.send_request(call).await.unwrap().status(), 401);

    let stopping = tokio::spawn(bff.server.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // HTTP/2: a GOAWAY, and the connection ends with nothing in flight.
    tokio::time::timeout(Duration::from_secs(2), h2_open).await.expect("no GOAWAY during the delay").unwrap().unwrap();
    // HTTP/1.1: the next answer says `Connection: close`, and the connection closes after it.
    h1.write_all(request).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), h1.read_to_end(&mut rest)).await.expect("still open").unwrap();
    let second = String::from_utf8_lossy(&rest).to_ascii_lowercase();
    assert!(second.starts_with("http/1.1 401") && second.contains("connection: close"), "{second}");
    // New connections are still served during the delay, and told to leave too.
    let mut late = tokio::net::TcpStream::connect(addr).await.unwrap();
    late.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), late.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer).to_ascii_lowercase().contains("connection: close"));
    // A new HTTP/2 connection during the delay: its first request is answered, and a GOAWAY
    // follows at once, not when the delay ends (3 s) and the drain begins.
    let asked = std::time::Instant::now();
    let (mut late_h2, late_h2_open) = h2c_connect(addr).await;
    let call = http::Request::get(&user_url).header("x-csrf", "1").body(cloakroom::respond::empty()).unwrap();
    assert_eq!(late_h2.send_request(call).await.unwrap().status(), 401);
    tokio::time::timeout(Duration::from_secs(1), late_h2_open)
        .await
        .expect("a late HTTP/2 connection was not told to go after its first request")
        .unwrap()
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(2), "told to go only with the drain: {:?}", asked.elapsed());
    stopping.await.unwrap();
}

/// A route's method allowlist (issue 16, item 2): anything else is a 405 naming what is allowed,
/// and nothing reaches the upstream.
#[tokio::test]
async fn a_routes_method_allowlist_refuses_the_rest_with_405() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/ro/\"\nupstream = \"{upstream}/api/\"\ntoken = \"none\"\n\
                       methods = [\"GET\", \"head\"]\n"
            .into(),
        ..Default::default()
    })
    .await;
    assert_eq!(http_call(Method::GET, &bff.url("/ro/x"), None, &[CSRF]).await.status, 200);
    let count = bff.upstream.count();
    for method in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH, Method::OPTIONS] {
        let reply = http_call(method.clone(), &bff.url("/ro/x"), None, &[CSRF]).await;
        assert_eq!((reply.status, reply.json()["error"].as_str()), (405, Some("method_not_allowed")), "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
    }
    // A method-override header (Express, Spring, ASP.NET read it as the real method) cannot
    // smuggle a refused method past the allowlist, in any case or spelling.
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "put"),
        ("x-method-override", " Patch "),
        ("x-http-method-override", "TRACE"),
        ("x-http-method-override", "not a method"),
    ] {
        let reply = http_call(Method::GET, &bff.url("/ro/x"), None, &[CSRF, (name, value)]).await;
        assert_eq!((reply.status, reply.header("allow")), (405, Some("GET, HEAD")), "{name}: {value}");
    }
    assert_eq!(bff.upstream.count(), count, "a refused method reached the upstream");
    let reply = http_call(Method::GET, &bff.url("/ro/x"), None, &[CSRF, ("x-http-method-override", "head")]).await;
    assert_eq!(reply.status, 200, "an allowed override passes");
    // Other routes keep every method, but none overrides to one no route forwards.
    assert_eq!(http_call(Method::DELETE, &bff.url("/api/x"), None, &[CSRF]).await.status, 401);
    let count = bff.upstream.count();
    for value in ["TRACE", "connect", "Track"] {
        let reply = http_call(Method::POST, &bff.url("/api/x"), None, &[CSRF, ("x-http-method-override", value)]).await;
        assert_eq!((reply.status, reply.header("allow")), (405, None), "{value}");
    }
    assert_eq!(bff.upstream.count(), count, "a TRACE override reached the upstream");

    // Issue 26, item 2: the same override in the query string (Laravel, Symfony, Express's
    // `method-override('_method')`, Spring's hidden-method filter read `_method` there).
    let count = bff.upstream.count();
    for query in
        ["_method=DELETE", "a=1&_METHOD=put", "%5Fmethod=PATCH", ".method=DELETE", "x-http-method-override=POST"]
    {
        let reply = http_call(Method::GET, &bff.url(&format!("/ro/x?{query}")), None, &[CSRF]).await;
        assert_eq!((reply.status, reply.header("allow")), (405, Some("GET, HEAD")), "{query}");
    }
    for query in ["_method=TRACE", "_method=track"] {
        let reply = http_call(Method::POST, &bff.url(&format!("/api/x?{query}")), None, &[CSRF]).await;
        assert_eq!(reply.status, 405, "{query}");
    }
    assert_eq!(bff.upstream.count(), count, "a query-string override reached the upstream");
    for query in ["_method=GET", "method=card&page=2"] {
        let reply = http_call(Method::GET, &bff.url(&format!("/ro/x?{query}")), None, &[CSRF]).await;
        assert_eq!(reply.status, 200, "{query}");
    }
}

/// A route's rules on the signed-in user's claims (issue 16, item 1): a user they refuse gets
/// `403 forbidden` (JSON, never a redirect), nothing reaches the upstream, and the metric names
/// the route; a user they admit is forwarded as usual.
#[tokio::test]
async fn route_rules_refuse_users_whose_claims_do_not_match() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/admin/\"\nupstream = \"{upstream}/api/\"\n\
                       [[routes.rules]]\nclaim = \"groups\"\ncontains_any = [\"admins\", \"ops\"]\n\
                       [[routes.rules]]\nclaim = \"email_verified\"\nequals = true\n"
            .into(),
        ..Default::default()
    })
    .await;
    let (mut alice, mut bob) = (Browser::new(), Browser::new());
    bff.login(&mut alice, "alice", "/").await;
    bff.login(&mut bob, "bob", "/").await;
    let refused = bob.get(&bff.url("/admin/users"), &[CSRF]).await;
    assert_eq!((refused.status, refused.json()["error"].as_str()), (403, Some("forbidden")), "{}", refused.text());
    assert!(refused.location().is_none());
    assert_eq!(bff.upstream.count(), 0, "a refused call reached the upstream");
    assert_eq!(bob.get(&bff.url("/api/x"), &[CSRF]).await.status, 200, "other routes are not ruled");
    let admitted = alice.get(&bff.url("/admin/users"), &[CSRF]).await;
    assert_eq!(admitted.status, 200, "{}", admitted.text());
    let last = bff.upstream.requests().pop().unwrap();
    assert!(last.uri.ends_with("/api/users") && last.headers.contains_key("authorization"));
    let anonymous = http_call(Method::GET, &bff.url("/admin/users"), None, &[CSRF]).await;
    assert_eq!(anonymous.status, 401);
    let metrics = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert!(metrics.contains("cloakroom_forbidden_total{route=\"/admin/\"} 1"), "{metrics}");
}

/// Rules on the scope granted to the sign-in's access token (issue 16, item 1), as the real
/// provider grants it: the API's `api:read` is granted, `api:write` (which the provider does
/// not know) is not. A route asking for a scope not granted refuses with 403 and forwards
/// nothing; one asking for a granted scope, together with a claim rule, forwards.
#[tokio::test]
async fn scope_rules_admit_only_sessions_granted_the_scope() {
    let bff = Bff::start_with(BffOptions {
        oidc_toml: "scopes = [\"openid\", \"profile\", \"email\", \"api:read\", \"api:write\"]\n".into(),
        extra_routes: "[[routes]]\nprefix = \"/reader/\"\nupstream = \"{upstream}/read/\"\n\
                       [[routes.rules]]\nscope = \"api:read\"\n\
                       [[routes.rules]]\nclaim = \"email_verified\"\nequals = true\n\
                       [[routes]]\nprefix = \"/writer/\"\nupstream = \"{upstream}/write/\"\n\
                       [[routes.rules]]\nscope = [\"api:read\", \"api:write\"]\n"
            .into(),
        ..Default::default()
    })
    .await;
    let mut alice = Browser::new();
    bff.login(&mut alice, "alice", "/").await;
    let refused = alice.get(&bff.url("/writer/orders"), &[CSRF]).await;
    assert_eq!((refused.status, refused.json()["error"].as_str()), (403, Some("forbidden")), "{}", refused.text());
    assert_eq!(bff.upstream.count(), 0, "a call without the granted scope reached the upstream");
    let admitted = alice.get(&bff.url("/reader/orders"), &[CSRF]).await;
    assert_eq!(admitted.status, 200, "{}", admitted.text());
    let forwarded = bff.upstream.requests().pop().unwrap();
    assert!(forwarded.uri.ends_with("/read/orders") && forwarded.headers.contains_key("authorization"));
    let metrics = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    assert!(metrics.contains("cloakroom_forbidden_total{route=\"/writer/\"} 1"), "{metrics}");
    assert!(!metrics.contains("cloakroom_forbidden_total{route=\"/reader/\"}"), "{metrics}");
}

/// A ruled route nested in an open one (`/api/admin/` inside `/api/`, both to one upstream): a
/// path that matches the outer route here but that the upstream would serve from the nested
/// one's space (decoded, merged slashes, another case, path parameters, trailing dots, the
/// prefix without its slash) is refused as `bad_path`, never forwarded past the nested
/// route's rules; plain paths route as before.
#[tokio::test]
async fn a_nested_routes_rules_cannot_be_skipped_through_the_outer_route() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/api/admin/\"\nupstream = \"{upstream}/api/admin/\"\n\
                       [[routes.rules]]\nclaim = \"groups\"\ncontains_any = [\"admins\"]\n"
            .into(),
        ..Default::default()
    })
    .await;
    let mut bob = Browser::new();
    bff.login(&mut bob, "bob", "/").await;
    assert_eq!(bob.get(&bff.url("/api/admin/users"), &[CSRF]).await.status, 403);
    let count = bff.upstream.count();
    for path in [
        "/api/%61dmin/users",
        "/api/%2561dmin/users",
        "/api//admin/users",
        "/api/ADMIN/users",
        "/api/Admin/users",
        "/api/admin;x=1/users",
        "/api/admin%3Bx/users",
        "/api/admin./users",
        "/api/admin%20/users",
        "/api/%ef%bd%81dmin/users",
        "/api/admin",
    ] {
        let reply = bob.get(&bff.url(path), &[CSRF]).await;
        assert_eq!((reply.status, reply.json()["error"].as_str()), (400, Some("bad_path")), "{path}");
    }
    assert_eq!(bff.upstream.count(), count, "a path read as the nested route's went past its rules");
    for path in ["/api/x", "/api/administrators", "/api/Users/42", "/api/x/admin/y"] {
        assert_eq!(bob.get(&bff.url(path), &[CSRF]).await.status, 200, "{path}");
    }
}

/// An upstream answer head over 8 KiB (the buffer a slow reader's answer streams through, as
/// nginx's default `proxy_buffer_size`) is a clean 502, as docs/deployment.md says; the next
/// call works.
#[tokio::test]
async fn an_upstream_answer_head_over_8_kib_is_a_502() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/open/\"\nupstream = \"{upstream}/api/\"\ntoken = \"none\"\n".into(),
        ..Default::default()
    })
    .await;
    let reply = http_call(Method::GET, &bff.url("/open/big-head"), None, &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (502, Some("upstream_unreachable")), "{}", reply.text());
    assert_eq!(http_call(Method::GET, &bff.url("/open/x"), None, &[CSRF]).await.status, 200);
}

/// One raw HTTP/1.1 exchange on `stream`: `Ok(close)` when an answer came (`close`: the server
/// asked to close), `Err` when the request went out and no answer came back (lost).
async fn exchange(stream: &mut tokio::net::TcpStream) -> Result<bool, ()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /open/fast HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\n\r\n").await.map_err(|_| ())?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).ok_or(())?;
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    if !head.starts_with("http/1.1 200") {
        return Err(());
    }
    Ok(head.contains("connection: close"))
}

/// Issue 27, item 5: a plain keep-alive client that does not watch `/readyz` and retries only a
/// refused connection (as wrk does, and many load generators) lost requests across a shutdown:
/// connections the kernel had completed but cloakroom had not yet accepted were reset with the
/// listener, their requests already sent. None is lost now: every completed connection is
/// accepted and answered (`Connection: close`) before the listener closes; after that, a
/// connection is refused, which the client retries elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_loses_no_request_of_a_client_that_only_retries_refused_connections() {
    let bff = Bff::start_with(BffOptions {
        server_toml: "shutdown_delay = \"300ms\"".into(),
        extra_routes: "[[routes]]\nprefix = \"/open/\"\nupstream = \"{upstream}/open/\"\ntoken = \"none\"\n".into(),
        ..Default::default()
    })
    .await;
    let addr = bff.server.addr;
    let (answered, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (answered, lost) = (answered.clone(), lost.clone());
        workers.push(tokio::spawn(async move {
            let mut refused_since: Option<std::time::Instant> = None;
            loop {
                let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                    // Refused: the server is gone; give up once it has been for a while.
                    let since = *refused_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > Duration::from_millis(500) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                refused_since = None;
                loop {
                    match exchange(&mut stream).await {
                        Ok(false) => answered.fetch_add(1, Ordering::SeqCst),
                        Ok(true) => {
                            answered.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Err(()) => {
                            lost.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    };
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    bff.server.stop().await;
    for worker in workers {
        worker.await.unwrap();
    }
    let (answered, lost) = (answered.load(Ordering::SeqCst), lost.load(Ordering::SeqCst));
    println!("across the shutdown: {answered} answered, {lost} lost");
    assert!(answered > 200, "too little load to mean anything: {answered}");
    assert_eq!(lost, 0, "{lost} requests went out and got no answer ({answered} answered)");
}
