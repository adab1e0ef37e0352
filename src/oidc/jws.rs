//! Verifying a compact JWS against a JWKS with openidconnect's key types: for tokens that are
//! not ID tokens (logout tokens here, access tokens in the demo API).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeyUse, JwsSigningAlgorithm};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsError {
    Malformed(&'static str),
    AlgNotAllowed,
    /// No key in the set has the token's `kid` and fits its `alg` (a JWKS refetch may help).
    NoKey,
    Ambiguous,
    BadSignature,
}

impl JwsError {
    pub fn reason(self) -> &'static str {
        match self {
            JwsError::Malformed(what) => what,
            JwsError::AlgNotAllowed => "alg is not accepted",
            JwsError::NoKey => "no provider key matches the token's kid and alg",
            JwsError::Ambiguous => "no kid, and several provider keys could have signed",
            JwsError::BadSignature => "bad signature",
        }
    }
}

/// Checks the signature of `token` with a key from `jwks`, allowing only `allowed` algorithms;
/// returns the header and the (now trustworthy) payload.
pub fn verify(
    jwks: &CoreJsonWebKeySet,
    allowed: &[CoreJwsSigningAlgorithm],
    token: &str,
) -> Result<(Header, Value), JwsError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("not a signed JWT"));
    };
    let header: Header = decode_json(header_b64).ok_or(JwsError::Malformed("unreadable header"))?;
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(Value::String(header.alg.clone())).map_err(|_| JwsError::AlgNotAllowed)?;
    if !allowed.contains(&alg) {
        return Err(JwsError::AlgNotAllowed);
    }
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| JwsError::Malformed("unreadable signature"))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    let kid = header.kid.clone().map(JsonWebKeyId::new);
    let candidates: Vec<&CoreJsonWebKey> = jwks
        .keys()
        .iter()
        .filter(|key| kid.is_none() || key.key_id() == kid.as_ref())
        .filter(|key| alg.key_type().is_some_and(|kty| *key.key_type() == kty))
        .filter(|key| key.key_use().is_none_or(|u| u.allows_signature()))
        .filter(|key| match key.signing_alg() {
            JsonWebKeyAlgorithm::Algorithm(key_alg) => *key_alg == alg,
            _ => true,
        })
        .collect();
    match candidates.as_slice() {
        [] => return Err(JwsError::NoKey),
        [key] => {
            key.verify_signature(&alg, signing_input.as_bytes(), &signature).map_err(|_| JwsError::BadSignature)?
        }
        _ => return Err(JwsError::Ambiguous),
    }
    let payload = decode_json(payload_b64).ok_or(JwsError::Malformed("unreadable claims"))?;
    Ok((header, payload))
}

/// One base64url part of a JWT, decoded as JSON.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// The `iss` of a compact JWS, read without verifying it: only to choose which provider's
/// keys verify it (the verification then checks `iss` again).
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    decode_json::<serde_json::Value>(payload)?.get("iss")?.as_str().map(String::from)
}
