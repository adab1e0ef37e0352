//! The client-credentials grant: a token for cloakroom itself, for `client` routes.

use super::code_exchange::token_error;
use super::{OidcError, Provider};
use crate::config::Audience;
use openidconnect::{AccessToken, OAuth2TokenResponse};

impl Provider {
    /// A token for cloakroom as a client (for `audience` when given, RFC 8707); returns it with
    /// its expiry (unix seconds) if known.
    pub async fn client_credentials(
        &self,
        audience: Option<&Audience>,
    ) -> Result<(AccessToken, Option<u64>), OidcError> {
        let discovered = self.ready()?;
        let (resource, scopes) = self.audience_params(audience);
        let mut request = discovered.client.exchange_client_credentials().add_scopes(scopes);
        if let Some(resource) = resource {
            request = request.add_extra_param("resource", resource);
        }
        for (name, value) in self.client_assertion(&discovered)? {
            request = request.add_extra_param(name, value);
        }
        let response = request.request_async(&self.http).await.map_err(token_error)?;
        let expires_at = self.access_token_expiry(response.expires_in(), response.access_token());
        Ok((response.access_token().clone(), expires_at))
    }
}
