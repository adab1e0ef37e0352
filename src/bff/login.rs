//! `GET /bff/login?returnUrl=/path`: start the authorization-code flow.
//!
//! Fresh `state`, `nonce` and PKCE S256 verifier per login; the pending login is sealed in the
//! store and opened only with the secret in this browser's login cookie, which binds `state` to
//! the browser that started it. Several tabs may log in at once: each has its own cookie.

use super::{add_cookie, query_param};
use crate::app::App;
use crate::error::{ApiError, LoginError};
use crate::oidc::OidcError;
use crate::respond::sign_in_href;
use crate::respond::{Body, empty};
use crate::secret::Secret;
use crate::session::{PendingLogin, random_token};
use http::header::{HeaderValue, LOCATION};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use openidconnect::PkceCodeChallenge;

const MAX_RETURN_PATH: usize = 2048;

/// The longest the start of a sign-in waits for the provider to take a pushed authorization
/// request (RFC 9126).
const PUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn handle(app: &App, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return ApiError::MethodNotAllowed.response();
    }
    let return_to = match query_param(request.uri().query(), "returnUrl") {
        Ok(value) => safe_return_target(value.as_deref(), &app.config.spa_origins),
        Err(()) => "/".to_string(),
    };
    let remember = app.config.session.allow_remember
        && query_param(request.uri().query(), "remember").is_ok_and(|v| v.as_deref() == Some("1"));
    // `?provider=<id>`: one of several providers (`/bff/providers` lists them); none: the default.
    let provider = match query_param(request.uri().query(), "provider") {
        Ok(id) => app.providers.get(id.as_deref()).cloned(),
        Err(()) => None,
    };
    let Some(provider) = provider else {
        tracing::info!("a sign-in asked for a provider that is not configured");
        return LoginError::BadRequest("unknown provider".into()).response("/bff/login");
    };
    let recorded = app.providers.recorded_id(&provider);
    let params = match super::login_params::parse(request.uri().query(), &provider.config().login_params) {
        Ok(params) => params,
        Err(reason) => {
            tracing::info!(%reason, "sign-in parameters refused");
            return LoginError::BadRequest(reason.to_string()).response(&sign_in_href(&return_to, recorded.as_deref()));
        }
    };
    // `restart=1`: the one fresh sign-in a stale callback starts; its `state` is marked so that
    // a stale return of it gets a page instead of another sign-in (`super::stale`).
    let restart = query_param(request.uri().query(), "restart").is_ok_and(|v| v.as_deref() == Some("1"));
    let state = if restart { format!("{}{}", random_token(), super::stale::RESTART_MARK) } else { random_token() };
    let nonce = Secret::new(random_token());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = match provider.authorization_url(&state, &nonce, challenge, &params.pairs) {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a login");
            return LoginError::ProviderUnavailable.response(&sign_in_href(&return_to, recorded.as_deref()));
        }
    };
    // RFC 9126: the request goes to the provider directly; the browser carries only its handle.
    // A person looks at a blank page meanwhile: a provider that does not answer within
    // `PUSH_WAIT` (or `oidc.timeout`, if shorter) gets the browser a readable page, not a hang.
    let url = if provider.uses_par() {
        let wait = provider.config().timeout.min(PUSH_WAIT);
        let pushed = tokio::time::timeout(wait, provider.push_authorization(url)).await.unwrap_or_else(|_| {
            Err(OidcError::Unreachable(format!(
                "no answer from the PAR endpoint within {}",
                humantime::format_duration(wait)
            )))
        });
        match pushed {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(error = %e, "the provider did not take the pushed authorization request");
                let error = match e {
                    OidcError::Rejected(_) => LoginError::RequestRefused,
                    other => LoginError::from(other),
                };
                return error.response(&sign_in_href(&return_to, recorded.as_deref()));
            }
        }
    } else {
        url
    };
    let pending = PendingLogin {
        pkce_verifier: Secret::new(verifier.secret().clone()),
        nonce,
        return_to,
        remember,
        expires_at: 0,
        silent: params.silent,
        max_age: params.max_age,
        acr_values: params.acr_values,
        provider: recorded.clone(),
        // The session this sign-in replaces (a step-up, a re-login): the callback ends it.
        replaces: app.sessions.ticket_of(request.headers()).flatten().map(|ticket| Secret::new(ticket.encode())),
    };
    // A return path whose sealed login cookie would be too large for browsers (quotes escape
    // to twice their size) falls back to `/`, like any other unusable return path.
    let mut pending = pending;
    let cookie = match app.sessions.begin_login(&state, &mut pending) {
        Some(cookie) => cookie,
        None => {
            pending.return_to = "/".into();
            let Some(cookie) = app.sessions.begin_login(&state, &mut pending) else {
                return ApiError::Internal.response();
            };
            cookie
        }
    };
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::FOUND;
    match HeaderValue::try_from(url.as_str()) {
        Ok(location) => response.headers_mut().insert(LOCATION, location),
        Err(_) => return ApiError::Internal.response(),
    };
    add_cookie(&mut response, cookie);
    response
}

/// The return path after login: a same-origin relative path, or `/`.
///
/// Refused (falling back to `/`): anything not starting with a single `/` (absolute URLs,
/// scheme-relative `//host`, `/\host`), backslashes anywhere, control characters and whitespace
/// (browsers strip tabs and newlines, turning `/\t/host` into `//host`), and the same tricks once
/// more percent-decoded (`/%2F%2Fhost`, `/%5Chost`).
pub fn safe_return_path(raw: Option<&str>) -> String {
    let Some(path) = raw else { return "/".into() };
    if is_safe(path) { path.to_string() } else { "/".into() }
}

/// [`safe_return_path`], or a URL on one of `[spa] origins` (the SPA on a CDN) whose path is a
/// safe one by the same rules: the origin exactly as configured, then `/` and the path.
pub fn safe_return_target(raw: Option<&str>, spa_origins: &[String]) -> String {
    let on_spa_origin =
        raw.filter(|target| spa_origins.iter().any(|origin| target.strip_prefix(origin.as_str()).is_some_and(is_safe)));
    match on_spa_origin {
        Some(target) if target.len() <= MAX_RETURN_PATH => target.to_string(),
        _ => safe_return_path(raw),
    }
}

fn is_safe(path: &str) -> bool {
    if path.is_empty() || path.len() > MAX_RETURN_PATH || !path.starts_with('/') {
        return false;
    }
    if path.chars().any(|c| c == '\\' || c.is_control() || c.is_whitespace()) {
        return false;
    }
    let once_more: String = percent_decode(path);
    if once_more.starts_with("//") || once_more.contains('\\') || once_more.chars().any(char::is_control) {
        return false;
    }
    path.as_bytes().get(1) != Some(&b'/')
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_relative_paths_pass() {
        for path in ["/", "/app", "/app/page?x=1&y=%2F#frag", "/a/b/c?next=//still-a-query", "/%E2%9C%93", "/a+b"] {
            assert_eq!(safe_return_path(Some(path)), path, "{path}");
        }
    }

    #[test]
    fn a_return_to_the_spas_other_origin_is_kept_and_nothing_like_it() {
        let origins = ["https://spa.example.com".to_string()];
        for kept in ["https://spa.example.com/", "https://spa.example.com/orders?id=1#top"] {
            assert_eq!(safe_return_target(Some(kept), &origins), kept);
        }
        for refused in [
            "https://spa.example.com",
            "https://spa.example.com.evil.example/",
            "https://spa.example.com@evil.example/",
            "https://spa.example.com//evil.example/",
            "https://spa.example.com/%2F%2Fevil.example",
            "https://spa.example.com/\\evil.example",
            "https://spa.example.com/a b",
            "https://evil.example/",
            "http://spa.example.com/",
            "//spa.example.com/",
        ] {
            assert_eq!(safe_return_target(Some(refused), &origins), "/", "{refused}");
        }
        assert_eq!(safe_return_target(Some("/app"), &origins), "/app");
        assert_eq!(safe_return_target(Some("https://spa.example.com/"), &[]), "/");
    }

    #[test]
    fn everything_else_falls_back_to_root() {
        for path in [
            "",
            "https://evil.example/",
            "http:/evil.example",
            "javascript:alert(1)",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/app\\x",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/%09/evil.example",
            "evil.example",
            "./x",
        ] {
            assert_eq!(safe_return_path(Some(path)), "/", "{path:?} accepted");
        }
        assert_eq!(safe_return_path(None), "/");
        assert_eq!(safe_return_path(Some(&format!("/{}", "a".repeat(5000)))), "/");
    }

    #[test]
    fn retry_link_keeps_the_path_encoded() {
        assert_eq!(sign_in_href("/a?b=c&d", None), "/bff/login?returnUrl=%2Fa%3Fb%3Dc%26d");
        assert_eq!(sign_in_href("/", Some("corp")), "/bff/login?provider=corp&returnUrl=%2F");
    }
}
