//! `cloakroom audit <URL>`: checks a running deployment from the outside, the way a security
//! reviewer would, and prints a pass/fail report. It works against any BFF that follows the same
//! conventions (`/bff/login`, `/bff/user`, `/bff/logout`, an anti-CSRF header), not only
//! cloakroom.
//!
//! Without a session it checks the login redirect (PKCE S256, `state`, `nonce`), the login
//! cookie's attributes, the refusals (no anti-CSRF header, a cross-site `Origin`, no session),
//! the SPA's security headers and HSTS. With `--cookie` (a session the reviewer signed in to
//! get) it also checks that `/bff/user` and API errors carry no token, the session cookie's
//! attributes as the logout clears it, and that logout really ends the session: the audit
//! spends that session.
//!
//! It also probes the classes of hostile input an outside review found (issue 13), as far as
//! they can be seen from outside: `..;`-style and encoded dot segments under the API prefix,
//! `TRACE` (and `TRACK`, lower case, a method-override header), a repeated `Host`, a foreign `Host` steering the login's `redirect_uri`, control
//! bytes in the callback's parameters, and (with a session) a non-ASCII cookie beside the
//! session cookie, which must neither hide the session nor keep logout from ending it.

use cloakroom::respond::empty;
use cloakroom::upstream::HttpClient;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use std::time::Duration;
use url::Url;

/// What to audit and how.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub base: Url,
    /// `NAME=VALUE` of a signed-in session; a bare value is taken as `__Host-Http-cloakroom`.
    pub cookie: Option<String>,
    /// An API route prefix behind the BFF.
    pub api_path: String,
    pub csrf_header: String,
    pub client: HttpClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable here (no SPA, plain http on loopback, no session given).
    Skip,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn record(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) {
        let outcome = if ok { Outcome::Pass } else { Outcome::Fail };
        self.checks.push(Check { name, outcome, detail: detail.into() });
    }

    fn skip(&mut self, name: &'static str, detail: impl Into<String>) {
        self.checks.push(Check { name, outcome: Outcome::Skip, detail: detail.into() });
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let tag = match check.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "SKIP",
            };
            out.push_str(&format!("{tag}  {:<32} {}\n", check.name, check.detail));
        }
        let failed = self.checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
        out.push_str(&format!(
            "\n{} checks: {} passed, {failed} failed, {} skipped\n",
            self.checks.len(),
            self.checks.iter().filter(|c| c.outcome == Outcome::Pass).count(),
            self.checks.iter().filter(|c| c.outcome == Outcome::Skip).count()
        ));
        out
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Auditor {
    options: AuditOptions,
    origin: String,
    /// Every header and body received, scanned for tokens at the end.
    received: String,
}

impl Auditor {
    async fn call(&mut self, method: Method, path: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        let url = self.options.base.join(path).map_err(|e| format!("{path}: {e}"))?;
        let mut request = Request::builder().method(method).uri(url.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(empty()).map_err(|e| e.to_string())?;
        self.exchange(request, url.as_str()).await
    }

    /// Like [`Auditor::call`], with the path sent byte for byte: no URL parser may normalise
    /// the dot segments being probed.
    async fn call_raw(&mut self, method: Method, path: &str, headers: &[(&str, &[u8])]) -> Result<Answer, String> {
        let uri = format!("{}{path}", self.origin);
        let mut request = Request::builder().method(method).uri(uri.as_str());
        for (name, value) in headers {
            let value = http::HeaderValue::from_bytes(value).map_err(|e| format!("{name}: {e}"))?;
            request = request.header(*name, value);
        }
        let request = request.body(empty()).map_err(|e| format!("{uri}: {e}"))?;
        self.exchange(request, &uri).await
    }

    /// Sends `request`, reads its answer (bounded), and keeps every byte received for the
    /// token scan at the end.
    async fn exchange(&mut self, request: Request<cloakroom::respond::Body>, label: &str) -> Result<Answer, String> {
        let response =
            self.options.client.send(request, Duration::from_secs(10)).await.map_err(|e| format!("{label}: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .map_err(|_| format!("{label}: body timed out"))?
            .map_err(|e| format!("{label}: {e}"))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body[..body.len().min(1 << 20)]).into_owned();
        for (name, value) in &parts.headers {
            self.received.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
        }
        self.received.push_str(&body);
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }
}

/// Runs every check; an error only when the target cannot be reached at all.
pub async fn run(options: AuditOptions) -> Result<Report, String> {
    let origin = options.base.origin().ascii_serialization();
    let mut auditor = Auditor { options, origin, received: String::new() };
    let mut report = Report::default();
    login_checks(&mut auditor, &mut report).await?;
    refusal_checks(&mut auditor, &mut report).await?;
    spa_and_tls_checks(&mut auditor, &mut report).await?;
    hostile_input_checks(&mut auditor, &mut report).await?;
    session_checks(&mut auditor, &mut report).await?;
    let jwts = jwt_shaped(&auditor.received);
    report.record(
        "responses.token_free",
        jwts.is_empty(),
        if jwts.is_empty() {
            "no JWT-shaped string in any response the audit received".to_string()
        } else {
            format!("{} JWT-shaped string(s) in responses, e.g. {}…", jwts.len(), &jwts[0][..jwts[0].len().min(24)])
        },
    );
    Ok(report)
}

async fn login_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let login = a.call(Method::GET, "/bff/login", &[]).await?;
    let location = login.header(LOCATION.as_str()).and_then(|l| a.options.base.join(l).ok());
    let Some(location) = location.filter(|_| login.status.is_redirection()) else {
        report.record("login.redirect", false, format!("/bff/login answered {} without a redirect", login.status));
        return Ok(());
    };
    report.record(
        "login.redirect",
        true,
        format!("{} to {}", login.status.as_u16(), location.origin().ascii_serialization()),
    );
    let query: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    if query.contains_key("request_uri") {
        // RFC 9126: the parameters went to the provider directly; the browser (and so this
        // audit) sees only their handle.
        let only_handle = query.keys().all(|k| k == "client_id" || k == "request_uri");
        report.record(
            "login.pushed",
            only_handle,
            format!("pushed authorization request, {} parameter(s) in the URL", query.len()),
        );
        for name in ["login.response_type_code", "login.pkce_s256", "login.state", "login.nonce"] {
            report.skip(name, "pushed to the provider (PAR): not visible to a browser");
        }
    } else {
        report.record(
            "login.response_type_code",
            param("response_type") == "code",
            format!("response_type={:?}", param("response_type")),
        );
        let pkce = param("code_challenge_method") == "S256" && param("code_challenge").len() >= 43;
        report.record(
            "login.pkce_s256",
            pkce,
            format!(
                "code_challenge_method={:?}, code_challenge of {} chars",
                param("code_challenge_method"),
                param("code_challenge").len()
            ),
        );
        // 128 bits of base64url at least.
        report.record("login.state", param("state").len() >= 22, format!("state of {} chars", param("state").len()));
        report.record("login.nonce", param("nonce").len() >= 22, format!("nonce of {} chars", param("nonce").len()));
    }
    let cookies: Vec<String> =
        login.headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect();
    let weak: Vec<String> = cookies.iter().filter_map(|c| weak_cookie(c)).collect();
    report.record(
        "login.cookie_attributes",
        weak.is_empty(),
        if weak.is_empty() {
            format!("{} cookie(s), all Secure, HttpOnly, SameSite, __Host-/__Secure-", cookies.len())
        } else {
            weak.join("; ")
        },
    );
    Ok(())
}

async fn refusal_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let header = a.options.csrf_header.clone();
    let csrf = (header.as_str(), "1");
    let user = a.call(Method::GET, "/bff/user", &[csrf]).await?;
    let json = user.header(CONTENT_TYPE.as_str()).is_some_and(|t| t.starts_with("application/json"));
    report.record(
        "user.unauthenticated_json_401",
        user.status == StatusCode::UNAUTHORIZED && json,
        format!("{} {}", user.status.as_u16(), user.header(CONTENT_TYPE.as_str()).unwrap_or("(no content-type)")),
    );

    let cookie = a.options.cookie.clone().map(|c| session_cookie(&c));
    let mut with_cookie: Vec<(&str, &str)> = Vec::new();
    if let Some(cookie) = &cookie {
        with_cookie.push((COOKIE.as_str(), cookie.as_str()));
    }
    let api = a.options.api_path.clone();
    let no_header = a.call(Method::GET, &api, &with_cookie).await?;
    // With a session, only the missing header can explain a refusal; without one, a 401 is
    // also a refusal.
    let refused =
        if cookie.is_some() { no_header.status == StatusCode::FORBIDDEN } else { no_header.status.is_client_error() };
    report.record(
        "csrf.header_required",
        refused,
        format!("{api} without {} answered {}", a.options.csrf_header, no_header.status.as_u16()),
    );
    let mut cross_site = with_cookie.clone();
    cross_site.extend([csrf, (ORIGIN.as_str(), "https://attacker.example"), ("sec-fetch-site", "cross-site")]);
    let cross = a.call(Method::GET, &api, &cross_site).await?;
    let refused = if cookie.is_some() { cross.status == StatusCode::FORBIDDEN } else { cross.status.is_client_error() };
    report.record(
        "csrf.cross_site_origin",
        refused,
        format!("{api} with a cross-site Origin answered {}", cross.status.as_u16()),
    );
    Ok(())
}

async fn spa_and_tls_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    // As a browser navigation asks for it.
    let page = a.call(Method::GET, "/", &[("accept", "text/html"), ("sec-fetch-mode", "navigate")]).await?;
    if page.status == StatusCode::NOT_FOUND {
        report.skip("spa.security_headers", "no page at /");
    } else {
        let mut missing = Vec::new();
        if page.header("content-security-policy").is_none() {
            missing.push("Content-Security-Policy");
        }
        if page.header("x-content-type-options") != Some("nosniff") {
            missing.push("X-Content-Type-Options: nosniff");
        }
        let framing = page.header("x-frame-options").is_some()
            || page.header("content-security-policy").is_some_and(|c| c.contains("frame-ancestors"));
        if !framing {
            missing.push("X-Frame-Options or CSP frame-ancestors");
        }
        if page.header("referrer-policy").is_none() {
            missing.push("Referrer-Policy");
        }
        report.record(
            "spa.security_headers",
            missing.is_empty(),
            if missing.is_empty() {
                "CSP, nosniff, framing, referrer policy".into()
            } else {
                format!("missing: {}", missing.join(", "))
            },
        );
    }
    let https = a.options.base.scheme() == "https";
    let loopback = match a.options.base.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if https {
        let max_age = page
            .header("strict-transport-security")
            .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("max-age=")))
            .and_then(|v| v.trim_matches('"').parse::<u64>().ok());
        report.record(
            "tls.hsts",
            max_age.is_some_and(|age| age >= 15_552_000),
            match max_age {
                Some(age) => format!("Strict-Transport-Security max-age={age} (at least 180 days wanted)"),
                None => "no Strict-Transport-Security".into(),
            },
        );
    } else if loopback {
        report.skip("tls.hsts", "plain http on loopback (local development)");
    } else {
        report.record("tls.hsts", false, "served over plain http: cookies marked Secure never reach it from a browser");
    }
    Ok(())
}

async fn session_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let Some(given) = a.options.cookie.clone() else {
        for name in
            ["session.cookie_name", "session.user_token_free", "logout.cookie_attributes", "logout.ends_session"]
        {
            report.skip(name, "no --cookie given");
        }
        return Ok(());
    };
    let cookie = session_cookie(&given);
    let name = cookie.split_once('=').map_or("", |(n, _)| n).to_string();
    report.record(
        "session.cookie_name",
        name.starts_with("__Host-"),
        format!("{name} (__Host- pins Secure, Path=/, no Domain)"),
    );

    let header = a.options.csrf_header.clone();
    let csrf = (header.as_str(), "1");
    let user = a.call(Method::GET, "/bff/user", &[csrf, (COOKIE.as_str(), &cookie)]).await?;
    let leaks = ["access_token", "refresh_token", "id_token"].iter().any(|k| user.body.contains(k));
    report.record(
        "session.user_token_free",
        user.status == StatusCode::OK && !leaks && jwt_shaped(&user.body).is_empty(),
        if user.status != StatusCode::OK {
            format!("/bff/user with the session answered {} (is the cookie still signed in?)", user.status.as_u16())
        } else if leaks {
            "/bff/user names a token field".into()
        } else {
            "/bff/user answers claims only".into()
        },
    );

    // A UTF-8 cookie beside the session: logout must end the session all the same.
    let origin = a.origin.clone();
    let mixed = format!("lang=fran\u{e7}ais; {cookie}");
    let logout = a
        .call(
            Method::POST,
            "/bff/logout",
            &[csrf, (COOKIE.as_str(), &mixed), (ORIGIN.as_str(), &origin), ("sec-fetch-site", "same-origin")],
        )
        .await?;
    let cleared: Vec<String> = logout
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|c| c.starts_with(&format!("{name}=")))
        .map(String::from)
        .collect();
    match cleared.first() {
        Some(set_cookie) => {
            let weak = weak_cookie(set_cookie);
            report.record(
                "logout.cookie_attributes",
                weak.is_none(),
                weak.unwrap_or_else(|| "cleared with Secure, HttpOnly, SameSite".into()),
            );
        }
        None => report.record(
            "logout.cookie_attributes",
            false,
            format!("logout ({}) did not clear {name}", logout.status.as_u16()),
        ),
    }
    let after = a.call(Method::GET, "/bff/user", &[csrf, (COOKIE.as_str(), &cookie)]).await?;
    let ended =
        (logout.status.is_success() || logout.status.is_redirection()) && after.status == StatusCode::UNAUTHORIZED;
    report.record(
        "logout.ends_session",
        ended,
        format!("logout answered {}; the old cookie then got {}", logout.status.as_u16(), after.status.as_u16()),
    );
    Ok(())
}

async fn hostile_input_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let header = a.options.csrf_header.clone();
    let csrf: (&str, &[u8]) = (header.as_str(), b"1");
    let api = a.options.api_path.trim_end_matches('/').to_string();
    path_checks(a, report, csrf, &api).await?;
    method_checks(a, report, csrf, &api).await?;
    host_checks(a, report, csrf).await?;
    callback_checks(a, report).await?;
    cookie_checks(a, report, csrf, &api).await
}

/// Dot segments in the spellings servers normalise: refused, never forwarded.
async fn path_checks(a: &mut Auditor, report: &mut Report, csrf: (&str, &[u8]), api: &str) -> Result<(), String> {
    let mut forwarded = Vec::new();
    let escapes = [
        "..;/x",
        "%2e%2e;/x",
        "..%3b/x",
        "..%09/x",
        "%252e%252e/x",
        "%c0%ae%c0%ae/x",
        "%u002e%u002e/x",
        "..%3f/x",
        "..%ff/x",
        "..%e2%80%8b/x",
    ];
    for escape in escapes {
        let path = format!("{api}/{escape}");
        let answer = a.call_raw(Method::GET, &path, &[csrf]).await?;
        if answer.status != StatusCode::BAD_REQUEST {
            forwarded.push(format!("{path} answered {}", answer.status.as_u16()));
        }
    }
    report.record(
        "paths.dot_segments",
        forwarded.is_empty(),
        if forwarded.is_empty() {
            format!(
                "{} spellings of a dot segment (path parameters, whitespace, double and overlong encodings, \
                 bytes lax decoders drop) refused with 400",
                escapes.len()
            )
        } else {
            format!("not refused: {}", forwarded.join("; "))
        },
    );
    Ok(())
}

/// Methods that echo or tunnel, asked for directly or through an override in a header or in
/// the query string (`?_method=`, as Laravel, Symfony, Express and Spring read it).
async fn method_checks(a: &mut Auditor, report: &mut Report, csrf: (&str, &[u8]), api: &str) -> Result<(), String> {
    let mut echoed = Vec::new();
    for method in ["TRACE", "TRACK", "trace"] {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let answer = a.call_raw(method.clone(), &format!("{api}/x"), &[csrf]).await?;
        if answer.status != StatusCode::METHOD_NOT_ALLOWED {
            echoed.push(format!("{method} answered {}", answer.status.as_u16()));
        }
    }
    let overridden =
        a.call_raw(Method::POST, &format!("{api}/x"), &[csrf, ("x-http-method-override", b"TRACE")]).await?;
    if overridden.status != StatusCode::METHOD_NOT_ALLOWED {
        echoed.push(format!("POST with X-HTTP-Method-Override: TRACE answered {}", overridden.status.as_u16()));
    }
    let in_query = a.call_raw(Method::POST, &format!("{api}/x?_method=TRACE"), &[csrf]).await?;
    if in_query.status != StatusCode::METHOD_NOT_ALLOWED {
        echoed.push(format!("POST {api}/x?_method=TRACE answered {}", in_query.status.as_u16()));
    }
    report.record(
        "methods.trace_refused",
        echoed.is_empty(),
        if echoed.is_empty() {
            format!("TRACE, TRACK, trace and a TRACE method override (header and ?_method=) under {api}/ answered 405")
        } else {
            echoed.join("; ")
        },
    );
    Ok(())
}

/// A repeated `Host`, and a foreign one that must steer nothing.
async fn host_checks(a: &mut Auditor, report: &mut Report, csrf: (&str, &[u8])) -> Result<(), String> {
    let authority = a.options.base.authority().to_string();
    let hosts = [("host", authority.as_bytes()), ("host", b"attacker.example".as_slice()), csrf];
    let repeated = a.call_raw(Method::GET, "/bff/user", &hosts).await?;
    report.record(
        "host.repeated_refused",
        repeated.status == StatusCode::BAD_REQUEST,
        format!("two Host headers answered {}", repeated.status.as_u16()),
    );
    let foreign = a.call_raw(Method::GET, "/bff/login", &[("host", b"attacker.example")]).await?;
    let steered = foreign.header(LOCATION.as_str()).is_some_and(|l| l.contains("attacker.example"));
    report.record(
        "host.foreign_not_reflected",
        !steered,
        if steered {
            "the login redirect names the Host the client sent (redirect_uri from Host?)".to_string()
        } else {
            format!("Host: attacker.example answered {} and steered nothing", foreign.status.as_u16())
        },
    );
    Ok(())
}

/// Control bytes in the callback's parameters: a 4xx, nothing reflected into a cookie.
async fn callback_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let mut bad = Vec::new();
    for query in ["state=%0Aabc&code=x", "state=a%3B%20Domain%3Devil.example&code=x", "state=%FF%00&error=%1B%5B2J"] {
        let answer = a.call_raw(Method::GET, &format!("/bff/callback?{query}"), &[]).await?;
        let planted = answer
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .any(|c| c.as_bytes().windows(12).any(|w| w.eq_ignore_ascii_case(b"evil.example")));
        if !answer.status.is_client_error() || planted {
            bad.push(format!(
                "{query} answered {}{}",
                answer.status.as_u16(),
                if planted { " with a cookie naming it" } else { "" }
            ));
        }
    }
    report.record(
        "callback.control_bytes",
        bad.is_empty(),
        if bad.is_empty() {
            "control bytes in state/error answered 4xx, nothing reflected".into()
        } else {
            bad.join("; ")
        },
    );
    Ok(())
}

/// Answers that set a cookie of the BFF's are `no-store` (a shared cache may keep an answer
/// with `Set-Cookie`, and hand the ticket to the next user): the sign-in's start, a page and an
/// API call made with the session cookie's earlier name; and a non-ASCII cookie beside the
/// session hides nothing.
async fn cookie_checks(a: &mut Auditor, report: &mut Report, csrf: (&str, &[u8]), api: &str) -> Result<(), String> {
    let legacy = format!("__Host-cloakroom={}", "A".repeat(86));
    let page: &[(&str, &[u8])] =
        &[("accept", b"text/html"), ("sec-fetch-mode", b"navigate"), ("cookie", legacy.as_bytes())];
    let mut storable = Vec::new();
    for (path, headers) in [
        ("/bff/login".to_string(), &[][..]),
        ("/".to_string(), page),
        (format!("{api}/x"), &[csrf, ("cookie", legacy.as_bytes())][..]),
    ] {
        let answer = a.call_raw(Method::GET, &path, headers).await?;
        let sets = answer.headers.contains_key(SET_COOKIE);
        let no_store =
            answer.headers.get_all(CACHE_CONTROL).iter().any(|v| v.as_bytes().windows(8).any(|w| w == b"no-store"));
        if sets && !no_store {
            storable.push(format!("{path} sets a cookie without Cache-Control: no-store"));
        }
    }
    report.record(
        "cookies.never_on_a_storable_answer",
        storable.is_empty(),
        if storable.is_empty() {
            "every answer that sets a cookie (sign-in, a page and an API call with an earlier cookie name) is no-store"
                .into()
        } else {
            storable.join("; ")
        },
    );

    let Some(given) = a.options.cookie.clone() else {
        report.skip("cookie.non_ascii_beside_session", "no --cookie given");
        return Ok(());
    };
    let mixed = format!("lang=fran\u{e7}ais; {}", session_cookie(&given));
    let user = a.call_raw(Method::GET, "/bff/user", &[csrf, (COOKIE.as_str(), mixed.as_bytes())]).await?;
    let json = user.header(CONTENT_TYPE.as_str()).is_some_and(|t| t.starts_with("application/json"));
    report.record(
        "cookie.non_ascii_beside_session",
        user.status == StatusCode::OK && json,
        format!("/bff/user with a UTF-8 cookie beside the session answered {}", user.status.as_u16()),
    );
    Ok(())
}

/// `NAME=VALUE`, or a bare value under cloakroom's default cookie name.
fn session_cookie(given: &str) -> String {
    if given.contains('=') { given.trim().to_string() } else { format!("__Host-Http-cloakroom={}", given.trim()) }
}

/// What is wrong with a `Set-Cookie` line, if anything.
fn weak_cookie(line: &str) -> Option<String> {
    let parsed = cookie::Cookie::parse(line.to_string()).ok()?;
    let mut wrong = Vec::new();
    if parsed.secure() != Some(true) {
        wrong.push("not Secure");
    }
    if parsed.http_only() != Some(true) {
        wrong.push("not HttpOnly");
    }
    if parsed.same_site().is_none() {
        wrong.push("no SameSite");
    }
    if !parsed.name().starts_with("__Host-") && !parsed.name().starts_with("__Secure-") {
        wrong.push("no __Host-/__Secure- prefix");
    }
    (!wrong.is_empty()).then(|| format!("{}: {}", parsed.name(), wrong.join(", ")))
}

/// Substrings shaped like a compact JWS: `eyJ…` header, payload and signature in base64url.
pub fn jwt_shaped(text: &str) -> Vec<String> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("eyJ") {
        let candidate: String = rest[start..].chars().take_while(|&c| is_b64(c) || c == '.').collect();
        let parts: Vec<&str> = candidate.split('.').collect();
        if parts.len() >= 3 && parts[0].len() >= 10 && parts[1].len() >= 10 && parts[1].starts_with("eyJ") {
            found.push(candidate.clone());
        }
        rest = &rest[start + 3..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shapes_are_found_and_plain_text_is_not() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert_eq!(jwt_shaped(&format!("token: {jwt}\"")), vec![jwt.to_string()]);
        assert!(jwt_shaped("eyJust some words. eyJ.nothing").is_empty());
    }

    #[test]
    fn weak_cookies_are_named_with_what_they_lack() {
        assert_eq!(weak_cookie("__Host-a=1; Secure; HttpOnly; SameSite=Lax; Path=/"), None);
        let weak = weak_cookie("sid=1; Path=/").unwrap();
        assert!(weak.contains("not Secure") && weak.contains("not HttpOnly") && weak.contains("no SameSite"), "{weak}");
    }
}
