//! The API proxy: a proxied call as named phases, in order, one file each, each returning a
//! typed result (a [`Refusal`] carries the answer a refused call gets, a step-up challenge
//! included):
//!
//! 1. [`admit`]: the route takes the call: its method (overrides included), the anti-CSRF
//!    guard, a declared body within the route's limit. Nothing of the session is read yet.
//! 2. [`credential`]: what the call carries: the session, the route's rules and step-up, the
//!    access token (refreshed when due), or cloakroom's client token, or nothing.
//! 3. [`upstream_request`]: the target, header hygiene and forwarding headers, the credential
//!    attached, the send; bodies stream both ways without buffering.
//! 4. [`upstream_answer`]: what the upstream says about the credential (a step-up it asks for,
//!    a token it rejects), and a stale cookie cleared.
//!
//! A DPoP route's key comes with the credential (phase 2), its proof is made in phase 3 beside
//! the token, and an upstream's `use_dpop_nonce` is answered in phase 4. Each phase has its
//! trace span (here, in [`forward`]; the upstream call's own in `upstream_request::send`).
//!
//! This is the busiest path in cloakroom. It reads one cookie, does one store lookup and one
//! AEAD open, rewrites headers in place, and hands the body through without buffering (a
//! 100 MB upload streams with bounded memory). Connections to upstreams are pooled keep-alive.

pub mod admit;
pub mod credential;
pub mod headers;
pub mod method;
mod refusal;
pub mod rules;
pub mod step_up;
pub mod upstream_answer;
pub mod upstream_request;
mod websocket;

use crate::app::App;
use crate::error::ApiError;
use crate::forwarded::ClientAddr;
use crate::respond::Body;
use crate::telemetry::step;
use http::{Request, Response};
use hyper::body::Incoming;
pub use refusal::Refusal;
use tracing::Instrument;
pub use upstream_request::Replay;

pub use headers::{strip_hop_by_hop, strip_own_cookies};
pub use upstream_request::{Relay, Target, bearer, relay, target_path};
pub use websocket::is_upgrade as is_websocket_upgrade;

/// One API call, phase after phase, each in its trace span (`[traces]`; free without it).
pub async fn forward(app: &App, route_index: usize, request: Request<Incoming>, client: ClientAddr) -> Response<Body> {
    let Some(route) = app.config.routes.get(route_index) else { return ApiError::NotFound.response() };
    let admitted = step("admit").in_scope(|| admit::admit(app, route, &request));
    if let Err(refusal) = admitted {
        return refusal.response(app);
    }
    // The phases' futures are pinned where they are made and their spans wrap a pointer (see
    // `dispatch::handle`): no copy of their state into the wrapper.
    let credential = {
        let pending = std::pin::pin!(credential::credential(app, route, request.headers()));
        match pending.instrument(step("credential")).await {
            Ok(credential) => credential,
            Err(refusal) => return refusal.response(app),
        }
    };
    let path = target_path(route, request.uri());
    // Kept for one more try with a fresh token, should the upstream reject the user's.
    let replay = (credential.is_users() && credential.token.is_some()).then(|| Replay::of(&request, &path)).flatten();
    let Some(relayed) = Relay::for_route(app, route_index, path, credential.token.as_ref(), &credential, client) else {
        return ApiError::NotFound.response();
    };
    let response = relay(app, request, relayed).await;
    let answer = std::pin::pin!(upstream_answer::answer(app, route_index, client, credential, replay, response));
    answer.instrument(step("upstream_answer")).await
}
