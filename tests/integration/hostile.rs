//! Hostile bytes: the outside review's findings (issue 13), one regression test each, and the
//! classes behind them driven through every endpoint over raw HTTP/1.1 and h2c.

use crate::support::*;
use http::Method;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The review's configuration: extra routes to the recording upstream, a trusted proxy address.
fn review_routes(server_toml: &str) -> BffOptions {
    BffOptions {
        extra_routes: r#"
[[routes]]
prefix = "/rec/"
upstream = "{upstream}/api/"
token = "user"
[[routes]]
prefix = "/open/"
upstream = "{upstream}/api/"
token = "none"
[[routes]]
prefix = "/maybe/"
upstream = "{upstream}/api/"
token = "user-or-none"
"#
        .into(),
        server_toml: server_toml.into(),
        ..Default::default()
    }
}

/// Sends raw bytes to cloakroom on one connection and reads the whole answer (the request asks
/// for `Connection: close`, or the read stops after `wait`).
async fn raw(bff: &Bff, request: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(bff.server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    answer
}

fn status_of(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
}

/// A request over h2c (HTTP/2 with prior knowledge), its header fields as given (repeats kept).
async fn h2c(bff: &Bff, path: &str, fields: &[(&str, &[u8])]) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    let (mut sender, _connection) = h2c_connect(bff.server.addr).await;
    let mut request = http::Request::builder().uri(bff.url(path)).version(http::Version::HTTP_2);
    for (name, value) in fields {
        request = request.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    let response = sender.send_request(request.body(cloakroom::respond::empty()).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn cookie_of(request: &Recorded) -> Vec<u8> {
    request.headers.get_all("cookie").iter().flat_map(|v| v.as_bytes().to_vec()).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[tokio::test]
async fn finding_1_a_non_ascii_cookie_neither_hides_the_session_nor_carries_the_ticket_upstream() {
    let bff = Bff::start_with(review_routes("")).await;
    let mut browser = Browser::new();
    // Set before signing in: the sign-in itself must work with it.
    browser.set_cookie("lang", "fran\u{e7}ais");
    let page = bff.login(&mut browser, "alice", "/").await;
    assert_eq!(page.status, 200, "sign-in with a UTF-8 cookie: {}", page.text());
    let ticket = session_cookie(&browser).expect("signed in");
    assert_eq!(bff.user(&mut browser).await.status, 200, "the session was hidden");

    for path in ["/rec/x", "/open/x", "/maybe/x", "/api/x"] {
        assert_eq!(browser.get(&bff.url(path), &[CSRF]).await.status, 200, "{path}");
        let seen = bff.upstream.requests().pop().unwrap();
        let cookies = cookie_of(&seen);
        assert!(!contains(&cookies, ticket.as_bytes()), "{path}: the ticket went upstream");
        assert!(!contains(&cookies, b"__Host-Http-cloakroom"), "{path}: {:?}", String::from_utf8_lossy(&cookies));
        assert!(cookies.starts_with("lang=fran\u{e7}ais".as_bytes()), "{path}: the app's cookie is kept");
    }

    // Over h2c, the cookie in one field and in crumbs.
    let pair = format!("__Host-Http-cloakroom={ticket}");
    let one = format!("lang=fran\u{e7}ais; {pair}");
    for fields in [
        vec![("cookie", one.as_bytes()), ("x-csrf", b"1".as_slice())],
        vec![("cookie", "lang=fran\u{e7}ais".as_bytes()), ("cookie", pair.as_bytes()), ("x-csrf", b"1")],
    ] {
        for path in ["/open/h2", "/maybe/h2", "/rec/h2"] {
            let (status, _) = h2c(&bff, path, &fields).await;
            assert_eq!(status, 200, "{path}");
            let cookies = cookie_of(&bff.upstream.requests().pop().unwrap());
            assert!(!contains(&cookies, ticket.as_bytes()), "{path} over h2c: the ticket went upstream");
        }
        let (status, body) = h2c(&bff, "/bff/user", &fields).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    // The ticket under a name a loose reader folds into cloakroom's (case: ASP.NET Core;
    // percent-escapes: PHP; a no-break space: JavaScript's trim() over a Latin-1 header) is not
    // forwarded either, and does not open the session (only the exact name does).
    for name in [
        &b"__host-http-cloakroom"[..],
        b"__HOST-HTTP-CLOAKROOM",
        b"__Host%2DHttp%2Dcloakroom",
        b"\xa0__Host-Http-cloakroom",
        b"__Host-Http-cloakroom\xc2\xa0",
    ] {
        let value = [&b"lang=en; "[..], name, b"=", ticket.as_bytes()].concat();
        for path in ["/open/loose", "/maybe/loose"] {
            let (status, _) = h2c(&bff, path, &[("cookie", &value), ("x-csrf", b"1")]).await;
            assert_eq!(status, 200, "{path}");
            let cookies = cookie_of(&bff.upstream.requests().pop().unwrap());
            assert!(
                !contains(&cookies, ticket.as_bytes()),
                "{path} {:?}: the ticket went upstream",
                String::from_utf8_lossy(name)
            );
            assert_eq!(cookies, b"lang=en", "{:?}: the app's cookie is kept", String::from_utf8_lossy(name));
        }
        let (status, _) = h2c(&bff, "/bff/user", &[("cookie", &value), ("x-csrf", b"1")]).await;
        assert_eq!(status, 401, "{:?} opened the session", String::from_utf8_lossy(name));
    }

    // Logout ends the session on the server, not only in the browser.
    assert_eq!(bff.session_count().await, 1);
    let reply = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(bff.session_count().await, 0, "logout left the session alive");
    let mut thief = Browser::new();
    thief.set_cookie("__Host-Http-cloakroom", &ticket);
    assert_eq!(thief.get(&bff.url("/rec/x"), &[CSRF]).await.status, 401, "the copied ticket still works");
}

#[tokio::test]
async fn finding_2_no_spelling_of_a_dot_segment_leaves_the_prefix() {
    let bff = Bff::start_with(review_routes("")).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let count = bff.upstream.count();
    for route in ["/api/", "/open/", "/rec/"] {
        for escape in [
            "..;/admin/users",
            ".;/admin",
            "%2e%2e;/admin",
            "..%3b/admin",
            "..;jsessionid=1/admin",
            "..%09/x",
            "..%20/x",
            "%c0%ae%c0%ae/x",
            "%u002e%u002e/x",
            "%252e%252e/x",
            "%25252e%25252e/x",
            "%ef%bc%8e%ef%bc%8e/x",
            "...%2f/x",
            "%252f..%252f/x",
            "..%3f/x",
            "..%23/x",
            "..%ff/x",
            "..%e2%80%8b/x",
            "..:/x",
            "..,/x",
        ] {
            let reply = browser.get(&bff.url(&format!("{route}{escape}")), &[CSRF]).await;
            assert_eq!((reply.status, reply.json()["error"].as_str()), (400, Some("bad_path")), "{route}{escape}");
        }
    }
    assert_eq!(bff.upstream.count(), count, "an escaping path was forwarded");
    // Ordinary paths with dots, semicolons and escapes still pass.
    for path in ["/open/v1.2/x", "/open/a;b=c", "/open/caf%C3%A9", "/open/100%25"] {
        assert_eq!(browser.get(&bff.url(path), &[CSRF]).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn finding_3_a_client_behind_the_trusted_proxy_chooses_neither_address_nor_scheme() {
    // The test client connects from 127.0.0.1: it plays the trusted proxy.
    let bff = Bff::start_with(review_routes(r#"trusted_proxies = ["127.0.0.1/32"]"#)).await;
    let mut browser = Browser::new();
    let forwarded_for = |bff: &Bff| {
        let seen = bff.upstream.requests().pop().unwrap();
        let get = |name: &str| seen.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        (get("x-forwarded-for"), get("x-forwarded-proto"), seen.headers.contains_key("forwarded"))
    };
    // The proxy appends X-Forwarded-For; the client's own Forwarded is not believed.
    let reply = browser
        .get(&bff.url("/open/x"), &[CSRF, ("forwarded", "for=6.6.6.6;proto=https"), ("x-forwarded-for", "192.0.2.10")])
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("strict-transport-security").is_none(), "HSTS on a client-chosen scheme");
    assert_eq!(forwarded_for(&bff), (Some("192.0.2.10".into()), Some("http".into()), false));
    // Unreadable hops are "unknown", never the proxy's own address.
    for hop in ["unknown", "", "not-an-address", "192.0.2.1, garbage"] {
        browser.get(&bff.url("/open/x"), &[CSRF, ("x-forwarded-for", hop)]).await;
        assert_eq!(forwarded_for(&bff).0.as_deref(), Some("unknown"), "{hop:?}");
    }
    browser.get(&bff.url("/open/x"), &[CSRF, ("x-forwarded-for", "192.0.2.\u{e9}")]).await;
    assert_eq!(forwarded_for(&bff).0.as_deref(), Some("unknown"));
    // Nor the port, prefix, scheme, host or path through the headers other servers read for
    // them (Spring and Rack read X-Forwarded-Port/-Prefix/-Ssl/-Scheme; IIS X-Original-URL).
    let spoofs = [
        ("x-forwarded-port", "8443"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-ssl", "on"),
        ("x-forwarded-scheme", "https"),
        ("x-forwarded-server", "evil.example"),
        ("x-real-ip", "6.6.6.6"),
        ("true-client-ip", "6.6.6.6"),
        ("cf-connecting-ip", "6.6.6.6"),
        ("front-end-https", "on"),
        ("x-original-url", "/admin/users"),
        ("x-rewrite-url", "/admin/users"),
        ("x-original-host", "evil.example"),
    ];
    browser.get(&bff.url("/open/x"), &[&[CSRF][..], &spoofs[..]].concat()).await;
    let seen = bff.upstream.requests().pop().unwrap();
    for (name, _) in spoofs {
        assert!(!seen.headers.contains_key(name), "{name} reached the upstream");
    }

    // With proxies that write RFC 7239 Forwarded, the X- headers are the client's.
    let bff =
        Bff::start_with(review_routes("trusted_proxies = [\"127.0.0.1/32\"]\ntrusted_proxy_header = \"forwarded\""))
            .await;
    browser
        .get(
            &bff.url("/open/x"),
            &[CSRF, ("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https"), ("forwarded", "for=192.0.2.10")],
        )
        .await;
    assert_eq!(forwarded_for(&bff), (Some("192.0.2.10".into()), Some("http".into()), false));
    for element in ["for=unknown", "", "for=_hidden", "proto=https"] {
        browser.get(&bff.url("/open/x"), &[CSRF, ("forwarded", element)]).await;
        assert_eq!(forwarded_for(&bff).0.as_deref(), Some("unknown"), "{element:?}");
    }
    let reply = browser.get(&bff.url("/open/x"), &[CSRF, ("forwarded", "for=192.0.2.10;proto=https")]).await;
    assert!(reply.header("strict-transport-security").is_some(), "the proxy's own proto=https is believed");
}

#[tokio::test]
async fn finding_4_control_bytes_in_state_get_a_page_and_name_no_cookie() {
    let bff = Bff::start_with(review_routes("")).await;
    for query in [
        "state=%0Aabc&code=x",
        "state=%0D%0Aabc&code=x",
        "state=a%3B%20Domain%3Devil.example&code=x",
        "state=%00&code=x",
        "state=%FF%FE&code=x",
        "state=abcdefghijklmnop%0A&code=x",
    ] {
        let request =
            format!("GET /bff/callback?{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", bff.server.addr);
        let answer = raw(&bff, request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 400, "{query}: {}", String::from_utf8_lossy(&answer));
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(text.contains("content-type: text/html"), "{query}: not a page");
        assert!(!text.contains("set-cookie"), "{query}: a cookie named from the request: {text}");
    }
}

#[tokio::test]
async fn finding_5_upstreams_see_public_urls_host_whatever_host_the_client_sent() {
    let bff = Bff::start_with(review_routes("")).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    assert_eq!(browser.get(&bff.url("/rec/x"), &[CSRF, ("host", "attacker.example")]).await.status, 200);
    let seen = bff.upstream.requests().pop().unwrap();
    let public_host = bff.origin.trim_start_matches("http://");
    assert_eq!(seen.headers["x-forwarded-host"], public_host);
    assert_eq!(seen.headers.get_all("x-forwarded-host").iter().count(), 1);

    // Missing (HTTP/1.1) or repeated Host: 400, nothing forwarded.
    let count = bff.upstream.count();
    for head in [
        "GET /open/x HTTP/1.1\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n".to_string(),
        format!(
            "GET /open/x HTTP/1.1\r\nHost: {0}\r\nHost: {0}\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n",
            bff.server.addr
        ),
        format!(
            "GET /open/x HTTP/1.1\r\nHost: {}\r\nHost: evil.example\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n",
            bff.server.addr
        ),
    ] {
        let answer = raw(&bff, head.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 400, "{head:?}");
        assert!(String::from_utf8_lossy(&answer).contains("bad_host"), "{head:?}");
    }
    assert_eq!(bff.upstream.count(), count);
}

#[tokio::test]
async fn finding_6_connect_and_trace_are_refused_not_forwarded() {
    let bff = Bff::start_with(review_routes("")).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let count = bff.upstream.count();
    let reply = browser.request(Method::TRACE, &bff.url("/rec/x"), None, &[CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (405, Some("method_not_allowed")));
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    for target in ["/rec/x", "/api/x", "/open/x"] {
        let request = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            bff.server.addr
        );
        let answer = raw(&bff, request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 405, "CONNECT {target}: {}", String::from_utf8_lossy(&answer));
    }
    // IIS's TRACK, and the same methods in another case (some servers read methods without it).
    for method in ["TRACK", "trace", "Connect", "track"] {
        let request = format!(
            "{method} /open/x HTTP/1.1\r\nHost: {}\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            bff.server.addr
        );
        let answer = raw(&bff, request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 405, "{method}: {}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(bff.upstream.count(), count, "CONNECT, TRACE or TRACK reached the upstream");
    let access = logs();
    assert!(!access.lines().any(|l| l.contains("method=CONNECT") && l.contains("status=200")), "logged as a 200");
}

#[tokio::test]
async fn finding_7_a_malformed_chunked_body_is_the_clients_fault() {
    let bff = Bff::start_with(review_routes("")).await;
    let errors_before = upstream_errors(&bff).await;
    let request = format!(
        "POST /open/upload HTTP/1.1\r\nHost: {}\r\nX-CSRF: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nbroken\r\n",
        bff.server.addr
    );
    let answer = raw(&bff, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 400, "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("bad_body"));
    assert_eq!(upstream_errors(&bff).await, errors_before, "a client's bad body counted against the upstream");
}

async fn upstream_errors(bff: &Bff) -> usize {
    let metrics = http_call(Method::GET, &format!("{}/metrics", bff.admin), None, &[]).await.text();
    metrics
        .lines()
        .filter(|l| l.starts_with("cloakroom_upstream_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

#[tokio::test]
async fn finding_8_request_data_cannot_forge_log_lines() {
    let bff = Bff::start_with(review_routes("")).await;
    let mut browser = Browser::new();
    let callback = bff.authorize(&mut browser, "alice", "/").await;
    let state = url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let marker = "FORGED-LINE-7f3a";
    let forged = format!("access_denied%0D%0A2026-01-01T00:00:00Z%20INFO%20{marker}%1B%5B2J");
    let reply = browser.get(&bff.url(&format!("/bff/callback?state={state}&error={forged}")), &[]).await;
    assert_eq!(reply.status, 400);
    let text = logs();
    assert!(text.contains(marker), "the refusal was not logged");
    for line in text.lines().filter(|l| l.contains(marker)) {
        assert!(!line.trim_start().starts_with("2026-01-01") && !line.contains('\u{1b}'), "forged: {line:?}");
        assert!(line.contains("\\r\\n2026-01-01"), "escaped: {line:?}");
    }
}

#[tokio::test]
async fn finding_9_and_10_upstream_cookies_and_repeated_guards() {
    let bff = Bff::start_with(review_routes("")).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let ticket = session_cookie(&browser).unwrap();
    // 9: the upstream's Set-Cookie for our names, with and without a name, never reaches the browser.
    let reply = browser.get(&bff.url("/rec/set-cookie"), &[CSRF]).await;
    assert_eq!(reply.set_cookies(), ["app=1; Path=/"]);
    assert_eq!(session_cookie(&browser), Some(ticket));
    // 10: a call with a token gets `Cache-Control: private` when the upstream says nothing.
    assert_eq!(reply.header("cache-control"), Some("private"));
    // 10: a repeated anti-CSRF header or Origin is not a pass.
    let count = bff.upstream.count();
    let origin = bff.origin.clone();
    for headers in [
        vec![CSRF, CSRF],
        vec![CSRF, ("x-csrf", "0")],
        vec![CSRF, ("origin", origin.as_str()), ("origin", "https://evil.example")],
        vec![CSRF, ("sec-fetch-site", "same-origin"), ("sec-fetch-site", "cross-site")],
    ] {
        assert_eq!(browser.get(&bff.url("/rec/x"), &headers).await.status, 403, "{headers:?}");
    }
    assert_eq!(bff.upstream.count(), count);
    // 10: a client's X-Request-Id is not adopted (only a trusted proxy's is).
    let reply = browser.get(&bff.url("/rec/x"), &[CSRF, ("x-request-id", "chosen-by-client")]).await;
    assert_ne!(reply.header("x-request-id"), Some("chosen-by-client"));
    let seen = bff.upstream.requests().pop().unwrap();
    assert_ne!(seen.headers["x-request-id"], "chosen-by-client");
}

#[tokio::test]
async fn a_trusted_proxys_request_id_is_adopted() {
    let bff = Bff::start_with(review_routes(r#"trusted_proxies = ["127.0.0.1/32"]"#)).await;
    let reply = http_call(Method::GET, &bff.url("/open/x"), None, &[CSRF, ("x-request-id", "lb-4f2a")]).await;
    assert_eq!(reply.header("x-request-id"), Some("lb-4f2a"));
}

/// The class: every endpoint, driven with hostile bytes over raw HTTP/1.1, answers with a
/// precise status (never a 5xx, never an empty reply), and nothing of ours goes upstream.
#[tokio::test]
async fn every_endpoint_answers_hostile_bytes_with_a_clear_4xx() {
    let bff = Bff::start_with(review_routes(r#"trusted_proxies = ["127.0.0.2/32"]"#)).await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let ticket = session_cookie(&browser).unwrap();
    let targets = [
        "GET /bff/login?returnUrl=%0D%0A%FF%2e%2e",
        "GET /bff/callback?state=%FF%00%0A&code=%80&iss=%0D&error=%1B",
        "GET /bff/callback?state=a&state=b",
        "GET /bff/user",
        "POST /bff/logout",
        "GET /bff/sessions",
        "DELETE /bff/sessions/%FF%0A..%2F",
        "POST /bff/backchannel-logout",
        "GET /rec/x?%FF=%00",
        "POST /open/upload",
        "GET /maybe/%C0%AE%C0%AE",
        "GET /%FF%FE/../x",
        "GET /bff/%2e%2e/api/x",
    ];
    let hostile_headers: [&[u8]; 6] = [
        b"Cookie: lang=fran\xc3\xa7ais; __Host-Http-cloakroom=TICKET\r\n",
        b"Cookie: \xff\xfe\xfd; __Host-Http-cloakroom=TICKET; \x80=\x81\r\nCookie: x=\xc3\r\n",
        b"Origin: https://\xc3\xa9vil.example\r\nSec-Fetch-Site: \xff\r\n",
        b"X-Forwarded-For: \xff, 1.2.3.4\r\nForwarded: for=\"\xc3\xa9\"\r\n",
        b"Content-Type: application/x-www-form-urlencoded\xff\r\nContent-Length: 11\r\n\r\nlogout_tok\xff",
        b"Connection: \xff, x-a\r\nX-A: 1\r\nUser-Agent: \xc3\x28\xa0\xa1\r\nX-Request-Id: \xff\r\n",
    ];
    for target in targets {
        for headers in hostile_headers {
            let mut request =
                format!("{target} HTTP/1.1\r\nHost: {}\r\nX-CSRF: 1\r\nConnection: close\r\n", bff.server.addr)
                    .into_bytes();
            request.extend(replace(headers, b"TICKET", ticket.as_bytes()));
            if !contains(headers, b"\r\n\r\n") {
                request.extend_from_slice(b"\r\n");
            }
            let answer = raw(&bff, &request, Duration::from_secs(5)).await;
            let status = status_of(&answer);
            let shown = String::from_utf8_lossy(headers);
            assert!(status < 500, "{target} with {shown:?}: {}", String::from_utf8_lossy(&answer));
        }
    }
    for seen in bff.upstream.requests() {
        assert!(!contains(&cookie_of(&seen), ticket.as_bytes()), "the ticket went upstream: {seen:?}");
        assert!(!contains(&cookie_of(&seen), b"__Host-Http-cloakroom"), "{seen:?}");
    }
}

/// Issue 26, item 1: with `/rec/admin/` (rules: admins only, GET only) and `/rec/secure/` (rules
/// of its own) nested in `/rec/`, spellings an upstream folds into those names (Unicode case
/// mappings, NFKC, format suffixes, raw UTF-8, IIS's `%u`) reached them past their rules with
/// bob's Bearer token. Each is now refused (`400 bad_path`) over HTTP/1.1 and h2c, and the
/// upstream sees none of them.
#[tokio::test]
async fn edges_3_item_1_a_nested_route_is_decided_on_one_reading_over_h1_and_h2c() {
    let bff = Bff::start_with(BffOptions {
        extra_routes: r#"
[[routes]]
prefix = "/rec/"
upstream = "{upstream}/api/"
[[routes]]
prefix = "/rec/admin/"
upstream = "{upstream}/api/admin/"
methods = ["GET"]
[[routes.rules]]
claim = "groups"
contains_any = ["admins"]
[[routes]]
prefix = "/rec/secure/"
upstream = "{upstream}/api/secure/"
[[routes.rules]]
claim = "groups"
contains_any = ["admins"]
"#
        .into(),
        ..Default::default()
    })
    .await;
    let mut bob = Browser::new();
    bff.login(&mut bob, "bob", "/").await;
    let cookie = format!("{}={}", bff.cookie_name(), session_cookie(&bob).unwrap());
    assert_eq!(bob.get(&bff.url("/rec/admin/x"), &[CSRF]).await.status, 403, "bob is no admin");
    let count = bff.upstream.count();
    let paths: &[&[u8]] = &[
        b"/rec/adm%C4%B1n/x",
        b"/rec/ADM%C4%B0N/x",
        b"/rec/%E1%B5%83dmin/x",
        b"/rec/admi%E2%81%BF/x",
        b"/rec/%F0%9D%90%9Admin/x",
        b"/rec/%E2%93%90dmin/x",
        "/rec/adm\u{131}n/x".as_bytes(),
        "/rec/\u{1d41a}dmin/x".as_bytes(),
        b"/rec/adm%u0131n/x",
        b"/rec/admin.json",
        b"/rec/Admin.json",
        b"/rec/admin.html",
        b"/rec/%C5%BFecure/x",
        "/rec/\u{17f}ecure/x".as_bytes(),
        b"/rec/secure.json",
        b"/rec/%E2%84%AAdmin/x",
    ];
    for path in paths {
        let shown = String::from_utf8_lossy(path);
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(path);
        request.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let answer = raw(&bff, &request, Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 400, "HTTP/1.1 {shown}: {}", String::from_utf8_lossy(&answer));
        if path.is_ascii() {
            let (status, body) = h2c(&bff, &shown, &[("x-csrf", b"1"), ("cookie", cookie.as_bytes())]).await;
            assert_eq!(status, 400, "h2c {shown}: {}", String::from_utf8_lossy(&body));
        }
    }
    assert_eq!(bff.upstream.count(), count, "a spelling of a nested route went past its rules");
    for path in ["/rec/x", "/rec/administrators", "/rec/caf%C3%A9", "/rec/x.json"] {
        assert_eq!(bob.get(&bff.url(path), &[CSRF]).await.status, 200, "{path}");
    }
}
