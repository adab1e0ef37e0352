//! `GET /bff/providers`: the providers a sign-in may go to, for an SPA to draw a chooser
//! (`/bff/login?provider=<id>`). Public configuration only: ids, display names, and the
//! security profile each keeps to (`oidc.profile`, for `cloakroom audit` and reviewers).

use crate::app::App;
use crate::error::ApiError;
use crate::respond::{Body, json};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

pub fn handle(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    let providers: Vec<_> = app
        .providers
        .all()
        .iter()
        .map(|p| {
            json!({
                "id": p.id(),
                "name": p.display_name(),
                "login_url": format!("/bff/login?provider={}&returnUrl=", p.id()),
                "profile": p.config().profile.name(),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "default": app.providers.default_provider().id(), "providers": providers })))
}
