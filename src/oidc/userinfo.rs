//! The userinfo endpoint (OpenID Connect Core §5.3): some providers keep profile and group
//! claims there rather than in the ID token. With `oidc.userinfo`, cloakroom fetches them at
//! sign-in (and again on refresh, at `oidc.userinfo_interval`) and merges them into the
//! session's claims, for `/bff/user` and the routes' rules. The answer must name the ID token's
//! user (`sub`, checked by openidconnect); a signed (JWT) answer is verified like an ID token.

use super::{OidcError, Provider, error_chain};
use openidconnect::core::CoreGenderClaim;
use openidconnect::{AccessToken, AdditionalClaims, SubjectIdentifier, UserInfoClaims, UserInfoError};
use serde_json::{Map, Value};

/// Whatever the answer holds beyond the standard claims (groups, roles, …).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Everything {
    #[serde(flatten)]
    claims: Map<String, Value>,
}

impl AdditionalClaims for Everything {}

/// Claims about the authentication and the token, which only the ID token may set.
const ID_TOKEN_ONLY: &[&str] =
    &["sub", "iss", "aud", "azp", "sid", "acr", "amr", "auth_time", "nonce", "exp", "iat", "nbf", "jti", "at_hash"];

impl Provider {
    /// The user's claims at the userinfo endpoint, for `sub`, with `access_token`.
    /// With the session's DPoP key, the token goes as a DPoP-bound one, with a proof.
    pub async fn userinfo(
        &self,
        access_token: &AccessToken,
        sub: &str,
        dpop: Option<&crate::crypto::dpop::DpopKey>,
    ) -> Result<Map<String, Value>, OidcError> {
        let discovered = self.ready()?;
        let request = discovered
            .client
            .user_info(access_token.clone(), Some(SubjectIdentifier::new(sub.to_string())))
            .map_err(|e| OidcError::BadResponse(format!("the provider has no userinfo endpoint: {e}")))?;
        let claims: UserInfoClaims<Everything, CoreGenderClaim> =
            request.request_async(&self.sender(&self.http, dpop)).await.map_err(|e| match e {
                UserInfoError::ClaimsVerification(e) => OidcError::InvalidIdToken(format!("userinfo: {e}")),
                UserInfoError::Request(e) => OidcError::Unreachable(error_chain(&e)),
                UserInfoError::Response(status, _, _) if status.is_client_error() => {
                    OidcError::Rejected(format!("userinfo answered HTTP {status}"))
                }
                other => OidcError::BadResponse(format!("userinfo: {}", error_chain(&other))),
            })?;
        match serde_json::to_value(&claims) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(OidcError::BadResponse("userinfo: claims that are no JSON object".into())),
        }
    }
}

/// Adds the userinfo claims to the ID token's: they may be newer, but never say who signed in,
/// how, or when (those stay the ID token's).
pub fn merge_userinfo(claims: &mut Map<String, Value>, userinfo: Map<String, Value>) {
    for (name, value) in userinfo {
        if !ID_TOKEN_ONLY.contains(&name.as_str()) && !value.is_null() {
            claims.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn userinfo_adds_and_updates_but_never_names_another_user_or_sign_in() {
        let mut claims = json!({"sub": "alice", "acr": "mfa", "name": "Old"}).as_object().unwrap().clone();
        let userinfo = json!({"sub": "mallory", "acr": "pwd", "name": "Alice", "groups": ["admins"], "email": null});
        merge_userinfo(&mut claims, userinfo.as_object().unwrap().clone());
        assert_eq!(Value::Object(claims), json!({"sub": "alice", "acr": "mfa", "name": "Alice", "groups": ["admins"]}));
    }
}
