//! CORS for the SPA's other origins (`[spa] origins`: the SPA on a CDN, a sibling host of the
//! same site). Only those origins get answers a browser lets a page read, credentials included:
//! a preflight on an API route or one of the SPA's endpoints under `/bff/` is answered for them
//! (and for nobody else: the anti-CSRF guard keeps refusing everyone else's), and their calls'
//! answers carry `Access-Control-Allow-Origin` with their origin, never `*`.

use crate::app::App;
use crate::respond::{Body, empty};
use crate::router::{BffEndpoint, Route};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderValue, VARY,
};
use http::{HeaderMap, Method, Response, StatusCode};

/// Whether the SPA calls `route` from a page (so its other origins may, with CORS).
fn spa_calls(route: Route) -> bool {
    matches!(
        route,
        Route::Api(_)
            | Route::Bff(BffEndpoint::User | BffEndpoint::Logout | BffEndpoint::Sessions | BffEndpoint::Providers)
    )
}

/// The answer to a preflight from one of the SPA's origins, for a route it calls; `None` for
/// anything else (which then goes on as any request: refused by the anti-CSRF guard).
pub fn preflight(app: &App, method: &Method, headers: &HeaderMap, route: Route) -> Option<Response<Body>> {
    if method != Method::OPTIONS || !spa_calls(route) {
        return None;
    }
    let asked = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
    let origin = app.csrf.spa_origin(headers)?.clone();
    let asked = Method::from_bytes(asked.as_bytes()).ok()?;
    let allowed = match route {
        Route::Api(index) => {
            let methods = app.config.routes.get(index)?.methods.as_ref();
            !crate::proxy::method::never_forwarded(asked.as_str()) && methods.is_none_or(|m| m.methods.contains(&asked))
        }
        _ => matches!(asked, Method::GET | Method::POST | Method::DELETE),
    };
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    out.insert(VARY, HeaderValue::from_static("Origin"));
    if !allowed {
        // Without the allow headers the browser refuses the call itself.
        return Some(response);
    }
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    out.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_str(asked.as_str()).ok()?);
    // The headers asked for, when they are a list of header names (the anti-CSRF header among
    // them, for every call that changes or reads anything).
    if let Some(names) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS)
        && names.as_bytes().split(|&b| b == b',').all(|n| http::HeaderName::from_bytes(n.trim_ascii()).is_ok())
    {
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, names.clone());
    }
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    Some(response)
}

/// An answer to one of the SPA's origins, readable by its page: that origin, with credentials.
pub fn allow(origin: HeaderValue, route: Route, headers: &mut HeaderMap) {
    if !spa_calls(route) {
        return;
    }
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("WWW-Authenticate, X-Request-Id"));
    headers.append(VARY, HeaderValue::from_static("Origin"));
}
