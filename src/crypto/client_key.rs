//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect Core §9): instead of
//! a shared secret, cloakroom proves who it is with a short-lived JWT signed by a private key
//! whose public half the provider holds. Nothing reusable crosses the wire: each assertion lives
//! a minute and carries a fresh `jti`, so a captured one cannot be replayed.
//!
//! Signing is aws-lc-rs's; PEM parsing is rustls's. The key types are the ones providers accept
//! for client assertions: RSA (RS256/PS256 and stronger), ECDSA P-256/P-384, Ed25519.

use super::random_bytes;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

/// How long an assertion is valid. Short: it is made for one request.
const LIFETIME_SECS: u64 = 60;

/// The client's signing key, loaded once at start-up. Its `Debug` never shows key material.
pub struct ClientKey {
    signer: Signer,
    alg: &'static str,
    kid: Option<String>,
    /// Thumbprints of the key's certificate (`x5t`, `x5t#S256`), for providers that identify
    /// certificate credentials by them (Microsoft Entra ID).
    thumbprints: Option<(String, String)>,
}

/// A parsed key before its algorithm is settled: RSA keys serve several.
enum Loaded {
    Rsa(Result<RsaKeyPair, aws_lc_rs::error::KeyRejected>),
    Other(Signer, &'static str),
}

enum Signer {
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// Why a private key cannot be used: the key file itself, or the algorithm asked of it (so that
/// configuration errors name `private_key_file` or `private_key_alg`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Algorithm(String),
    /// The certificate whose thumbprints the assertions carry.
    #[error("no PEM certificate found ({0})")]
    Certificate(String),
    /// The signature itself failed (the system's random source).
    #[error("signing the client assertion failed")]
    Signing,
}

impl ClientKey {
    /// Loads a PEM private key (PKCS#8, or PKCS#1 for RSA, or SEC1 for EC). `alg` picks the JWS
    /// algorithm; without it the key's natural one is used (RS256, ES256, ES384 or EdDSA).
    pub fn from_pem(pem: &[u8], alg: Option<&str>, kid: Option<String>) -> Result<Self, KeyError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::Key(format!("no PEM private key found ({e})")))?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(key) => Loaded::Rsa(RsaKeyPair::from_der(key.secret_pkcs1_der())),
            PrivateKeyDer::Sec1(key) => ecdsa(|a| EcdsaKeyPair::from_private_key_der(a, key.secret_sec1_der()))?,
            PrivateKeyDer::Pkcs8(key) => {
                let der = key.secret_pkcs8_der();
                if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der) {
                    Loaded::Other(Signer::Ed25519(pair), "EdDSA")
                } else if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
                    Loaded::Rsa(Ok(pair))
                } else {
                    ecdsa(|a| EcdsaKeyPair::from_pkcs8(a, der))?
                }
            }
            _ => return Err(KeyError::Key("unsupported private key format".into())),
        };
        let (signer, alg) = match key {
            Loaded::Rsa(pair) => {
                let pair = pair.map_err(|e| KeyError::Key(format!("unusable RSA key: {e}")))?;
                if pair.public_modulus_len() < 256 {
                    return Err(KeyError::Key("RSA keys must be at least 2048 bits".into()));
                }
                let wanted = alg.unwrap_or("RS256");
                let (alg, encoding) = RSA_ALGS.iter().find(|(name, _)| *name == wanted).ok_or_else(|| {
                    KeyError::Algorithm(format!("algorithm {wanted:?} does not fit an RSA key (RS256 to PS512)"))
                })?;
                (Signer::Rsa(pair, *encoding), *alg)
            }
            Loaded::Other(signer, natural) => match alg {
                Some(wanted) if wanted != natural => {
                    return Err(KeyError::Algorithm(format!(
                        "algorithm {wanted:?} does not fit this key (its algorithm is {natural})"
                    )));
                }
                _ => (signer, natural),
            },
        };
        Ok(Self { signer, alg, kid: kid.filter(|k| !k.is_empty()), thumbprints: None })
    }

    /// Adds the `x5t` and `x5t#S256` headers of the key's certificate (the first in a PEM file).
    pub fn with_certificate(mut self, pem: &[u8]) -> Result<Self, KeyError> {
        use rustls::pki_types::CertificateDer;
        let cert = CertificateDer::from_pem_slice(pem).map_err(|e| KeyError::Certificate(e.to_string()))?;
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
        self.thumbprints = Some((URL_SAFE_NO_PAD.encode(sha1), URL_SAFE_NO_PAD.encode(sha256)));
        Ok(self)
    }

    pub fn alg(&self) -> &'static str {
        self.alg
    }

    /// A client assertion for one token-endpoint request: `iss` = `sub` = the client id, `aud`
    /// as the provider expects it, a 60-second lifetime from `now` (unix seconds), a random `jti`.
    pub fn assertion(&self, client_id: &str, audience: &str, now: u64) -> Result<String, KeyError> {
        let mut header = json!({ "alg": self.alg, "typ": "JWT" });
        if let Some(kid) = &self.kid {
            header["kid"] = json!(kid);
        }
        if let Some((sha1, sha256)) = &self.thumbprints {
            header["x5t"] = json!(sha1);
            header["x5t#S256"] = json!(sha256);
        }
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": URL_SAFE_NO_PAD.encode(random_bytes::<16>()),
            "iat": now,
            "exp": now + LIFETIME_SECS,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::Signing;
        match &self.signer {
            Signer::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), message, &mut out).map_err(failed)?;
                Ok(out)
            }
            Signer::Ecdsa(pair) => Ok(pair.sign(&SystemRandom::new(), message).map_err(failed)?.as_ref().to_vec()),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// The public half, for checking in tests that what we sign verifies.
    #[cfg(test)]
    fn public_key(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Rsa(pair, _) => aws_lc_rs::signature::KeyPair::public_key(pair).as_ref().to_vec(),
            Signer::Ecdsa(pair) => aws_lc_rs::signature::KeyPair::public_key(pair).as_ref().to_vec(),
            Signer::Ed25519(pair) => aws_lc_rs::signature::KeyPair::public_key(pair).as_ref().to_vec(),
        }
    }
}

const RSA_ALGS: &[(&str, &dyn signature::RsaEncoding)] = &[
    ("RS256", &signature::RSA_PKCS1_SHA256),
    ("RS384", &signature::RSA_PKCS1_SHA384),
    ("RS512", &signature::RSA_PKCS1_SHA512),
    ("PS256", &signature::RSA_PSS_SHA256),
    ("PS384", &signature::RSA_PSS_SHA384),
    ("PS512", &signature::RSA_PSS_SHA512),
];

/// Tries the curves providers accept (P-256, then P-384); JWS wants the fixed-size signature.
fn ecdsa(
    load: impl Fn(&'static signature::EcdsaSigningAlgorithm) -> Result<EcdsaKeyPair, aws_lc_rs::error::KeyRejected>,
) -> Result<Loaded, KeyError> {
    if let Ok(pair) = load(&signature::ECDSA_P256_SHA256_FIXED_SIGNING) {
        return Ok(Loaded::Other(Signer::Ecdsa(pair), "ES256"));
    }
    if let Ok(pair) = load(&signature::ECDSA_P384_SHA384_FIXED_SIGNING) {
        return Ok(Loaded::Other(Signer::Ecdsa(pair), "ES384"));
    }
    Err(KeyError::Key("the key is not an RSA, P-256, P-384 or Ed25519 private key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;

    fn pem(der: &[u8]) -> String {
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der))
    }

    fn parts(jwt: &str) -> (Value, Value, Vec<u8>, String) {
        let mut it = jwt.split('.');
        let (h, c, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let decode = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        (decode(h), decode(c), URL_SAFE_NO_PAD.decode(s).unwrap(), format!("{h}.{c}"))
    }

    #[test]
    fn ed25519_assertion_has_the_claims_providers_check_and_verifies() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        let key = ClientKey::from_pem(pem(pkcs8.as_ref()).as_bytes(), None, Some("k1".into())).unwrap();
        let jwt = key.assertion("app", "https://id.example.com", 1_000).unwrap();
        let (header, claims, signature, input) = parts(&jwt);
        assert_eq!(header, json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}));
        assert_eq!(claims["iss"], "app");
        assert_eq!(claims["sub"], "app");
        assert_eq!(claims["aud"], "https://id.example.com");
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 1_060);
        let other = key.assertion("app", "https://id.example.com", 1_000).unwrap();
        assert_ne!(parts(&other).1["jti"], claims["jti"], "every assertion has its own jti");
        signature::UnparsedPublicKey::new(&signature::ED25519, key.public_key())
            .verify(input.as_bytes(), &signature)
            .expect("the signature verifies with the public key");
    }

    #[test]
    fn ecdsa_and_rsa_keys_sign_with_their_algorithms() {
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = ClientKey::from_pem(pem(p256.as_ref()).as_bytes(), None, None).unwrap();
        let (header, _, signature, input) = parts(&key.assertion("app", "aud", 1).unwrap());
        assert_eq!(header, json!({"alg": "ES256", "typ": "JWT"}));
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.public_key())
            .verify(input.as_bytes(), &signature)
            .unwrap();

        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap();
        let key = ClientKey::from_pem(pem(der.as_ref()).as_bytes(), Some("PS256"), None).unwrap();
        let (header, _, signature, input) = parts(&key.assertion("app", "aud", 1).unwrap());
        assert_eq!(header["alg"], "PS256");
        signature::UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, key.public_key())
            .verify(input.as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn refuses_what_it_cannot_sign_with() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        let error = ClientKey::from_pem(pem(pkcs8.as_ref()).as_bytes(), Some("RS256"), None).unwrap_err();
        assert!(matches!(&error, KeyError::Algorithm(m) if m.contains("does not fit")), "{error}");
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap();
        let error = ClientKey::from_pem(pem(der.as_ref()).as_bytes(), Some("ES256"), None).unwrap_err();
        assert!(matches!(&error, KeyError::Algorithm(m) if m.contains("does not fit")), "{error}");
        let error = ClientKey::from_pem(b"not a key", None, None).unwrap_err();
        assert!(matches!(&error, KeyError::Key(m) if m.contains("no PEM private key")), "{error}");
        let error = ClientKey::from_pem(pem(b"garbage").as_bytes(), None, None).unwrap_err();
        assert!(matches!(&error, KeyError::Key(m) if m.contains("not an RSA")), "{error}");
    }

    #[test]
    fn a_certificate_adds_its_thumbprints_for_entra_id() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["cloakroom".to_string()]).unwrap().cert;
        let key = ClientKey::from_pem(pem(pkcs8.as_ref()).as_bytes(), None, None)
            .unwrap()
            .with_certificate(cert.pem().as_bytes())
            .unwrap();
        let (header, ..) = parts(&key.assertion("app", "aud", 1).unwrap());
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.der());
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.der());
        assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(sha1));
        assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(sha256));
        assert!(
            ClientKey::from_pem(pem(pkcs8.as_ref()).as_bytes(), None, None).unwrap().with_certificate(b"nope").is_err()
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        let key = ClientKey::from_pem(pem(pkcs8.as_ref()).as_bytes(), None, Some("k1".into())).unwrap();
        assert_eq!(format!("{key:?}"), "ClientKey { alg: \"EdDSA\", kid: Some(\"k1\"), .. }");
    }
}
