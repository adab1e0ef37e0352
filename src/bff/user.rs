//! `GET /bff/user`: who is signed in. Claims and session times, never a token. With
//! `?slide=false` the question does not count as a use: a polling SPA still idles out.

use crate::app::App;
use crate::error::ApiError;
use crate::respond::{Body, json};
use crate::session::SessionStore;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

pub async fn handle(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    app.csrf.check(request.headers())?;
    // `?slide=false`: an SPA polling "am I still signed in?" does not keep the session alive.
    let slide = super::query_param(request.uri().query(), "slide").ok().flatten().as_deref() != Some("false");
    let (ticket, session) = super::signed_in_sliding(app, request.headers(), slide).await?;
    let last_use = if slide {
        app.now()
    } else {
        app.sessions.store().last_seen(&ticket.store_key()).await?.unwrap_or_else(|| app.now())
    };
    let idle_expires_at = last_use + app.config.session.idle_timeout.as_secs();
    // `user_claims` of the provider the session signed in with (`[oidc]` or its
    // `[[providers]]` table): the page sees only the claims it needs (empty: all of them).
    let provider = app.providers.get(session.provider.as_deref());
    let allowed = provider.map_or(&app.config.oidc.user_claims, |p| &p.config().user_claims);
    let mut claims = session.claims;
    if !allowed.is_empty() {
        claims.retain(|name, _| allowed.iter().any(|a| a == name));
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "sub": session.sub,
            "claims": claims,
            "session": {
                "created_at": session.created_at,
                "expires_at": session.expires_at,
                "idle_expires_at": idle_expires_at.min(session.expires_at),
            },
        }),
    ))
}
