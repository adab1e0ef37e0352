//! Phase 1, admit: whether the route takes this call at all, before any session is read. The
//! method (and any override of it in a header or the query string), the anti-CSRF guard (the
//! browser's `Origin` for a WebSocket handshake, which cannot carry the header), and a declared
//! body past the route's limit.

use super::refusal::Refusal;
use super::{method, websocket};
use crate::app::App;
use crate::config::RouteConfig;
use crate::error::ApiError;
use http::{HeaderMap, Method, Request};

pub fn admit<B>(app: &App, route: &RouteConfig, request: &Request<B>) -> Result<(), Refusal> {
    admit_call(app, route, request.method(), request.uri().query(), request.headers())
}

/// [`admit`], from the call's method, query and headers (a gateway's subrequest names the
/// method and the URI of the call it asks about; the headers are the call's).
pub fn admit_call(
    app: &App,
    route: &RouteConfig,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    if method::refused(method, headers, query, route.methods.as_ref()) {
        return Err(Refusal::Method { allow: route.methods.as_ref().map(|m| m.allow.clone()) });
    }
    if websocket::is_upgrade(headers) { app.csrf.websocket(headers) } else { app.csrf.check(headers) }?;
    let declared = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > route.max_body) {
        return Err(ApiError::PayloadTooLarge.into());
    }
    Ok(())
}
