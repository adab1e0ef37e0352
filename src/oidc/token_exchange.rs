//! OAuth 2.0 Token Exchange (RFC 8693): the session's access token (the subject token) traded
//! at the token endpoint for one with its own `audience`, `resource` and `scope`, for a route
//! whose API wants a token made for it alone. Client authentication as configured.

use super::http::ProviderHttpError;
use super::{OidcError, Provider, error_chain};
use crate::config::Exchange;
use openidconnect::AccessToken;
use serde::Deserialize;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// RFC 8693 §2.2.1.
#[derive(Deserialize)]
struct Issued {
    access_token: AccessToken,
    issued_token_type: Option<String>,
    token_type: String,
    expires_in: Option<u64>,
}

/// RFC 6749 §5.2, as §2.2.2 uses it.
#[derive(Deserialize)]
struct Refused {
    error: String,
}

impl Provider {
    /// Trades `subject` for a token as `exchange` describes; the token with its expiry (unix
    /// seconds) when known. A refusal is [`OidcError::Rejected`] (the provider's code), a
    /// refusal of cloakroom itself [`OidcError::ClientRejected`].
    pub async fn exchange_token(
        &self,
        subject: &AccessToken,
        exchange: &Exchange,
    ) -> Result<(AccessToken, Option<u64>), OidcError> {
        let discovered = self.ready()?;
        let mut form = vec![
            ("grant_type".to_string(), GRANT_TYPE.to_string()),
            ("subject_token".to_string(), subject.secret().clone()),
            ("subject_token_type".to_string(), ACCESS_TOKEN_TYPE.to_string()),
            ("requested_token_type".to_string(), ACCESS_TOKEN_TYPE.to_string()),
            ("client_id".to_string(), self.config.client_id.clone()),
        ];
        if let Some(audience) = &exchange.audience {
            form.push(("audience".to_string(), audience.clone()));
        }
        if let Some(resource) = &exchange.resource {
            form.push(("resource".to_string(), resource.clone()));
        }
        if !exchange.scopes.is_empty() {
            form.push(("scope".to_string(), exchange.scopes.join(" ")));
        }
        let request = self.authenticated_form(&discovered, &discovered.token_uri, form)?;
        let response = self.http.send(request).await.map_err(|e| match e {
            ProviderHttpError::Refused(http::StatusCode::UNAUTHORIZED) => {
                OidcError::ClientRejected("the token endpoint refused a token exchange with HTTP 401".into())
            }
            ProviderHttpError::Refused(status) => OidcError::Rejected(format!("HTTP {status}")),
            other => OidcError::Unreachable(error_chain(&other)),
        })?;
        let status = response.status();
        if !status.is_success() {
            let error = serde_json::from_slice::<Refused>(response.body()).map(|r| r.error).unwrap_or_default();
            let client = error == "invalid_client" || status == http::StatusCode::UNAUTHORIZED;
            // Only a plain code is repeated: it reaches logs, never the browser.
            let error = if error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') { error } else { String::new() };
            let reason = format!("HTTP {status} {error}");
            return Err(if client { OidcError::ClientRejected(reason) } else { OidcError::Rejected(reason) });
        }
        let issued: Issued = serde_json::from_slice(response.body())
            .map_err(|e| OidcError::BadResponse(format!("the token exchange's answer: {e}")))?;
        if issued.issued_token_type.as_deref().is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
            return Err(OidcError::BadResponse(
                "the token exchange issued something other than an access token".into(),
            ));
        }
        if !issued.token_type.eq_ignore_ascii_case("bearer") {
            return Err(OidcError::BadResponse(format!(
                "the exchanged token is of type {:?}, not Bearer",
                issued.token_type
            )));
        }
        let expires_at =
            self.access_token_expiry(issued.expires_in.map(std::time::Duration::from_secs), &issued.access_token);
        Ok((issued.access_token, expires_at))
    }
}
