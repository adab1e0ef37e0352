//! The authorization-code exchange and the ID-token checks.

use super::{Discovered, OidcError, Provider, error_chain, join_scopes};
use crate::crypto::dpop::DpopKey;
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, ClaimsVerificationError, ClientId, IssuerUrl, Nonce,
    NonceVerifier, OAuth2TokenResponse, PkceCodeVerifier, RefreshToken, RequestTokenError, SignatureVerificationError,
    TokenResponse,
};
use serde_json::{Map, Value};

/// What a successful sign-in yields. Only ever stored sealed; never sent to the browser.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: AccessToken,
    /// Unix seconds, from `expires_in` or else the access token's own `exp` (when it is a JWT).
    pub access_token_expires_at: Option<u64>,
    pub refresh_token: Option<RefreshToken>,
    /// Unix seconds when the refresh token stops working, when the provider says
    /// (`oidc/refresh_lifetime.rs`): the session ends then at the latest.
    pub refresh_token_expires_at: Option<u64>,
    /// The scope granted to `access_token` (space-separated): the response's `scope`, or what
    /// was asked for when it has none (RFC 6749 §5.1: then it is the same).
    pub scope: String,
    pub id_token: Secret,
    pub sub: String,
    pub sid: Option<String>,
    /// Verified claims for `/bff/user`, without protocol fields (and the userinfo endpoint's,
    /// with `oidc.userinfo`).
    pub claims: Map<String, Value>,
    /// Unix seconds, when `claims` include the userinfo endpoint's.
    pub userinfo_at: Option<u64>,
}

/// Claims that are protocol plumbing rather than facts about the user.
const PROTOCOL_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "s_hash", "aud", "azp", "exp", "iat", "nbf", "jti"];

pub(super) enum Failure {
    UnknownKey,
    Invalid(String),
}

impl Provider {
    /// What a sign-in gets from the provider: the authorization code exchanged (PKCE, the
    /// `nonce`, the ID token validated), and, with `oidc.userinfo`, the userinfo endpoint's
    /// claims joined to the ID token's. A userinfo endpoint that does not answer fails the
    /// sign-in (its claims may be what the routes' rules need).
    pub async fn sign_in_tokens(
        &self,
        code: String,
        pkce_verifier: &Secret,
        nonce: &Secret,
        dpop: Option<&DpopKey>,
    ) -> Result<TokenSet, OidcError> {
        let mut tokens = self.exchange_code(code, pkce_verifier, nonce, dpop).await?;
        if self.config.userinfo {
            let claims = self.userinfo(&tokens.access_token, &tokens.sub, dpop).await?;
            super::merge_userinfo(&mut tokens.claims, claims);
            tokens.userinfo_at = Some(self.clock.now());
        }
        Ok(tokens)
    }

    async fn exchange_code(
        &self,
        code: String,
        pkce_verifier: &Secret,
        nonce: &Secret,
        dpop: Option<&DpopKey>,
    ) -> Result<TokenSet, OidcError> {
        let discovered = self.ready()?;
        let sender = self.sender(&self.http, dpop);
        // Built afresh for a second try (a new client assertion: its jti is single-use).
        let exchange = async || {
            let mut request = discovered
                .client
                .exchange_code(AuthorizationCode::new(code.clone()))
                .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_string()));
            if let Some(resource) = &self.config.resource {
                request = request.add_extra_param("resource", resource.clone());
            }
            for (name, value) in self.client_assertion(&discovered)? {
                request = request.add_extra_param(name, value);
            }
            Ok::<_, OidcError>(request.request_async(&sender).await)
        };
        let mut response = exchange().await?;
        if dpop.is_some() && response.as_ref().is_err_and(asks_for_nonce) {
            response = exchange().await?;
        }
        let response = response.map_err(token_error)?;
        self.check_binding(&response, dpop)?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::InvalidIdToken("the token response has no id_token".into()))?;
        let nonce = Nonce::new(nonce.expose().to_string());
        let claims = self.verify_id_token(&discovered, id_token, Some(&nonce), response.access_token()).await?;
        let access_token_expires_at = self.access_token_expiry(response.expires_in(), response.access_token());
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_string();
        let sid = claims.get("sid").and_then(Value::as_str).map(String::from);
        Ok(TokenSet {
            access_token: response.access_token().clone(),
            access_token_expires_at,
            refresh_token: response.refresh_token().cloned(),
            refresh_token_expires_at: response
                .extra_fields()
                .extra_fields()
                .expires_at(response.refresh_token().map(|t| t.secret().as_str()), self.clock.now()),
            scope: match response.scopes() {
                Some(granted) => join_scopes(granted),
                None => self.asked_scope(),
            },
            id_token: Secret::new(id_token.to_string()),
            sub,
            sid,
            claims: user_claims(claims),
            userinfo_at: None,
        })
    }

    /// Verifies an ID token, refetching the JWKS once if it names a key we do not have.
    /// `nonce: None` is for ID tokens from a refresh, which carry no new nonce.
    pub(super) async fn verify_id_token(
        &self,
        discovered: &Discovered,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
        access_token: &AccessToken,
    ) -> Result<Map<String, Value>, OidcError> {
        let failure = match self.verify(discovered, id_token, nonce, access_token) {
            Ok(claims) => return Ok(claims),
            Err(failure) => failure,
        };
        match failure {
            Failure::Invalid(reason) => Err(OidcError::InvalidIdToken(reason)),
            Failure::UnknownKey => {
                let refreshed = self.refetch_jwks().await?;
                self.verify(&refreshed, id_token, nonce, access_token).map_err(|failure| match failure {
                    Failure::UnknownKey => OidcError::InvalidIdToken("signed with an unknown key".into()),
                    Failure::Invalid(reason) => OidcError::InvalidIdToken(reason),
                })
            }
        }
    }

    /// Unix seconds: from `expires_in`, or else the access token's own `exp` when it is a JWT.
    pub(super) fn access_token_expiry(
        &self,
        expires_in: Option<std::time::Duration>,
        token: &AccessToken,
    ) -> Option<u64> {
        let now = self.clock.now();
        expires_in.map(|d| now.saturating_add(d.as_secs())).or_else(|| jwt_exp(token.secret()))
    }

    /// Signature (JWKS, asymmetric allowlist), `iss`, `aud` (no untrusted extra audience),
    /// `azp`, `exp`, `iat`, `nonce`, `at_hash`.
    fn verify(
        &self,
        discovered: &Discovered,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
        access_token: &AccessToken,
    ) -> Result<Map<String, Value>, Failure> {
        let now = self.clock.now() as i64;
        let skew = self.config.clock_skew.as_secs() as i64;
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| Failure::Invalid(e.to_string()))?;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            issuer,
            discovered.jwks.clone(),
        )
        .set_allowed_algs(discovered.allowed_algs.clone())
        .set_time_fn(move || DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default())
        .set_issue_time_verifier_fn(move |iat: DateTime<Utc>| {
            if iat.timestamp() > now + skew { Err("issued in the future (iat)".to_string()) } else { Ok(()) }
        });
        let nonce_check = |claim: Option<&Nonce>| match nonce {
            Some(expected) => expected.verify(claim),
            None => Ok(()),
        };
        let claims = id_token.claims(&verifier, nonce_check).map_err(|e| match e {
            ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey) => {
                Failure::UnknownKey
            }
            other => Failure::Invalid(error_chain(&other)),
        })?;
        // openidconnect deliberately leaves `azp` unchecked (OIDC Core §3.1.3.7 steps 4-5 are
        // SHOULDs); cloakroom checks it: an ID token authorized for another client is not ours.
        // (Untrusted extra audiences are already refused by the verifier's default.)
        if let Some(party) = claims.authorized_party()
            && party.as_str() != self.config.client_id
        {
            return Err(Failure::Invalid("azp names another client".into()));
        }
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token.signing_alg().map_err(|e| Failure::Invalid(error_chain(&e)))?;
            let key = id_token.signing_key(&verifier).map_err(|e| Failure::Invalid(error_chain(&e)))?;
            let actual =
                AccessTokenHash::from_token(access_token, alg, key).map_err(|e| Failure::Invalid(error_chain(&e)))?;
            if actual != *expected {
                return Err(Failure::Invalid("at_hash does not match the access token".into()));
            }
        }
        // The signature is verified: the payload can now be read whole (all claims, not only
        // the standard ones openidconnect models).
        jwt_payload(&id_token.to_string()).ok_or_else(|| Failure::Invalid("unreadable payload".into()))
    }
}

/// Classifies a token-endpoint failure: only a definite refusal is [`OidcError::Rejected`];
/// anything that says "the provider is in trouble" is [`OidcError::Unreachable`].
type TokenRequestError<RE> =
    RequestTokenError<RE, openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>>;

/// What a failed token request means, for the code exchange and the client-credentials grant:
/// a 401 without an error code is about the client (RFC 6749 §5.2).
pub(super) fn token_error<RE: std::error::Error + 'static>(error: TokenRequestError<RE>) -> OidcError {
    token_error_at(error, true)
}

/// A token request refused with `use_dpop_nonce` (RFC 9449 §8): to be built and sent once more.
pub(super) fn asks_for_nonce<RE: std::error::Error + 'static>(error: &TokenRequestError<RE>) -> bool {
    matches!(error, openidconnect::RequestTokenError::ServerResponse(response) if response.error().as_ref() == "use_dpop_nonce")
}

/// The status of a refusal that came without an OAuth error code (a bare 4xx).
pub(super) fn bare_refusal<RE: std::error::Error + 'static>(error: &TokenRequestError<RE>) -> Option<http::StatusCode> {
    use super::http::ProviderHttpError;
    match error {
        RequestTokenError::Request(e) => match (e as &dyn std::error::Error).downcast_ref::<ProviderHttpError>() {
            Some(ProviderHttpError::Refused(status)) => Some(*status),
            _ => None,
        },
        _ => None,
    }
}

/// [`token_error`], saying whether a 401 without an error code is read as the client's
/// (`false` at a refresh: some providers answer a refused refresh token so, and a refusal ends
/// the session as any other bare 4xx does).
pub(super) fn token_error_at<RE: std::error::Error + 'static>(
    error: TokenRequestError<RE>,
    bare_401_is_the_clients: bool,
) -> OidcError {
    match error {
        RequestTokenError::ServerResponse(response) => match response.error().as_ref() {
            "server_error" | "temporarily_unavailable" => OidcError::Unreachable(response.error().as_ref().to_string()),
            code @ ("invalid_client" | "unauthorized_client") => OidcError::ClientRejected(code.to_string()),
            code => OidcError::Rejected(code.to_string()),
        },
        RequestTokenError::Request(e) => {
            use super::http::ProviderHttpError;
            match (&e as &dyn std::error::Error).downcast_ref::<ProviderHttpError>() {
                // 401 from the token endpoint is about the client (RFC 6749 §5.2).
                Some(ProviderHttpError::Refused(status))
                    if *status == http::StatusCode::UNAUTHORIZED && bare_401_is_the_clients =>
                {
                    OidcError::ClientRejected(format!("HTTP {status} without an error code"))
                }
                Some(ProviderHttpError::Refused(status)) => {
                    OidcError::Rejected(format!("HTTP {status} without an error code"))
                }
                Some(http_error) if http_error.is_in_doubt() => OidcError::InDoubt(error_chain(&e)),
                _ => OidcError::Unreachable(error_chain(&e)),
            }
        }
        RequestTokenError::Parse(e, _) => OidcError::BadResponse(e.to_string()),
        RequestTokenError::Other(e) => OidcError::Unreachable(e),
    }
}

fn jwt_payload(jwt: &str) -> Option<Map<String, Value>> {
    super::jws::decode_json(jwt.split('.').nth(1)?)
}

/// The `exp` of a JWT access token, read without verification: used only to decide when the
/// token is due, never to trust it.
pub(crate) fn jwt_exp(token: &str) -> Option<u64> {
    if token.split('.').count() != 3 {
        return None;
    }
    jwt_payload(token)?.get("exp")?.as_u64()
}

pub(crate) fn user_claims(mut claims: Map<String, Value>) -> Map<String, Value> {
    for name in PROTOCOL_CLAIMS {
        claims.remove(*name);
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn reads_exp_from_a_jwt_only() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1234,"sub":"a"}"#);
        assert_eq!(jwt_exp(&format!("h.{payload}.s")), Some(1234));
        assert_eq!(jwt_exp("opaque-token"), None);
        assert_eq!(jwt_exp("a.b"), None);
        assert_eq!(jwt_exp("a.!!!.c"), None);
    }

    #[test]
    fn user_claims_drop_protocol_fields() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"a","email":"a@x","nonce":"n","at_hash":"h","aud":"c","exp":1,"iat":1,"iss":"i","sid":"s"}"#,
        )
        .unwrap();
        let kept = user_claims(claims);
        let mut names: Vec<&str> = kept.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["email", "iss", "sid", "sub"]);
    }
}
