//! One request, start to finish: who the client is, its request id, what no route may serve,
//! the route, the handler, the headers every answer gets, the metrics and the access-log line.
//!
//! The request path reads down from here: [`crate::router`] names the route; [`crate::bff`]
//! (cloakroom's own endpoints), [`crate::proxy`] (the APIs) or [`crate::spa`] answer it, using the
//! shared state in [`App`].

use crate::app::App;
use crate::error::ApiError;
use crate::forwarded::ClientAddr;
use crate::respond::Body;
use crate::router::Route;
use crate::upstream::Upstream;
use crate::{bff, forwarded, proxy, telemetry};
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::Instrument;

/// One request, start to finish. `proto` is how it reached cloakroom (`http` or `https`).
pub async fn handle(
    app: &App,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    proto: &'static str,
) -> Response<Body> {
    let started = Instant::now();
    let server = &app.config.server;
    let client =
        forwarded::client_addr(peer, proto, request.headers(), &server.trusted_proxies, server.trusted_proxy_header);
    // Checked or made here, and set on the request: upstreams see the id the logs show. Only
    // a trusted proxy's id is adopted; a client's would let it choose what the logs correlate.
    let incoming_id = if client.via_trusted_proxy { request.headers().get(X_REQUEST_ID) } else { None };
    let request_id = telemetry::request_id_from(incoming_id);
    request.headers_mut().insert(X_REQUEST_ID, request_id.clone());
    let request_id_text = request_id.to_str().unwrap_or_default();
    let http1 = request.version() == http::Version::HTTP_11;
    let route = app.router.route(request.uri().path());
    // The access log's method and path, kept only when the log is on (a clone shares the bytes).
    let logged = tracing::enabled!(target: "cloakroom::access", tracing::Level::INFO)
        .then(|| (request.method().clone(), request.uri().clone()));
    let refusal = refuse_malformed(&request);
    // `[spa] origins`: a preflight from one is answered here; its answers are readable there.
    let preflight = crate::cors::preflight(app, request.method(), request.headers(), route);
    let spa_origin = app.csrf.spa_origin(request.headers()).filter(|_| preflight.is_none()).cloned();
    // A session cookie under the name an earlier version used moves to the current one, on an
    // answer cloakroom makes itself (`/bff/*`, a page of the SPA), never on a proxied one.
    let migration = match route {
        Route::Bff(_) | Route::NotFound => app.sessions.cookies().migration(request.headers()),
        _ => None,
    };
    let span = tracing::info_span!("request", id = %request_id_text);
    // The OpenTelemetry span (`[traces]`; disabled and free without it). A trusted proxy's
    // trace is continued; a client's `traceparent` is never believed.
    let trace = tracing::info_span!(
        target: telemetry::TRACES,
        "request",
        otel.name = %format_args!("{} {}", request.method(), http_route(app, route)),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(),
        http.route = http_route(app, route),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        client.address = %client.ip_text(),
        cloakroom.request_id = request_id_text,
    );
    if client.via_trusted_proxy {
        telemetry::trace_context::continue_from(&trace, request.headers());
    }
    // Pinned where it is made: the spans wrap a pointer to it, instead of the call's whole
    // state being copied into each wrapper and then into this future (a profile found these
    // copies among the largest `memmove`s of a call).
    let response = std::pin::pin!(async {
        if let Some(error) = refusal {
            return error.response();
        }
        if let Some(preflight) = preflight {
            return preflight;
        }
        // All but the API call boxed: a future is as large as its largest path, and this one
        // is held and moved on every call.
        match route {
            Route::Bff(endpoint) => Box::pin(bff::handle(app, endpoint, request, client)).await,
            Route::Api(index) => proxy::forward(app, index, request, client).await,
            Route::BadPath => ApiError::BadPath.response(),
            Route::NotFound => match (&app.spa, &app.dev_server) {
                (Some(spa), _) => Box::pin(spa.serve(&request)).await,
                (None, Some(dev)) => Box::pin(pass_to_dev_server(app, dev, request, client)).await,
                (None, None) => ApiError::NotFound.response(),
            },
            Route::BffUnknown => ApiError::NotFound.response(),
        }
    });
    let mut response = response.instrument(span).instrument(trace.clone()).await;
    if let Some(migration) = migration
        && (matches!(route, Route::Bff(_)) || app.spa.is_some() && is_page(&response))
    {
        migration.apply(&mut response, app.sessions.cookies());
    }
    no_store_when_setting_own(response.headers_mut(), app.sessions.cookies());
    if let Some(origin) = spa_origin {
        crate::cors::allow(origin, route, response.headers_mut());
    }
    // Shutting down: each HTTP/1.1 keep-alive client learns it with its next answer and
    // leaves, instead of finding its pooled connection closed under a request later.
    // (HTTP/2 clients get a GOAWAY from the connection itself; an upgrade keeps its headers.)
    if http1 && app.is_shutting_down() && response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    if client.proto == "https"
        && let Some(hsts) = &app.config.server.hsts
    {
        response.headers_mut().entry(http::header::STRICT_TRANSPORT_SECURITY).or_insert_with(|| hsts.clone());
    }
    let label = if route == Route::NotFound && app.spa.is_some() { "spa" } else { route_label(route) };
    let status = response.status().as_u16();
    if !trace.is_disabled() {
        trace.record("http.response.status_code", status);
        if let Some(crate::error::ErrorType(code)) = response.extensions().get() {
            trace.record("error.type", *code);
        }
        if status >= 500 {
            trace.record("otel.status_code", "ERROR");
        }
    }
    let elapsed = started.elapsed();
    app.metrics.request(label, status, elapsed);
    if let Some((method, uri)) = logged {
        tracing::info!(
            target: "cloakroom::access",
            id = %request_id_text,
            client = %client.ip_text(),
            method = %method,
            path = %uri.path(),
            route = label,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
        );
    }
    response.headers_mut().insert(X_REQUEST_ID, request_id);
    response
}

/// The frontend dev server gets the page requests as they are (no token, cloakroom's cookies
/// stripped); its hot-reload WebSocket needs cloakroom's own Origin like any other.
async fn pass_to_dev_server(
    app: &App,
    dev: &Upstream,
    request: Request<Incoming>,
    client: ClientAddr,
) -> Response<Body> {
    let Some((scheme, authority)) = &app.config.spa_dev_server else { return ApiError::NotFound.response() };
    if proxy::is_websocket_upgrade(request.headers())
        && let Err(e) = app.csrf.websocket(request.headers())
    {
        return e.response();
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let relay = proxy::Relay {
        target: proxy::Target { scheme, authority, path },
        token: None,
        dpop: None,
        identity: None,
        strip_authorization: false,
        upstream: dev,
        timeout: std::time::Duration::from_secs(60),
        max_body: None,
        from: client,
    };
    proxy::relay(app, request, relay).await
}

/// Whatever made it, an answer that sets one of cloakroom's cookies is never stored by a cache
/// (RFC 9111 lets a shared cache keep answers that carry `Set-Cookie`): `Cache-Control:
/// no-store`, whatever it said before.
pub(crate) fn no_store_when_setting_own(headers: &mut http::HeaderMap, cookies: &crate::session::cookie::CookiePolicy) {
    if headers.contains_key(http::header::SET_COOKIE) && cookies.sets_own(headers) {
        headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    }
}

/// An HTML page (the SPA's entry a browser navigated to), not a script, style or other asset.
fn is_page<B>(response: &Response<B>) -> bool {
    response.headers().get(http::header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"text/html"))
}

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Requests no route may serve, refused before any: the methods no route forwards
/// ([`proxy::method::never_forwarded`]), and a `Host` that is missing
/// on HTTP/1.1 or repeated (RFC 9112 §3.2 asks for a 400; two hosts are two opinions of where
/// the request goes).
pub(crate) fn refuse_malformed<B>(request: &Request<B>) -> Option<ApiError> {
    if proxy::method::never_forwarded(request.method().as_str()) {
        return Some(ApiError::MethodNotAllowed);
    }
    let mut hosts = request.headers().get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Some(ApiError::BadHost),
        (None, None) if request.version() == http::Version::HTTP_11 => Some(ApiError::BadHost),
        _ => None,
    }
}

/// A trace span's `http.route`: the route's prefix, the endpoint, or what kind of miss it was.
fn http_route(app: &App, route: Route) -> &str {
    match route {
        Route::Bff(endpoint) => endpoint.path(),
        Route::Api(index) => app.config.routes.get(index).map_or("api", |r| r.prefix.as_str()),
        Route::NotFound if app.spa.is_some() => "spa",
        other => route_label(other),
    }
}

fn route_label(route: Route) -> &'static str {
    match route {
        Route::Bff(_) | Route::BffUnknown => "bff",
        Route::Api(_) => "api",
        Route::BadPath => "bad_path",
        Route::NotFound => "not_found",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarded::ClientAddr;

    /// The size of the future `f` returns, without calling it.
    fn future_size<'a, T: ?Sized + 'a, A, B, C, Fut>(_: impl FnOnce(&'a T, A, B, C) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every await builds the awaited future and moves it into its caller's: their sizes are
    /// bytes copied on every call (a profile of bench row (c) found a tenth of cloakroom's CPU
    /// in memmove when the rare paths, a refresh, a Redis round trip, `/bff/*`, were inline:
    /// 7 448 and 4 800 bytes then, in a test build). The rare paths are boxed; this keeps it so.
    #[test]
    fn the_proxied_calls_futures_stay_small() {
        let handle = future_size::<App, Request<Incoming>, SocketAddr, &'static str, _>(handle);
        let forward = future_size::<App, usize, Request<Incoming>, ClientAddr, _>(proxy::forward);
        assert!(handle <= 5 * 1024, "dispatch::handle: {handle} bytes");
        assert!(forward <= 3 * 1024, "proxy::forward: {forward} bytes");
    }
}
