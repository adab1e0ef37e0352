//! Phase 3, the upstream request: where the call goes (the route's upstream and path, the query
//! kept), the header hygiene and forwarding headers ([`super::headers`]), the credential
//! attached, and the send, bodies streaming both ways; a WebSocket handshake the upstream
//! accepts becomes a byte tunnel. Identity headers (incoming ones of the same names removed by
//! the hygiene, on every route) are set here, beside the token; DPoP proofs will be too.

use super::credential::Credential;
use super::headers::{self, Forwarded};
use super::websocket;
use crate::app::App;
use crate::config::RouteConfig;
use crate::crypto::dpop::{DpopKey, DpopNonce};
use crate::error::ApiError;
use crate::forwarded::ClientAddr;
use crate::identity::Identity;
use crate::respond::Body;
use crate::upstream::{ClientBodyError, SendError, Upstream};
use http::header::{AUTHORIZATION, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use openidconnect::AccessToken;
use tracing::Instrument;

/// The path (with query) a call takes at the route's upstream: the route's upstream base path,
/// then the rest of the request's path after the route's prefix.
pub fn target_path(route: &RouteConfig, uri: &Uri) -> String {
    let rest = uri.path().get(route.prefix.len()..).unwrap_or_default();
    let mut path = String::with_capacity(route.upstream_path.len() + rest.len() + 1 + uri.query().map_or(0, str::len));
    path.push_str(&route.upstream_path);
    path.push_str(rest);
    if let Some(query) = uri.query() {
        path.push('?');
        path.push_str(query);
    }
    path
}

/// `Bearer <token>` as a header value marked sensitive; `None` for a token that cannot be one.
pub fn bearer(token: &AccessToken) -> Option<HeaderValue> {
    let mut value = String::with_capacity(7 + token.secret().len());
    value.push_str("Bearer ");
    value.push_str(token.secret());
    let mut bearer = HeaderValue::try_from(value).ok()?;
    bearer.set_sensitive(true);
    Some(bearer)
}

/// `DPoP <token>` (marked sensitive) and a proof for this call (RFC 9449 §7): its method, its
/// URL without the query (`htu`), the token's hash, the upstream's last nonce, a fresh `jti`.
fn dpop(
    key: &DpopKey,
    token: &AccessToken,
    method: &http::Method,
    uri: &Uri,
    nonce: &DpopNonce,
    now: u64,
) -> Option<(HeaderValue, HeaderValue)> {
    let htu = format!("{}://{}{}", uri.scheme_str()?, uri.authority()?, uri.path());
    let proof = key.proof(method, &htu, Some(token.secret()), nonce.get().as_deref(), now).ok()?;
    let mut authorization = HeaderValue::try_from(format!("DPoP {}", token.secret())).ok()?;
    authorization.set_sensitive(true);
    Some((authorization, HeaderValue::try_from(proof).ok()?))
}

/// What a call without a body needs to be sent again (phase 4 does, once, with a fresh token).
pub struct Replay {
    pub(super) method: http::Method,
    pub(super) headers: http::HeaderMap,
    pub(super) path: String,
}

impl Replay {
    /// The call's copy, when it can be sent again: no body (there is nothing to replay), no upgrade.
    pub fn of<B: hyper::body::Body>(request: &Request<B>, path: &str) -> Option<Replay> {
        let bodiless = hyper::body::Body::is_end_stream(request.body());
        (bodiless && !websocket::is_upgrade(request.headers())).then(|| Replay {
            method: request.method().clone(),
            headers: request.headers().clone(),
            path: path.to_string(),
        })
    }
}

/// Where a request goes: scheme and authority of the upstream, and the path (with query) there.
pub struct Target<'a> {
    pub scheme: &'a http::uri::Scheme,
    pub authority: &'a http::uri::Authority,
    pub path: String,
}

/// How to send one request on.
pub struct Relay<'a> {
    pub target: Target<'a>,
    pub token: Option<&'a AccessToken>,
    /// The session's DPoP key: `token` goes as `Authorization: DPoP`, with a proof of it.
    pub dpop: Option<&'a DpopKey>,
    /// The user's identity headers and assertion (none: nothing set, the same names removed).
    pub identity: Option<&'a Identity>,
    pub strip_authorization: bool,
    /// The client to send with and the metrics to record in.
    pub upstream: &'a Upstream,
    pub timeout: std::time::Duration,
    /// Bodies past this many bytes are cut off and answered 413 (undeclared lengths included).
    pub max_body: Option<u64>,
    /// The browser, as far as cloakroom believes (see [`crate::forwarded`]).
    pub from: ClientAddr,
}

impl<'a> Relay<'a> {
    /// How a call on API route `route_index` goes: to its upstream at `path`, carrying
    /// `credential`'s identity, `token` (its own, or a fresh one) and proof of its DPoP key; on
    /// token routes the browser never chooses the credential.
    pub fn for_route(
        app: &'a App,
        route_index: usize,
        path: String,
        token: Option<&'a AccessToken>,
        credential: &'a Credential,
        from: ClientAddr,
    ) -> Option<Self> {
        let route = app.config.routes.get(route_index)?;
        Some(Relay {
            target: Target { scheme: &route.upstream_origin, authority: &route.upstream_authority, path },
            token,
            dpop: credential.dpop.as_deref(),
            identity: Some(&credential.identity),
            strip_authorization: route.policy != crate::config::TokenPolicy::None,
            upstream: app.upstreams.get(route_index)?,
            timeout: route.timeout,
            max_body: Some(route.max_body),
            from,
        })
    }
}

/// Sends a request upstream with header hygiene both ways, streaming bodies; a WebSocket
/// handshake that the upstream accepts becomes a byte tunnel between the two connections.
pub async fn relay(app: &App, mut request: Request<Incoming>, relay: Relay<'_>) -> Response<Body> {
    let upgrade = websocket::is_upgrade(request.headers()).then(|| websocket::take(&mut request));
    // The upstream sees the same X-Request-Id as our logs: `dispatch` has set it on the request.
    // `traceparent` names the upstream call's span with `[traces]`, and passes as is without.
    let (parts, body) = request.into_parts();
    let body = body.map_err(ClientBodyError);
    let body = match relay.max_body {
        Some(max) => http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).boxed(),
        None => body.map_err(Into::into).boxed(),
    };
    send(app, parts, body, relay, upgrade).await
}

/// [`relay`], from the request's parts and its body as it goes upstream.
pub(super) async fn send(
    app: &App,
    mut parts: http::request::Parts,
    body: Body,
    relay: Relay<'_>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<Body> {
    let Ok(path_and_query) = PathAndQuery::try_from(relay.target.path) else {
        return ApiError::BadPath.response();
    };
    let Ok(uri) = Uri::builder()
        .scheme(relay.target.scheme.clone())
        .authority(relay.target.authority.clone())
        .path_and_query(path_and_query)
        .build()
    else {
        return ApiError::BadPath.response();
    };

    let headers = &mut parts.headers;
    headers::rewrite_request(
        headers,
        app.sessions.cookies(),
        Forwarded { client_ip: relay.from.ip, proto: relay.from.proto, host: &app.config.server.public_host },
        &relay.upstream.host,
        relay.strip_authorization,
        &app.identity_headers,
    );
    if let Some(identity) = relay.identity {
        identity.apply(headers);
    }
    match (relay.token, relay.dpop) {
        (Some(token), None) => {
            let Some(bearer) = bearer(token) else { return ApiError::Internal.response() };
            headers.insert(AUTHORIZATION, bearer);
        }
        (Some(token), Some(key)) => {
            let Some((authorization, proof)) =
                dpop(key, token, &parts.method, &uri, &relay.upstream.dpop_nonce, app.now())
            else {
                return ApiError::Internal.response();
            };
            headers.insert(AUTHORIZATION, authorization);
            headers.insert(headers::DPOP, proof);
        }
        (None, _) => {}
    }
    if upgrade.is_some() {
        websocket::mark_upgrade(headers);
    }
    let span = tracing::info_span!(
        target: crate::telemetry::TRACES,
        "upstream",
        otel.name = %format_args!("{} {}", parts.method, relay.target.authority),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = %parts.method,
        server.address = %relay.target.authority,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::trace_context::send_on(&span, headers);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upstream_request = Request::from_parts(parts, body);

    let sent = std::time::Instant::now();
    let answered = relay.upstream.client.send(upstream_request, relay.timeout).instrument(span.clone()).await;
    match &answered {
        Ok(response) => span.record("http.response.status_code", response.status().as_u16()),
        Err(_) => span.record("otel.status_code", "ERROR"),
    };
    let mut response = match answered {
        Ok(response) => {
            relay.upstream.metrics.record(sent.elapsed(), None);
            if relay.dpop.is_some() {
                relay.upstream.dpop_nonce.keep(response.headers());
            }
            response
        }
        Err(SendError::ClientBody) => {
            tracing::info!(upstream = %relay.target.authority, "the client's request body was malformed or cut off");
            return ApiError::BadBody.response();
        }
        Err(e) => {
            tracing::warn!(upstream = %relay.target.authority, error = %e, "upstream call failed");
            relay.upstream.metrics.record(sent.elapsed(), Some(e.kind()));
            return ApiError::from(e).response();
        }
    };
    let tunnel = match upgrade {
        Some(client_side) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
            Some(websocket::tunnel(client_side, hyper::upgrade::on(&mut response)))
        }
        _ => None,
    };
    let (mut parts, body) = response.into_parts();
    headers::rewrite_response(&mut parts.headers, app.sessions.cookies(), relay.token.is_some());
    if tunnel.is_some() {
        websocket::mark_upgrade(&mut parts.headers);
        return Response::from_parts(parts, crate::respond::empty());
    }
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}
