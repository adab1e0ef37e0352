//! Ending things at the provider: RFC 7009 revocation and the RP-initiated logout URL.

use super::{OidcError, Provider, error_chain};
use openidconnect::RefreshToken;
use url::Url;

impl Provider {
    pub fn has_revocation(&self) -> bool {
        self.current().is_some_and(|d| d.revocation_endpoint.is_some())
    }

    /// Revokes a refresh token (RFC 7009), authenticating as configured.
    ///
    /// Sent directly rather than through `oauth2`'s revocation request, which refuses plain-http
    /// endpoints and so would rule out loopback development providers; the request is small.
    pub async fn revoke_refresh_token(&self, token: &RefreshToken) -> Result<(), OidcError> {
        let discovered = self.ready()?;
        let Some(endpoint) = discovered.revocation_endpoint.clone() else {
            return Ok(());
        };
        let form = vec![("token".into(), token.secret().clone()), ("token_type_hint".into(), "refresh_token".into())];
        let request = self.authenticated_form(&discovered, &endpoint, form)?;
        let response = self.http.send(request).await.map_err(|e| OidcError::Unreachable(error_chain(&e)))?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s if s.is_server_error() => Err(OidcError::Unreachable(format!("revocation answered HTTP {s}"))),
            s => Err(OidcError::Rejected(format!("revocation answered HTTP {s}"))),
        }
    }

    /// Where to send the browser to end the provider session, if the provider supports it.
    pub fn end_session_url(&self, id_token_hint: Option<&str>) -> Option<Url> {
        let mut url = self.current()?.end_session_endpoint.clone()?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &self.config.client_id)
                .append_pair("post_logout_redirect_uri", self.config.post_logout_redirect_uri.as_str());
            if let Some(hint) = id_token_hint {
                query.append_pair("id_token_hint", hint);
            }
        }
        Some(url)
    }
}
