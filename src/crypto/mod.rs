//! The crypto leaf: sealing (AEAD under derived keys), random bytes and tokens, hashing, hex,
//! and the client's signing key. It imports nothing of cloakroom's; everything above uses it.

pub mod client_key;
pub mod dpop;
pub mod seal;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // aws-lc-rs's generator fails only if the operating system has none: nothing can run then.
    aws_lc_rs::rand::fill(&mut out).expect("the system random number generator is available");
    out
}

/// A fresh random value (`state`, `nonce`, lease tokens): 256 bits, base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// SHA-256, for store keys: the store never sees an id a cookie could carry.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

/// Lowercase hex, for log ids and key ids.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(super::hex(&[0, 0x0f, 0xab]), "000fab");
    }
}
