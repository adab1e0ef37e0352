//! Sealing: AES-256-GCM under a key derived from a server master key *and* a per-session secret.
//!
//! ## What a store dump gives an attacker
//! The store (memory or Redis) holds, per session, `SHA-256(session id)` as the key and a sealed
//! blob as the value. Someone who copies the whole store gets:
//! - no usable session id: the key is a one-way hash, and a cookie needs the id itself;
//! - no token: every blob is ciphertext under `HKDF(master key, per-session secret)`, and the
//!   per-session secret exists only in the browser's cookie;
//! - metadata only: how many sessions exist, their sizes and expiry times.
//!
//! With the master key as well, a dump is still closed: each blob also needs its session's secret.
//! What does break a session is the browser's cookie *plus* the master key (or the cookie and a
//! live cloakroom to present it to): the cookie is the ticket, which is why it is `HttpOnly`.
//!
//! ## Format
//! `version | key id (4 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)`. The version, the
//! key id and the caller's context (the store key the blob belongs to) are authenticated as
//! associated data, so a blob cannot be moved to another slot or downgraded. The key id names
//! which master key sealed it: several keys may be configured, the first seals, all open, so keys
//! rotate without logging anyone out.
//!
//! The version names the key derivation; both take the master key and the per-session secret:
//! - 2 (sealed today): `HMAC-SHA256(K, secret)`, where `K = HKDF-SHA256(master key, purpose)` is
//!   derived once at start-up: HMAC keyed by `K` is a PRF (HKDF-Expand's own step), and its keyed
//!   state is computed once, so each record key costs one HMAC. That matters because every
//!   proxied call opens a record.
//! - 1 (still opened): `HKDF-SHA256(salt = secret, IKM = master key, info = purpose)`, a full
//!   extract and expand per call, about four times the hashing.
//!
//! The per-record keys are not cached: a cache of them would sit beside the records it opens,
//! and a dump of the process would no longer need the cookies.

use super::{random_bytes, sha256};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::fmt;

/// What [`KeyRing::seal`] writes; [`VERSION_1`] records still open.
const VERSION: u8 = 2;
const VERSION_1: u8 = 1;
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// What a sealed blob is for; part of the key derivation so a blob of one kind never opens as another.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Session,
    PendingLogin,
    /// A session's entry in its user's session list (no tokens: when, where, what device).
    Listing,
}

impl Purpose {
    /// In declaration order, so that `purpose as usize` indexes it.
    const ALL: [Purpose; 3] = [Purpose::Session, Purpose::PendingLogin, Purpose::Listing];

    fn info(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"cloakroom/v1/session",
            Purpose::PendingLogin => b"cloakroom/v1/pending-login",
            Purpose::Listing => b"cloakroom/v1/listing",
        }
    }

    fn info_v2(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"cloakroom/v2/session",
            Purpose::PendingLogin => b"cloakroom/v2/pending-login",
            Purpose::Listing => b"cloakroom/v2/listing",
        }
    }
}

/// A 256-bit server master key. Never printed.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 32],
    id: [u8; KEY_ID_LEN],
    /// HMAC key for index entries, derived once (HKDF, its own label) so the store's index
    /// names users only by keyed hashes.
    index_key: aws_lc_rs::hmac::Key,
    /// Version-2 record-key derivation keys, one per [`Purpose`] (in `Purpose::ALL` order).
    record_keys: [aws_lc_rs::hmac::Key; 3],
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut input = b"cloakroom/key-id/".to_vec();
        input.extend_from_slice(&bytes);
        let hash = sha256(&input);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&hash[..KEY_ID_LEN]);
        let prk = Salt::new(HKDF_SHA256, b"").extract(&bytes);
        let hmac_key = |info: &[u8]| {
            let info = [info];
            let okm = prk.expand(&info, aws_lc_rs::hmac::HMAC_SHA256).expect("HMAC key length is within HKDF limits");
            aws_lc_rs::hmac::Key::from(okm)
        };
        let index_key = hmac_key(b"cloakroom/v1/index");
        let record_keys = Purpose::ALL.map(|purpose| hmac_key(purpose.info_v2()));
        Self { bytes, id, index_key, record_keys }
    }

    /// Accepts standard or URL-safe base64, padded or not, of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, MasterKeyError> {
        let text = text.trim();
        let decoded = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| MasterKeyError::NotBase64)?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|v: Vec<u8>| MasterKeyError::Length(v.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn generate() -> Self {
        Self::from_bytes(random_bytes())
    }

    /// The key id as hex, safe to log: it identifies a key without revealing it.
    pub fn id_hex(&self) -> String {
        super::hex(&self.id)
    }
}

/// Why a configured session key cannot be used (never its value: keys are not echoed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("is not base64 (generate one with: openssl rand -base64 32)")]
    NotBase64,
    #[error("decodes to {0} bytes; a key must be exactly 32 bytes")]
    Length(usize),
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id={}, [redacted])", self.id_hex())
    }
}

/// The configured master keys: the first seals, every one opens.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<MasterKey>,
}

/// Why a blob did not open. Callers treat every variant as "no session"; the variants exist for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    Truncated,
    UnknownVersion,
    UnknownKey,
    /// Tampered, wrong secret, wrong slot: indistinguishable by design.
    Rejected,
}

impl KeyRing {
    /// `None` when `keys` is empty or holds the same key twice.
    pub fn new(keys: Vec<MasterKey>) -> Option<Self> {
        let first = keys.first()?;
        let _ = first;
        for (i, a) in keys.iter().enumerate() {
            if keys[..i].iter().any(|b| b.id == a.id) {
                return None;
            }
        }
        Some(Self { keys })
    }

    /// The ring of another frontend of this instance (`[[frontends]]`, named by its origin):
    /// each key replaced by an HMAC of it under the frontend's label. Its records, index
    /// entries and identity keys are its own: a ticket from one frontend opens nothing at
    /// another (the key ids differ), and a rotation rotates every frontend alike.
    pub fn for_frontend(&self, origin: &str) -> KeyRing {
        let label = format!("cloakroom/v1/frontend/{origin}");
        let keys = self
            .keys
            .iter()
            .map(|key| {
                let mac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key.bytes);
                let mut derived = [0u8; 32];
                derived.copy_from_slice(aws_lc_rs::hmac::sign(&mac, label.as_bytes()).as_ref());
                MasterKey::from_bytes(derived)
            })
            .collect();
        KeyRing { keys }
    }

    pub fn primary_key_id(&self) -> String {
        self.keys[0].id_hex()
    }

    /// Where an index entry lives: a keyed hash of `label`, one per configured key (entries
    /// written under an older primary key are still found after a rotation).
    pub fn index_keys(&self, label: &[u8]) -> Vec<[u8; 32]> {
        self.keys
            .iter()
            .map(|key| {
                let tag = aws_lc_rs::hmac::sign(&key.index_key, label);
                let mut out = [0u8; 32];
                out.copy_from_slice(tag.as_ref());
                out
            })
            .collect()
    }

    /// Seals `plaintext` for the holder of `secret`, bound to `context` (e.g. the store key).
    pub fn seal(&self, purpose: Purpose, secret: &[u8], context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal_as(VERSION, purpose, secret, context, plaintext)
    }

    fn seal_as(&self, version: u8, purpose: Purpose, secret: &[u8], context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(version);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        let aad = associated_data(&out[..1 + KEY_ID_LEN], context);
        derive(version, key, purpose, secret)
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(&aad), &mut body)
            .expect("AES-GCM sealing cannot fail for in-memory buffers below 64 GiB");
        out.extend_from_slice(&body);
        out
    }

    pub fn open(&self, purpose: Purpose, secret: &[u8], context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        let version = sealed[0];
        if version != VERSION && version != VERSION_1 {
            return Err(OpenError::UnknownVersion);
        }
        let key_id = &sealed[1..1 + KEY_ID_LEN];
        let key = self.keys.iter().find(|k| k.id == key_id).ok_or(OpenError::UnknownKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        let aad = associated_data(&sealed[..1 + KEY_ID_LEN], context);
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plaintext = derive(version, key, purpose, secret)
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut body)
            .map_err(|_| OpenError::Rejected)?;
        let len = plaintext.len();
        body.truncate(len);
        Ok(body)
    }
}

fn associated_data(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

/// The record key for `version` (checked by the caller); see the module documentation.
fn derive(version: u8, key: &MasterKey, purpose: Purpose, secret: &[u8]) -> LessSafeKey {
    if version == VERSION_1 {
        let prk = Salt::new(HKDF_SHA256, secret).extract(&key.bytes);
        let info = [purpose.info()];
        let okm = prk.expand(&info, &AES_256_GCM).expect("32-byte output is within HKDF-SHA256 limits");
        return LessSafeKey::new(UnboundKey::from(okm));
    }
    let tag = aws_lc_rs::hmac::sign(&key.record_keys[purpose as usize], secret);
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, tag.as_ref()).expect("HMAC-SHA256 gives a 32-byte AES-256 key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[[u8; 32]]) -> KeyRing {
        KeyRing::new(keys.iter().map(|k| MasterKey::from_bytes(*k)).collect()).unwrap()
    }

    const SECRET: &[u8] = &[7u8; 32];
    const CONTEXT: &[u8] = b"slot-1";

    #[test]
    fn round_trip() {
        let keys = ring(&[[1; 32]]);
        let sealed = keys.seal(Purpose::Session, SECRET, CONTEXT, b"tokens");
        assert_eq!(keys.open(Purpose::Session, SECRET, CONTEXT, &sealed).unwrap(), b"tokens");
        assert!(!sealed.windows(6).any(|w| w == b"tokens"), "plaintext visible in the sealed blob");
    }

    #[test]
    fn a_frontends_ring_opens_nothing_of_another_and_rotates_alike() {
        let base = ring(&[[1; 32], [2; 32]]);
        let (admin, shop) =
            (base.for_frontend("https://admin.example.com"), base.for_frontend("https://shop.example.com"));
        let sealed = admin.seal(Purpose::Session, SECRET, CONTEXT, b"tokens");
        assert_eq!(admin.open(Purpose::Session, SECRET, CONTEXT, &sealed).unwrap(), b"tokens");
        assert_eq!(shop.open(Purpose::Session, SECRET, CONTEXT, &sealed), Err(OpenError::UnknownKey));
        assert_eq!(base.open(Purpose::Session, SECRET, CONTEXT, &sealed), Err(OpenError::UnknownKey));
        assert_ne!(admin.index_keys(b"sub"), shop.index_keys(b"sub"));
        // Derived from the same keys, the same way: every replica agrees.
        let again = ring(&[[1; 32], [2; 32]]).for_frontend("https://admin.example.com");
        assert_eq!(again.open(Purpose::Session, SECRET, CONTEXT, &sealed).unwrap(), b"tokens");
        // Sealed under the old primary, still opened after a rotation.
        let rotated = ring(&[[3; 32], [1; 32]]).for_frontend("https://admin.example.com");
        assert_eq!(rotated.open(Purpose::Session, SECRET, CONTEXT, &sealed).unwrap(), b"tokens");
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let keys = ring(&[[1; 32]]);
        let sealed = keys.seal(Purpose::Session, SECRET, CONTEXT, b"tokens");
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut tampered = sealed.clone();
                tampered[i] ^= 1 << bit;
                assert!(keys.open(Purpose::Session, SECRET, CONTEXT, &tampered).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncation_is_rejected_at_every_length() {
        let keys = ring(&[[1; 32]]);
        let sealed = keys.seal(Purpose::Session, SECRET, CONTEXT, b"tokens");
        for len in 0..sealed.len() {
            assert!(keys.open(Purpose::Session, SECRET, CONTEXT, &sealed[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn wrong_secret_context_or_purpose_is_rejected() {
        let keys = ring(&[[1; 32]]);
        let sealed = keys.seal(Purpose::Session, SECRET, CONTEXT, b"tokens");
        assert_eq!(keys.open(Purpose::Session, &[8u8; 32], CONTEXT, &sealed), Err(OpenError::Rejected));
        assert_eq!(keys.open(Purpose::Session, SECRET, b"slot-2", &sealed), Err(OpenError::Rejected));
        assert_eq!(keys.open(Purpose::PendingLogin, SECRET, CONTEXT, &sealed), Err(OpenError::Rejected));
    }

    #[test]
    fn rotation_first_seals_all_open_removed_key_fails() {
        let old = ring(&[[1; 32]]);
        let rotated = ring(&[[2; 32], [1; 32]]);
        let sealed_by_old = old.seal(Purpose::Session, SECRET, CONTEXT, b"a");
        assert_eq!(rotated.open(Purpose::Session, SECRET, CONTEXT, &sealed_by_old).unwrap(), b"a");
        let sealed_by_new = rotated.seal(Purpose::Session, SECRET, CONTEXT, b"b");
        assert_eq!(sealed_by_new[1..5], MasterKey::from_bytes([2; 32]).id);
        assert_eq!(old.open(Purpose::Session, SECRET, CONTEXT, &sealed_by_new), Err(OpenError::UnknownKey));
        let retired = ring(&[[2; 32]]);
        assert_eq!(retired.open(Purpose::Session, SECRET, CONTEXT, &sealed_by_old), Err(OpenError::UnknownKey));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let keys = ring(&[[1; 32]]);
        let mut sealed = keys.seal(Purpose::Session, SECRET, CONTEXT, b"x");
        for version in [0, 3, 0xff] {
            sealed[0] = version;
            assert_eq!(keys.open(Purpose::Session, SECRET, CONTEXT, &sealed), Err(OpenError::UnknownVersion));
        }
    }

    #[test]
    fn version_1_records_still_open_and_versions_cannot_be_swapped() {
        let keys = ring(&[[1; 32]]);
        let v1 = keys.seal_as(VERSION_1, Purpose::Session, SECRET, CONTEXT, b"before the upgrade");
        assert_eq!(keys.open(Purpose::Session, SECRET, CONTEXT, &v1).unwrap(), b"before the upgrade");
        assert_eq!(keys.open(Purpose::Session, &[8u8; 32], CONTEXT, &v1), Err(OpenError::Rejected));
        let v2 = keys.seal(Purpose::Session, SECRET, CONTEXT, b"after");
        assert_eq!(v2[0], 2);
        // The version is authenticated and picks the derivation: relabelled, neither opens.
        let (mut v1_as_v2, mut v2_as_v1) = (v1.clone(), v2.clone());
        v1_as_v2[0] = 2;
        v2_as_v1[0] = 1;
        assert_eq!(keys.open(Purpose::Session, SECRET, CONTEXT, &v1_as_v2), Err(OpenError::Rejected));
        assert_eq!(keys.open(Purpose::Session, SECRET, CONTEXT, &v2_as_v1), Err(OpenError::Rejected));
    }

    #[test]
    fn version_2_key_is_hkdf_expand_of_the_secret() {
        // HMAC(K, secret) is HKDF-Expand(PRK = K, info = secret[..31], L = 32) when the secret
        // ends in 0x01 (RFC 5869: T(1) = HMAC(PRK, info | 0x01)): checked against aws-lc's HKDF.
        let master = MasterKey::from_bytes([1; 32]);
        let prk = Salt::new(HKDF_SHA256, b"").extract(&[1; 32]);
        let info = [Purpose::Session.info_v2()];
        let okm = prk.expand(&info, HKDF_SHA256).unwrap();
        let mut k = [0u8; 32];
        okm.fill(&mut k).unwrap();
        let mut secret = [9u8; 32];
        secret[31] = 0x01;
        let expected_prk = aws_lc_rs::hkdf::Prk::new_less_safe(HKDF_SHA256, &k);
        let mut expected = [0u8; 32];
        let info = [&secret[..31]];
        expected_prk.expand(&info, HKDF_SHA256).unwrap().fill(&mut expected).unwrap();
        let tag = aws_lc_rs::hmac::sign(&master.record_keys[Purpose::Session as usize], &secret);
        assert_eq!(tag.as_ref(), expected);
        for (i, purpose) in Purpose::ALL.into_iter().enumerate() {
            assert_eq!(purpose as usize, i, "Purpose::ALL out of declaration order");
        }
    }

    #[test]
    fn keys_parse_from_base64_and_never_print() {
        let key = MasterKey::from_base64(&STANDARD.encode([9u8; 32])).unwrap();
        assert!(MasterKey::from_base64(&URL_SAFE_NO_PAD.encode([9u8; 32])).is_ok());
        assert_eq!(MasterKey::from_base64(&STANDARD.encode([9u8; 16])).unwrap_err(), MasterKeyError::Length(16));
        assert!(MasterKey::from_base64(&STANDARD.encode([9u8; 16])).unwrap_err().to_string().contains("16 bytes"));
        assert_eq!(MasterKey::from_base64("not base64!").unwrap_err(), MasterKeyError::NotBase64);
        let printed = format!("{key:?}");
        assert!(!printed.contains(&STANDARD.encode([9u8; 32])) && printed.contains("redacted"));
        assert!(KeyRing::new(vec![key.clone(), key]).is_none(), "duplicate keys accepted");
        assert!(KeyRing::new(vec![]).is_none());
    }
}
