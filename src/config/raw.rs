//! The file as written: serde structs with defaults and `deny_unknown_fields`.
//!
//! Nothing here is trusted yet; [`super::validate`] turns it into a [`super::Config`]. Scalar
//! non-string fields also accept strings, because environment overrides always arrive as text.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub oidc: RawOidc,
    pub session: RawSession,
    pub csrf: RawCsrf,
    pub log: RawLog,
    pub traces: RawTraces,
    pub spa: RawSpa,
    pub demo: RawDemo,
    pub routes: Vec<RawRoute>,
    /// More providers beside `[oidc]` (which is the default one), each with the same keys.
    pub providers: Vec<RawOidc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDemo {
    pub issuer_listen: Option<String>,
    pub api_listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpa {
    pub dir: Option<String>,
    pub dev_server: Option<String>,
    pub content_security_policy: String,
    /// Origins the SPA is served from besides `public_url` (a CDN on a sibling host).
    #[serde(deserialize_with = "flexible::string_list")]
    pub origins: Vec<String>,
}

impl Default for RawSpa {
    fn default() -> Self {
        Self {
            dir: None,
            dev_server: None,
            content_security_policy: crate::spa::DEFAULT_CSP.into(),
            origins: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub public_url: String,
    pub admin_listen: String,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<String>,
    pub shutdown_timeout: String,
    pub max_header_bytes: String,
    #[serde(deserialize_with = "flexible::u64")]
    pub max_connections: u64,
    #[serde(deserialize_with = "flexible::u64")]
    pub max_connections_per_client: u64,
    pub header_read_timeout: String,
    #[serde(deserialize_with = "flexible::string_list")]
    pub trusted_proxies: Vec<String>,
    pub trusted_proxy_header: String,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub hsts: String,
    pub idle_timeout: String,
    pub shutdown_delay: String,
    #[serde(deserialize_with = "flexible::u64")]
    pub worker_threads: u64,
    pub forward_auth_token: Option<String>,
    pub forward_auth_token_file: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://localhost:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            admin_token: None,
            admin_token_file: None,
            shutdown_timeout: "30s".into(),
            max_header_bytes: "64KiB".into(),
            max_connections: 10_000,
            max_connections_per_client: 256,
            header_read_timeout: "30s".into(),
            trusted_proxies: Vec::new(),
            trusted_proxy_header: "x-forwarded-for".into(),
            tls_cert_file: None,
            tls_key_file: None,
            hsts: "max-age=63072000".into(),
            idle_timeout: "60s".into(),
            shutdown_delay: "5s".into(),
            worker_threads: 0,
            forward_auth_token: None,
            forward_auth_token_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub client_auth: ClientAuthMethod,
    pub private_key_file: Option<String>,
    pub private_key_kid: Option<String>,
    pub private_key_alg: Option<String>,
    pub private_key_cert_file: Option<String>,
    pub client_assertion_audience: super::AssertionAudience,
    pub ca_file: Option<String>,
    /// Mutual TLS to the provider (RFC 8705): the certificate cloakroom presents there.
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    /// The provider binds this client's access tokens to that certificate (RFC 8705 §3).
    #[serde(deserialize_with = "flexible::bool")]
    pub certificate_bound_tokens: bool,
    #[serde(deserialize_with = "flexible::string_list")]
    pub scopes: Vec<String>,
    pub extra_auth_params: BTreeMap<String, String>,
    pub post_logout_redirect_uri: Option<String>,
    #[serde(deserialize_with = "flexible::bool")]
    pub logout_id_token_hint: bool,
    pub timeout: String,
    pub clock_skew: String,
    pub refresh_margin: String,
    pub refresh_timeout: String,
    pub refresh_retry_backoff: String,
    #[serde(deserialize_with = "flexible::string_list")]
    pub login_params: Vec<String>,
    #[serde(deserialize_with = "flexible::bool")]
    pub enforce_acr_values: bool,
    #[serde(deserialize_with = "flexible::bool")]
    pub logout_token_exp_required: bool,
    pub par: super::ParMode,
    /// The provider's id (`/bff/login?provider=`); `[oidc]`'s defaults to "default".
    pub id: Option<String>,
    /// How a sign-in chooser names it (`/bff/providers`); defaults to the id.
    pub display_name: Option<String>,
    #[serde(deserialize_with = "flexible::string_list")]
    pub user_claims: Vec<String>,
    #[serde(deserialize_with = "flexible::bool")]
    pub userinfo: bool,
    pub userinfo_interval: String,
    pub resource: Option<String>,
    #[serde(deserialize_with = "flexible::bool")]
    pub dpop: bool,
    pub profile: super::Profile,
}

impl Default for RawOidc {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            client_auth: ClientAuthMethod::ClientSecretBasic,
            private_key_file: None,
            private_key_kid: None,
            private_key_alg: None,
            private_key_cert_file: None,
            client_assertion_audience: super::AssertionAudience::Issuer,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            certificate_bound_tokens: false,
            scopes: ["openid", "profile", "email", "offline_access"].map(String::from).into(),
            extra_auth_params: BTreeMap::new(),
            post_logout_redirect_uri: None,
            logout_id_token_hint: false,
            timeout: "10s".into(),
            clock_skew: "60s".into(),
            refresh_margin: "30s".into(),
            refresh_timeout: "60s".into(),
            refresh_retry_backoff: "5m".into(),
            login_params: Vec::new(),
            enforce_acr_values: true,
            logout_token_exp_required: true,
            par: super::ParMode::Auto,
            id: None,
            display_name: None,
            user_claims: Vec::new(),
            userinfo: false,
            userinfo_interval: "15m".into(),
            resource: None,
            dpop: false,
            profile: super::Profile::None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    pub cookie_name: String,
    #[serde(deserialize_with = "flexible::string_list")]
    pub legacy_cookie_names: Vec<String>,
    pub same_site: SameSiteSetting,
    pub idle_timeout: String,
    pub absolute_timeout: String,
    #[serde(deserialize_with = "flexible::string_list")]
    pub keys: Vec<String>,
    pub keys_file: Option<String>,
    pub login_timeout: String,
    #[serde(deserialize_with = "flexible::u64")]
    pub max_pending_logins: u64,
    #[serde(deserialize_with = "flexible::u64")]
    pub max_sessions: u64,
    #[serde(deserialize_with = "flexible::u64")]
    pub max_sessions_per_user: u64,
    #[serde(deserialize_with = "flexible::bool")]
    pub allow_remember: bool,
    #[serde(deserialize_with = "flexible::bool")]
    pub clear_site_data: bool,
    pub store: StoreKind,
    pub redis_mode: RedisModeSetting,
    pub redis_url: Option<String>,
    #[serde(deserialize_with = "flexible::string_list")]
    pub redis_nodes: Vec<String>,
    pub redis_master_name: Option<String>,
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    pub redis_password_file: Option<String>,
    pub redis_ca_file: Option<String>,
    pub redis_client_cert_file: Option<String>,
    pub redis_client_key_file: Option<String>,
    pub redis_key_prefix: String,
    pub redis_connect_timeout: String,
    pub redis_command_timeout: String,
    #[serde(deserialize_with = "flexible::u64")]
    pub redis_cache_entries: u64,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            cookie_name: "__Host-Http-cloakroom".into(),
            legacy_cookie_names: vec!["__Host-cloakroom".into()],
            same_site: SameSiteSetting::Strict,
            idle_timeout: "30m".into(),
            absolute_timeout: "12h".into(),
            keys: Vec::new(),
            keys_file: None,
            login_timeout: "10m".into(),
            max_pending_logins: 100_000,
            max_sessions: 1_000_000,
            max_sessions_per_user: 50,
            allow_remember: false,
            clear_site_data: true,
            store: StoreKind::Memory,
            redis_mode: RedisModeSetting::Standalone,
            redis_url: None,
            redis_nodes: Vec::new(),
            redis_master_name: None,
            redis_username: None,
            redis_password: None,
            redis_password_file: None,
            redis_ca_file: None,
            redis_client_cert_file: None,
            redis_client_key_file: None,
            redis_key_prefix: "cloakroom:".into(),
            redis_connect_timeout: "2s".into(),
            redis_command_timeout: "1s".into(),
            redis_cache_entries: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCsrf {
    pub header: String,
}

impl Default for RawCsrf {
    fn default() -> Self {
        Self { header: "X-CSRF".into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: String,
    pub format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// `[traces]`: OpenTelemetry traces over OTLP/HTTP; off without an endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTraces {
    pub endpoint: String,
    #[serde(deserialize_with = "flexible::f64")]
    pub sample_ratio: f64,
    pub service_name: String,
    #[serde(deserialize_with = "flexible::u64")]
    pub queue_size: u64,
    pub export_timeout: String,
    pub export_interval: String,
    pub ca_file: Option<String>,
}

impl Default for RawTraces {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            sample_ratio: 1.0,
            service_name: "cloakroom".into(),
            queue_size: 2048,
            export_timeout: "10s".into(),
            export_interval: "5s".into(),
            ca_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Required; defaulted here so a missing one is reported by validation, naming the route.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub upstream: String,
    /// Empty: every method.
    #[serde(default, deserialize_with = "flexible::string_list")]
    pub methods: Vec<String>,
    /// Authorization rules on the signed-in user's claims; empty: none.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub rules_match: super::RulesMatch,
    /// A stronger or more recent sign-in this route requires.
    #[serde(default)]
    pub step_up: Option<RawStepUp>,
    #[serde(default)]
    pub token: super::TokenPolicy,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default, deserialize_with = "flexible::string_list")]
    pub scopes: Vec<String>,
    #[serde(default = "default_max_body")]
    pub max_body: String,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub client_cert_file: Option<String>,
    #[serde(default)]
    pub client_key_file: Option<String>,
    /// Who the user is, for upstreams that take no OAuth token: headers and a signed assertion.
    #[serde(default)]
    pub identity: Option<RawIdentity>,
    /// A token of its own for this route, by token exchange (RFC 8693).
    #[serde(default)]
    pub exchange: Option<RawExchange>,
    /// Send the user's token as a DPoP-bound one (RFC 9449), with a proof per call.
    #[serde(default, deserialize_with = "flexible::bool")]
    pub dpop: bool,
}

/// `[routes.exchange]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExchange {
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default, deserialize_with = "flexible::string_list")]
    pub scopes: Vec<String>,
}

/// `[routes.identity]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// Header name → claim; `None`: the `X-Auth-Request-*` set.
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub assertion: bool,
    #[serde(default)]
    pub audience: Option<String>,
    /// Whether the user's access token goes too (`false`: identity instead of the token).
    #[serde(default = "yes")]
    pub bearer: bool,
}

fn yes() -> bool {
    true
}

fn default_max_body() -> String {
    "1GiB".into()
}

fn default_connect_timeout() -> String {
    "5s".into()
}
fn default_timeout() -> String {
    "60s".into()
}

/// Deserializers that take a value either typed (from TOML) or as text (from the environment).
mod flexible {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrText {
        Bool(bool),
        Text(String),
    }

    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match BoolOrText::deserialize(d)? {
            BoolOrText::Bool(b) => Ok(b),
            BoolOrText::Text(t) => match t.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(serde::de::Error::custom(format!("expected true or false, got {other:?}"))),
            },
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => Ok(n),
            NumberOrText::Text(t) => t
                .trim()
                .replace('_', "")
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got {t:?}"))),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FloatOrText {
        Number(f64),
        Text(String),
    }

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match FloatOrText::deserialize(d)? {
            FloatOrText::Number(n) => Ok(n),
            FloatOrText::Text(t) => {
                t.trim().parse().map_err(|_| serde::de::Error::custom(format!("expected a number, got {t:?}")))
            }
        }
    }

    /// A list, or one string of comma- or whitespace-separated items (handy for an env variable):
    /// every list key of the configuration reads both, and an error shows both forms.
    pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a list of strings, like ["a", "b"], or one string "a, b" (how an environment variable gives it)"#)
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<String>, E> {
                Ok(split_list(text))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(items)
            }
        }
        d.deserialize_any(Items)
    }

    pub fn split_list(text: &str) -> Vec<String> {
        text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(String::from).collect()
    }
}

pub use flexible::split_list;

// The closed sets, as their names are written in config.toml (an unknown one is reported by
// deserialization, naming its key and the names it accepts).

/// `oidc.client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// RFC 8705 §2.1: a certificate of a CA the provider trusts, matched by its subject.
    TlsClientAuth,
    /// RFC 8705 §2.2: a self-signed certificate, matched against the client's registered keys.
    SelfSignedTlsClientAuth,
}

/// `session.same_site` (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSiteSetting {
    Strict,
    Lax,
}

impl<'de> Deserialize<'de> for SameSiteSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "strict" => Ok(SameSiteSetting::Strict),
            "lax" => Ok(SameSiteSetting::Lax),
            _ => Err(serde::de::Error::custom(format!("{text:?} is not \"strict\" or \"lax\""))),
        }
    }
}

/// `session.store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Redis,
}

/// `session.redis_mode`: how Redis is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisModeSetting {
    Standalone,
    Sentinel,
    Cluster,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[routes.step_up]`: `acr_values` (a list) and/or `max_age` (a duration).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStepUp {
    #[serde(default, deserialize_with = "flexible::string_list")]
    pub acr_values: Vec<String>,
    #[serde(default)]
    pub max_age: Option<String>,
}

/// One `[[routes.rules]]`: a claim and exactly one test of it, or the scopes the route's token
/// must have been granted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default)]
    pub claim: String,
    /// Scopes that must all be granted; empty: a claim rule.
    #[serde(default, deserialize_with = "flexible::string_list")]
    pub scope: Vec<String>,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default)]
    pub contains_any: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub contains_all: Option<Vec<serde_json::Value>>,
}
