//! Logout tokens (OpenID Connect Back-Channel Logout 1.0, §2.6).
//!
//! A logout token is a JWT the provider POSTs to `/bff/backchannel-logout`. Anyone can POST
//! there, so everything is checked: the signature against the provider's keys (asymmetric
//! algorithms only; one rate-limited JWKS refetch on an unknown `kid`), `iss`, `aud`, `iat`
//! (recent, not in the future), `exp` when present, the back-channel logout member of
//! `events`, `sid` and/or `sub`, no `nonce` (which keeps an ID token from passing as a logout
//! token), `typ` when present, and `jti` once only (replay cache).

use super::{Discovered, OidcError, Provider};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeyId, JsonWebKeyUse, JwsSigningAlgorithm};
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
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
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
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a signed JWT"));
        };
        let header: Header = decode_json(header_b64).ok_or_else(|| invalid("unreadable header"))?;
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_lowercase();
            if !matches!(typ.trim_start_matches("application/"), "logout+jwt" | "jwt") {
                return Err(invalid("typ is not logout+jwt"));
            }
        }
        let alg: CoreJwsSigningAlgorithm =
            serde_json::from_value(Value::String(header.alg.clone())).map_err(|_| invalid("unknown alg"))?;
        if !discovered.allowed_algs.contains(&alg) {
            return Err(invalid(format!("alg {} is not accepted", header.alg)));
        }
        let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| invalid("unreadable signature"))?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let kid = header.kid.map(JsonWebKeyId::new);

        let verified = check_signature(&discovered, kid.as_ref(), &alg, signing_input.as_bytes(), &signature);
        match verified {
            Ok(()) => {}
            Err(SignatureFailure::NoKey) => {
                let refreshed = self.refetch_jwks().await.map_err(LogoutTokenError::Unavailable)?;
                check_signature(&refreshed, kid.as_ref(), &alg, signing_input.as_bytes(), &signature)
                    .map_err(|failure| invalid(failure.reason()))?;
            }
            Err(failure) => return Err(invalid(failure.reason())),
        }

        let claims: Claims = decode_json(payload_b64).ok_or_else(|| invalid("unreadable or incomplete claims"))?;
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
        if claims.exp.is_some_and(|exp| exp + skew <= now) {
            return Err(invalid("expired"));
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

    /// True the first time a `jti` is seen (within the replay window).
    fn remember_jti(&self, jti: &str) -> bool {
        self.logout_jtis.entry(jti.to_string()).or_insert(()).is_fresh()
    }
}

enum SignatureFailure {
    NoKey,
    Ambiguous,
    Bad,
}

impl SignatureFailure {
    fn reason(&self) -> &'static str {
        match self {
            SignatureFailure::NoKey => "no provider key matches the token's kid and alg",
            SignatureFailure::Ambiguous => "no kid, and several provider keys could have signed",
            SignatureFailure::Bad => "bad signature",
        }
    }
}

fn check_signature(
    discovered: &Discovered,
    kid: Option<&JsonWebKeyId>,
    alg: &CoreJwsSigningAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureFailure> {
    let candidates: Vec<&CoreJsonWebKey> = discovered
        .jwks
        .keys()
        .iter()
        .filter(|key| kid.is_none() || key.key_id() == kid)
        .filter(|key| alg.key_type().is_some_and(|kty| *key.key_type() == kty))
        .filter(|key| key.key_use().is_none_or(|u| u.allows_signature()))
        .filter(|key| match key.signing_alg() {
            openidconnect::JsonWebKeyAlgorithm::Algorithm(key_alg) => key_alg == alg,
            _ => true,
        })
        .collect();
    match candidates.as_slice() {
        [] => Err(SignatureFailure::NoKey),
        [key] => key.verify_signature(alg, message, signature).map_err(|_| SignatureFailure::Bad),
        _ => Err(SignatureFailure::Ambiguous),
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}
