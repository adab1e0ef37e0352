//! Sessions: what the browser's ticket unlocks.
//!
//! [`SessionTicket`] (in the cookie) → [`StoreKey`] (hash of its id) → sealed blob in a
//! [`SessionStore`] → opened with the ticket's secret into a [`Session`]. Pending logins use the
//! same sealing, keyed by a hash of `state`, with the secret in a short-lived login cookie.

pub mod claims;
pub mod cookie;
pub mod memory;
pub mod record;
pub mod redis;
mod sealer;
mod sessions;
pub mod store;
pub mod ticket;

pub use crate::crypto::random_token;

use crate::secret::Secret;
use bytes::Bytes;
use openidconnect::{AccessToken, RefreshToken};
pub use sealer::Sealer;
use serde::{Deserialize, Serialize};
pub use sessions::{Claims, ListedSession, Lookup, Sessions};
use std::collections::BTreeMap;
pub use store::{Lease, SealedRecord, SessionStore, StoreError, StoreLimits};

use std::time::Duration;
pub use ticket::{SessionTicket, StoreKey};

/// A signed-in user's state. Lives only sealed in the store; never serialized anywhere else.
///
/// Stored as JSON with short field names, and absent fields left out: every byte is held per
/// session (BENCHMARKS.md). The aliases read records written with the long names before.
///
/// The fields are declared in the order they are written, and the order matters: what every
/// proxied call reads comes first, then what routes with rules add, then the rest, so that the
/// proxy's reading ([`record::tokens`]) stops early. Keep new fields after `c` unless every call
/// needs them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Unix seconds: the session's end: its absolute timeout after `created_at`, or sooner when
    /// the provider says the refresh token ends sooner (moved with each refresh that says so,
    /// never past the absolute timeout). First: it marks an ordered record.
    #[serde(rename = "ea", alias = "expires_at")]
    pub expires_at: u64,
    /// Unix seconds; `None` when the provider said nothing about expiry.
    #[serde(rename = "ate", alias = "access_token_expires_at", skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<u64>,
    #[serde(rename = "at", alias = "access_token")]
    pub access_token: AccessToken,
    #[serde(rename = "rt", alias = "refresh_token", skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// RFC 8707: tokens for routes naming a `resource`, by resource, obtained with the refresh
    /// token so that each API only ever sees a token meant for it.
    #[serde(rename = "rs", alias = "resource_tokens", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_tokens: BTreeMap<String, ResourceToken>,
    /// The session's DPoP key (RFC 9449; PKCS#8, base64url) when its provider binds tokens:
    /// never anywhere but in this sealed record. Before `sc`: DPoP routes read it on each call.
    #[serde(rename = "dk", default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<Secret>,
    /// The scope granted to `access_token` (space-separated), for routes' scope rules; `None`
    /// in records from before it was kept: scope rules then admit nothing until a sign-in.
    #[serde(rename = "sc", default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Verified ID-token claims, minus protocol fields (see `oidc::user_claims`).
    #[serde(rename = "c", alias = "claims")]
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub sub: String,
    /// The provider's session id (`sid` claim), when it sends one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Kept only when `oidc.logout_id_token_hint` is on.
    #[serde(rename = "it", alias = "id_token", skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret>,
    /// Unix seconds.
    #[serde(rename = "ca", alias = "created_at")]
    pub created_at: u64,
    /// How the user's session list names this session: random, not ticket material.
    #[serde(rename = "li", alias = "listing_id", default)]
    pub listing_id: String,
    /// Unix seconds: when the userinfo claims were last fetched (`oidc.userinfo`).
    #[serde(rename = "ui", default, skip_serializing_if = "Option::is_none")]
    pub userinfo_at: Option<u64>,
    /// The provider the user signed in with, by id; `None`: the default one (`[oidc]`).
    #[serde(rename = "pv", default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// What a sign-in hands the session layer: the provider's tokens and the verified user. (The
/// session layer takes its own type, so that it names nothing of the protocol layer.)
#[derive(Debug)]
pub struct NewSession {
    pub sub: String,
    pub sid: Option<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub access_token: AccessToken,
    /// Unix seconds, when known.
    pub access_token_expires_at: Option<u64>,
    pub refresh_token: Option<RefreshToken>,
    /// Unix seconds when the refresh token stops working, when the provider says: the session
    /// ends then, if that is before its absolute timeout.
    pub refresh_token_expires_at: Option<u64>,
    /// The scope granted to `access_token` (space-separated).
    pub scope: String,
    pub id_token: Secret,
    /// Unix seconds, when the claims include the userinfo endpoint's.
    pub userinfo_at: Option<u64>,
    /// The provider signed in with; `None`: the default one.
    pub provider: Option<String>,
    /// The DPoP key the tokens are bound to (see [`Session::dpop_key`]).
    pub dpop_key: Option<Secret>,
}

/// A sign-in's tokens, as a new session of the default provider (set `provider` otherwise).
impl From<crate::oidc::TokenSet> for NewSession {
    fn from(tokens: crate::oidc::TokenSet) -> Self {
        NewSession {
            sub: tokens.sub,
            sid: tokens.sid,
            claims: tokens.claims,
            access_token: tokens.access_token,
            access_token_expires_at: tokens.access_token_expires_at,
            refresh_token: tokens.refresh_token,
            refresh_token_expires_at: tokens.refresh_token_expires_at,
            scope: tokens.scope,
            id_token: tokens.id_token,
            userinfo_at: tokens.userinfo_at,
            provider: None,
            dpop_key: None,
        }
    }
}

/// What the API proxy needs of a session on every call, decoded from the same sealed record
/// as [`Session`] but without building the claims, ID token and the rest: the per-request cost
/// of a session is mostly that decoding.
///
/// `C`, `S`: whether to decode the user's claims and the granted scope: not at all (skipped, the
/// default) or, for routes with rules or a step-up, as [`claims::RawClaims`] and a `String`.
#[derive(Debug, Deserialize)]
pub struct SessionTokens<C = serde::de::IgnoredAny, S = serde::de::IgnoredAny> {
    /// The verified ID-token claims, when `C` asks for them.
    #[serde(rename = "c", alias = "claims", default = "Option::default")]
    pub claims: Option<C>,
    /// The scope granted to `access_token`, when `S` asks for it.
    #[serde(rename = "sc", default = "Option::default")]
    pub scope: Option<S>,
    #[serde(rename = "at", alias = "access_token")]
    pub access_token: AccessToken,
    #[serde(rename = "ate", alias = "access_token_expires_at", default)]
    pub access_token_expires_at: Option<u64>,
    /// Whether the session holds a refresh token (its value is not needed to decide).
    #[serde(rename = "rt", alias = "refresh_token", default)]
    refresh_token: Option<serde::de::IgnoredAny>,
    #[serde(rename = "rs", alias = "resource_tokens", default)]
    pub resource_tokens: BTreeMap<String, ResourceToken>,
    /// The session's DPoP key, when it has one.
    #[serde(rename = "dk", default)]
    pub dpop_key: Option<Secret>,
    #[serde(rename = "ea", alias = "expires_at")]
    pub expires_at: u64,
}

impl<C, S> SessionTokens<C, S> {
    pub fn can_refresh(&self) -> bool {
        self.refresh_token.is_some()
    }
}

/// A decoding of a sealed session record.
pub trait SessionView: serde::de::DeserializeOwned {
    /// Unix seconds: the absolute timeout.
    fn expires_at(&self) -> u64;

    /// Decodes an opened record's JSON text.
    fn decode(text: &[u8]) -> Option<Self> {
        serde_json::from_slice(text).ok()
    }
}

impl SessionView for Session {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl<C: record::Part, S: record::Part> SessionView for SessionTokens<C, S> {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Read in place when it can be ([`record::tokens`]), decoded whole otherwise.
    fn decode(text: &[u8]) -> Option<Self> {
        record::tokens(text).or_else(|| serde_json::from_slice(text).ok())
    }
}

/// What the user's session list shows about a session. Sealed under the master key and the
/// user's `sub` (a list must be readable without the other sessions' cookies), so it holds no
/// token: a store dump plus the master key shows when and from where a user signed in, never
/// anything that opens a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionListing {
    #[serde(rename = "li", alias = "listing_id")]
    pub listing_id: String,
    #[serde(rename = "ca", alias = "created_at")]
    pub created_at: u64,
    #[serde(rename = "d", alias = "device")]
    pub device: String,
    pub ip: String,
}

/// An access token for one RFC 8707 resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceToken {
    #[serde(rename = "at", alias = "access_token")]
    pub access_token: AccessToken,
    /// Unix seconds, when known.
    #[serde(rename = "ea", alias = "expires_at", default)]
    pub expires_at: Option<u64>,
}

/// A login between `/bff/login` and `/bff/callback`. Single use, short-lived.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub pkce_verifier: Secret,
    pub nonce: Secret,
    pub return_to: String,
    /// "Keep me signed in" was asked for (and allowed): a persistent cookie.
    pub remember: bool,
    /// Unix seconds.
    pub expires_at: u64,
    /// `prompt=none`: a failure returns to the app with a marker, not to an error page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silent: bool,
    /// `max_age` was asked: the ID token's `auth_time` must be this recent (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// `acr_values` was asked (space-separated): the ID token's `acr` must be one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<String>,
    /// The provider the sign-in went to (`None`: the default one): the callback is finished
    /// with that provider and no other (mix-up defence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The ticket of the session this browser had when the sign-in started (`/bff/login` is a
    /// same-site navigation and carries the cookie; the provider's redirect to the callback is
    /// cross-site and, under `SameSite=Strict`, does not): the callback ends that session.
    /// Sealed with the rest of the pending login; the browser cannot read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Secret>,
}

/// A sealed record as a store hands it back: the memory store's own entry, shared (a reference
/// count, no copy and no allocation on the request path), or the bytes a remote store sent.
#[derive(Debug, Clone)]
pub enum Sealed {
    Held(std::sync::Arc<memory::Entry>),
    Sent(Bytes),
}

impl std::ops::Deref for Sealed {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Sealed::Held(entry) => entry.sealed(),
            Sealed::Sent(bytes) => bytes,
        }
    }
}

impl PartialEq for Sealed {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// The behaviour every store passes; public so `tests/` can run it against real Redis servers.
#[doc(hidden)]
pub mod store_suite;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::seal::{KeyRing, Purpose};

    fn sealer() -> Sealer {
        Sealer::new(KeyRing::new(vec![crate::crypto::seal::MasterKey::from_bytes([7; 32])]).unwrap())
    }

    fn session(refresh: bool) -> Session {
        let mut claims = serde_json::Map::new();
        claims.insert("name".into(), "Alice \"Quoted\" Example".into());
        claims.insert("groups".into(), serde_json::json!(["a", {"nested": [1, 2, null]}]));
        let mut resource_tokens = BTreeMap::new();
        resource_tokens.insert(
            "urn:orders".to_string(),
            ResourceToken { access_token: AccessToken::new("orders-token".into()), expires_at: Some(1_900) },
        );
        Session {
            sub: "alice".into(),
            sid: Some("sid-1".into()),
            claims,
            access_token: AccessToken::new("eyJ.access\\u0041.sig".into()),
            access_token_expires_at: Some(1_800),
            refresh_token: refresh.then(|| RefreshToken::new("refresh".into())),
            scope: Some("openid api:read".into()),
            id_token: Some(Secret::new("id.token.here")),
            resource_tokens,
            created_at: 1_000,
            expires_at: 2_000,
            listing_id: "listing".into(),
            userinfo_at: None,
            provider: None,
            dpop_key: Some(Secret::new("dpop-key")),
        }
    }

    #[test]
    fn the_proxy_decoding_reads_what_the_whole_session_holds() {
        let sealer = sealer();
        let ticket = SessionTicket::generate();
        for refresh in [true, false] {
            let whole = session(refresh);
            let sealed = sealer.seal_session(&ticket, &whole).sealed;
            let tokens: SessionTokens = sealer.open_session_as(&ticket, &sealed).expect("opens");
            assert_eq!(tokens.access_token.secret(), whole.access_token.secret());
            assert_eq!(tokens.access_token_expires_at, whole.access_token_expires_at);
            assert_eq!(tokens.can_refresh(), refresh);
            assert_eq!(tokens.expires_at, whole.expires_at);
            let orders = &tokens.resource_tokens["urn:orders"];
            assert_eq!((orders.access_token.secret().as_str(), orders.expires_at), ("orders-token", Some(1_900)));
            // What routes with rules decode too: the claims' JSON as it is, and the scope.
            let ruled: SessionTokens<claims::RawClaims, String> = sealer.open_session_as(&ticket, &sealed).unwrap();
            assert_eq!(ruled.scope.as_deref(), Some("openid api:read"));
            let mut groups = Vec::new();
            let claims = ruled.claims.as_ref().unwrap();
            assert!(claims.scan(|n| (n == "groups").then_some(0), |_, json, _| groups.push(json.to_string())));
            assert_eq!(groups, ["\"a\""], "the nested object holds nothing a rule reads");
        }
        // Records sealed before the short field names still open, either way.
        let long_names = serde_json::json!({
            "sub": "alice", "sid": null, "claims": {"name": "Alice"}, "access_token": "old-access",
            "access_token_expires_at": 1_800, "refresh_token": "old-refresh", "id_token": null,
            "resource_tokens": {"urn:orders": {"access_token": "old-orders", "expires_at": null}},
            "created_at": 1_000, "expires_at": 2_000, "listing_id": "listing",
        });
        let plaintext = serde_json::to_vec(&long_names).unwrap();
        let old = sealer.keys.seal(Purpose::Session, ticket.secret(), ticket.store_key().as_bytes(), &plaintext);
        let whole = sealer.open_session(&ticket, &old).expect("an old record opens");
        assert_eq!((whole.sub.as_str(), whole.access_token.secret().as_str()), ("alice", "old-access"));
        assert_eq!((whole.claims["name"].as_str(), whole.listing_id.as_str()), (Some("Alice"), "listing"));
        assert_eq!(whole.resource_tokens["urn:orders"].access_token.secret(), "old-orders");
        let tokens: SessionTokens = sealer.open_session_as(&ticket, &old).expect("an old record opens");
        assert_eq!((tokens.access_token.secret().as_str(), tokens.expires_at), ("old-access", 2_000));
        assert!(tokens.can_refresh());
        let ruled: SessionTokens<claims::RawClaims, String> = sealer.open_session_as(&ticket, &old).unwrap();
        assert!(ruled.scope.is_none() && whole.scope.is_none(), "no scope was recorded then");
        // Absent fields are left out, not written as null.
        let mut bare = session(false);
        (bare.sid, bare.id_token, bare.resource_tokens, bare.scope) = (None, None, BTreeMap::new(), None);
        let json = String::from_utf8(serde_json::to_vec(&bare).unwrap()).unwrap();
        assert!(
            !json.contains(":null") && !json.contains("\"rs\"") && !json.contains("\"rt\"") && !json.contains("\"sc\""),
            "{json}"
        );
        // A record as cloakroom writes it is read in place, and reads the same as decoded whole.
        let mut plain = session(true);
        plain.access_token = AccessToken::new("eyJ.plain.sig".into());
        let text = serde_json::to_vec(&plain).unwrap();
        assert!(text.starts_with(b"{\"ea\":"), "the hot fields come first");
        let fast: SessionTokens<claims::RawClaims, String> = record::tokens(&text).expect("read in place");
        let whole: SessionTokens<claims::RawClaims, String> = serde_json::from_slice(&text).unwrap();
        assert_eq!(fast.access_token.secret(), whole.access_token.secret());
        assert_eq!((fast.expires_at, fast.access_token_expires_at), (whole.expires_at, whole.access_token_expires_at));
        assert_eq!((fast.can_refresh(), fast.scope.as_deref()), (whole.can_refresh(), whole.scope.as_deref()));
        assert_eq!(fast.claims.map(|c| c.json().to_string()), whole.claims.map(|c| c.json().to_string()));
        assert_eq!(fast.resource_tokens["urn:orders"].access_token.secret(), "orders-token");
        assert_eq!(fast.dpop_key.as_ref().map(Secret::expose), Some("dpop-key"));
        assert_eq!(whole.dpop_key.as_ref().map(Secret::expose), Some("dpop-key"));
        let bearer_only: SessionTokens = record::tokens(&text).expect("read in place");
        assert_eq!(bearer_only.dpop_key.as_ref().map(Secret::expose), Some("dpop-key"));
        assert!(record::tokens::<serde::de::IgnoredAny, serde::de::IgnoredAny>(&text).is_some());
        // The same refusals as the whole session: another ticket opens nothing.
        let sealed = sealer.seal_session(&ticket, &session(true)).sealed;
        assert!(sealer.open_session_as::<SessionTokens>(&SessionTicket::generate(), &sealed).is_none());
    }
}
