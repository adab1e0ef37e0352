//! DPoP (RFC 9449) keys and proofs: what `oidc/dpop.rs` sends to the provider and
//! `proxy/upstream_request.rs` to a route's upstream.
//!
//! A [`DpopKey`] is an ECDSA P-256 key (`ES256`, what providers and APIs accept most widely),
//! made per session and kept only inside the session's sealed record (its PKCS#8 bytes, which
//! no endpoint or log ever shows: `Debug` prints the thumbprint). A proof is a `dpop+jwt`
//! naming the request's method (`htm`) and URL without query or fragment (`htu`), a fresh
//! `jti`, `iat`, the access token's hash (`ath`) when one is presented, and the server's last
//! `DPoP-Nonce` when it asked for one.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

/// The proofs' algorithm.
pub const ALG: &str = "ES256";

/// A session's DPoP key.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    /// The proofs' header (`typ`, `alg`, `jwk`), base64url: the same for every proof.
    header: String,
    thumbprint: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey").field("jkt", &self.thumbprint).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the DPoP key could not be made or read")]
pub struct DpopKeyError;

/// Session keys as DPoP routes use them, read once from their records rather than on every
/// call (reading one, PKCS#8 parsed and its public point checked, costs as much as signing a
/// proof). Keyed by the SHA-256 of the record's text, so an entry is reached only through the
/// sealed record it came from, which only its session's ticket opens. Bounded in number, and an
/// entry unused for five minutes goes.
pub struct KeyCache(moka::sync::Cache<[u8; 32], std::sync::Arc<DpopKey>>);

impl Default for KeyCache {
    fn default() -> Self {
        let cache =
            moka::sync::Cache::builder().max_capacity(10_000).time_to_idle(std::time::Duration::from_secs(300)).build();
        Self(cache)
    }
}

impl KeyCache {
    /// The key a session record keeps, read at most once while in use.
    pub fn get(&self, kept: &str) -> Result<std::sync::Arc<DpopKey>, DpopKeyError> {
        let digest = super::sha256(kept.as_bytes());
        if let Some(key) = self.0.get(&digest) {
            return Ok(key);
        }
        let key = std::sync::Arc::new(DpopKey::from_record(kept)?);
        self.0.insert(digest, key.clone());
        Ok(key)
    }
}

/// A server's last `DPoP-Nonce` (RFC 9449 §8, §9): the provider's, or a route upstream's,
/// shared by every session's calls to it.
#[derive(Debug, Default)]
pub struct DpopNonce(std::sync::Mutex<Option<String>>);

impl DpopNonce {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps the nonce an answer's headers carry; whether it differs from the one kept. A
    /// malformed one (not RFC 9449's `NQCHAR`s, or past 1 KiB) is not kept.
    pub fn keep(&self, headers: &http::HeaderMap) -> bool {
        let Some(nonce) = headers.get("dpop-nonce") else { return false };
        let nonce = nonce.as_bytes();
        if nonce.is_empty()
            || nonce.len() > 1024
            || nonce.iter().any(|&b| !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'\\')
        {
            return false;
        }
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.as_deref().is_some_and(|k| k.as_bytes() == nonce) {
            return false;
        }
        // Checked above: printable ASCII.
        *kept = Some(String::from_utf8_lossy(nonce).into_owned());
        true
    }
}

/// A URL as `htu` names it: without query and fragment.
pub fn htu(url: &url::Url) -> String {
    let mut bare = url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    bare.to_string()
}

/// RFC 7638 for a P-256 key: SHA-256 of the required members in lexicographic order, no
/// whitespace, base64url.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(super::sha256(canonical.as_bytes()))
}

impl DpopKey {
    /// A new key from the system's CSPRNG.
    pub fn generate() -> Result<Self, DpopKeyError> {
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| DpopKeyError)?;
        Self::from_pkcs8(document.as_ref())
    }

    /// The key a sealed record kept ([`DpopKey::pkcs8`]).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, DpopKeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| DpopKeyError)?;
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(DpopKeyError);
        }
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
        let thumbprint = thumbprint(&x, &y);
        let jwk = json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y });
        let header = URL_SAFE_NO_PAD.encode(json!({ "typ": "dpop+jwt", "alg": ALG, "jwk": jwk }).to_string());
        Ok(Self { pair, pkcs8: pkcs8.to_vec(), header, thumbprint })
    }

    /// The private key's PKCS#8 bytes, for the session's sealed record only.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key as a session record keeps it (PKCS#8, base64url; the record holds it as a
    /// `Secret`, whose `Debug` redacts).
    pub fn to_record(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.pkcs8)
    }

    /// The key a session record kept ([`DpopKey::to_record`]).
    pub fn from_record(kept: &str) -> Result<Self, DpopKeyError> {
        Self::from_pkcs8(&URL_SAFE_NO_PAD.decode(kept).map_err(|_| DpopKeyError)?)
    }

    /// The JWK thumbprint (RFC 7638, SHA-256): what a bound token's `cnf.jkt` names.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request: `method` and `htu` (see [`htu`]), the access token it presents
    /// (hashed into `ath`), the server's nonce, at `now` (unix seconds).
    pub fn proof(
        &self,
        method: &http::Method,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<String, DpopKeyError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            jti: String,
            htm: &'a str,
            htu: &'a str,
            iat: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            ath: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            nonce: Option<&'a str>,
        }
        let claims = Claims {
            jti: super::random_token(),
            htm: method.as_str(),
            htu,
            iat: now,
            ath: access_token.map(|token| URL_SAFE_NO_PAD.encode(super::sha256(token.as_bytes()))),
            nonce,
        };
        let claims = serde_json::to_vec(&claims).map_err(|_| DpopKeyError)?;
        let signing_input = format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(claims));
        let signature = self.pair.sign(&SystemRandom::new(), signing_input.as_bytes()).map_err(|_| DpopKeyError)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    fn part(token: &str, index: usize) -> serde_json::Value {
        let text = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
    }

    /// Checks a proof as an API would: the signature with the key its header embeds.
    fn verify(proof: &str) -> bool {
        let header = part(proof, 0);
        let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(header["jwk"][name].as_str().unwrap()).unwrap();
        let mut point = vec![4u8];
        point.extend(coordinate("x"));
        point.extend(coordinate("y"));
        let (input, signature) = proof.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(input.as_bytes(), &signature).is_ok()
    }

    #[test]
    fn a_proof_names_the_request_and_verifies_with_the_key_it_embeds() {
        let key = DpopKey::generate().unwrap();
        let url = url::Url::parse("https://api.example.com/v1/items?page=2#top").unwrap();
        let proof = key.proof(&http::Method::POST, &htu(&url), Some("the-token"), Some("n-1"), 1_700_000_000).unwrap();
        assert!(verify(&proof));
        let header = part(&proof, 0);
        assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("dpop+jwt"), Some("ES256")));
        assert!(header["jwk"].get("d").is_none(), "the private key is in the proof");
        let claims = part(&proof, 1);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://api.example.com/v1/items");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["nonce"], "n-1");
        // RFC 9449 §4.2: ath is base64url(SHA-256(the access token's ASCII)).
        assert_eq!(claims["ath"], URL_SAFE_NO_PAD.encode(crate::crypto::sha256(b"the-token")));
        // A tampered proof does not verify; every proof has its own jti.
        let tampered = proof.replacen('.', ".e", 1);
        assert!(!verify(&tampered));
        let again = key.proof(&http::Method::POST, &htu(&url), Some("the-token"), None, 1_700_000_000).unwrap();
        assert_ne!(part(&again, 1)["jti"], claims["jti"]);
        assert!(part(&again, 1).get("nonce").is_none());
    }

    #[test]
    fn the_cache_reads_a_key_once_and_refuses_what_is_no_key() {
        let cache = KeyCache::default();
        let kept = DpopKey::generate().unwrap().to_record();
        let first = cache.get(&kept).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &cache.get(&kept).unwrap()), "read twice");
        let other = DpopKey::generate().unwrap().to_record();
        assert_ne!(cache.get(&other).unwrap().thumbprint(), first.thumbprint());
        assert!(cache.get("bm90IGEga2V5").is_err());
    }

    #[test]
    fn a_nonce_is_kept_when_well_formed_and_new() {
        let headers = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("dpop-nonce", value.parse().unwrap());
            headers
        };
        let nonce = DpopNonce::default();
        assert!(!nonce.keep(&http::HeaderMap::new()));
        assert!(nonce.keep(&headers("n-1")));
        assert!(!nonce.keep(&headers("n-1")), "the same nonce again");
        assert_eq!(nonce.get().as_deref(), Some("n-1"));
        for bad in ["with space", "quo\"te", "back\\slash", "", &"n".repeat(1025)] {
            assert!(!nonce.keep(&headers(bad)), "{bad:?}");
        }
        assert_eq!(nonce.get().as_deref(), Some("n-1"));
        assert!(nonce.keep(&headers("n-2")));
    }

    #[test]
    fn the_key_survives_its_record_and_its_thumbprint_is_rfc_7638s() {
        let key = DpopKey::generate().unwrap();
        let kept = DpopKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(kept.thumbprint(), key.thumbprint());
        let proof = kept.proof(&http::Method::GET, "https://a.example/", None, None, 1).unwrap();
        assert!(verify(&proof));
        let original = key.proof(&http::Method::GET, "https://a.example/", None, None, 1).unwrap();
        assert_eq!(part(&proof, 0)["jwk"], part(&original, 0)["jwk"]);
        assert!(DpopKey::from_pkcs8(b"not a key").is_err());
        assert_eq!(DpopKey::from_record(&key.to_record()).unwrap().thumbprint(), key.thumbprint());
        assert!(DpopKey::from_record("!!").is_err());
        assert!(!format!("{key:?}").contains(&URL_SAFE_NO_PAD.encode(key.pkcs8())));
        // RFC 9449's own example: the key of its §4.2 proof and the `jkt` of its §6.1 token.
        assert_eq!(
            thumbprint("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }
}
