//! The admin listener's answers: `/healthz`, `/readyz`, `/metrics` for orchestrators, and the
//! operator's session endpoints (issue 29, item 4), the kill switch:
//!
//! - `GET /sessions?sub=…[&provider=…]`: a user's sessions (listing id, device, address,
//!   created, last seen; never a ticket or a token);
//! - `DELETE /sessions/{id}?sub=…[&provider=…]`: one of them;
//! - `DELETE /sessions?sub=…[&provider=…]`: all of that user's at that provider;
//! - `DELETE /sessions?all=true`: every session;
//! - `POST /reload`: reads the configuration file again and serves it, or refuses it with every
//!   reason and keeps the running one ([`crate::reload`]), as SIGHUP does.
//!
//! With the Redis store they act for every replica at once. Refresh tokens are not sent for
//! revocation: each is sealed under its browser's ticket, which the operator does not hold;
//! deleting the record erases cloakroom's only copy. The session and reload endpoints need
//! `Authorization: Bearer <server.admin_token>` (compared in constant time) when a token is
//! configured, and refuse every call without one unless the admin listener is on loopback.

use crate::app::App;
use crate::bff::query_param;
use crate::reload::{Live, ReloadError};
use crate::respond::{Body, full, json};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

pub(super) async fn respond(live: &Live, request: Request<Incoming>) -> Response<Body> {
    let app = &live.app();
    let path = request.uri().path();
    if path == "/reload" {
        return reload(live, app, &request).await.unwrap_or_else(Refusal::response);
    }
    if path == "/sessions" || path.starts_with("/sessions/") {
        return sessions(app, &request).await.unwrap_or_else(Refusal::response);
    }
    if path == "/metrics" {
        let store = app.sessions.store();
        store.sync().await;
        let mut response = Response::new(full(app.metrics.render(store.session_count())));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        return response;
    }
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if live.is_ready() => (StatusCode::OK, "ready\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
}

type Answer = Result<Response<Body>, Refusal>;

/// `POST /reload`: `200 {"reloaded": true, "generation": N}`, or the refusal with every
/// reason (`422 invalid_config` with each key, `409 fixed_at_start` with the keys, `502
/// provider_unavailable`, `409 no_config_file`).
async fn reload(live: &Live, app: &App, request: &Request<Incoming>) -> Answer {
    authorized(app.config.server.admin_token.as_ref(), app.config.server.admin_listen, request.headers())?;
    if request.method() != Method::POST {
        return Err(refusal(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "POST /reload"));
    }
    let answer = match live.reload_file().await {
        Ok(generation) => return Ok(json(StatusCode::OK, &json!({ "reloaded": true, "generation": generation }))),
        Err(ReloadError::Invalid(errors)) => {
            let errors: Vec<_> = errors.0.iter().map(|e| json!({ "key": e.key, "message": e.message })).collect();
            (StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": "invalid_config", "errors": errors }))
        }
        Err(ReloadError::FixedAtStart(keys)) => (
            StatusCode::CONFLICT,
            json!({ "error": "fixed_at_start", "error_description": "restart cloakroom to change these", "keys": keys }),
        ),
        Err(e @ ReloadError::ProviderUnavailable(_)) => {
            (StatusCode::BAD_GATEWAY, json!({ "error": "provider_unavailable", "error_description": e.to_string() }))
        }
        Err(e @ ReloadError::NoFile) => {
            (StatusCode::CONFLICT, json!({ "error": "no_config_file", "error_description": e.to_string() }))
        }
    };
    Ok(json(answer.0, &json!({ "reloaded": false, "generation": live.generation(), "refused": answer.1 })))
}

/// Why an operator's call was refused, answered as JSON in one place ([`Refusal::response`]).
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl Refusal {
    fn response(self) -> Response<Body> {
        let mut response = json(self.status, &json!({ "error": self.error, "error_description": self.description }));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn refusal(status: StatusCode, error: &'static str, description: &str) -> Refusal {
    Refusal { status, error, description: description.to_string() }
}

async fn sessions(app: &App, request: &Request<Incoming>) -> Answer {
    authorized(app.config.server.admin_token.as_ref(), app.config.server.admin_listen, request.headers())?;
    let query = request.uri().query();
    let param = |name| {
        query_param(query, name)
            .map_err(|()| refusal(StatusCode::BAD_REQUEST, "bad_request", &format!("{name} is repeated")))
    };
    let provider_id = param("provider")?;
    let provider = app
        .providers
        .get(provider_id.as_deref())
        .ok_or_else(|| refusal(StatusCode::BAD_REQUEST, "unknown_provider", "provider names no configured provider"))?;
    let recorded = app.providers.recorded_id(provider);
    let one = request.uri().path().strip_prefix("/sessions/").filter(|id| !id.is_empty() && !id.contains('/'));
    let store_failed = |_| refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the session store failed");
    if param("all")?.as_deref() == Some("true") {
        if request.method() != Method::DELETE || one.is_some() {
            return Err(refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "all=true ends sessions: DELETE /sessions",
            ));
        }
        let ended = app.sessions.end_all().await.map_err(store_failed)?;
        app.metrics.logouts(ended);
        return Ok(json(StatusCode::OK, &json!({ "ended": ended })));
    }
    let sub = param("sub")?
        .filter(|sub| !sub.is_empty())
        .ok_or_else(|| refusal(StatusCode::BAD_REQUEST, "bad_request", "sub is required (or all=true)"))?;
    let recorded = recorded.as_deref();
    match (request.method(), one) {
        (&Method::GET, None) => {
            let listed = app.sessions.list_user(recorded, &sub).await.map_err(store_failed)?;
            let sessions: Vec<_> = listed
                .iter()
                .map(|s| {
                    json!({
                        "id": s.listing.listing_id,
                        "device": s.listing.device,
                        "ip": s.listing.ip,
                        "created_at": s.listing.created_at,
                        "last_seen": s.last_seen,
                    })
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({ "sub": sub, "provider": provider.id(), "sessions": sessions })))
        }
        (&Method::DELETE, Some(id)) => match app.sessions.end_user_session(recorded, &sub, id).await {
            Ok(Some(_)) => {
                tracing::info!(provider = provider.id(), "the operator ended a session");
                app.metrics.logouts(1);
                Ok(json(StatusCode::OK, &json!({ "ended": 1 })))
            }
            Ok(None) => Err(refusal(StatusCode::NOT_FOUND, "not_found", "that user has no session with this id")),
            Err(e) => Err(store_failed(e)),
        },
        (&Method::DELETE, None) => {
            let ended = app.sessions.end_matching(recorded, None, Some(&sub)).await.map_err(store_failed)?;
            tracing::info!(ended, provider = provider.id(), "the operator ended a user's sessions");
            app.metrics.logouts(u64::try_from(ended).unwrap_or(u64::MAX));
            Ok(json(StatusCode::OK, &json!({ "ended": ended })))
        }
        _ => Err(refusal(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "GET /sessions or DELETE")),
    }
}

/// The operator's credential: the configured bearer token, compared in constant time
/// ([`crate::secret::Secret::matches`]); with none configured, only a loopback admin listener
/// answers.
fn authorized(
    token: Option<&crate::secret::Secret>,
    admin_listen: std::net::SocketAddr,
    headers: &http::HeaderMap,
) -> Result<(), Refusal> {
    let Some(token) = token else {
        if admin_listen.ip().is_loopback() {
            return Ok(());
        }
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "admin_token_required",
            "the admin listener is not on loopback: set server.admin_token_file to use the session endpoints",
        ));
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if token.matches(given) {
        return Ok(());
    }
    tracing::warn!("an admin session call without the right credential was refused");
    Err(refusal(StatusCode::UNAUTHORIZED, "unauthorized", "Authorization: Bearer <server.admin_token>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn an_exposed_admin_listener_needs_the_token_and_a_loopback_one_without_a_token_does_not() {
        let (loopback, exposed) = ("127.0.0.1:9090".parse().unwrap(), "0.0.0.0:9090".parse().unwrap());
        let none = http::HeaderMap::new();
        assert!(authorized(None, loopback, &none).is_ok());
        let refused = authorized(None, exposed, &none).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let token = Secret::new("t".repeat(32));
        let mut right = http::HeaderMap::new();
        right.insert(http::header::AUTHORIZATION, format!("Bearer {}", "t".repeat(32)).parse().unwrap());
        for listen in [loopback, exposed] {
            assert_eq!(authorized(Some(&token), listen, &none).unwrap_err().status, StatusCode::UNAUTHORIZED);
            assert!(authorized(Some(&token), listen, &right).is_ok());
        }
        let mut wrong = http::HeaderMap::new();
        wrong.insert(http::header::AUTHORIZATION, format!("Basic {}", "t".repeat(32)).parse().unwrap());
        assert_eq!(authorized(Some(&token), exposed, &wrong).unwrap_err().status, StatusCode::UNAUTHORIZED);
    }
}
