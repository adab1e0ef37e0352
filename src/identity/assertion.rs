//! The identity assertion: a short-lived JWT naming the user (`sub` and the route's identity
//! claims), the route's upstream (`aud`) and cloakroom (`iss`, its public origin), signed with
//! Ed25519 (`EdDSA`), published as a JWKS at `/bff/jwks.json` for upstreams to verify.
//!
//! The signing keys are derived from the session keys (HMAC under each configured key, a label
//! of their own): every replica signs with the same key without another secret to share, the
//! first session key's signs, and the JWKS lists every configured key's, so a session-key
//! rotation rotates these too without failing a verification. A derived key reveals nothing of
//! the session key it comes from.

use crate::crypto::seal::KeyRing;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// How long an assertion is valid: it is made for one call.
pub const LIFETIME_SECS: u64 = 60;

/// What the seeds are derived under (no index label has this shape: they are `kind:value`).
const LABEL: &[u8] = b"identity-assertion-signing-key/v1";

/// The assertion keys, in the session keys' order (the first signs).
pub struct Signer {
    keys: Vec<(String, Ed25519KeyPair)>,
    jwks: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("Signer").field("kids", &kids).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(ring: &KeyRing) -> Signer {
        let keys: Vec<(String, Ed25519KeyPair)> = ring
            .index_keys(LABEL)
            .iter()
            .filter_map(|seed| Ed25519KeyPair::from_seed_unchecked(seed).ok())
            .map(|pair| (thumbprint(pair.public_key().as_ref()), pair))
            .collect();
        let published: Vec<Value> = keys
            .iter()
            .map(|(kid, pair)| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                    "kid": kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        let jwks = json!({ "keys": published }).to_string();
        Signer { keys, jwks }
    }

    /// The public keys, as a JWKS document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// An assertion for `sub`, with `claims` beside the registered ones (which they never
    /// replace), for `audience`, issued by `issuer` at `now`. `None` only without a key.
    pub fn sign<'a>(
        &self,
        issuer: &str,
        audience: &str,
        sub: Option<&Value>,
        claims: impl Iterator<Item = (&'a str, &'a Value)>,
        now: u64,
    ) -> Option<String> {
        let (kid, pair) = self.keys.first()?;
        let mut payload = Map::new();
        for (name, value) in claims {
            payload.insert(name.to_string(), value.clone());
        }
        payload.insert("iss".into(), issuer.into());
        payload.insert("aud".into(), audience.into());
        payload.insert("iat".into(), now.into());
        payload.insert("nbf".into(), now.into());
        payload.insert("exp".into(), (now + LIFETIME_SECS).into());
        payload.insert("jti".into(), crate::crypto::random_token().into());
        match sub {
            Some(sub) => payload.insert("sub".into(), sub.clone()),
            None => payload.remove("sub"),
        };
        let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(Value::Object(payload).to_string()));
        let signature = pair.sign(jwt.as_bytes());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Some(jwt)
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key (RFC 8037 §2: `crv`, `kty`, `x`, in that order).
fn thumbprint(public: &[u8]) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public));
    URL_SAFE_NO_PAD.encode(crate::crypto::sha256(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::seal::MasterKey;
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};

    fn ring(keys: &[[u8; 32]]) -> KeyRing {
        KeyRing::new(keys.iter().map(|k| MasterKey::from_bytes(*k)).collect()).unwrap()
    }

    #[test]
    fn an_assertion_verifies_with_the_published_key_and_names_what_it_must() {
        let signer = Signer::new(&ring(&[[7; 32], [9; 32]]));
        let jwks: Value = serde_json::from_str(signer.jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "every session key's, for rotations");
        let email = json!("alice@example.com");
        // A claim named like a registered one never replaces it.
        let forged = json!("https://evil.example");
        let claims = [("email", &email), ("iss", &forged)];
        let jwt = signer
            .sign("https://app.example", "https://api.internal/", Some(&json!("alice")), claims.into_iter(), 1000)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], jwks["keys"][0]["kid"], "the first session key's signs");
        assert_eq!(payload["iss"], "https://app.example");
        assert_eq!(payload["aud"], "https://api.internal/");
        assert_eq!(payload["sub"], "alice");
        assert_eq!(payload["email"], "alice@example.com");
        assert_eq!((payload["iat"].as_u64(), payload["exp"].as_u64()), (Some(1000), Some(1060)));
        let x = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ED25519, &x).verify(signed.as_bytes(), &signature).unwrap();
        // Tampered: refused.
        let tampered = signed.replace(parts[1], &URL_SAFE_NO_PAD.encode(b"{\"sub\":\"admin\"}"));
        assert!(UnparsedPublicKey::new(&ED25519, &x).verify(tampered.as_bytes(), &signature).is_err());
    }

    #[test]
    fn replicas_with_the_same_session_keys_sign_alike_and_a_rotation_keeps_the_old_key_published() {
        let (a, b) = (Signer::new(&ring(&[[1; 32]])), Signer::new(&ring(&[[1; 32]])));
        assert_eq!(a.jwks(), b.jwks());
        let rotated = Signer::new(&ring(&[[2; 32], [1; 32]]));
        let old: Value = serde_json::from_str(a.jwks()).unwrap();
        let new: Value = serde_json::from_str(rotated.jwks()).unwrap();
        assert_eq!(new["keys"][1], old["keys"][0]);
        assert_ne!(new["keys"][0], old["keys"][0]);
        // Another deployment's keys: nothing in common.
        assert_ne!(Signer::new(&ring(&[[3; 32]])).jwks(), a.jwks());
    }
}
