//! Forward-auth: a gateway (nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`,
//! Envoy `ext_authz` over HTTP) asks `/bff/forward-auth` about a call before it forwards the
//! call itself. The answer applies the proxied call's own phases to the call the gateway names
//! ([`crate::proxy::admit`] and [`crate::proxy::credential`]: session, anti-CSRF header, the
//! route's methods, rules and step-up), and says:
//!
//! - `200`, with what the gateway copies onto the call: `Authorization` (the route's token),
//!   the route's identity headers (every identity header name, empty when the route sends none,
//!   so that a copy replaces what the client sent), and `Cookie` without cloakroom's cookies;
//! - for an API route, the refusal a proxied call gets (`401` JSON, `403`, `405`, a step-up);
//! - for any other path (a page behind the gateway), a session or a `302` to the sign-in.
//!
//! Only a gateway may ask, never a browser, since the answer carries a token: the caller must
//! be one of `server.trusted_proxies` and present `server.forward_auth_token` in
//! `X-Cloakroom-Gateway-Token` (compared in constant time). The original call is read from
//! `X-Forwarded-Uri`/`X-Forwarded-Method` (Caddy, Traefik) or `X-Original-URI`/
//! `X-Original-Method` (nginx), exactly one of each spelling pair, once. Nothing else about it
//! is believed: the rest are the call's own headers, which the gateway passes on. With
//! `?gateway=nginx`, the answer keeps to what `auth_request` passes on (2xx, 401, 403): a page
//! without a session gets `401` (the gateway's `error_page` sends it to the sign-in) and a
//! client's other faults `403`.

use super::{query_param, redirect};
use crate::app::App;
use crate::error::ApiError;
use crate::forwarded::ClientAddr;
use crate::proxy::{admit, bearer, credential};
use crate::respond::{Body, empty, sign_in_href};
use crate::router::Route;
use crate::session::Lookup;
use crate::session::cookie;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

/// The header the gateway proves itself with.
pub const GATEWAY_TOKEN: HeaderName = HeaderName::from_static("x-cloakroom-gateway-token");
const URI_HEADERS: [&str; 2] = ["x-forwarded-uri", "x-original-uri"];
const METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];

/// The answer to a gateway's subrequest.
pub async fn answer(app: &App, request: Request<Incoming>, client: ClientAddr) -> Result<Response<Body>, ApiError> {
    let Some(token) = &app.config.server.forward_auth else { return Err(ApiError::NotFound) };
    let headers = request.headers();
    let presented = single(headers, &[GATEWAY_TOKEN.as_str()]).ok().flatten();
    if !client.via_trusted_proxy || !presented.is_some_and(|given| token.matches(given.as_bytes())) {
        tracing::warn!(client = %client.ip_text(), "a forward-auth call from anyone but a trusted gateway was refused");
        return Err(ApiError::GatewayUntrusted);
    }
    let (method, uri) = original(headers, request.method()).ok_or(ApiError::BadForwardedRequest)?;
    let nginx = query_param(request.uri().query(), "gateway").ok().flatten().as_deref() == Some("nginx");
    let answer = decide(app, &method, &uri, headers, nginx).await;
    Ok(if nginx { for_nginx(answer) } else { answer })
}

/// The call the gateway asks about: its method and its path with query.
fn original(headers: &HeaderMap, own: &Method) -> Option<(Method, PathAndQuery)> {
    let uri = single(headers, &URI_HEADERS).ok()??;
    let uri = PathAndQuery::try_from(uri.as_bytes()).ok().filter(|uri| uri.as_str().starts_with('/'))?;
    let method = match single(headers, &METHOD_HEADERS).ok()? {
        Some(name) => Method::from_bytes(name.as_bytes()).ok()?,
        None => own.clone(),
    };
    Some((method, uri))
}

/// The one value of whichever of `names` is present: `Err` when several are, or one twice.
fn single<'h>(headers: &'h HeaderMap, names: &[&str]) -> Result<Option<&'h HeaderValue>, ()> {
    let mut found = None;
    for name in names {
        for value in headers.get_all(*name) {
            if found.replace(value).is_some() {
                return Err(());
            }
        }
    }
    Ok(found)
}

async fn decide(app: &App, method: &Method, uri: &PathAndQuery, headers: &HeaderMap, nginx: bool) -> Response<Body> {
    match app.router.route(uri.path()) {
        // cloakroom's own endpoints check their callers themselves, and need its cookie.
        Route::Bff(_) | Route::BffUnknown => granted(app, headers, None, true),
        Route::BadPath => ApiError::BadPath.response(),
        Route::Api(index) => {
            let Some(route) = app.config.routes.get(index) else { return ApiError::NotFound.response() };
            if let Err(refusal) = admit::admit_call(app, route, method, uri.query(), headers) {
                return refusal.response(app);
            }
            match credential::credential(app, route, headers).await {
                Ok(credential) => {
                    let mut response = granted(app, headers, Some(&credential.identity), false);
                    if route.policy != crate::config::TokenPolicy::None {
                        // Always the name, so that a copy replaces what the client sent.
                        let value = credential.token.as_ref().and_then(bearer);
                        response.headers_mut().insert(AUTHORIZATION, value.unwrap_or(HeaderValue::from_static("")));
                    }
                    response
                }
                Err(refusal) => refusal.response(app),
            }
        }
        // A page behind the gateway: a signed-in browser, or the sign-in.
        Route::NotFound => match app.sessions.lookup_tokens(headers).await {
            Ok(Lookup::Found(..)) => granted(app, headers, None, false),
            Ok(lookup) => {
                let mut response = if nginx {
                    ApiError::Unauthenticated.response()
                } else {
                    redirect(&sign_in_href(uri.as_str(), None))
                };
                if matches!(lookup, Lookup::Stale) {
                    response = app.sessions.cookies().cleared(response);
                }
                response
            }
            Err(e) => ApiError::from(e).response(),
        },
    }
}

/// `200` with what the gateway copies onto the call: the identity headers (every name, empty
/// unless this call has a value) and the call's cookies without cloakroom's (`keep_own` for
/// cloakroom's own endpoints).
fn granted(
    app: &App,
    headers: &HeaderMap,
    identity: Option<&crate::identity::Identity>,
    keep_own: bool,
) -> Response<Body> {
    let mut response = Response::new(empty());
    let out = response.headers_mut();
    for name in &app.identity_headers {
        out.insert(name.clone(), HeaderValue::from_static(""));
    }
    if let Some(identity) = identity {
        identity.apply(out);
    }
    // One header (HTTP/2 sends cookies in several), read as bytes as the proxy's hygiene reads
    // them: every pair but those a loose reader could take for cloakroom's.
    let policy = app.sessions.cookies();
    let pairs: Vec<&[u8]> = cookie::pairs(headers).filter(|pair| keep_own || !policy.may_hold_own(pair)).collect();
    let kept = HeaderValue::from_bytes(&pairs.join(&b"; "[..])).unwrap_or_else(|_| HeaderValue::from_static(""));
    out.insert(COOKIE, kept);
    response
}

/// nginx's `auth_request` passes on 2xx, 401 and 403 and makes anything else a 500: a client's
/// other faults become `403` (the body keeps the reason), a server's stay what they are.
fn for_nginx(mut response: Response<Body>) -> Response<Body> {
    let status = response.status();
    if status.is_client_error() && status != StatusCode::UNAUTHORIZED {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}
