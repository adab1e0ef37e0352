//! The identity provider: metadata and keys, the authorization request, the code exchange with
//! full ID-token validation, revocation and the end-session URL.
//!
//! Protocol work is `openidconnect`'s; this module feeds it our HTTP client ([`http`]), our
//! clock, and the policy choices: asymmetric signature algorithms only, `iat` not in the future,
//! `at_hash` checked when present, and one JWKS refetch (rate-limited) on an unknown `kid`.

pub mod authentication;
mod backchannel;
mod client_credentials;
mod code_exchange;
mod dpop;
mod form;
pub mod http;
pub mod jws;
mod logout;
mod par;
mod providers;
mod refresh;
mod refresh_lifetime;
pub mod token_exchange;
mod userinfo;

use crate::clock::SharedClock;
use crate::config::{AssertionAudience, ClientAuth, OidcConfig};
use crate::secret::Secret;
pub(crate) use crate::telemetry::error_chain;
use http::ProviderHttp;
use openidconnect::core::*;
use openidconnect::{
    AdditionalProviderMetadata, AuthType, ClientId, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, JsonWebKeySetUrl, Nonce, PkceCodeChallenge, ProviderMetadata, RedirectUrl, Scope,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use url::Url;

pub use crate::crypto::client_key::{ClientKey, KeyError};
pub use backchannel::{LogoutSubject, LogoutTokenError};
pub use code_exchange::TokenSet;
pub use providers::Providers;
pub use refresh::Refreshed;
use refresh_lifetime::RefreshLifetime;
pub use userinfo::merge_userinfo;

/// Discovery fields beyond OpenID Connect Discovery 1.0 core that cloakroom uses.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 7009 (also RFC 8414).
    pub revocation_endpoint: Option<String>,
    /// OpenID Connect RP-Initiated Logout 1.0.
    pub end_session_endpoint: Option<String>,
    /// RFC 9207: the provider promises an `iss` parameter on every authorization response.
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// RFC 9126: where to push authorization requests, and whether the provider insists.
    pub pushed_authorization_request_endpoint: Option<String>,
    pub require_pushed_authorization_requests: Option<bool>,
    /// Front-Channel Logout 1.0: the provider loads clients' logout URLs in iframes, and (the
    /// second) adds `iss` and `sid`, which `/bff/frontchannel-logout` needs.
    pub frontchannel_logout_supported: Option<bool>,
    pub frontchannel_logout_session_supported: Option<bool>,
    /// RFC 9449 §5.1: the algorithms the provider takes DPoP proofs in.
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// RFC 8705 §5: where a client presenting a certificate sends its requests instead.
    pub mtls_endpoint_aliases: Option<MtlsEndpointAliases>,
    /// RFC 8705 §3.3: the provider can bind access tokens to the client's certificate.
    pub tls_client_certificate_bound_access_tokens: Option<bool>,
}

/// RFC 8705 §5: the endpoints cloakroom calls, as the provider serves them for mutual TLS.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct MtlsEndpointAliases {
    pub token_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub pushed_authorization_request_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The token response as cloakroom reads it: the core fields and the refresh token's lifetime.
pub type TokenAnswer = openidconnect::StandardTokenResponse<
    openidconnect::IdTokenFields<
        openidconnect::EmptyAdditionalClaims,
        RefreshLifetime,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

type OidcClient = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    openidconnect::StandardErrorResponse<CoreErrorResponseType>,
    TokenAnswer,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;

/// Signature algorithms accepted on ID tokens: asymmetric only. Never `none`; never HMAC (a
/// confidential client's secret must not become a way to mint ID tokens).
pub const ASYMMETRIC_ALGS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// What FAPI 2.0 allows of [`ASYMMETRIC_ALGS`] (`profile = "fapi2"`).
const FAPI2_ID_TOKEN_ALGS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// A JWKS refetch on an unknown `kid` happens at most this often.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcError {
    /// Metadata not loaded yet (start-up, provider down since).
    NotReady,
    /// Network failure, timeout or a 5xx: the provider is not available right now.
    Unreachable(String),
    /// The request may have reached the provider, but no answer came (it timed out, or the
    /// connection broke after sending): whether the provider acted on it is unknown.
    InDoubt(String),
    /// The provider answered with an OAuth error about the grant (e.g. `invalid_grant`).
    Rejected(String),
    /// The provider refused cloakroom itself (`invalid_client`, `unauthorized_client`): a
    /// configuration problem (a wrong secret, an unregistered key), never the user's doing.
    ClientRejected(String),
    /// The provider's answer could not be understood.
    BadResponse(String),
    InvalidIdToken(String),
}

impl std::fmt::Display for OidcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OidcError::NotReady => write!(f, "provider metadata not loaded yet"),
            OidcError::Unreachable(e) => write!(f, "provider unreachable: {e}"),
            OidcError::InDoubt(e) => write!(f, "no answer from the provider, outcome unknown: {e}"),
            OidcError::Rejected(e) => write!(f, "provider refused: {e}"),
            OidcError::ClientRejected(e) => write!(f, "provider refused cloakroom's client authentication: {e}"),
            OidcError::BadResponse(e) => write!(f, "unusable provider response: {e}"),
            OidcError::InvalidIdToken(e) => write!(f, "invalid ID token: {e}"),
        }
    }
}

impl std::error::Error for OidcError {}

/// What discovery produced; replaced whole when the JWKS is refetched.
struct Discovered {
    client: OidcClient,
    token_uri: Url,
    jwks: CoreJsonWebKeySet,
    jwks_uri: JsonWebKeySetUrl,
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    revocation_endpoint: Option<Url>,
    end_session_endpoint: Option<Url>,
    iss_parameter_required: bool,
    /// RFC 9126.
    par_endpoint: Option<Url>,
    par_required_by_provider: bool,
}

pub struct Provider {
    config: OidcConfig,
    http: ProviderHttp,
    /// The same client for refreshes, waiting longer for the answer (`oidc.refresh_timeout`).
    refresh_http: ProviderHttp,
    clock: SharedClock,
    discovered: RwLock<Option<Arc<Discovered>>>,
    /// When an unknown `kid` last caused a refetch (discovery does not count: a key rotated
    /// just after start-up must still be picked up).
    last_jwks_fetch: Mutex<Option<tokio::time::Instant>>,
    /// Logout-token `jti`s seen recently (replay protection).
    logout_jtis: moka::sync::Cache<String, ()>,
    /// The provider's last DPoP nonce (`oidc.dpop`).
    dpop_nonce: crate::crypto::dpop::DpopNonce,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Provider {
    pub fn new(config: OidcConfig, clock: SharedClock, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let http = ProviderHttp::new(config.timeout, config.timeout, config.tls.clone(), metrics.clone());
        let refresh_http =
            ProviderHttp::new(config.timeout, config.refresh_timeout, config.tls.clone(), metrics.clone());
        let logout_jtis =
            moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(3600)).build();
        Self {
            config,
            http,
            refresh_http,
            clock,
            discovered: RwLock::new(None),
            last_jwks_fetch: Mutex::new(None),
            logout_jtis,
            dpop_nonce: crate::crypto::dpop::DpopNonce::default(),
            metrics,
        }
    }

    /// How a call for a session goes: with a proof of its DPoP key when it has one.
    fn sender<'a>(&'a self, http: &'a ProviderHttp, key: Option<&'a crate::crypto::dpop::DpopKey>) -> dpop::Sender<'a> {
        match key {
            None => dpop::Sender::Plain(http),
            Some(key) => {
                let now = self.clock.now();
                dpop::Sender::Proof(dpop::WithProof { http, key, nonce: &self.dpop_nonce, now })
            }
        }
    }

    /// This provider in place of `earlier` (a reload): the logout tokens `earlier` has seen
    /// stay seen, so a replay across the reload is still refused. Discovery starts afresh: the
    /// client it builds carries this configuration's registration.
    pub fn succeeding(mut self, earlier: &Provider) -> Self {
        self.logout_jtis = earlier.logout_jtis.clone();
        self
    }

    pub fn is_ready(&self) -> bool {
        self.current().is_some()
    }

    /// With `userinfo`, how old its claims may get before a refresh fetches them again.
    pub fn userinfo_interval(&self) -> Option<Duration> {
        self.config.userinfo_interval.filter(|_| self.config.userinfo)
    }

    /// Its configuration (`[oidc]` or one of `[[providers]]`).
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Its id (`[oidc]`'s: "default" unless named).
    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn display_name(&self) -> &str {
        &self.config.display_name
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    fn current(&self) -> Option<Arc<Discovered>> {
        self.discovered.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn ready(&self) -> Result<Arc<Discovered>, OidcError> {
        self.current().ok_or(OidcError::NotReady)
    }

    /// Fetches metadata and keys; on success the provider is ready.
    pub async fn discover(&self) -> Result<(), OidcError> {
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| OidcError::BadResponse(e.to_string()))?;
        let metadata = Metadata::discover_async(issuer, &self.http).await.map_err(|e| match e {
            openidconnect::DiscoveryError::Request(e) => OidcError::Unreachable(e.to_string()),
            openidconnect::DiscoveryError::Response(status, _, _) if status.is_server_error() => {
                OidcError::Unreachable(format!("HTTP {status}"))
            }
            other => OidcError::BadResponse(error_chain(&other)),
        })?;
        let discovered = self.build(metadata)?;
        let revocation = discovered.revocation_endpoint.is_some();
        self.metrics.provider_revocation(&self.config.id, revocation);
        let first = self.discovered.write().unwrap_or_else(|e| e.into_inner()).replace(Arc::new(discovered)).is_none();
        if first && !revocation {
            tracing::warn!(provider = %self.config.id, issuer = %self.config.issuer, "the provider offers no revocation endpoint: a logout ends the session here, but its refresh token stays valid at the provider until it expires");
        }
        Ok(())
    }

    fn build(&self, metadata: Metadata) -> Result<Discovered, OidcError> {
        let (metadata, extra) = self.with_mtls_aliases(metadata)?;
        let token_uri = metadata
            .token_endpoint()
            .cloned()
            .ok_or_else(|| OidcError::BadResponse("the provider metadata has no token_endpoint".into()))?;
        let fapi2 = self.config.profile == crate::config::Profile::Fapi2;
        let allowed_algs: Vec<_> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|alg| ASYMMETRIC_ALGS.contains(alg))
            .filter(|alg| !fapi2 || FAPI2_ID_TOKEN_ALGS.contains(alg))
            .cloned()
            .collect();
        if allowed_algs.is_empty() && fapi2 {
            return Err(OidcError::BadResponse(
                "profile = \"fapi2\": the provider offers no PS256, ES256 or EdDSA ID token signing algorithm".into(),
            ));
        }
        if allowed_algs.is_empty() {
            return Err(OidcError::BadResponse("the provider offers no asymmetric ID token signing algorithm".into()));
        }
        let parse_endpoint = |value: &Option<String>, name: &str| -> Result<Option<Url>, OidcError> {
            value
                .as_deref()
                .map(|v| Url::parse(v).map_err(|e| OidcError::BadResponse(format!("{name} is not a URL: {e}"))))
                .transpose()
        };
        let revocation_endpoint = parse_endpoint(&extra.revocation_endpoint, "revocation_endpoint")?;
        let end_session_endpoint = parse_endpoint(&extra.end_session_endpoint, "end_session_endpoint")?;
        let iss_parameter_required = extra.authorization_response_iss_parameter_supported == Some(true);
        if fapi2 && !iss_parameter_required {
            return Err(OidcError::BadResponse(
                "profile = \"fapi2\": the provider does not promise iss in the authorization response (RFC 9207)"
                    .into(),
            ));
        }
        let par_endpoint =
            parse_endpoint(&extra.pushed_authorization_request_endpoint, "pushed_authorization_request_endpoint")?;
        let par_required_by_provider = extra.require_pushed_authorization_requests == Some(true);
        if extra.frontchannel_logout_supported == Some(true) {
            let with_sid = extra.frontchannel_logout_session_supported == Some(true);
            tracing::info!(
                provider = self.id(),
                with_sid,
                "the provider offers front-channel logout; register /bff/frontchannel-logout as the client's frontchannel_logout_uri (with frontchannel_logout_session_required) to use it"
            );
        }
        if self.config.par == crate::config::ParMode::Required && par_endpoint.is_none() {
            return Err(OidcError::BadResponse(
                "oidc.par = \"required\", but the provider advertises no pushed_authorization_request_endpoint".into(),
            ));
        }
        let dpop_es256 = (extra.dpop_signing_alg_values_supported.as_deref())
            .is_some_and(|algs| algs.iter().any(|alg| alg == crate::crypto::dpop::ALG));
        if self.config.dpop && !dpop_es256 {
            return Err(OidcError::BadResponse(
                "oidc.dpop is on, but the provider advertises no DPoP support for ES256 (dpop_signing_alg_values_supported)".into(),
            ));
        }
        if self.config.certificate_bound_tokens && extra.tls_client_certificate_bound_access_tokens != Some(true) {
            return Err(OidcError::BadResponse(
                "oidc.certificate_bound_tokens is on, but the provider does not advertise tls_client_certificate_bound_access_tokens (RFC 8705)".into(),
            ));
        }
        if par_required_by_provider && par_endpoint.is_none() {
            return Err(OidcError::BadResponse("the provider requires PAR but advertises no endpoint for it".into()));
        }
        let jwks = metadata.jwks().clone();
        let jwks_uri = metadata.jwks_uri().clone();
        let client: OidcClient = openidconnect::Client::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_auth.secret().cloned(),
        )
        .set_redirect_uri(RedirectUrl::from_url(self.config.redirect_uri.clone()))
        // Without a secret, `RequestBody` sends just `client_id` in the form, which is what
        // `private_key_jwt` needs beside the assertion.
        .set_auth_type(match self.config.client_auth {
            ClientAuth::SecretBasic(_) => AuthType::BasicAuth,
            ClientAuth::SecretPost(_)
            | ClientAuth::PrivateKeyJwt { .. }
            | ClientAuth::TlsClientAuth
            | ClientAuth::SelfSignedTlsClientAuth => AuthType::RequestBody,
        })
        .set_token_uri(token_uri.clone());
        Ok(Discovered {
            client,
            token_uri: token_uri.url().clone(),
            jwks,
            jwks_uri,
            allowed_algs,
            revocation_endpoint,
            end_session_endpoint,
            iss_parameter_required,
            par_endpoint,
            par_required_by_provider,
        })
    }

    /// With a client certificate (`oidc.client_cert_file`), the endpoints cloakroom calls are
    /// the provider's `mtls_endpoint_aliases` where it names them (RFC 8705 §5): token, PAR,
    /// revocation and userinfo. The rest (authorization, end-session) are the browser's.
    /// Returns the metadata and its extra fields, both with the aliases in place.
    fn with_mtls_aliases(&self, mut metadata: Metadata) -> Result<(Metadata, ExtraMetadata), OidcError> {
        let mut extra = metadata.additional_metadata().clone();
        let aliases = extra.mtls_endpoint_aliases.clone().filter(|_| self.config.client_certificate.is_some());
        let Some(aliases) = aliases else {
            return Ok((metadata, extra));
        };
        let bad = |name: &str, e: url::ParseError| {
            OidcError::BadResponse(format!("mtls_endpoint_aliases.{name} is not a URL: {e}"))
        };
        if let Some(token) = &aliases.token_endpoint {
            let url = openidconnect::TokenUrl::new(token.clone()).map_err(|e| bad("token_endpoint", e))?;
            metadata = metadata.set_token_endpoint(Some(url));
        }
        if let Some(userinfo) = &aliases.userinfo_endpoint {
            let url = openidconnect::UserInfoUrl::new(userinfo.clone()).map_err(|e| bad("userinfo_endpoint", e))?;
            metadata = metadata.set_userinfo_endpoint(Some(url));
        }
        for (alias, endpoint, name) in [
            (&aliases.revocation_endpoint, &mut extra.revocation_endpoint, "revocation_endpoint"),
            (
                &aliases.pushed_authorization_request_endpoint,
                &mut extra.pushed_authorization_request_endpoint,
                "pushed_authorization_request_endpoint",
            ),
        ] {
            if let Some(alias) = alias {
                Url::parse(alias).map_err(|e| bad(name, e))?;
                *endpoint = Some(alias.clone());
            }
        }
        Ok((metadata, extra))
    }

    /// Makes the provider ready without a network: fixed metadata and one Ed25519 key (`kid`
    /// "fuzz"), so fuzzing reaches token verification.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn install_keys_for_fuzzing(&self) {
        use base64::Engine;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&[1; 32]).expect("a fixed seed");
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref().to_vec();
        let jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "fuzz", "use": "sig", "alg": "EdDSA",
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
        });
        let jwks: CoreJsonWebKeySet = serde_json::from_value(serde_json::json!({ "keys": [jwk] })).expect("a JWKS");
        let issuer = &self.config.issuer;
        let metadata = Metadata::new(
            IssuerUrl::new(issuer.clone()).expect("the configured issuer"),
            openidconnect::AuthUrl::new(format!("{issuer}/auth")).expect("a URL"),
            JsonWebKeySetUrl::new(format!("{issuer}/jwks")).expect("a URL"),
            vec![openidconnect::ResponseTypes::new(vec![CoreResponseType::Code])],
            vec![CoreSubjectIdentifierType::Public],
            vec![CoreJwsSigningAlgorithm::EdDsa],
            ExtraMetadata::default(),
        )
        .set_token_endpoint(Some(openidconnect::TokenUrl::new(format!("{issuer}/token")).expect("a URL")))
        .set_jwks(jwks);
        let discovered = self.build(metadata).expect("fixed metadata builds");
        *self.discovered.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(discovered));
    }

    /// Refetches the JWKS (key rotation at the provider), at most once per interval.
    async fn refetch_jwks(&self) -> Result<Arc<Discovered>, OidcError> {
        let current = self.ready()?;
        {
            let mut last = self.last_jwks_fetch.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < JWKS_REFETCH_INTERVAL) {
                return Ok(current);
            }
            *last = Some(now);
        }
        let jwks = CoreJsonWebKeySet::fetch_async(&current.jwks_uri, &self.http)
            .await
            .map_err(|e| OidcError::Unreachable(error_chain(&e)))?;
        let refreshed = Arc::new(Discovered {
            client: current.client.clone(),
            token_uri: current.token_uri.clone(),
            jwks,
            jwks_uri: current.jwks_uri.clone(),
            allowed_algs: current.allowed_algs.clone(),
            revocation_endpoint: current.revocation_endpoint.clone(),
            end_session_endpoint: current.end_session_endpoint.clone(),
            iss_parameter_required: current.iss_parameter_required,
            par_endpoint: current.par_endpoint.clone(),
            par_required_by_provider: current.par_required_by_provider,
        });
        *self.discovered.write().unwrap_or_else(|e| e.into_inner()) = Some(refreshed.clone());
        tracing::info!("provider signing keys refetched after an unknown key id");
        Ok(refreshed)
    }

    /// The URL to send the browser to: code flow, PKCE S256, `state` and `nonce` always.
    /// `extra`: the sign-in parameters the page passed, already validated.
    pub fn authorization_url(
        &self,
        state: &str,
        nonce: &Secret,
        pkce_challenge: PkceCodeChallenge,
        extra: &[(&'static str, String)],
    ) -> Result<Url, OidcError> {
        let discovered = self.ready()?;
        let state = CsrfToken::new(state.to_string());
        let nonce = Nonce::new(nonce.expose().to_string());
        let mut request = discovered
            .client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, move || state, move || nonce)
            .set_pkce_challenge(pkce_challenge);
        // openidconnect adds `openid` itself.
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (name, value) in &self.config.extra_auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        for (name, value) in extra {
            request = request.add_extra_param(*name, value.clone());
        }
        // RFC 8707: one `resource` parameter per audience any route will need.
        for resource in &self.config.authorization_resources {
            request = request.add_extra_param("resource", resource.clone());
        }
        let (url, _, _) = request.url();
        Ok(url)
    }

    /// The scope a sign-in asks for, as sent (`openid` first, each once).
    fn asked_scope(&self) -> String {
        let mut asked = String::from("openid");
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            asked.push(' ');
            asked.push_str(scope);
        }
        asked
    }

    /// RFC 8707 parameters for a token request: the route's resource and scopes, or the
    /// sign-in's default resource (`oidc.resource`) when the route names none.
    fn audience_params(&self, audience: Option<&crate::config::Audience>) -> (Option<String>, Vec<Scope>) {
        match audience {
            Some(audience) => (audience.resource.clone(), audience.scopes.iter().cloned().map(Scope::new).collect()),
            None => (self.config.resource.clone(), Vec::new()),
        }
    }

    /// The form parameters that authenticate a token-endpoint request with `private_key_jwt`
    /// (a fresh assertion each time); none for the secret methods, which `oauth2` handles.
    fn client_assertion(&self, discovered: &Discovered) -> Result<Vec<(&'static str, String)>, OidcError> {
        let ClientAuth::PrivateKeyJwt { key, audience } = &self.config.client_auth else {
            return Ok(Vec::new());
        };
        let audience = match audience {
            AssertionAudience::Issuer => self.config.issuer.as_str(),
            AssertionAudience::TokenEndpoint => discovered.token_uri.as_str(),
        };
        let assertion = key
            .assertion(&self.config.client_id, audience, self.clock.now())
            .map_err(|e| OidcError::BadResponse(e.to_string()))?;
        Ok(vec![
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()),
            ("client_assertion", assertion),
        ])
    }

    /// RFC 9207 mix-up defence: an `iss` on the callback must name our issuer exactly, and it
    /// must be there when the provider promised to send it.
    pub fn callback_issuer_ok(&self, iss: Option<&str>) -> bool {
        match iss {
            Some(iss) => iss == self.config.issuer,
            None => !self.current().is_some_and(|d| d.iss_parameter_required),
        }
    }
}

/// Keeps trying discovery until it succeeds, backing off up to 30 s; readiness follows.
pub async fn discover_until_ready(provider: Arc<Provider>) {
    let mut delay = Duration::from_millis(250);
    loop {
        match provider.discover().await {
            Ok(()) => {
                tracing::info!(issuer = %provider.config.issuer, "provider metadata loaded");
                return;
            }
            Err(e) => {
                tracing::warn!(issuer = %provider.config.issuer, error = %e, retry_in = ?delay, "provider discovery failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// A token response's `scope`, as the space-separated text it came in.
fn join_scopes(granted: &[Scope]) -> String {
    granted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}
