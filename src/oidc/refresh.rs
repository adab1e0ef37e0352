//! The refresh-token grant.

use super::code_exchange::{asks_for_nonce, bare_refusal, token_error_at, user_claims};
use super::{OidcError, Provider};
use crate::config::Audience;
use crate::crypto::dpop::DpopKey;
use crate::secret::Secret;
use openidconnect::{AccessToken, OAuth2TokenResponse, RefreshToken, TokenResponse};
use serde_json::{Map, Value};

/// What a refresh yields. Fields the provider did not send are `None`: the caller keeps the old.
#[derive(Debug)]
pub struct Refreshed {
    pub access_token: AccessToken,
    pub access_token_expires_at: Option<u64>,
    /// A rotated refresh token; the old one is then dead at the provider.
    pub refresh_token: Option<RefreshToken>,
    /// Unix seconds when the refresh token (the rotated one, or the one kept) stops working,
    /// when the provider says.
    pub refresh_token_expires_at: Option<u64>,
    /// The scope the response says it granted; `None`: the same as before (RFC 6749 §5.1).
    pub scope: Option<String>,
    pub id_token: Option<Secret>,
    /// Claims from a new ID token, verified like at login (no nonce on a refresh).
    pub claims: Option<Map<String, Value>>,
}

impl Provider {
    /// Redeems `refresh_token` for the sign-in's default audience, or for `audience` (RFC 8707:
    /// an access token meant for that API only). A new ID token must name the same user (`sub`).
    pub async fn refresh(
        &self,
        refresh_token: &RefreshToken,
        sub: &str,
        audience: Option<&Audience>,
        dpop: Option<&DpopKey>,
    ) -> Result<Refreshed, OidcError> {
        let discovered = self.ready()?;
        let (resource, scopes) = self.audience_params(audience);
        let sender = self.sender(&self.refresh_http, dpop);
        // Built afresh for a second try (a new client assertion: its jti is single-use).
        let redeem = async || {
            let mut request = discovered.client.exchange_refresh_token(refresh_token).add_scopes(scopes.clone());
            if let Some(resource) = resource.clone() {
                request = request.add_extra_param("resource", resource);
            }
            for (name, value) in self.client_assertion(&discovered)? {
                request = request.add_extra_param(name, value);
            }
            Ok::<_, OidcError>(request.request_async(&sender).await)
        };
        let mut response = redeem().await?;
        if dpop.is_some() && response.as_ref().is_err_and(asks_for_nonce) {
            response = redeem().await?;
        }
        let response = response.map_err(|e| {
            if bare_refusal(&e) == Some(::http::StatusCode::UNAUTHORIZED) {
                tracing::error!(provider = %self.config.id, "the token endpoint refused a refresh with a bare 401: the refresh token, or cloakroom's own client credential (check client_auth and its secret or key); the session ends, as for any refusal");
            }
            token_error_at(e, false)
        })?;
        self.check_binding(&response, dpop)?;
        let (id_token, claims) = match response.id_token() {
            None => (None, None),
            Some(id_token) => {
                let claims = self.verify_id_token(&discovered, id_token, None, response.access_token()).await?;
                if claims.get("sub").and_then(Value::as_str) != Some(sub) {
                    return Err(OidcError::InvalidIdToken("a refreshed ID token names another user".into()));
                }
                (Some(Secret::new(id_token.to_string())), Some(user_claims(claims)))
            }
        };
        Ok(Refreshed {
            access_token: response.access_token().clone(),
            access_token_expires_at: self.access_token_expiry(response.expires_in(), response.access_token()),
            refresh_token: response.refresh_token().cloned(),
            refresh_token_expires_at: response.extra_fields().extra_fields().expires_at(
                Some(response.refresh_token().unwrap_or(refresh_token).secret().as_str()),
                self.clock.now(),
            ),
            scope: response.scopes().map(|granted| super::join_scopes(granted)),
            id_token,
            claims,
        })
    }
}
