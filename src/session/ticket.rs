//! The session ticket: what the browser holds, and the only thing it holds.
//!
//! 32 random bytes of session id plus 32 random bytes of per-session secret, base64url encoded
//! (86 characters). The store is keyed by `SHA-256(id)`; the secret never leaves the cookie and
//! is needed to open the session's sealed record (see [`super::seal`]).

use crate::crypto::{hex, random_bytes, sha256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

const ENCODED_LEN: usize = 86;

/// Where a record lives in the store: a hash, so the store never holds anything a cookie could carry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey(pub [u8; 32]);

impl StoreKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Short hex prefix for logs: enough to correlate lines, useless for reaching the session.
    pub fn log_id(&self) -> String {
        hex(&self.0[..6])
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({}…)", self.log_id())
    }
}

#[derive(Clone)]
pub struct SessionTicket {
    id: [u8; 32],
    secret: [u8; 32],
    /// `SHA-256(id)`, hashed once: a call asks for it more than once (store, seal, locks).
    key: StoreKey,
}

impl SessionTicket {
    /// A fresh ticket: 256 bits of id and 256 bits of secret from the OS CSPRNG.
    pub fn generate() -> Self {
        Self::new(random_bytes(), random_bytes())
    }

    /// Strict: exactly 86 base64url characters, nothing else. Anything else is "no session".
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() != ENCODED_LEN {
            return None;
        }
        let mut bytes = [0u8; 64];
        let written = URL_SAFE_NO_PAD.decode_slice(value.as_bytes(), &mut bytes).ok()?;
        if written != 64 {
            return None;
        }
        let mut id = [0u8; 32];
        let mut secret = [0u8; 32];
        id.copy_from_slice(&bytes[..32]);
        secret.copy_from_slice(&bytes[32..]);
        Some(Self::new(id, secret))
    }

    fn new(id: [u8; 32], secret: [u8; 32]) -> Self {
        Self { id, secret, key: StoreKey(sha256(&id)) }
    }

    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.id);
        bytes[32..].copy_from_slice(&self.secret);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn store_key(&self) -> StoreKey {
        self.key
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for SessionTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionTicket({:?}, [redacted])", self.store_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_random() {
        let a = SessionTicket::generate();
        let b = SessionTicket::generate();
        let encoded = a.encode();
        assert_eq!(encoded.len(), ENCODED_LEN);
        let parsed = SessionTicket::parse(&encoded).unwrap();
        assert_eq!(parsed.store_key(), a.store_key());
        assert_eq!(parsed.secret(), a.secret());
        assert_ne!(a.store_key(), b.store_key());
        assert_ne!(a.secret(), b.secret());
    }

    #[test]
    fn malformed_values_are_no_ticket() {
        let good = SessionTicket::generate().encode();
        let cases = [
            String::new(),
            good[..85].to_string(),
            format!("{good}A"),
            format!("{}+", &good[..85]),
            format!("{}/", &good[..85]),
            format!("{}=", &good[..85]),
            format!("{} ", &good[..85]),
            "é".repeat(43),
            "%".repeat(86),
        ];
        for case in cases {
            assert!(SessionTicket::parse(&case).is_none(), "{case:?} parsed");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = SessionTicket::generate();
        let printed = format!("{t:?}");
        assert!(!printed.contains(&t.encode()[43..]));
        assert!(!printed.contains(&t.encode()[..20]));
    }
}
