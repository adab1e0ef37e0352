//! `GET /bff/user`: who is signed in. Claims and session times, never a token.

use crate::app::App;
use crate::error::ApiError;
use crate::respond::{Body, json};
use crate::session::Lookup;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

pub async fn handle(app: &App, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET {
        return ApiError::MethodNotAllowed.response();
    }
    if let Err(e) = app.csrf_check(request.headers()) {
        return e.response();
    }
    match app.sessions.lookup(request.headers()).await {
        Ok(Lookup::Found(_, session)) => {
            let idle_expires_at = app.sessions.now() + app.config.session.idle_timeout.as_secs();
            json(
                StatusCode::OK,
                &json!({
                    "sub": session.sub,
                    "claims": session.claims,
                    "session": {
                        "created_at": session.created_at,
                        "expires_at": session.expires_at,
                        "idle_expires_at": idle_expires_at.min(session.expires_at),
                    },
                }),
            )
        }
        Ok(Lookup::None) => ApiError::Unauthenticated.response(),
        Ok(Lookup::Stale) => app.clear_session_cookie(ApiError::Unauthenticated.response()),
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            ApiError::StoreUnavailable.response()
        }
    }
}
