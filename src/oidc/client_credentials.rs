//! The client-credentials grant: a token for cloakroom itself, for `client` routes.

use super::exchange::token_error;
use super::{OidcError, Provider};
use openidconnect::{AccessToken, OAuth2TokenResponse};

impl Provider {
    /// A token for cloakroom as a client; returns it with its expiry (unix seconds) if known.
    pub async fn client_credentials(&self) -> Result<(AccessToken, Option<u64>), OidcError> {
        let discovered = self.ready()?;
        let response =
            discovered.client.exchange_client_credentials().request_async(&self.http).await.map_err(token_error)?;
        let expires_at = self.access_token_expiry(response.expires_in(), response.access_token());
        Ok((response.access_token().clone(), expires_at))
    }
}
