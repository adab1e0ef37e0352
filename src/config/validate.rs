//! From [`RawConfig`] to [`Config`]: every check, every error collected, each naming its key.

use super::raw::{RawConfig, split_list};
use super::*;
use crate::crypto::client_key::KeyError;
use crate::crypto::seal::MasterKey;
use toml::{Table, Value};

/// Deserializes the whole tree; on a bad key, records it, drops it (so its default applies)
/// and tries again, so one run reports every type error and unknown key, not just the first.
pub(super) fn deserialize_sections(mut table: Table, errors: &mut Vec<ConfigError>) -> RawConfig {
    for _ in 0..256 {
        let attempt: Result<RawConfig, _> = serde_path_to_error::deserialize(Value::Table(table.clone()));
        match attempt {
            Ok(raw) => return raw,
            Err(e) => {
                let key = e.path().to_string();
                errors.push(ConfigError { key: key.clone(), message: e.inner().to_string() });
                if !remove_path(&mut table, e.path()) {
                    break;
                }
            }
        }
    }
    RawConfig::default()
}

fn remove_path(table: &mut Table, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node: &mut Value = match parents.first() {
        Some(Segment::Map { key }) => match table.get_mut(key) {
            Some(v) => v,
            None => return false,
        },
        Some(_) => return false,
        None => {
            return match last {
                Segment::Map { key } => table.remove(key).is_some(),
                _ => false,
            };
        }
    };
    for segment in &parents[1..] {
        node = match (segment, node) {
            (Segment::Map { key }, Value::Table(t)) => match t.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, Value::Table(t)) => t.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
            a[*index] = Value::Table(Table::new());
            true
        }
        _ => false,
    }
}

struct Check<'a> {
    errors: &'a mut Vec<ConfigError>,
}

impl Check<'_> {
    fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { key: key.into(), message: message.into() });
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        match self.duration_or_zero(key, text) {
            Some(d) if !d.is_zero() => d,
            Some(_) => {
                self.fail(key, "must be greater than zero");
                Duration::from_secs(1)
            }
            None => Duration::from_secs(1),
        }
    }

    /// A duration where "0s" means "none"; `None` (reported) when it does not parse.
    fn duration_or_zero(&mut self, key: &str, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.fail(key, format!("{text:?} is not a duration like \"30s\", \"10m\" or \"12h\" ({e})"));
                None
            }
        }
    }

    /// A size like "64KiB", "10MB", "1GiB" or a plain number of bytes.
    fn size(&mut self, key: &str, text: &str) -> u64 {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => Some(1),
            "kb" => Some(1_000),
            "kib" | "k" => Some(1 << 10),
            "mb" => Some(1_000_000),
            "mib" | "m" => Some(1 << 20),
            "gb" => Some(1_000_000_000),
            "gib" | "g" => Some(1 << 30),
            _ => None,
        };
        match (number.parse::<u64>(), factor) {
            (Ok(n), Some(f)) if n > 0 => n.saturating_mul(f),
            _ => {
                self.fail(key, format!("{text:?} is not a size like \"64KiB\", \"10MB\" or \"1GiB\""));
                1
            }
        }
    }

    fn socket_addr(&mut self, key: &str, text: &str) -> SocketAddr {
        text.trim().parse().unwrap_or_else(|_| {
            self.fail(key, format!("{text:?} is not an address like \"127.0.0.1:8080\""));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn url(&mut self, key: &str, text: &str) -> Option<Url> {
        if text.trim().is_empty() {
            self.fail(key, "is required");
            return None;
        }
        match Url::parse(text.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
            Ok(_) => {
                self.fail(key, format!("{text:?} must be an http(s) URL with a host"));
                None
            }
            Err(e) => {
                self.fail(key, format!("{text:?} is not a URL ({e})"));
                None
            }
        }
    }

    /// Plain http is only for loopback development: browsers treat those as secure contexts,
    /// so `Secure` cookies still work, and nothing crosses a network in the clear.
    fn require_https_unless_loopback(&mut self, key: &str, url: &Url) {
        if url.scheme() == "http" && !is_loopback(url) {
            self.fail(key, format!("{url} must use https (plain http is accepted only for localhost/127.0.0.1/[::1])"));
        }
    }

    /// RFC 8707 §2: an absolute URI without a fragment.
    fn resource(&mut self, key: &str, text: &str) {
        match Url::parse(text) {
            Ok(url) if url.fragment().is_none() => {}
            Ok(_) => self.fail(key, format!("{text:?} must not carry a fragment (RFC 8707)")),
            Err(_) => self.fail(key, format!("{text:?} is not an absolute URI (RFC 8707 resource indicator)")),
        }
    }

    fn secret(&mut self, key: &str, inline: Option<String>, file: Option<String>) -> Option<String> {
        match (inline.filter(|s| !s.is_empty()), file.filter(|s| !s.is_empty())) {
            (Some(_), Some(_)) => {
                self.fail(key, format!("set either {key} or {key}_file, not both"));
                None
            }
            (Some(value), None) => Some(value),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => {
                    self.fail(format!("{key}_file"), format!("cannot read {path}: {e}"));
                    None
                }
            },
            (None, None) => None,
        }
    }
}

/// `oidc.client_auth` and the credential it needs: a secret, or a private key (and never both,
/// so a leftover secret cannot quietly stay in use).
fn client_auth(check: &mut Check, oidc: &super::raw::RawOidc) -> Option<ClientAuth> {
    let secret = check.secret("oidc.client_secret", oidc.client_secret.clone(), oidc.client_secret_file.clone());
    let method = oidc.client_auth.as_str();
    if method != "private_key_jwt" {
        for (key, value) in [
            ("oidc.private_key_file", &oidc.private_key_file),
            ("oidc.private_key_kid", &oidc.private_key_kid),
            ("oidc.private_key_alg", &oidc.private_key_alg),
            ("oidc.private_key_cert_file", &oidc.private_key_cert_file),
        ] {
            if value.is_some() {
                check.fail(key, "is only used with client_auth = \"private_key_jwt\"");
            }
        }
    }
    let secret_required = "is required (cloakroom is a confidential client): set client_secret, client_secret_file or CLOAKROOM_OIDC__CLIENT_SECRET, or use client_auth = \"private_key_jwt\"";
    match method {
        "client_secret_basic" | "client_secret_post" => {
            let Some(secret) = secret else {
                check.fail("oidc.client_secret", secret_required);
                return None;
            };
            let secret = ClientSecret::new(secret);
            Some(if method == "client_secret_basic" {
                ClientAuth::SecretBasic(secret)
            } else {
                ClientAuth::SecretPost(secret)
            })
        }
        "private_key_jwt" => {
            if secret.is_some() {
                check.fail("oidc.client_secret", "must not be set with client_auth = \"private_key_jwt\"");
            }
            let audience = match oidc.client_assertion_audience.as_str() {
                "issuer" => AssertionAudience::Issuer,
                "token_endpoint" => AssertionAudience::TokenEndpoint,
                other => {
                    check.fail(
                        "oidc.client_assertion_audience",
                        format!("{other:?} is not one of \"issuer\", \"token_endpoint\""),
                    );
                    return None;
                }
            };
            let Some(path) = oidc.private_key_file.as_deref().filter(|p| !p.is_empty()) else {
                check.fail("oidc.private_key_file", "is required with client_auth = \"private_key_jwt\"");
                return None;
            };
            let pem = match std::fs::read(path) {
                Ok(pem) => pem,
                Err(e) => {
                    check.fail("oidc.private_key_file", format!("cannot read {path}: {e}"));
                    return None;
                }
            };
            let key = ClientKey::from_pem(&pem, oidc.private_key_alg.as_deref(), oidc.private_key_kid.clone());
            let key = match (key, oidc.private_key_cert_file.as_deref()) {
                (Ok(key), Some(cert_path)) => match std::fs::read(cert_path) {
                    Ok(cert) => key.with_certificate(&cert).map_err(|e| {
                        check.fail("oidc.private_key_cert_file", format!("{cert_path}: {e}"));
                    }),
                    Err(e) => {
                        check.fail("oidc.private_key_cert_file", format!("cannot read {cert_path}: {e}"));
                        return None;
                    }
                },
                (key, _) => key.map_err(|e| {
                    let key = match e {
                        KeyError::Algorithm(_) => "oidc.private_key_alg",
                        KeyError::Key(_) => "oidc.private_key_file",
                    };
                    check.fail(key, format!("{path}: {e}"));
                }),
            };
            key.ok().map(|key| ClientAuth::PrivateKeyJwt { key: Arc::new(key), audience })
        }
        other => {
            check.fail(
                "oidc.client_auth",
                format!("{other:?} is not one of \"client_secret_basic\", \"client_secret_post\", \"private_key_jwt\""),
            );
            if secret.is_none() && oidc.private_key_file.is_none() {
                check.fail("oidc.client_secret", secret_required);
            }
            None
        }
    }
}

impl Check<'_> {
    /// Outgoing TLS for `section`: `ca_file`, and a client certificate given as both files.
    fn client_tls(
        &mut self,
        section: &str,
        ca_file: Option<&str>,
        cert_file: Option<&str>,
        key_file: Option<&str>,
    ) -> Arc<rustls::ClientConfig> {
        let client_cert = match (cert_file, key_file) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(_), None) => {
                self.fail(format!("{section}.client_key_file"), "is required with client_cert_file");
                None
            }
            (None, Some(_)) => {
                self.fail(format!("{section}.client_cert_file"), "is required with client_key_file");
                None
            }
        };
        let files = crate::tls::ClientTlsFiles { ca_file: ca_file.map(PathBuf::from), client_cert };
        match crate::tls::client_config(&files) {
            Ok(config) => config,
            Err(e) => {
                let key = match e {
                    crate::tls::ClientTlsError::CaFile(_) => "ca_file",
                    crate::tls::ClientTlsError::ClientCert(_) => "client_cert_file",
                };
                self.fail(format!("{section}.{key}"), e.to_string());
                crate::tls::system_client_config()
            }
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        // Non-special schemes (redis://) leave IP addresses as opaque host names.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Authorization-request parameters cloakroom sets itself; config must not override them.
const RESERVED_AUTH_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "request",
    "request_uri",
];

pub(super) fn validate(raw: RawConfig, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let mut check = Check { errors };
    let mut warnings = Vec::new();

    // [server]
    let listen = check.socket_addr("server.listen", &raw.server.listen);
    let admin_listen = check.socket_addr("server.admin_listen", &raw.server.admin_listen);
    let shutdown_timeout = check.duration("server.shutdown_timeout", &raw.server.shutdown_timeout);
    let shutdown_delay =
        check.duration_or_zero("server.shutdown_delay", &raw.server.shutdown_delay).unwrap_or(Duration::ZERO);
    let header_read_timeout = check.duration("server.header_read_timeout", &raw.server.header_read_timeout);
    let max_header_bytes = check.size("server.max_header_bytes", &raw.server.max_header_bytes);
    if max_header_bytes < 8192 {
        check.fail("server.max_header_bytes", "must be at least 8KiB (the HTTP/1 parser's minimum)");
    }
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.server.trusted_proxies.iter().enumerate() {
        match text.parse::<crate::forwarded::Cidr>() {
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(e) => check.fail(format!("server.trusted_proxies[{i}]"), e),
        }
    }
    let trusted_proxy_header = raw
        .server
        .trusted_proxy_header
        .parse::<crate::forwarded::ForwardingHeader>()
        .map_err(|e| check.fail("server.trusted_proxy_header", e))
        .unwrap_or_default();
    let tls = match (raw.server.tls_cert_file.as_deref(), raw.server.tls_key_file.as_deref()) {
        (None, None) => None,
        (Some(_), None) => {
            check.fail("server.tls_key_file", "is required with server.tls_cert_file");
            None
        }
        (None, Some(_)) => {
            check.fail("server.tls_cert_file", "is required with server.tls_key_file");
            None
        }
        (Some(cert), Some(key)) => match crate::tls::ServerTls::load(Path::new(cert), Path::new(key)) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(e) => {
                check.fail("server.tls_cert_file", e);
                None
            }
        },
    };
    let hsts = match raw.server.hsts.trim() {
        "" => None,
        value if value.to_ascii_lowercase().starts_with("max-age=") => match HeaderValue::try_from(value) {
            Ok(value) => Some(value),
            Err(_) => {
                check.fail("server.hsts", "is not a valid header value");
                None
            }
        },
        _ => {
            check.fail(
                "server.hsts",
                "must start with \"max-age=\" (e.g. \"max-age=63072000\"), or be \"\" to send none",
            );
            None
        }
    };
    let connection_idle_timeout = check.duration("server.idle_timeout", &raw.server.idle_timeout);
    if raw.server.worker_threads > 1024 {
        check.fail("server.worker_threads", "must be at most 1024 (0: one per available CPU)");
    }
    if raw.server.max_connections == 0 {
        check.fail("server.max_connections", "must be greater than zero");
    }
    let public_url = check.url("server.public_url", &raw.server.public_url);
    if let Some(url) = &public_url {
        check.require_https_unless_loopback("server.public_url", url);
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            check.fail(
                "server.public_url",
                "must be an origin only (scheme, host, port), without path, query or credentials",
            );
        }
    }
    let public_origin = public_url.as_ref().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let public_host = public_url
        .as_ref()
        .and_then(|u| {
            let host = u.host_str()?;
            let authority = match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            };
            http::HeaderValue::try_from(authority).ok()
        })
        .unwrap_or_else(|| http::HeaderValue::from_static("localhost"));

    // [oidc]
    let issuer = check.url("oidc.issuer", &raw.oidc.issuer);
    if let Some(url) = &issuer {
        check.require_https_unless_loopback("oidc.issuer", url);
    }
    if raw.oidc.client_id.trim().is_empty() {
        check.fail("oidc.client_id", "is required");
    }
    let client_auth = client_auth(&mut check, &raw.oidc);
    if !raw.oidc.scopes.iter().any(|s| s == "openid") {
        check.fail("oidc.scopes", "must include \"openid\"");
    }
    for name in raw.oidc.extra_auth_params.keys() {
        if RESERVED_AUTH_PARAMS.contains(&name.as_str()) {
            check.fail(format!("oidc.extra_auth_params.{name}"), "is set by cloakroom itself and cannot be overridden");
        }
    }
    let redirect_uri = public_url.as_ref().and_then(|u| u.join("/bff/callback").ok());
    let post_logout_redirect_uri = match raw.oidc.post_logout_redirect_uri.as_deref() {
        Some(text) => check.url("oidc.post_logout_redirect_uri", text),
        None => public_url.clone(),
    };
    let oidc_timeout = check.duration("oidc.timeout", &raw.oidc.timeout);
    let oidc_tls = check.client_tls("oidc", raw.oidc.ca_file.as_deref(), None, None);
    let clock_skew = check.duration("oidc.clock_skew", &raw.oidc.clock_skew);
    let refresh_margin = check.duration("oidc.refresh_margin", &raw.oidc.refresh_margin);
    let refresh_timeout = check.duration("oidc.refresh_timeout", &raw.oidc.refresh_timeout);
    let refresh_retry_backoff = check.duration("oidc.refresh_retry_backoff", &raw.oidc.refresh_retry_backoff);
    let default_resource = raw.oidc.resource.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(String::from);
    if let Some(resource) = &default_resource {
        check.resource("oidc.resource", resource);
    }
    if raw.oidc.logout_id_token_hint {
        warnings.push("oidc.logout_id_token_hint = true: the ID token is sent to the browser in the logout URL (the one place a token crosses to the browser)".into());
    }

    // [session]
    let cookie_name = raw.session.cookie_name.trim().to_string();
    if !cookie_name.starts_with("__Host-") {
        check.fail(
            "session.cookie_name",
            "must start with \"__Host-\" (binds the cookie to this origin: Secure, Path=/, no Domain)",
        );
    } else if cookie_name.len() == "__Host-".len()
        || !cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        check.fail("session.cookie_name", "must be \"__Host-\" followed by letters, digits, '-', '_' or '.'");
    }
    let same_site = match raw.session.same_site.to_ascii_lowercase().as_str() {
        "strict" => SameSite::Strict,
        "lax" => SameSite::Lax,
        other => {
            check.fail("session.same_site", format!("{other:?} is not \"strict\" or \"lax\""));
            SameSite::Strict
        }
    };
    let idle_timeout = check.duration("session.idle_timeout", &raw.session.idle_timeout);
    let absolute_timeout = check.duration("session.absolute_timeout", &raw.session.absolute_timeout);
    if idle_timeout > absolute_timeout {
        check.fail("session.idle_timeout", "must not be longer than session.absolute_timeout");
    }
    let login_timeout = check.duration("session.login_timeout", &raw.session.login_timeout);
    let mut key_texts = raw.session.keys.clone();
    if let Some(path) = raw.session.keys_file.as_deref().filter(|p| !p.is_empty()) {
        if !key_texts.is_empty() {
            check.fail("session.keys", "set either session.keys or session.keys_file, not both");
        }
        match std::fs::read_to_string(path) {
            Ok(text) => key_texts = split_list(&text),
            Err(e) => check.fail("session.keys_file", format!("cannot read {path}: {e}")),
        }
    }
    let mut master_keys = Vec::new();
    for (index, text) in key_texts.iter().enumerate() {
        match MasterKey::from_base64(text) {
            Ok(key) => master_keys.push(key),
            Err(message) => check.fail(format!("session.keys[{index}]"), message),
        }
    }
    let ephemeral_keys = key_texts.is_empty();
    if ephemeral_keys {
        master_keys.push(MasterKey::generate());
        warnings.push("session.keys is empty: using a random key for this process only; every session ends when cloakroom restarts, and replicas cannot share sessions".into());
    }
    if raw.session.max_pending_logins == 0 {
        check.fail("session.max_pending_logins", "must be greater than zero");
    }
    let store = match raw.session.store.as_str() {
        "memory" => {
            if raw.session.redis_url.is_some() {
                check.fail("session.redis_url", "is only used with store = \"redis\"");
            }
            StoreSettings::Memory
        }
        "redis" => {
            if ephemeral_keys {
                check.fail(
                    "session.keys",
                    "is required with store = \"redis\": replicas must share the keys that seal sessions",
                );
            }
            let connect_timeout = check.duration("session.redis_connect_timeout", &raw.session.redis_connect_timeout);
            let command_timeout = check.duration("session.redis_command_timeout", &raw.session.redis_command_timeout);
            let url = raw.session.redis_url.clone().unwrap_or_default();
            match Url::parse(&url) {
                _ if url.is_empty() => check.fail(
                    "session.redis_url",
                    "is required with store = \"redis\" (redis://host:6379 or rediss://host:6380)",
                ),
                Ok(parsed) if parsed.scheme() == "redis" || parsed.scheme() == "rediss" => {
                    if parsed.scheme() == "redis" && !is_loopback(&parsed) {
                        warnings.push("session.redis_url uses redis:// (no TLS) to a non-loopback host: records are sealed, but the connection and its password are not protected; prefer rediss://".into());
                    }
                }
                // Never echo the URL: it may carry a password.
                _ => check.fail("session.redis_url", "must be a redis:// or rediss:// URL"),
            }
            StoreSettings::Redis(super::RedisSettings {
                url,
                key_prefix: raw.session.redis_key_prefix.clone(),
                connect_timeout,
                command_timeout,
            })
        }
        other => {
            check.fail("session.store", format!("{other:?} is not one of \"memory\", \"redis\""));
            StoreSettings::Memory
        }
    };
    if raw.session.max_sessions_per_user == 0 {
        check.fail("session.max_sessions_per_user", "must be greater than zero");
    }
    if raw.session.max_sessions == 0 {
        check.fail("session.max_sessions", "must be greater than zero");
    }

    // [csrf]
    let csrf_header = match HeaderName::from_bytes(raw.csrf.header.trim().as_bytes()) {
        Ok(name) => name,
        Err(_) => {
            check.fail("csrf.header", format!("{:?} is not a valid header name", raw.csrf.header));
            HeaderName::from_static("x-csrf")
        }
    };

    // [log]
    if crate::telemetry::parse_filter(&raw.log.level).is_err() {
        check.fail(
            "log.level",
            format!(
                "{:?} is not a level (error, warn, info, debug, trace) or a filter like \"info,cloakroom=debug\"",
                raw.log.level
            ),
        );
    }

    // [spa]
    let spa = match raw.spa.dir.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => None,
        Some(dir) => match std::fs::canonicalize(dir) {
            Ok(path) if path.is_dir() => match http::HeaderValue::try_from(raw.spa.content_security_policy.trim()) {
                Ok(csp) => Some(SpaConfig { dir: path, content_security_policy: csp }),
                Err(_) => {
                    check.fail("spa.content_security_policy", "is not a valid header value");
                    None
                }
            },
            Ok(_) => {
                check.fail("spa.dir", format!("{dir} is not a directory"));
                None
            }
            Err(e) => {
                check.fail("spa.dir", format!("{dir}: {e}"));
                None
            }
        },
    };

    let dev_server = raw.spa.dev_server.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let spa_dev_server = match dev_server {
        None => None,
        Some(_) if raw.spa.dir.as_deref().is_some_and(|d| !d.trim().is_empty()) => {
            check.fail("spa.dev_server", "set either spa.dir or spa.dev_server, not both");
            None
        }
        Some(text) => match check.url("spa.dev_server", text) {
            Some(url) if url.path() == "/" && url.query().is_none() => {
                match url[url::Position::BeforeHost..url::Position::AfterPort].parse() {
                    Ok(authority) => {
                        warnings.push(format!(
                            "spa.dev_server = {text}: pages come from a frontend dev server (a development setup)"
                        ));
                        let scheme =
                            if url.scheme() == "https" { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP };
                        Some((scheme, authority))
                    }
                    Err(_) => {
                        check.fail("spa.dev_server", "has a host that is not a valid HTTP authority");
                        None
                    }
                }
            }
            Some(_) => {
                check.fail("spa.dev_server", "must be an origin such as \"http://localhost:5173\"");
                None
            }
            None => None,
        },
    };

    // [demo]: development only, loopback only, and only in a build that has it.
    let mut demo = DemoConfig::default();
    for (key, text, slot) in [
        ("demo.issuer_listen", &raw.demo.issuer_listen, &mut demo.issuer_listen),
        ("demo.api_listen", &raw.demo.api_listen, &mut demo.api_listen),
    ] {
        let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else { continue };
        if !cfg!(feature = "demo") {
            check.fail(
                key,
                "the demo (development only) is not in this build; run with: cargo run --release --features demo",
            );
            continue;
        }
        let addr = check.socket_addr(key, text);
        if !addr.ip().is_loopback() {
            check.fail(key, "development only: must be a loopback address such as 127.0.0.1:9400");
            continue;
        }
        *slot = Some(addr);
    }
    if let Some(addr) = demo.issuer_listen {
        let expected = format!("http://{addr}");
        if raw.oidc.issuer.trim() != expected {
            check.fail(
                "oidc.issuer",
                format!("must be {expected:?} to use the development issuer on demo.issuer_listen"),
            );
        }
        if !matches!(raw.oidc.client_auth.as_str(), "client_secret_basic" | "client_secret_post") {
            check.fail("oidc.client_auth", "the development issuer on demo.issuer_listen only knows client secrets");
        }
        warnings.push(format!("DEVELOPMENT ISSUER on http://{addr}: development only, never in production"));
    }
    if let Some(addr) = demo.api_listen {
        warnings.push(format!("DEMO API on http://{addr}: development only"));
    }

    let log_json = match raw.log.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            check.fail("log.format", format!("{other:?} is not \"text\" or \"json\""));
            false
        }
    };

    // [[routes]]
    let mut routes = Vec::new();
    for (index, route) in raw.routes.iter().enumerate() {
        let key = |field: &str| format!("routes[{index}].{field}");
        let prefix = route.prefix.trim().to_string();
        if prefix.is_empty() {
            check.fail(key("prefix"), "is required");
        } else if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() < 3 {
            check.fail(key("prefix"), format!("{prefix:?} must start and end with '/', like \"/api/\""));
        } else if prefix.starts_with("/bff/") {
            check.fail(key("prefix"), "/bff/ is reserved for cloakroom's own endpoints");
        } else if prefix.contains("/./") || prefix.contains("/../") || prefix.contains("//") || prefix.contains('%') {
            check.fail(key("prefix"), "must be a plain path without dot segments, empty segments or percent-encoding");
        } else if routes.iter().any(|r: &RouteConfig| r.prefix == prefix) {
            check.fail(key("prefix"), format!("{prefix:?} is used by an earlier route"));
        }
        let policy = match route.token.as_str() {
            "user" => TokenPolicy::User,
            "user-or-none" => TokenPolicy::UserOrNone,
            "none" => TokenPolicy::None,
            "client" => TokenPolicy::Client,
            "user-or-client" => TokenPolicy::UserOrClient,
            other => {
                check.fail(
                    key("token"),
                    format!(
                        "{other:?} is not one of \"user\", \"user-or-none\", \"user-or-client\", \"client\", \"none\""
                    ),
                );
                TokenPolicy::User
            }
        };
        let audience = match route.resource.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            Some(resource) => {
                check.resource(&key("resource"), resource);
                if policy == TokenPolicy::None {
                    check.fail(key("resource"), "has no meaning with token = \"none\"");
                }
                Some(Audience { resource: resource.to_string(), scopes: route.scopes.clone() })
            }
            None => {
                if !route.scopes.is_empty() {
                    check.fail(key("scopes"), "needs a resource (RFC 8707) to ask them for");
                }
                None
            }
        };
        let max_body = check.size(&key("max_body"), &route.max_body);
        let connect_timeout = check.duration(&key("connect_timeout"), &route.connect_timeout);
        let timeout = check.duration(&key("timeout"), &route.timeout);
        let tls = check.client_tls(
            &format!("routes[{index}]"),
            route.ca_file.as_deref(),
            route.client_cert_file.as_deref(),
            route.client_key_file.as_deref(),
        );
        let Some(upstream) = check.url(&key("upstream"), &route.upstream) else {
            continue;
        };
        if upstream.query().is_some() || upstream.fragment().is_some() || !upstream.username().is_empty() {
            check.fail(key("upstream"), "must not carry a query, fragment or credentials");
            continue;
        }
        let authority = upstream[url::Position::BeforeHost..url::Position::AfterPort].parse();
        let Ok(upstream_authority) = authority else {
            check.fail(key("upstream"), "has a host that is not a valid HTTP authority");
            continue;
        };
        let mut upstream_path = upstream.path().to_string();
        if !upstream_path.ends_with('/') {
            upstream_path.push('/');
        }
        routes.push(RouteConfig {
            prefix,
            upstream_origin: if upstream.scheme() == "https" {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            upstream_authority,
            upstream_path,
            policy,
            connect_timeout,
            timeout,
            audience,
            max_body,
            tls,
        });
    }

    let (Some(_), Some(redirect_uri), Some(post_logout_redirect_uri), Some(client_auth)) =
        (issuer, redirect_uri, post_logout_redirect_uri, client_auth)
    else {
        return None;
    };
    let keys = KeyRing::new(master_keys)?;
    // The sign-in asks for everything routes will later ask for with the refresh token: a
    // refresh can narrow a grant, never widen it.
    let mut scopes = raw.oidc.scopes;
    let mut authorization_resources: Vec<String> = default_resource.iter().cloned().collect();
    for audience in routes.iter().filter_map(|r| r.audience.as_ref()) {
        if !authorization_resources.contains(&audience.resource) {
            authorization_resources.push(audience.resource.clone());
        }
        for scope in &audience.scopes {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
    }
    Some(Config {
        server: ServerConfig {
            listen,
            public_origin,
            public_host,
            admin_listen,
            shutdown_timeout,
            shutdown_delay,
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
            max_connections: usize::try_from(raw.server.max_connections).unwrap_or(usize::MAX),
            header_read_timeout,
            trusted_proxies,
            trusted_proxy_header,
            tls,
            hsts,
            idle_timeout: connection_idle_timeout,
            worker_threads: usize::try_from(raw.server.worker_threads).ok().and_then(std::num::NonZeroUsize::new),
        },
        oidc: OidcConfig {
            issuer: raw.oidc.issuer.trim().to_string(),
            client_id: raw.oidc.client_id.trim().to_string(),
            client_auth,
            scopes,
            extra_auth_params: raw.oidc.extra_auth_params.into_iter().collect(),
            redirect_uri,
            post_logout_redirect_uri,
            logout_id_token_hint: raw.oidc.logout_id_token_hint,
            timeout: oidc_timeout,
            tls: oidc_tls,
            clock_skew,
            refresh_margin,
            refresh_timeout: refresh_timeout.max(oidc_timeout),
            refresh_retry_backoff,
            resource: default_resource,
            authorization_resources,
        },
        session: SessionConfig {
            cookie_name,
            same_site,
            idle_timeout,
            absolute_timeout,
            keys,
            ephemeral_keys,
            login_timeout,
            max_pending_logins: raw.session.max_pending_logins,
            max_sessions: raw.session.max_sessions,
            max_sessions_per_user: usize::try_from(raw.session.max_sessions_per_user).unwrap_or(usize::MAX),
            allow_remember: raw.session.allow_remember,
            clear_site_data: raw.session.clear_site_data,
            store,
        },
        csrf: CsrfConfig { header: csrf_header },
        log: LogConfig { level: raw.log.level, json: log_json },
        spa,
        spa_dev_server,
        demo,
        routes,
        warnings,
    })
}
