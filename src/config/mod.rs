//! Configuration: `config.toml`, overridden by `CLOAKROOM_…` environment variables, validated once.
//!
//! Two stages, so the rest of the code never re-checks anything: [`raw`] is the file as written
//! (serde, defaults, unknown keys refused); [`Config`] is what passed [`validate`]: parsed URLs,
//! durations, keys and policies, with no `Option` left where a value is required. Every problem
//! is reported at once, each naming its key, so an operator fixes a broken file in one go.

mod check;
mod env;
mod frontends;
mod raw;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

use crate::crypto::client_key::ClientKey;
use crate::crypto::seal::KeyRing;
use cookie::SameSite;
use http::{HeaderName, HeaderValue};
use openidconnect::ClientSecret;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

pub use raw::RawConfig;

/// A validated configuration. Construct with [`Config::load`] or [`Config::from_toml`].
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub oidc: OidcConfig,
    pub session: SessionConfig,
    pub csrf: CsrfConfig,
    pub log: LogConfig,
    /// `[traces]`: OpenTelemetry export; `None` when off (the default).
    pub traces: Option<crate::telemetry::TraceExport>,
    pub spa: Option<SpaConfig>,
    /// `[spa] dev_server`: the frontend's dev server, instead of `spa.dir`.
    pub spa_dev_server: Option<(http::uri::Scheme, http::uri::Authority)>,
    /// `[spa] origins`: origins the SPA is served from besides `public_url` (serialized,
    /// `https://app.example.com`), which may call cloakroom with credentials (CORS) and be
    /// returned to after a sign-in.
    pub spa_origins: Vec<String>,
    pub demo: DemoConfig,
    pub routes: Vec<RouteConfig>,
    /// `[[providers]]`: providers beside `[oidc]`, the default one.
    pub providers: Vec<OidcConfig>,
    /// Warnings to print loudly at start-up (insecure or ephemeral settings).
    pub warnings: Vec<String>,
    /// What a reload cannot change, by key: a digest of each as written (see [`FixedAtStart`]).
    pub fixed_at_start: FixedAtStart,
    /// The file this was loaded from (a reload reads it again); `None` for text.
    pub source: Option<PathBuf>,
    /// `[[frontends]]`: more frontends, each a whole configuration chosen by its host.
    pub frontends: Vec<Config>,
}

/// The settings a running cloakroom holds in its sockets, threads or store and cannot take
/// from a reload: each key with a SHA-256 of its value as written (secrets included, never
/// kept in clear), so a reload names exactly which of them it would change.
#[derive(Debug, Clone, Default)]
pub struct FixedAtStart(pub(crate) Vec<(&'static str, [u8; 32])>);

impl FixedAtStart {
    /// The keys whose value differs in `other`.
    pub fn changed_in(&self, other: &FixedAtStart) -> Vec<&'static str> {
        self.0.iter().zip(&other.0).filter(|(a, b)| a.1 != b.1).map(|(a, _)| a.0).collect()
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The origin browsers use, e.g. `https://app.example.com` (no path, no trailing slash).
    pub public_origin: String,
    /// `public_url`'s host (and port when not the scheme's default): the `X-Forwarded-Host`
    /// upstreams see, whatever `Host` the request carried.
    pub public_host: http::HeaderValue,
    pub admin_listen: SocketAddr,
    /// The bearer secret the admin listener's session endpoints require (`admin_token` or
    /// `admin_token_file`). Without one they answer only on a loopback admin listener.
    pub admin_token: Option<crate::secret::Secret>,
    pub shutdown_timeout: Duration,
    /// After SIGTERM, how long to go on accepting while readiness is already false.
    pub shutdown_delay: Duration,
    /// Largest request head accepted (then 431).
    pub max_header_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Connections one address may hold at once (0: no cap); trusted proxies are exempt.
    pub max_connections_per_client: usize,
    /// Time a client has to send a request head (slow-loris guard).
    pub header_read_timeout: Duration,
    /// Peers whose `Forwarded`/`X-Forwarded-*` headers are believed (load balancers).
    pub trusted_proxies: Vec<crate::forwarded::Cidr>,
    /// The one forwarding header `trusted_proxies` write (the other is ignored: a client may
    /// have written it).
    pub trusted_proxy_header: crate::forwarded::ForwardingHeader,
    /// Serve TLS with this certificate (reloaded on SIGHUP); `None`: plain HTTP (TLS ends at a
    /// load balancer).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// `Strict-Transport-Security` for responses to browsers on https; `None` when disabled.
    pub hsts: Option<HeaderValue>,
    /// A connection with no request in flight and no bytes moving for this long is closed.
    pub idle_timeout: Duration,
    /// Threads serving requests; `None`: one per CPU available to the process.
    pub worker_threads: Option<std::num::NonZeroUsize>,
    /// The secret a gateway's authentication subrequests to `/bff/forward-auth` carry (from
    /// `trusted_proxies` only); `None`: the endpoint does not answer.
    pub forward_auth: Option<crate::secret::Secret>,
}

/// How cloakroom authenticates to the provider's token and revocation endpoints, with the
/// credential each method needs.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic`: the secret in an HTTP Basic header.
    SecretBasic(ClientSecret),
    /// `client_secret_post`: the secret in the form body.
    SecretPost(ClientSecret),
    /// `private_key_jwt` (RFC 7523): a signed assertion per request; no shared secret at all.
    PrivateKeyJwt { key: Arc<ClientKey>, audience: AssertionAudience },
    /// `tls_client_auth` (RFC 8705 §2.1): the TLS client certificate (`oidc.client_cert_file`),
    /// issued by a CA the provider trusts, is the credential; the form carries `client_id` only.
    TlsClientAuth,
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): the same, with a self-signed certificate
    /// the provider knows from the client's registered keys.
    SelfSignedTlsClientAuth,
}

impl ClientAuth {
    pub fn secret(&self) -> Option<&ClientSecret> {
        match self {
            ClientAuth::SecretBasic(secret) | ClientAuth::SecretPost(secret) => Some(secret),
            ClientAuth::PrivateKeyJwt { .. } | ClientAuth::TlsClientAuth | ClientAuth::SelfSignedTlsClientAuth => None,
        }
    }
}

/// The `aud` of a client assertion. Current specifications want the issuer identifier; some
/// providers (Microsoft Entra ID, Okta) still insist on the token endpoint's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionAudience {
    #[default]
    Issuer,
    TokenEndpoint,
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as configured: issuer comparison is by string, so a trailing slash matters.
    pub issuer: String,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub extra_auth_params: Vec<(String, String)>,
    pub redirect_uri: Url,
    pub post_logout_redirect_uri: Url,
    /// Opt-in: put the ID token in the end-session URL the browser navigates to.
    pub logout_id_token_hint: bool,
    pub timeout: Duration,
    /// TLS for calls to the provider (system roots, or `oidc.ca_file`; with
    /// `oidc.client_cert_file`, presenting that certificate).
    pub tls: Arc<rustls::ClientConfig>,
    /// The certificate `tls` presents (DER of its leaf), when there is one: then the provider's
    /// `mtls_endpoint_aliases` are used (RFC 8705 §5).
    pub client_certificate: Option<Arc<[u8]>>,
    /// The provider binds this client's access tokens to `client_certificate` (RFC 8705 §3):
    /// every route carrying them presents the same certificate.
    pub certificate_bound_tokens: bool,
    pub clock_skew: Duration,
    /// Refresh an access token this long before it expires.
    pub refresh_margin: Duration,
    /// How long a refresh waits for the provider's answer once sent (longer than `timeout`:
    /// callers holding a valid token do not wait for it, and an answer given up on is a
    /// refresh token that may be spent).
    pub refresh_timeout: Duration,
    /// After a refresh whose answer never came, the session's refresh token is not sent again
    /// for this long (it may already be rotated at the provider).
    pub refresh_retry_backoff: Duration,
    /// Sign-in parameters `/bff/login` passes on from the page (`prompt`, `max_age`, …).
    pub login_params: Vec<String>,
    /// When a sign-in asked for `acr_values`, the ID token's `acr` must be one of them.
    pub enforce_acr_values: bool,
    /// Pushed Authorization Requests (RFC 9126): when to use them.
    pub par: ParMode,
    /// Which provider this is (`/bff/login?provider=`; `[oidc]`'s is "default" unless named).
    pub id: String,
    /// How a sign-in chooser names it.
    pub display_name: String,
    /// The claims `/bff/user` returns to the page; empty: all (rules always see all).
    pub user_claims: Vec<String>,
    /// Fetch the userinfo endpoint at sign-in and merge its claims.
    pub userinfo: bool,
    /// Fetch it again on a refresh when the last fetch is this old; `None`: at sign-in only.
    pub userinfo_interval: Option<Duration>,
    /// Back-channel logout tokens must carry `exp` (Back-Channel Logout 1.0); off only for
    /// providers of its drafts.
    pub logout_token_exp_required: bool,
    /// RFC 8707 audience of the sign-in's own access token (used by routes without `resource`).
    pub resource: Option<String>,
    /// Derived: every resource the authorization request names (the default and each route's).
    pub authorization_resources: Vec<String>,
    /// DPoP (RFC 9449): each session gets a key of its own, and its tokens are bound to it.
    pub dpop: bool,
    /// The security profile this provider's configuration keeps to (`oidc.profile`).
    pub profile: Profile,
}

#[derive(Clone)]
pub struct SessionConfig {
    pub cookie_name: String,
    /// Earlier names of the session cookie, still read and renamed on the next answer.
    pub legacy_cookie_names: Vec<String>,
    pub same_site: SameSite,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub keys: KeyRing,
    /// True when no key was configured and a random one was made for this process.
    pub ephemeral_keys: bool,
    pub login_timeout: Duration,
    pub max_pending_logins: u64,
    pub max_sessions: u64,
    /// Sessions one user (`sub`) may hold at once; a sign-in past it ends that user's oldest.
    pub max_sessions_per_user: usize,
    /// Whether `/bff/login?remember=1` may ask for a persistent cookie.
    pub allow_remember: bool,
    /// Whether logout sends `Clear-Site-Data: "cookies"` (clears the whole registrable domain).
    pub clear_site_data: bool,
    pub store: StoreSettings,
}

/// `[session] store`: where sessions live.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// In this process (the default): one instance, or sticky sessions.
    Memory,
    /// Redis or Valkey, shared by every replica.
    Redis(Box<RedisSettings>),
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie_name", &self.cookie_name)
            .field("same_site", &self.same_site)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_timeout", &self.absolute_timeout)
            .field("keys", &self.keys)
            .field("ephemeral_keys", &self.ephemeral_keys)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct CsrfConfig {
    pub header: HeaderName,
}

#[derive(Debug, Clone)]
pub struct SpaConfig {
    /// Canonical directory the SPA's files are served from.
    pub dir: std::path::PathBuf,
    pub content_security_policy: http::HeaderValue,
}

/// DEVELOPMENT ONLY: the demo's identity provider and API (a build with `--features demo`).
#[derive(Debug, Clone, Default)]
pub struct DemoConfig {
    pub issuer_listen: Option<SocketAddr>,
    pub api_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// Which token, if any, a route attaches upstream (`token = "user"`, `"user-or-none"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenPolicy {
    /// A session is required; its access token is attached.
    #[default]
    User,
    /// The access token is attached when there is a session; otherwise forwarded without one.
    UserOrNone,
    /// Forwarded as is (still CSRF-checked, still stripped of cloakroom's cookies).
    None,
    /// cloakroom's own client-credentials token, shared by all callers; no session needed.
    Client,
    /// The user's token when there is a session, otherwise cloakroom's client token.
    UserOrClient,
}

impl TokenPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPolicy::User => "user",
            TokenPolicy::UserOrNone => "user-or-none",
            TokenPolicy::None => "none",
            TokenPolicy::Client => "client",
            TokenPolicy::UserOrClient => "user-or-client",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Path prefix, starting and ending with `/`.
    pub prefix: String,
    /// `scheme://authority` of the upstream.
    pub upstream_origin: http::uri::Scheme,
    pub upstream_authority: http::uri::Authority,
    /// Upstream base path, ending with `/`; the request path after `prefix` is appended.
    pub upstream_path: String,
    pub policy: TokenPolicy,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// RFC 8707: the audience this route's token must be for, and the scopes to ask for it.
    pub audience: Option<Audience>,
    /// Largest request body accepted on this route (then 413).
    pub max_body: u64,
    /// TLS towards the upstream: its CAs, and a client certificate for mutual TLS.
    pub tls: Arc<rustls::ClientConfig>,
    /// The client certificate `tls` presents (DER of its leaf), when there is one.
    pub client_certificate: Option<Arc<[u8]>>,
    /// The methods this route forwards; `None`: every method (but `CONNECT` and `TRACE`, which
    /// no route forwards).
    pub methods: Option<MethodAllowlist>,
    /// Who may call this route, by the signed-in user's claims; `None`: any signed-in user.
    pub rules: Option<RouteRules>,
    /// How strong and how recent the sign-in must be (`[routes.step_up]`); `None`: any.
    pub step_up: Option<StepUp>,
    /// Who the user is, for the upstream (`[routes.identity]`); `None`: nothing but the token.
    pub identity: Option<IdentityConfig>,
    /// The token this route carries is the session's, exchanged (RFC 8693) for this.
    pub exchange: Option<Exchange>,
    /// The user's token goes as `Authorization: DPoP`, with a fresh proof of the session's key.
    pub dpop: bool,
}

/// `[routes.exchange]`: what the session's access token is exchanged for (RFC 8693).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The logical name of the target service (`audience`).
    pub audience: Option<String>,
    /// Its location (`resource`, an absolute URI).
    pub resource: Option<String>,
    pub scopes: Vec<String>,
    /// Where the session keeps the exchanged token: one entry per distinct exchange (never a
    /// resource URI, which holds no space).
    pub key: String,
}

/// The headers a route sends the user's identity in when `[routes.identity]` names none: the
/// set oauth2-proxy sends (`X-Auth-Request-*`), which upstreams behind it already read.
pub const DEFAULT_IDENTITY_HEADERS: [(&str, &str); 4] = [
    ("x-auth-request-user", "sub"),
    ("x-auth-request-email", "email"),
    ("x-auth-request-preferred-username", "preferred_username"),
    ("x-auth-request-groups", "groups"),
];

/// The header the identity assertion travels in (Pomerium's `X-Pomerium-Jwt-Assertion`, ours).
pub const ASSERTION_HEADER: &str = "x-cloakroom-assertion";

/// `[routes.identity]`: the signed-in user's claims as headers, and a signed assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Header → the claim it carries, in the order configured.
    pub headers: Vec<(HeaderName, String)>,
    /// The assertion's `aud`, when the route sends one.
    pub assertion: Option<String>,
    /// Whether the user's access token goes too.
    pub bearer: bool,
}

/// A route's step-up requirement (RFC 9470 in spirit): the session's `acr` in a set, and/or its
/// `auth_time` at most `max_age` ago. A session that falls short gets `401 step_up_required`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    /// Accepted authentication context classes; empty: any.
    pub acr_values: Vec<String>,
    /// Seconds since the user last authenticated at the provider.
    pub max_age: Option<u64>,
}

/// A route's authorization rules (`[[routes.rules]]`), all or any of which must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRules {
    pub rules: Vec<Rule>,
    pub matching: RulesMatch,
    /// The claims the rules read, sorted, each once: a claim rule names its claim by index here,
    /// so that one pass over the session's claims serves every rule.
    pub claims: Vec<String>,
}

/// Most rules on one route, and most values in one test: a check keeps what it saw of each rule
/// in a fixed array of bit sets, so that it allocates nothing.
pub const MAX_RULES: usize = 32;
pub const MAX_RULE_VALUES: usize = 64;

/// `rules_match`: whether every rule must hold, or one is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RulesMatch {
    #[default]
    All,
    Any,
}

/// One test of one claim of the signed-in user (string, number, boolean or array claims), or of
/// the scope granted to the sign-in's access token.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub on: RuleSubject,
    pub test: ClaimTest,
    /// The test's values as `serde_json` writes them: what a claim rule compares a session
    /// record's JSON text with ([`crate::session::claims`]).
    pub json: Vec<String>,
}

impl Rule {
    pub fn new(on: RuleSubject, test: ClaimTest) -> Self {
        let json = test.values().iter().map(serde_json::Value::to_string).collect();
        Rule { on, test, json }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSubject {
    /// A claim, by its index in [`RouteRules::claims`].
    Claim(usize),
    /// The granted scope (its space-separated scope tokens).
    Scope,
}

/// What a rule asks of the values it reads: strings, numbers or booleans (at most
/// [`MAX_RULE_VALUES`]); a claim's value is compared as it is, without coercion.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimTest {
    /// The claim is this value (an array claim: holds it).
    Equals(serde_json::Value),
    /// The claim (or an element of an array claim) is one of these.
    ContainsAny(Vec<serde_json::Value>),
    /// An array claim holds every one of these (a single-valued claim: the only one).
    ContainsAll(Vec<serde_json::Value>),
}

impl ClaimTest {
    pub fn values(&self) -> &[serde_json::Value] {
        match self {
            ClaimTest::Equals(value) => std::slice::from_ref(value),
            ClaimTest::ContainsAny(values) | ClaimTest::ContainsAll(values) => values,
        }
    }
}

/// One authentication context class cloakroom may send a provider (a route's `step_up`, a
/// page's `acr_values`, an upstream's RFC 9470 challenge): visible ASCII, no quotes or
/// backslashes, at most 256 bytes.
pub fn acr_value_ok(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && value.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// `acr_values` as sent: such values separated by single spaces, at most 512 bytes in all.
pub fn acr_values_ok(value: &str) -> bool {
    value.len() <= 512 && value.split(' ').all(acr_value_ok)
}

/// The largest `max_age` (seconds) cloakroom sends a provider: ten years.
pub const MAX_AGE_LIMIT: u64 = 10 * 365 * 86_400;

/// The sign-in parameters `oidc.login_params` may allow the page to pass, as providers spell them.
pub const LOGIN_PARAM_NAMES: [&str; 5] = ["prompt", "max_age", "acr_values", "login_hint", "ui_locales"];

/// A route's methods, and the `Allow` header a refusal carries.
#[derive(Debug, Clone)]
pub struct MethodAllowlist {
    pub methods: Vec<http::Method>,
    pub allow: http::HeaderValue,
}

impl MethodAllowlist {
    pub fn permits(&self, method: &http::Method) -> bool {
        self.methods.contains(method)
    }
}

/// An RFC 8707 resource indicator and the scopes requested with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Audience {
    /// `None` only for a `client` route asking for scopes alone.
    pub resource: Option<String>,
    pub scopes: Vec<String>,
}

/// One problem with the configuration, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem{}):", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads `path`, applies the process environment and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: "(file)".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        let mut config = Self::from_toml(&text, std::env::vars())?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses TOML text, applies the given `CLOAKROOM_…` variables, and validates.
    pub fn from_toml<I>(text: &str, env: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigErrors(vec![ConfigError {
                key: "(file)".into(),
                message: format!("not valid TOML: {}", e.message()),
            }])
        })?;
        let mut errors: Vec<ConfigError> = env::apply_overrides(&mut table, env)
            .into_iter()
            .map(|(key, message)| ConfigError { key, message })
            .collect();
        let frontends = frontends::split(&mut table, &mut errors);
        let raw = validate::deserialize_sections(table, &mut errors);
        let mut config = validate::validate(raw, &mut errors);
        for (index, table) in frontends {
            let frontend = frontends::validate_one(index, table, &mut errors);
            if let (Some(config), Some(frontend)) = (config.as_mut(), frontend) {
                let hosts = std::iter::once(&config.server.public_host)
                    .chain(config.frontends.iter().map(|f| &f.server.public_host));
                let taken = hosts
                    .into_iter()
                    .any(|host| host.as_bytes().eq_ignore_ascii_case(frontend.server.public_host.as_bytes()));
                if taken {
                    errors.push(ConfigError {
                        key: format!("frontends[{index}].public_url"),
                        message: "names a host another frontend has: frontends are chosen by host".into(),
                    });
                }
                config.frontends.push(frontend);
            }
        }
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// Where and how to reach Redis. `Debug` leaves out URLs and credentials.
#[derive(Clone)]
pub struct RedisSettings {
    pub topology: RedisTopology,
    /// A private CA and/or a client certificate (mutual TLS), for `rediss://` connections to
    /// data nodes and sentinels alike; `None`: the system trust store, no client certificate.
    pub tls: Option<RedisTls>,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// How many sessions each replica keeps a copy of, kept true by Redis's invalidation pushes
    /// (standalone only); 0: none, every call reads Redis.
    pub cache_entries: usize,
}

impl RedisSettings {
    /// One Redis at `url`, no extra TLS settings (what tests and simple setups use).
    pub fn standalone(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        RedisSettings {
            topology: RedisTopology::Standalone { url: url.into() },
            tls: None,
            key_prefix: key_prefix.into(),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(1),
            cache_entries: 10_000,
        }
    }
}

/// `oidc.par`: when sign-ins push their authorization request (RFC 9126).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParMode {
    /// When the provider advertises an endpoint for it.
    #[default]
    Auto,
    /// Always: a provider without it is not ready.
    Required,
    /// Never, unless the provider requires it.
    Off,
}

/// `oidc.profile`: a security profile the provider's configuration must keep to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// No profile beyond cloakroom's own defaults.
    #[default]
    None,
    /// The FAPI 2.0 Security Profile: PAR, PKCE S256, `private_key_jwt`, sender-constrained
    /// tokens (DPoP), `iss` in the authorization response, PS256/ES256/EdDSA only, `code` only.
    Fapi2,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::Fapi2 => "fapi2",
        }
    }
}

/// The signature algorithms FAPI 2.0 allows (§5.4.1): ID tokens, client assertions, proofs.
pub const FAPI2_ALGS: [&str; 3] = ["PS256", "ES256", "EdDSA"];

/// How Redis is deployed (`session.redis_mode`).
#[derive(Clone)]
pub enum RedisTopology {
    /// One server (or a managed endpoint that fails over behind one address).
    Standalone { url: String },
    /// A primary monitored by Sentinel: the sentinels are asked where it is, again after a
    /// failover. `auth` is for the data nodes (the sentinels' own is in their URLs).
    Sentinel { sentinels: Vec<String>, master_name: String, auth: RedisAuth },
    /// Redis Cluster, from seed nodes; slot redirects and topology changes are followed.
    Cluster { nodes: Vec<String>, auth: RedisAuth },
}

/// Credentials for data nodes (ACL username, password), when not in their URLs.
#[derive(Clone, Default)]
pub struct RedisAuth {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// PEM bytes, read and checked at start-up.
#[derive(Clone)]
pub struct RedisTls {
    pub ca: Option<Vec<u8>>,
    /// Certificate chain and private key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("cache_entries", &self.cache_entries)
            .finish_non_exhaustive()
    }
}
