//! Pushed Authorization Requests (RFC 9126): the authorization request's parameters go to the
//! provider over the back channel, authenticated as the client, and the browser is sent with
//! only `client_id` and the `request_uri` the provider returned. The browser (and whatever it
//! logs or leaks) then never sees the request, and the provider knows it came from cloakroom.

use super::{OidcError, Provider, error_chain};
use crate::config::ParMode;
use url::Url;

/// RFC 9126 §2.2.
#[derive(serde::Deserialize)]
struct Pushed {
    request_uri: String,
}

impl Provider {
    /// Whether sign-ins go through PAR: `oidc.par = "auto"` when the provider advertises it (and
    /// always when it requires it), `"required"` always (discovery fails without an endpoint).
    pub fn uses_par(&self) -> bool {
        self.current().is_some_and(|d| match self.config.par {
            ParMode::Off => d.par_required_by_provider,
            ParMode::Auto | ParMode::Required => d.par_endpoint.is_some(),
        })
    }

    /// Pushes the parameters of `authorization` (a full authorization URL, as built by
    /// [`Provider::authorization_url`]) and returns the URL to send the browser to instead.
    pub async fn push_authorization(&self, authorization: Url) -> Result<Url, OidcError> {
        let discovered = self.ready()?;
        let Some(endpoint) = discovered.par_endpoint.clone() else {
            return Err(OidcError::BadResponse("the provider has no pushed_authorization_request_endpoint".into()));
        };
        let form: Vec<(String, String)> = authorization.query_pairs().into_owned().collect();
        let request = self.authenticated_form(&discovered, &endpoint, form)?;
        let response = self.http.send(request).await.map_err(|e| match e {
            // RFC 6749 §5.2: a refused client authentication is 401.
            super::http::ProviderHttpError::Refused(http::StatusCode::UNAUTHORIZED) => {
                OidcError::ClientRejected("the PAR endpoint refused with HTTP 401".into())
            }
            super::http::ProviderHttpError::Refused(status) => {
                OidcError::Rejected(format!("the PAR endpoint refused with HTTP {status}"))
            }
            other => OidcError::Unreachable(error_chain(&other)),
        })?;
        let status = response.status();
        if !status.is_success() {
            let error = serde_json::from_slice::<serde_json::Value>(response.body())
                .ok()
                .and_then(|v| v.get("error").and_then(serde_json::Value::as_str).map(String::from))
                .unwrap_or_default();
            let reason = format!("the PAR endpoint answered HTTP {status} {error}");
            let client = error == "invalid_client" || status == http::StatusCode::UNAUTHORIZED;
            return Err(if client { OidcError::ClientRejected(reason) } else { OidcError::Rejected(reason) });
        }
        let pushed: Pushed = serde_json::from_slice(response.body())
            .map_err(|e| OidcError::BadResponse(format!("the PAR endpoint's answer: {e}")))?;
        let mut url = authorization;
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("request_uri", &pushed.request_uri);
        Ok(url)
    }
}
