//! `GET /bff/frontchannel-logout?iss=…&sid=…` (OpenID Connect Front-Channel Logout 1.0): the
//! provider's logout page loads this in an iframe to say that a provider session ended.
//!
//! The iframe is cross-site and carries no `SameSite` cookie, so the session is found as a
//! back-channel logout finds it: by the provider (`iss`, exactly a configured issuer) and its
//! session id (`sid`, kept per provider, so another provider's `iss` ends nothing). Every
//! cloakroom session under that `sid` ends; a provider whose `sid` names the user rather than
//! one sign-in thereby ends all of that user's sessions with it. Their refresh tokens are not
//! sent for revocation: each is sealed under its browser's ticket, which this request does not
//! carry, and deleting the record erases the only copy cloakroom had.
//!
//! The answer is a tiny page that only that provider's origin may frame
//! (`Content-Security-Policy: frame-ancestors`), `no-store` like every `/bff/` answer.

use super::query_param;
use crate::app::App;
use crate::error::ApiError;
use crate::respond::{Body, html, page};
use http::header::{CONTENT_SECURITY_POLICY, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

pub async fn handle(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    let query = request.uri().query();
    let (Ok(Some(iss)), Ok(Some(sid))) = (query_param(query, "iss"), query_param(query, "sid")) else {
        tracing::info!("front-channel logout without exactly one iss and one sid: nothing ended");
        return Ok(answer(StatusCode::BAD_REQUEST, "iss and sid are required.", None));
    };
    let Some(provider) = app.providers.by_issuer(&iss) else {
        tracing::info!("front-channel logout naming no configured issuer: nothing ended");
        return Ok(answer(StatusCode::BAD_REQUEST, "Unknown issuer.", None));
    };
    let framer = origin_of(provider.issuer());
    if sid.is_empty() || sid.len() > 256 {
        return Ok(answer(StatusCode::BAD_REQUEST, "iss and sid are required.", framer.as_deref()));
    }
    let recorded = app.providers.recorded_id(provider);
    let ended = app.sessions.end_matching(recorded.as_deref(), Some(&sid), None).await?;
    tracing::info!(ended, provider = provider.id(), "front-channel logout");
    app.metrics.logouts(u64::try_from(ended).unwrap_or(u64::MAX));
    Ok(answer(StatusCode::OK, "Signed out.", framer.as_deref()))
}

/// The page, frameable by `framer` alone (by nobody without one).
fn answer(status: StatusCode, message: &str, framer: Option<&str>) -> Response<Body> {
    let mut response = html(status, page("Signed out", &format!("<p>{message}</p>"), ""));
    let policy = format!(
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors {}; base-uri 'none'",
        framer.unwrap_or("'none'")
    );
    if let Ok(value) = HeaderValue::try_from(policy) {
        response.headers_mut().insert(CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// `scheme://host[:port]` of a configured issuer URL.
fn origin_of(issuer: &str) -> Option<String> {
    let origin = url::Url::parse(issuer).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}
