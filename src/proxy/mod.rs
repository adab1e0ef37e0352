//! The API proxy: cookie → session → access token → upstream, streaming both ways.
//!
//! This is the busiest path in cloakroom. It reads one cookie, does one store lookup and one
//! AEAD open, rewrites headers in place, and hands the body through without buffering (a
//! 100 MB upload streams with bounded memory). Connections to upstreams are pooled keep-alive.

pub mod headers;
pub mod method;
pub mod rules;
pub mod step_up;
mod websocket;

use crate::app::App;
use crate::config::{Audience, RouteConfig, TokenPolicy};
use crate::error::ApiError;
use crate::forwarded::ClientAddr;
use crate::respond::Body;
use crate::session::claims::RawClaims;
use crate::session::{Lookup, SessionTokens};
use crate::tokens::TokenError;
use crate::upstream::{ClientBodyError, SendError, Upstream};
use headers::Forwarded;
use http::header::{AUTHORIZATION, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use openidconnect::AccessToken;

pub use headers::{strip_hop_by_hop, strip_own_cookies};
pub use websocket::is_upgrade as is_websocket_upgrade;

pub async fn forward(app: &App, route_index: usize, request: Request<Incoming>, client: ClientAddr) -> Response<Body> {
    let Some(route) = app.config.routes.get(route_index) else { return ApiError::NotFound.response() };
    // A method the route does not forward, asked for directly or through a method override in
    // a header or the query string: 405 naming the ones it does, before anything else.
    if method::refused(request.method(), request.headers(), request.uri().query(), route.methods.as_ref()) {
        let mut response = ApiError::MethodNotAllowed.response();
        if let Some(allowed) = &route.methods {
            response.headers_mut().insert(http::header::ALLOW, allowed.allow.clone());
        }
        return response;
    }
    // A WebSocket handshake cannot carry the anti-CSRF header: the browser's Origin must vouch.
    let guard = if websocket::is_upgrade(request.headers()) {
        app.csrf.websocket(request.headers())
    } else {
        app.csrf.check(request.headers())
    };
    if let Err(e) = guard {
        return e.answer(app.sessions.cookies());
    }
    let declared =
        request.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > route.max_body) {
        return ApiError::PayloadTooLarge.response();
    }

    let chosen = match token_for(app, route, request.headers()).await {
        Ok(chosen) => chosen,
        Err(ApiError::StepUpRequired) => {
            let step_up = route.step_up.as_ref().map(step_up::Challenge::of_route);
            return step_up.map_or(ApiError::StepUpRequired.response(), |c| c.response(&app.config.oidc.login_params));
        }
        Err(error) => return error.answer(app.sessions.cookies()),
    };

    // Target: the route's upstream base path + the rest of the request path, query kept.
    let uri = request.uri();
    let rest = uri.path().get(route.prefix.len()..).unwrap_or_default();
    let mut path = String::with_capacity(route.upstream_path.len() + rest.len() + 1 + uri.query().map_or(0, str::len));
    path.push_str(&route.upstream_path);
    path.push_str(rest);
    if let Some(query) = uri.query() {
        path.push('?');
        path.push_str(query);
    }
    // Kept for one more try with a fresh token, should the upstream reject this one: only a call
    // without a body (there is nothing to replay), never an upgrade.
    let replay = (chosen.of_user
        && hyper::body::Body::is_end_stream(request.body())
        && !websocket::is_upgrade(request.headers()))
    .then(|| Replay { method: request.method().clone(), headers: request.headers().clone(), path: path.clone() });
    let target = Target { scheme: &route.upstream_origin, authority: &route.upstream_authority, path };
    let relayed = Relay {
        target,
        token: chosen.token.as_ref(),
        // On token routes the browser never chooses the credential.
        strip_authorization: route.policy != TokenPolicy::None,
        upstream: &app.upstreams[route_index],
        timeout: route.timeout,
        max_body: Some(route.max_body),
        from: client,
    };
    let response = relay(app, request, relayed).await;
    // The upstream rejects the user's token itself (RFC 6750 `invalid_token`): one fresh token,
    // and the call once more when it had no body.
    if chosen.of_user
        && response.status() == http::StatusCode::UNAUTHORIZED
        && step_up::rejects_token(response.headers())
    {
        return after_rejected_token(app, route_index, client, chosen, replay, response).await;
    }
    // The upstream asks for a stronger sign-in itself (RFC 9470): the SPA gets the same answer
    // as from a route's own step-up.
    if chosen.of_user
        && response.status() == http::StatusCode::UNAUTHORIZED
        && let Some(challenge) = step_up::Challenge::from_upstream(response.headers())
    {
        tracing::info!(route = %route.prefix, "the upstream asks for a stronger or more recent sign-in");
        app.metrics.step_up_required(&route.prefix);
        return challenge.response(&app.config.oidc.login_params);
    }
    if chosen.stale_cookie { app.sessions.cookies().cleared(response) } else { response }
}

/// What a call without a body needs to be sent again.
struct Replay {
    method: http::Method,
    headers: http::HeaderMap,
    path: String,
}

/// An upstream rejected the user's token (`invalid_token`: revoked at the provider, a signing
/// key rolled over, expired early). The session gets one fresh token (single-flight with every
/// other call rejected meanwhile); a call without a body goes once more with it, and whatever
/// the upstream answers then is the answer (never a loop). A refused refresh ends the session
/// (`401 session_expired`); a provider that cannot be reached is a `503`, the session kept.
async fn after_rejected_token(
    app: &App,
    route_index: usize,
    client: ClientAddr,
    chosen: Chosen,
    replay: Option<Replay>,
    rejected_answer: Response<Body>,
) -> Response<Body> {
    let Some(route) = app.config.routes.get(route_index) else { return rejected_answer };
    let (Some(ticket), Some(rejected)) = (chosen.ticket.as_ref(), chosen.token.as_ref()) else {
        return rejected_answer;
    };
    tracing::info!(route = %route.prefix, "the upstream rejected the session's token; getting a fresh one");
    let fresh = app.tokens.replace_rejected(&app.sessions, ticket, rejected, route.audience.as_ref()).await;
    let (fresh, replay) = match (fresh, replay) {
        (Ok(fresh), Some(replay)) => (fresh, replay),
        (Ok(_), None) => {
            app.metrics.token_rejected(&route.prefix, "refreshed");
            return rejected_answer;
        }
        (Err(e), _) => {
            let ended = matches!(e, crate::tokens::TokenError::SessionExpired);
            app.metrics.token_rejected(&route.prefix, if ended { "session_ended" } else { "refresh_failed" });
            return ApiError::from(e).answer(app.sessions.cookies());
        }
    };
    drop(rejected_answer);
    app.metrics.token_rejected(&route.prefix, "retried");
    let mut request = Request::new(crate::respond::empty());
    *request.method_mut() = replay.method;
    *request.headers_mut() = replay.headers;
    let (parts, body) = request.into_parts();
    let relayed = Relay {
        target: Target { scheme: &route.upstream_origin, authority: &route.upstream_authority, path: replay.path },
        token: Some(&fresh),
        strip_authorization: true,
        upstream: &app.upstreams[route_index],
        timeout: route.timeout,
        max_body: Some(route.max_body),
        from: client,
    };
    send(app, parts, body, relayed, None).await
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
    pub strip_authorization: bool,
    /// The client to send with and the metrics to record in.
    pub upstream: &'a Upstream,
    pub timeout: std::time::Duration,
    /// Bodies past this many bytes are cut off and answered 413 (undeclared lengths included).
    pub max_body: Option<u64>,
    /// The browser, as far as cloakroom believes (see [`crate::forwarded`]).
    pub from: ClientAddr,
}

/// Sends a request upstream with header hygiene both ways, streaming bodies; a WebSocket
/// handshake that the upstream accepts becomes a byte tunnel between the two connections.
pub async fn relay(app: &App, mut request: Request<Incoming>, relay: Relay<'_>) -> Response<Body> {
    let upgrade = websocket::is_upgrade(request.headers()).then(|| websocket::take(&mut request));
    // The upstream sees the same X-Request-Id as our logs: `dispatch` has set it on the request
    // (traceparent passes through as is).
    let (parts, body) = request.into_parts();
    let body = body.map_err(ClientBodyError);
    let body = match relay.max_body {
        Some(max) => http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).boxed(),
        None => body.map_err(Into::into).boxed(),
    };
    send(app, parts, body, relay, upgrade).await
}

/// [`relay`], from the request's parts and its body as it goes upstream.
async fn send(
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
    );
    if let Some(token) = relay.token {
        let mut value = String::with_capacity(7 + token.secret().len());
        value.push_str("Bearer ");
        value.push_str(token.secret());
        let Ok(mut bearer) = HeaderValue::try_from(value) else {
            return ApiError::Internal.response();
        };
        bearer.set_sensitive(true);
        headers.insert(AUTHORIZATION, bearer);
    }
    if upgrade.is_some() {
        websocket::mark_upgrade(headers);
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upstream_request = Request::from_parts(parts, body);

    let sent = std::time::Instant::now();
    let mut response = match relay.upstream.client.send(upstream_request, relay.timeout).await {
        Ok(response) => {
            relay.upstream.metrics.record(sent.elapsed(), None);
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

/// What a call carries on: the token (per the route's policy), whether it is the user's, and
/// whether the request's cookie opened nothing (so the answer should clear it).
struct Chosen {
    token: Option<AccessToken>,
    of_user: bool,
    stale_cookie: bool,
    /// The session's ticket, when the token is the user's.
    ticket: Option<crate::session::SessionTicket>,
}

/// The token a route attaches, per its policy; `Err` is why the call is refused instead.
async fn token_for(app: &App, route: &RouteConfig, headers: &http::HeaderMap) -> Result<Chosen, ApiError> {
    let (policy, audience) = (route.policy, route.audience.as_ref());
    let neither = |stale_cookie| Chosen { token: None, of_user: false, stale_cookie, ticket: None };
    if policy == TokenPolicy::None {
        return Ok(neither(false));
    }
    if policy == TokenPolicy::Client {
        return Ok(Chosen { token: Some(client_token(app, audience).await?), ..neither(false) });
    }
    // Routes with rules or a step-up decode the user's claims and scope too (undecoded: read in
    // place); the others pay nothing.
    let user = if route.rules.is_some() || route.step_up.is_some() {
        user_token(app, route, app.sessions.lookup_tokens_and_claims(headers).await?).await?
    } else {
        user_token(app, route, app.sessions.lookup_tokens(headers).await?).await?
    };
    let stale = match user {
        Ok((ticket, token)) => {
            return Ok(Chosen { token: Some(token), of_user: true, stale_cookie: false, ticket: Some(ticket) });
        }
        Err(stale) => stale,
    };
    match policy {
        TokenPolicy::UserOrNone => Ok(neither(stale)),
        TokenPolicy::UserOrClient => Ok(Chosen { token: Some(client_token(app, audience).await?), ..neither(stale) }),
        _ if stale => Err(ApiError::StaleSession),
        _ => Err(ApiError::Unauthenticated),
    }
}

/// The signed-in user's ticket and token, once the route's rules and step-up admit the session;
/// `Ok(Err)` when there is no session (`true`: the cookie opened nothing).
async fn user_token<C, S>(
    app: &App,
    route: &RouteConfig,
    lookup: Lookup<SessionTokens<C, S>>,
) -> Result<Result<(crate::session::SessionTicket, AccessToken), bool>, ApiError>
where
    SessionTokens<C, S>: RuleInputs,
{
    let (ticket, session) = match lookup {
        Lookup::Found(ticket, session) => (ticket, session),
        Lookup::Stale => return Ok(Err(true)),
        Lookup::None => return Ok(Err(false)),
    };
    let claims = session.claims();
    if let Some(rules) = &route.rules
        && !rules::permits(rules, claims, session.scope())
    {
        tracing::info!(route = %route.prefix, "the route's rules refuse the signed-in user");
        app.metrics.forbidden(&route.prefix);
        return Err(ApiError::Forbidden);
    }
    if let Some(step_up) = &route.step_up
        && !claims
            .is_some_and(|claims| step_up::satisfied(step_up, claims, app.now(), app.config.oidc.clock_skew.as_secs()))
    {
        tracing::info!(route = %route.prefix, "the route needs a stronger or more recent sign-in");
        app.metrics.step_up_required(&route.prefix);
        return Err(ApiError::StepUpRequired);
    }
    let token = app.tokens.access_token(&app.sessions, &ticket, session, route.audience.as_ref()).await?;
    Ok(Ok((ticket, token)))
}

/// What a session lookup decoded for a route's rules and step-up: nothing, for the routes that
/// have neither.
trait RuleInputs {
    fn claims(&self) -> Option<&RawClaims>;
    fn scope(&self) -> Option<&str>;
}

impl RuleInputs for SessionTokens {
    fn claims(&self) -> Option<&RawClaims> {
        None
    }

    fn scope(&self) -> Option<&str> {
        None
    }
}

impl RuleInputs for SessionTokens<RawClaims, String> {
    fn claims(&self) -> Option<&RawClaims> {
        self.claims.as_ref()
    }

    fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

async fn client_token(app: &App, audience: Option<&Audience>) -> Result<AccessToken, TokenError> {
    app.tokens.client_token(app.now(), audience).await
}
