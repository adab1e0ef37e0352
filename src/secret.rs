//! A string that must never be printed: tokens, PKCE verifiers, nonces.
//!
//! `Debug` and `Display` redact, so a `{:?}` in a log line or an error cannot leak it. The value
//! is reachable only through [`Secret::expose`], which makes every use visible in review.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, compared in constant time (as SHA-256 digests, so that
    /// neither length nor content leaks by timing).
    pub fn matches(&self, given: &[u8]) -> bool {
        let (given, own) = (crate::crypto::sha256(given), crate::crypto::sha256(self.0.as_bytes()));
        aws_lc_rs::constant_time::verify_slices_are_equal(&given, &own).is_ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("eyJhbGciOi.secret");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "eyJhbGciOi.secret");
        assert!(s.matches(b"eyJhbGciOi.secret"));
        assert!(!s.matches(b"eyJhbGciOi.secre") && !s.matches(b"") && !s.matches(b"eyJhbGciOi.secret "));
    }
}
