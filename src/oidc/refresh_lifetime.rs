//! How long the refresh token lives, when the provider says (RFC 10017 §6.1.2.2: the BFF's
//! session should not outlive it): `refresh_expires_in` (Keycloak), `refresh_token_expires_in`
//! (Microsoft Entra ID, some others), or the `exp` of a refresh token that is a JWT.
//!
//! Read leniently: a number or a numeric string; anything else, or `0` (Keycloak's "no
//! limit", for offline tokens), says nothing. A token response is never refused for these.

use openidconnect::ExtraTokenFields;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The extra token-response fields cloakroom reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RefreshLifetime {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_expires_in: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token_expires_in: Option<Value>,
}

impl ExtraTokenFields for RefreshLifetime {}

impl RefreshLifetime {
    /// Unix seconds when `refresh_token` stops working, if the answer or the token says.
    pub fn expires_at(&self, refresh_token: Option<&str>, now: u64) -> Option<u64> {
        let seconds = |value: &Option<Value>| match value {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        let stated = seconds(&self.refresh_expires_in).or_else(|| seconds(&self.refresh_token_expires_in));
        match stated {
            Some(0) => None,
            Some(seconds) => Some(now.saturating_add(seconds)),
            None => refresh_token.and_then(super::code_exchange::jwt_exp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn read(json: &str) -> RefreshLifetime {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn each_spelling_a_number_or_a_numeric_string_and_zero_as_no_limit() {
        assert_eq!(read(r#"{"refresh_expires_in": 1800}"#).expires_at(None, 100), Some(1900));
        assert_eq!(read(r#"{"refresh_token_expires_in": "86400"}"#).expires_at(None, 100), Some(86500));
        assert_eq!(read(r#"{"refresh_expires_in": 0}"#).expires_at(None, 100), None);
        for odd in [
            r#"{"refresh_expires_in": -5}"#,
            r#"{"refresh_expires_in": "soon"}"#,
            r#"{"refresh_expires_in": {}}"#,
            "{}",
        ] {
            assert_eq!(read(odd).expires_at(Some("opaque-token"), 100), None, "{odd}");
        }
    }

    #[test]
    fn a_jwt_refresh_token_says_by_its_exp_when_the_answer_does_not() {
        let part = |json: &str| URL_SAFE_NO_PAD.encode(json);
        let jwt = format!("{}.{}.sig", part(r#"{"alg":"HS256"}"#), part(r#"{"exp":5000}"#));
        assert_eq!(read("{}").expires_at(Some(&jwt), 100), Some(5000));
        assert_eq!(read(r#"{"refresh_expires_in": 60}"#).expires_at(Some(&jwt), 100), Some(160), "the answer first");
    }
}
