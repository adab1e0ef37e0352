//! [`Refusal`]: why a proxied call is not forwarded, carrying what its answer needs. Every phase
//! that can refuse returns one; [`Refusal::response`] turns it into the answer, in one place.

use super::step_up::Challenge;
use crate::app::App;
use crate::error::ApiError;
use crate::respond::{Body, json};
use http::Response;
use http::header::{ALLOW, HeaderValue};

#[derive(Debug)]
pub enum Refusal {
    /// A method the route does not forward, asked for directly or through an override: `405`,
    /// with `Allow` naming the route's methods (`None`: no allowlist, the method is one no
    /// route forwards).
    Method { allow: Option<HeaderValue> },
    /// A stronger or more recent sign-in is needed: `401 step_up_required` with the challenge
    /// (what to ask for and the sign-in link), the route's own or the upstream's.
    StepUp(Challenge),
    /// The provider refused the route's token exchange: `403 token_exchange_refused`, naming
    /// the route (its prefix, configuration, never request bytes).
    ExchangeRefused { route: String },
    /// Anything else, answered as the error table says (a cookie that opened nothing is
    /// cleared with it).
    Error(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Error(error)
    }
}

impl Refusal {
    pub fn response(self, app: &App) -> Response<Body> {
        match self {
            Refusal::Method { allow } => {
                let mut response = ApiError::MethodNotAllowed.response();
                if let Some(allow) = allow {
                    response.headers_mut().insert(ALLOW, allow);
                }
                response
            }
            Refusal::StepUp(challenge) => challenge.response(&app.config.oidc.login_params),
            Refusal::ExchangeRefused { route } => {
                let (status, code, description) = ApiError::ExchangeRefused.parts();
                json(status, &serde_json::json!({ "error": code, "error_description": description, "route": route }))
            }
            Refusal::Error(error) => error.answer(app.sessions.cookies()),
        }
    }
}
