//! Logout tokens (OpenID Connect Back-Channel Logout 1.0, §2.6).
//!
//! A logout token is a JWT the provider POSTs to `/bff/backchannel-logout`. Anyone can POST
//! there, so everything is checked: the signature against the provider's keys (asymmetric
//! algorithms only; one rate-limited JWKS refetch on an unknown `kid`), `iss`, `aud`, `iat`
//! (recent, not in the future), `exp` (required), the back-channel logout member of
//! `events`, `sid` and/or `sub`, no `nonce` (which keeps an ID token from passing as a logout
//! token), `typ` when present, and `jti` once only (replay cache).

use super::jws::{self, JwsError};
use super::{OidcError, Provider};
use serde::Deserialize;
use serde_json::{Map, Value};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token older than this is refused (on top of the clock skew).
const MAX_AGE_SECS: i64 = 300;

/// Who to log out: a provider session, a user, or a user's provider session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutSubject {
    pub sid: Option<String>,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutTokenError {
    /// The token is not acceptable; the reason goes into the 400 answer.
    Invalid(String),
    /// Keys could not be fetched or metadata is missing: try again later.
    Unavailable(OidcError),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    iat: i64,
    exp: Option<i64>,
    jti: String,
    events: Map<String, Value>,
    sid: Option<String>,
    sub: Option<String>,
    nonce: Option<Value>,
}

fn invalid(reason: impl Into<String>) -> LogoutTokenError {
    LogoutTokenError::Invalid(reason.into())
}

impl Provider {
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutSubject, LogoutTokenError> {
        let discovered = self.ready().map_err(LogoutTokenError::Unavailable)?;
        let verified = match jws::verify(&discovered.jwks, &discovered.allowed_algs, token) {
            Err(JwsError::NoKey) => {
                let refreshed = self.refetch_jwks().await.map_err(LogoutTokenError::Unavailable)?;
                jws::verify(&refreshed.jwks, &refreshed.allowed_algs, token)
            }
            other => other,
        };
        let (header, payload) = verified.map_err(|e| invalid(e.reason()))?;
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_lowercase();
            if !matches!(typ.trim_start_matches("application/"), "logout+jwt" | "jwt") {
                return Err(invalid("typ is not logout+jwt"));
            }
        }
        let claims: Claims = serde_json::from_value(payload).map_err(|_| invalid("unreadable or incomplete claims"))?;
        self.check_claims(claims)
    }

    fn check_claims(&self, claims: Claims) -> Result<LogoutSubject, LogoutTokenError> {
        let now = self.clock.now() as i64;
        let skew = self.config.clock_skew.as_secs() as i64;
        if claims.iss != self.config.issuer {
            return Err(invalid("iss is not the configured issuer"));
        }
        let audiences = match claims.aud {
            Audience::One(aud) => vec![aud],
            Audience::Many(auds) => auds,
        };
        if !audiences.contains(&self.config.client_id) {
            return Err(invalid("aud does not name this client"));
        }
        if claims.iat > now + skew {
            return Err(invalid("iat is in the future"));
        }
        if claims.iat < now - MAX_AGE_SECS - skew {
            return Err(invalid("iat is too old"));
        }
        // Required by Back-Channel Logout 1.0 (§2.4). Providers of its drafts (glewlwyd 2.7)
        // send none; with `logout_token_exp_required = false` their tokens are accepted, still
        // bounded by the `iat` window above and single-use by `jti`.
        match claims.exp {
            None if self.config.logout_token_exp_required => return Err(invalid("exp is required")),
            None => {}
            Some(exp) if exp + skew <= now => return Err(invalid("expired")),
            Some(_) => {}
        }
        if !claims.events.get(EVENT).is_some_and(Value::is_object) {
            return Err(invalid("events lacks the back-channel logout event"));
        }
        if claims.nonce.is_some() {
            return Err(invalid("a logout token must not carry a nonce"));
        }
        let sid = claims.sid.filter(|s| !s.is_empty());
        let sub = claims.sub.filter(|s| !s.is_empty());
        if sid.is_none() && sub.is_none() {
            return Err(invalid("neither sid nor sub"));
        }
        if claims.jti.is_empty() || !self.remember_jti(&claims.jti) {
            return Err(invalid("jti was already used"));
        }
        Ok(LogoutSubject { sid, sub })
    }

    /// A claim set as it would be after a good signature (fuzzing reaches the checks this way).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn check_logout_claims(&self, claims: Value) -> Result<LogoutSubject, LogoutTokenError> {
        let claims: Claims = serde_json::from_value(claims).map_err(|_| invalid("unreadable or incomplete claims"))?;
        self.check_claims(claims)
    }

    /// True the first time a `jti` is seen (within the replay window).
    fn remember_jti(&self, jti: &str) -> bool {
        self.logout_jtis.entry(jti.to_string()).or_insert(()).is_fresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::sync::Arc;

    fn provider(clock: Arc<ManualClock>) -> Provider {
        provider_with(clock, "")
    }

    fn provider_with(clock: Arc<ManualClock>, extra: &str) -> Provider {
        let text =
            format!("[oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"app\"\nclient_secret = \"s\"\n{extra}");
        let config = crate::config::Config::from_toml(&text, Vec::new()).expect("a valid config");
        Provider::new(config.oidc, clock, Arc::default())
    }

    fn claims(now: i64, exp: Option<i64>, jti: &str) -> Claims {
        let mut value = serde_json::json!({
            "iss": "http://127.0.0.1:9", "aud": "app", "iat": now, "jti": jti, "sub": "alice",
            "events": { EVENT: {} },
        });
        if let Some(exp) = exp {
            value["exp"] = exp.into();
        }
        serde_json::from_value(value).expect("claims")
    }

    #[test]
    fn a_logout_token_without_exp_is_refused() {
        let clock = Arc::new(ManualClock::new());
        let provider = provider(clock.clone());
        let now = clock.now() as i64;
        assert_eq!(provider.check_claims(claims(now, None, "a")), Err(invalid("exp is required")));
        // Turned off for a provider of the drafts: accepted, the iat window and jti still hold.
        let drafts = provider_with(clock.clone(), "logout_token_exp_required = false\n");
        assert!(drafts.check_claims(claims(now, None, "a2")).is_ok());
        assert_eq!(drafts.check_claims(claims(now, None, "a2")), Err(invalid("jti was already used")));
        assert_eq!(provider.check_claims(claims(now, Some(now - 3600), "b")), Err(invalid("expired")));
        let ok = provider.check_claims(claims(now, Some(now + 120), "c")).expect("accepted");
        assert_eq!(ok.sub.as_deref(), Some("alice"));
    }
}
