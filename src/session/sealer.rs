//! [`Sealer`]: seals and opens sessions, pending logins and session listings; the only code
//! that sees both the keys and the plaintext.

use super::store::SealedRecord;
use super::{PendingLogin, Session, SessionListing, SessionTicket, SessionView, StoreKey};
use crate::crypto::seal::{KeyRing, Purpose};
use bytes::Bytes;

/// The per-record secret of pending logins: they live in the browser's cookie, sealed under the
/// master key and bound to their `state`; there is no second secret to keep elsewhere.
const PENDING_SECRET: &[u8] = b"cloakroom/login-cookie";

/// Seals and opens [`Session`]s and [`PendingLogin`]s; the only code that sees both keys and plaintext.
#[derive(Clone, Debug)]
pub struct Sealer {
    pub(super) keys: KeyRing,
}

impl Sealer {
    pub fn new(keys: KeyRing) -> Self {
        Self { keys }
    }

    pub fn seal_session(&self, ticket: &SessionTicket, session: &Session) -> SealedRecord {
        let plaintext = serde_json::to_vec(session).expect("a session always serializes");
        let key = ticket.store_key();
        SealedRecord {
            sealed: self.keys.seal(Purpose::Session, ticket.secret(), key.as_bytes(), &plaintext).into(),
            expires_at: session.expires_at,
        }
    }

    pub fn open_session(&self, ticket: &SessionTicket, sealed: &[u8]) -> Option<Session> {
        self.open_session_as(ticket, sealed)
    }

    /// Opens a session record as the whole [`Session`] or a [`SessionView`] of part of it.
    pub fn open_session_as<S: SessionView>(&self, ticket: &SessionTicket, sealed: &[u8]) -> Option<S> {
        let key = ticket.store_key();
        let plaintext = self.keys.open(Purpose::Session, ticket.secret(), key.as_bytes(), sealed).ok()?;
        S::decode(&plaintext)
    }

    /// A pending login sealed for its login cookie, bound to its `state` (by `key`).
    pub fn seal_pending(&self, key: &StoreKey, login: &PendingLogin) -> Vec<u8> {
        let plaintext = serde_json::to_vec(login).expect("a pending login always serializes");
        self.keys.seal(Purpose::PendingLogin, PENDING_SECRET, key.as_bytes(), &plaintext)
    }

    pub fn seal_listing(&self, sub: &str, member: &StoreKey, listing: &SessionListing) -> Bytes {
        let plaintext = serde_json::to_vec(listing).expect("a listing always serializes");
        self.keys.seal(Purpose::Listing, sub.as_bytes(), member.as_bytes(), &plaintext).into()
    }

    pub fn open_listing(&self, sub: &str, member: &StoreKey, sealed: &[u8]) -> Option<SessionListing> {
        let plaintext = self.keys.open(Purpose::Listing, sub.as_bytes(), member.as_bytes(), sealed).ok()?;
        serde_json::from_slice(&plaintext).ok()
    }

    /// Index keys for a user (`sub`) or a provider session (`sid`), under every configured key.
    pub fn index_keys(&self, kind: &str, value: &str) -> Vec<StoreKey> {
        let label = format!("{kind}:{value}");
        self.keys.index_keys(label.as_bytes()).into_iter().map(StoreKey).collect()
    }

    pub fn open_pending(&self, key: &StoreKey, sealed: &[u8]) -> Option<PendingLogin> {
        let plaintext = self.keys.open(Purpose::PendingLogin, PENDING_SECRET, key.as_bytes(), sealed).ok()?;
        serde_json::from_slice(&plaintext).ok()
    }
}
