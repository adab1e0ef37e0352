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
    profile_checks(&mut auditor, &mut report).await?;
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

mod baseline;
mod hostile;

use baseline::{login_checks, profile_checks, refusal_checks, session_checks, spa_and_tls_checks};
use hostile::hostile_input_checks;
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
