//! `cloakroom audit`: every check passes against cloakroom itself (plain http, https, with a
//! session), and the right checks fail against a deliberately misconfigured BFF.

use crate::support::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

const SPA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/spa-demo");

/// A run of the `cloakroom audit` command: its exit code and report.
pub(crate) struct Audit {
    code: Option<i32>,
    pub(crate) stdout: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Fail,
    Skip,
}

impl Audit {
    /// The outcome the report gives the check `name` (`PASS  name  detail` lines).
    pub(crate) fn outcome(&self, name: &str) -> Option<Outcome> {
        self.stdout.lines().find_map(|line| {
            let (tag, rest) = line.split_once("  ")?;
            (rest.split_whitespace().next() == Some(name)).then_some(())?;
            match tag {
                "PASS" => Some(Outcome::Pass),
                "FAIL" => Some(Outcome::Fail),
                "SKIP" => Some(Outcome::Skip),
                _ => None,
            }
        })
    }

    fn failed(&self) -> Vec<String> {
        let mut failed: Vec<String> = self
            .stdout
            .lines()
            .filter_map(|line| line.strip_prefix("FAIL  "))
            .filter_map(|rest| rest.split_whitespace().next().map(String::from))
            .collect();
        failed.sort_unstable();
        failed
    }

    fn passed(&self) -> bool {
        self.code == Some(0) && self.failed().is_empty()
    }
}

/// Runs `cloakroom audit base [--cookie …]`, trusting the test CA.
pub(crate) async fn audit(base: &str, cookie: Option<String>) -> Audit {
    let mut args = vec!["audit".to_string(), base.to_string(), "--ca-file".into(), pki().ca_file.display().to_string()];
    if let Some(cookie) = cookie {
        args.extend(["--cookie".to_string(), cookie]);
    }
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom")).args(&args).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.stderr.is_empty() || output.status.code() != Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    Audit { code: output.status.code(), stdout }
}

#[tokio::test]
async fn cloakroom_passes_its_own_audit_with_and_without_a_session() {
    let bff = Bff::start_with(BffOptions { extra_toml: format!("[spa]\ndir = {SPA:?}\n"), ..Default::default() }).await;
    let report = audit(&bff.origin, None).await;
    assert!(report.passed(), "{}", report.stdout);
    // The test provider offers PAR: the parameters are pushed, out of the browser's sight.
    assert_eq!(report.outcome("login.pushed"), Some(Outcome::Pass));
    assert_eq!(report.outcome("login.pkce_s256"), Some(Outcome::Skip));
    let in_the_url = Bff::start_with(BffOptions { oidc_toml: "par = \"off\"".into(), ..Default::default() }).await;
    let report_url = audit(&in_the_url.origin, None).await;
    assert!(report_url.passed(), "{}", report_url.stdout);
    assert_eq!(report_url.outcome("login.pkce_s256"), Some(Outcome::Pass));
    assert_eq!(report_url.outcome("login.state"), Some(Outcome::Pass));
    assert_eq!(report.outcome("spa.security_headers"), Some(Outcome::Pass));
    assert_eq!(report.outcome("tls.hsts"), Some(Outcome::Skip), "plain http on loopback");
    assert_eq!(report.outcome("logout.ends_session"), Some(Outcome::Skip));

    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    let report = audit(&bff.origin, Some(cookie)).await;
    assert!(report.passed(), "{}", report.stdout);
    for check in [
        "session.user_token_free",
        "logout.cookie_attributes",
        "logout.ends_session",
        "csrf.header_required",
        "paths.dot_segments",
        "methods.trace_refused",
        "host.repeated_refused",
        "host.foreign_not_reflected",
        "callback.control_bytes",
        "cookie.non_ascii_beside_session",
    ] {
        assert_eq!(report.outcome(check), Some(Outcome::Pass), "{check}\n{}", report.stdout);
    }
    // The audit spent the session, as it says.
    assert_eq!(bff.user(&mut browser).await.status, 401);

    // Over https the HSTS check applies, and passes.
    let tls = Bff::start_with(BffOptions { tls: Some(pki().issue("audited", false)), ..Default::default() }).await;
    let report = audit(&tls.origin, None).await;
    assert_eq!(report.outcome("tls.hsts"), Some(Outcome::Pass), "{}", report.stdout);
    assert!(report.passed(), "{}", report.stdout);
}

/// A BFF that gets everything wrong: no PKCE or nonce, a short state, weak cookies, no CSRF
/// check, an HTML 401, no security headers, a token in `/bff/user`, a logout that ends nothing,
/// and the hostile-input classes: everything forwarded, the `redirect_uri` taken from `Host`, and
/// a `Cookie` header read as text (a UTF-8 cookie hides the session).
async fn careless_bff() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = hyper::service::service_fn(move |request: Request<Incoming>| async move {
                let signed_in = request.headers().get("cookie").is_some_and(|c| c.to_str().is_ok());
                let host = request.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
                let location = format!(
                    "https://idp.example/authorize?response_type=code&client_id=x&state=abc&redirect_uri=http://{host}/bff/callback"
                );
                let (status, headers, body): (u16, Vec<(&str, &str)>, String) = match request.uri().path() {
                    "/bff/login" => {
                        (302, vec![("location", location.as_str()), ("set-cookie", "login=abc; Path=/")], String::new())
                    }
                    "/bff/user" if signed_in => (
                        200,
                        vec![("content-type", "application/json")],
                        format!("{{\"sub\":\"alice\",\"access_token\":\"{jwt}\"}}"),
                    ),
                    "/bff/user" => (200, vec![("content-type", "text/html")], "<p>please sign in</p>".into()),
                    "/bff/logout" => (200, vec![], "bye".into()),
                    _ => (200, vec![("content-type", "text/html")], "<html>app</html>".into()),
                };
                let mut response = Response::new(cloakroom::respond::full(body));
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                Ok::<_, std::convert::Infallible>(response)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_careless_bff_fails_exactly_the_checks_it_deserves() {
    let base = careless_bff().await;
    let report = audit(&base, Some("sid=abc".into())).await;
    assert!(!report.passed());
    let failed = report.failed();
    let mut expected = vec![
        "login.pkce_s256",
        "login.state",
        "login.nonce",
        "login.cookie_attributes",
        "user.unauthenticated_json_401",
        "csrf.header_required",
        "csrf.cross_site_origin",
        "spa.security_headers",
        "session.cookie_name",
        "session.user_token_free",
        "logout.cookie_attributes",
        "logout.ends_session",
        "responses.token_free",
        "paths.dot_segments",
        "methods.trace_refused",
        "host.repeated_refused",
        "host.foreign_not_reflected",
        "callback.control_bytes",
        "cookies.never_on_a_storable_answer",
        "cookie.non_ascii_beside_session",
    ];
    expected.sort_unstable();
    assert_eq!(failed, expected, "{}", report.stdout);
    assert_eq!(report.outcome("login.redirect"), Some(Outcome::Pass));
    assert_eq!(report.outcome("login.response_type_code"), Some(Outcome::Pass));
    // The command line: a report on stdout, a failing exit status.
    assert_eq!(report.code, Some(1), "{}", report.stdout);
    assert!(report.stdout.contains("FAIL  login.pkce_s256"), "{}", report.stdout);
    assert!(report.stdout.contains("20 failed"), "{}", report.stdout);
}

#[tokio::test]
async fn the_audit_command_exits_zero_against_cloakroom() {
    let bff = Bff::start_with(BffOptions { extra_toml: format!("[spa]\ndir = {SPA:?}\n"), ..Default::default() }).await;
    let origin = bff.origin.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom")).args(["audit", &origin]).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("0 failed"), "{stdout}");
}
