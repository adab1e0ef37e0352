//! `GET /bff/user`: who is signed in. Claims and session times, never a token.

use crate::app::App;
use crate::error::ApiError;
use crate::respond::{Body, json};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

pub async fn handle(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    app.csrf.check(request.headers())?;
    let (_, session) = super::signed_in(app, request.headers()).await?;
    let idle_expires_at = app.sessions.now() + app.config.session.idle_timeout.as_secs();
    Ok(json(
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
    ))
}
