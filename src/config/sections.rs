//! Validation, one section at a time: each function turns its raw section into the validated
//! one, reporting every problem under its key through [`Check`] (all are reported at once).

use super::raw::*;
use super::validate::{Check, RESERVED_AUTH_PARAMS, client_auth, is_loopback, split_list};
use super::*;
use crate::crypto::seal::MasterKey;
use http::HeaderValue;
use std::path::Path;

/// `[server]`, and the public URL the other sections derive their addresses from.
pub(super) fn server(check: &mut Check, raw: &RawServer) -> (ServerConfig, Option<Url>) {
    // [server]
    let listen = check.socket_addr("server.listen", &raw.listen);
    let admin_listen = check.socket_addr("server.admin_listen", &raw.admin_listen);
    let shutdown_timeout = check.duration("server.shutdown_timeout", &raw.shutdown_timeout);
    let shutdown_delay = check.duration_or_zero("server.shutdown_delay", &raw.shutdown_delay).unwrap_or(Duration::ZERO);
    let header_read_timeout = check.duration("server.header_read_timeout", &raw.header_read_timeout);
    let max_header_bytes = check.size("server.max_header_bytes", &raw.max_header_bytes);
    if max_header_bytes < 8192 {
        check.fail("server.max_header_bytes", "must be at least 8KiB (the HTTP/1 parser's minimum)");
    }
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        match text.parse::<crate::forwarded::Cidr>() {
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(e) => check.fail(format!("server.trusted_proxies[{i}]"), e),
        }
    }
    let trusted_proxy_header = raw
        .trusted_proxy_header
        .parse::<crate::forwarded::ForwardingHeader>()
        .map_err(|e| check.fail("server.trusted_proxy_header", e))
        .unwrap_or_default();
    let tls = match (raw.tls_cert_file.as_deref(), raw.tls_key_file.as_deref()) {
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
    let hsts = match raw.hsts.trim() {
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
    let connection_idle_timeout = check.duration("server.idle_timeout", &raw.idle_timeout);
    if raw.worker_threads > 1024 {
        check.fail("server.worker_threads", "must be at most 1024 (0: one per available CPU)");
    }
    if raw.max_connections == 0 {
        check.fail("server.max_connections", "must be greater than zero");
    }
    let public_url = check.url("server.public_url", &raw.public_url);
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

    let config = ServerConfig {
        listen,
        public_origin,
        public_host,
        admin_listen,
        shutdown_timeout,
        shutdown_delay,
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_connections: usize::try_from(raw.max_connections).unwrap_or(usize::MAX),
        max_connections_per_client: usize::try_from(raw.max_connections_per_client).unwrap_or(usize::MAX),
        header_read_timeout,
        trusted_proxies,
        trusted_proxy_header,
        tls,
        hsts,
        idle_timeout: connection_idle_timeout,
        worker_threads: usize::try_from(raw.worker_threads).ok().and_then(std::num::NonZeroUsize::new),
    };
    (config, public_url)
}

/// `[oidc]`. `None` when a setting the provider cannot do without is unusable (its error is
/// reported). The sign-in's scopes and resources are widened by [`widen_for_routes`].
pub(super) fn oidc(check: &mut Check, raw: RawOidc, public_url: Option<&Url>) -> Option<OidcConfig> {
    // [oidc]
    let issuer = check.url("oidc.issuer", &raw.issuer);
    if let Some(url) = &issuer {
        check.require_https_unless_loopback("oidc.issuer", url);
    }
    if raw.client_id.trim().is_empty() {
        check.fail("oidc.client_id", "is required");
    }
    if let Some(id) = &raw.id
        && (id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        check.fail("oidc.id", "must be 1 to 32 letters, digits, '-' or '_'");
    }
    let client_auth = client_auth(check, &raw);
    if !raw.scopes.iter().any(|s| s == "openid") {
        check.fail("oidc.scopes", "must include \"openid\"");
    }
    for name in raw.extra_auth_params.keys() {
        if RESERVED_AUTH_PARAMS.contains(&name.as_str()) {
            check.fail(format!("oidc.extra_auth_params.{name}"), "is set by cloakroom itself and cannot be overridden");
        }
    }
    let redirect_uri = public_url.and_then(|u| u.join("/bff/callback").ok());
    let post_logout_redirect_uri = match raw.post_logout_redirect_uri.as_deref() {
        Some(text) => check.url("oidc.post_logout_redirect_uri", text),
        None => public_url.cloned(),
    };
    let oidc_timeout = check.duration("oidc.timeout", &raw.timeout);
    let oidc_tls = check.client_tls("oidc", raw.ca_file.as_deref(), None, None);
    let clock_skew = check.duration("oidc.clock_skew", &raw.clock_skew);
    let refresh_margin = check.duration("oidc.refresh_margin", &raw.refresh_margin);
    let refresh_timeout = check.duration("oidc.refresh_timeout", &raw.refresh_timeout);
    let refresh_retry_backoff = check.duration("oidc.refresh_retry_backoff", &raw.refresh_retry_backoff);
    let default_resource = raw.resource.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(String::from);
    if let Some(resource) = &default_resource {
        check.resource("oidc.resource", resource);
    }
    for (i, name) in raw.login_params.iter().enumerate() {
        if !LOGIN_PARAM_NAMES.contains(&name.as_str()) {
            check.fail(format!("oidc.login_params[{i}]"), format!("{name:?} is not one of {:?}", LOGIN_PARAM_NAMES));
        } else if raw.extra_auth_params.contains_key(name) {
            check.fail(format!("oidc.login_params[{i}]"), format!("{name} is also set in oidc.extra_auth_params"));
        }
    }
    if !raw.logout_token_exp_required {
        check.warn("oidc.logout_token_exp_required = false: back-channel logout tokens without exp are accepted (bounded by their iat and single-use jti), for providers of the Back-Channel Logout drafts");
    }
    if raw.logout_id_token_hint {
        check.warn("oidc.logout_id_token_hint = true: the ID token is sent to the browser in the logout URL (the one place a token crosses to the browser)");
    }

    let (Some(_), Some(redirect_uri), Some(post_logout_redirect_uri), Some(client_auth)) =
        (issuer, redirect_uri, post_logout_redirect_uri, client_auth)
    else {
        return None;
    };
    Some(OidcConfig {
        issuer: raw.issuer.trim().to_string(),
        client_id: raw.client_id.trim().to_string(),
        client_auth,
        scopes: raw.scopes,
        extra_auth_params: raw.extra_auth_params.into_iter().collect(),
        redirect_uri,
        post_logout_redirect_uri,
        logout_id_token_hint: raw.logout_id_token_hint,
        timeout: oidc_timeout,
        tls: oidc_tls,
        clock_skew,
        refresh_margin,
        refresh_timeout: refresh_timeout.max(oidc_timeout),
        refresh_retry_backoff,
        login_params: raw.login_params,
        enforce_acr_values: raw.enforce_acr_values,
        logout_token_exp_required: raw.logout_token_exp_required,
        par: raw.par,
        display_name: raw.display_name.clone().or_else(|| raw.id.clone()).unwrap_or_else(|| "default".into()),
        id: raw.id.clone().unwrap_or_else(|| "default".into()),
        user_claims: raw.user_claims.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect(),
        userinfo: raw.userinfo,
        userinfo_interval: check
            .duration_or_zero("oidc.userinfo_interval", &raw.userinfo_interval)
            .filter(|d| !d.is_zero()),
        authorization_resources: default_resource.iter().cloned().collect(),
        resource: default_resource,
    })
}

/// `[[providers]]`: each checked as `[oidc]` is (keys named `providers[i].…`), with an id of
/// its own, unique among them and `[oidc]`'s.
pub(super) fn more_providers(
    check: &mut Check,
    raw: Vec<RawOidc>,
    public_url: Option<&Url>,
    default: Option<&OidcConfig>,
) -> Vec<OidcConfig> {
    let mut ids: Vec<String> = default.map(|d| d.id.clone()).into_iter().collect();
    let mut providers = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let key = format!("providers[{i}]");
        let id = raw.id.clone().unwrap_or_default();
        if raw.id.is_none() {
            check.fail(format!("{key}.id"), "is required: 1 to 32 letters, digits, '-' or '_'");
        } else if ids.contains(&id) {
            check.fail(format!("{key}.id"), format!("{id:?} names another provider too"));
        }
        ids.push(id);
        if let Some(provider) = check.renamed("oidc.", &format!("{key}."), |check| oidc(check, raw, public_url)) {
            providers.push(provider);
        }
    }
    providers
}

/// The sign-in asks for everything routes will later ask for with the refresh token: a
/// refresh can narrow a grant, never widen it.
pub(super) fn widen_for_routes(oidc: &mut OidcConfig, routes: &[RouteConfig]) {
    for audience in routes.iter().filter_map(|r| r.audience.as_ref()) {
        if let Some(resource) = &audience.resource
            && !oidc.authorization_resources.contains(resource)
        {
            oidc.authorization_resources.push(resource.clone());
        }
        for scope in &audience.scopes {
            if !oidc.scopes.contains(scope) {
                oidc.scopes.push(scope.clone());
            }
        }
    }
}

/// `session.redis_mode` and the addresses and credentials it needs.
fn redis_topology(check: &mut Check, raw: &RawSession) -> RedisTopology {
    let only = |check: &mut Check, key: &str, set: bool, mode: &str| {
        if set {
            check.fail(format!("session.{key}"), format!("is not used with redis_mode = \"{mode}\""));
        }
    };
    if raw.redis_mode == RedisModeSetting::Standalone {
        only(check, "redis_nodes", !raw.redis_nodes.is_empty(), "standalone");
        only(check, "redis_master_name", raw.redis_master_name.is_some(), "standalone");
        let credentials =
            raw.redis_username.is_some() || raw.redis_password.is_some() || raw.redis_password_file.is_some();
        if credentials {
            check.fail(
                "session.redis_password",
                "is for sentinel and cluster modes; a standalone server's goes in redis_url",
            );
        }
        let url = raw.redis_url.clone().unwrap_or_default();
        if url.is_empty() {
            check.fail(
                "session.redis_url",
                "is required with store = \"redis\" (redis://host:6379 or rediss://host:6380)",
            );
        } else {
            redis_url(check, "session.redis_url", &url);
        }
        return RedisTopology::Standalone { url };
    }
    let sentinel = raw.redis_mode == RedisModeSetting::Sentinel;
    let mode = if sentinel { "sentinel" } else { "cluster" };
    only(check, "redis_url", raw.redis_url.is_some(), mode);
    if raw.redis_nodes.is_empty() {
        let what = if sentinel { "the sentinels" } else { "seed nodes" };
        check.fail("session.redis_nodes", format!("is required with redis_mode = \"{mode}\": {what}"));
    }
    let tls: Vec<bool> = (raw.redis_nodes.iter().enumerate())
        .map(|(i, node)| redis_url(check, &format!("session.redis_nodes[{i}]"), node))
        .collect();
    if tls.windows(2).any(|pair| pair[0] != pair[1]) {
        check.fail("session.redis_nodes", "must all use redis:// or all rediss://");
    }
    let password = check.secret("session.redis_password", raw.redis_password.clone(), raw.redis_password_file.clone());
    let auth = RedisAuth { username: raw.redis_username.clone().filter(|u| !u.is_empty()), password };
    if !sentinel {
        only(check, "redis_master_name", raw.redis_master_name.is_some(), mode);
        if raw.redis_key_prefix.contains('{') {
            check.warn("session.redis_key_prefix holds a '{': in a Redis Cluster every key would then hash to one slot (one node holds all sessions)");
        }
        return RedisTopology::Cluster { nodes: raw.redis_nodes.clone(), auth };
    }
    let master_name = raw.redis_master_name.clone().unwrap_or_default();
    if master_name.trim().is_empty() {
        check.fail("session.redis_master_name", "is required with redis_mode = \"sentinel\"");
    }
    RedisTopology::Sentinel { sentinels: raw.redis_nodes.clone(), master_name, auth }
}

/// A Redis URL: `redis://` or `rediss://` (`true`), warning about plain text beyond loopback.
/// Never echoes the URL: it may carry a password.
fn redis_url(check: &mut Check, key: &str, url: &str) -> bool {
    match Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "redis" || parsed.scheme() == "rediss" => {
            if parsed.scheme() == "redis" && !is_loopback(&parsed) {
                check.warn(format!("{key} uses redis:// (no TLS) to a non-loopback host: records are sealed, but the connection and its password are not protected; prefer rediss://"));
            }
            parsed.scheme() == "rediss"
        }
        _ => {
            check.fail(key, "must be a redis:// or rediss:// URL");
            false
        }
    }
}

/// `session.redis_ca_file` and the client certificate, read and checked now (PEM).
fn redis_tls(check: &mut Check, raw: &RawSession) -> Option<RedisTls> {
    let set = |path: &Option<String>| path.clone().filter(|p| !p.is_empty());
    let (ca, cert, key) = (set(&raw.redis_ca_file), set(&raw.redis_client_cert_file), set(&raw.redis_client_key_file));
    if ca.is_none() && cert.is_none() && key.is_none() {
        return None;
    }
    // The same checks as every other TLS client setting (pairs, PEM, a key that fits), named
    // by this section's keys; redis-rs then takes the files' bytes.
    let problems = check.error_count();
    check.renamed("redis.", "session.redis_", |check| {
        check.client_tls("redis", ca.as_deref(), cert.as_deref(), key.as_deref());
    });
    if check.error_count() > problems {
        return None;
    }
    let read = |check: &mut Check, name: &str, path: &str| match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            check.fail(format!("session.{name}"), format!("cannot read {path}: {e}"));
            None
        }
    };
    let ca = ca.and_then(|path| read(check, "redis_ca_file", &path));
    let client = cert.zip(key).and_then(|(cert, key)| {
        Some((read(check, "redis_client_cert_file", &cert)?, read(check, "redis_client_key_file", &key)?))
    });
    Some(RedisTls { ca, client })
}

/// A session cookie name: `__Host-` (the RFC 10017 default adds `Http-`) and cookie-name bytes.
fn check_cookie_name(check: &mut Check, key: &str, name: &str) {
    if !name.starts_with("__Host-") {
        check.fail(key, "must start with \"__Host-\" (binds the cookie to this origin: Secure, Path=/, no Domain)");
    } else if name.len() == "__Host-".len() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        check.fail(key, "must be \"__Host-\" followed by letters, digits, '-', '_' or '.'");
    }
}

/// `[session]`. `None` when no key ring can be made (its error is reported).
pub(super) fn session(check: &mut Check, raw: &RawSession) -> Option<SessionConfig> {
    // [session]
    let cookie_name = raw.cookie_name.trim().to_string();
    check_cookie_name(check, "session.cookie_name", &cookie_name);
    let mut legacy_cookie_names: Vec<String> = Vec::new();
    for (i, name) in raw.legacy_cookie_names.iter().map(|n| n.trim()).enumerate() {
        check_cookie_name(check, &format!("session.legacy_cookie_names[{i}]"), name);
        if name != cookie_name && !legacy_cookie_names.iter().any(|n| n == name) {
            legacy_cookie_names.push(name.to_string());
        }
    }
    let same_site = match raw.same_site {
        SameSiteSetting::Strict => SameSite::Strict,
        SameSiteSetting::Lax => SameSite::Lax,
    };
    let idle_timeout = check.duration("session.idle_timeout", &raw.idle_timeout);
    let absolute_timeout = check.duration("session.absolute_timeout", &raw.absolute_timeout);
    if idle_timeout > absolute_timeout {
        check.fail("session.idle_timeout", "must not be longer than session.absolute_timeout");
    }
    let login_timeout = check.duration("session.login_timeout", &raw.login_timeout);
    let mut key_texts = raw.keys.clone();
    if let Some(path) = raw.keys_file.as_deref().filter(|p| !p.is_empty()) {
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
        check.warn("session.keys is empty: using a random key for this process only; every session ends when cloakroom restarts, and replicas cannot share sessions");
    }
    if raw.max_pending_logins == 0 {
        check.fail("session.max_pending_logins", "must be greater than zero");
    }
    let store = match raw.store {
        StoreKind::Memory => {
            if raw.redis_url.is_some() {
                check.fail("session.redis_url", "is only used with store = \"redis\"");
            }
            StoreSettings::Memory
        }
        StoreKind::Redis => {
            if ephemeral_keys {
                check.fail(
                    "session.keys",
                    "is required with store = \"redis\": replicas must share the keys that seal sessions",
                );
            }
            let connect_timeout = check.duration("session.redis_connect_timeout", &raw.redis_connect_timeout);
            let command_timeout = check.duration("session.redis_command_timeout", &raw.redis_command_timeout);
            let topology = redis_topology(check, raw);
            let tls = redis_tls(check, raw);
            StoreSettings::Redis(Box::new(super::RedisSettings {
                topology,
                tls,
                key_prefix: raw.redis_key_prefix.clone(),
                connect_timeout,
                command_timeout,
            }))
        }
    };
    if raw.max_sessions_per_user == 0 {
        check.fail("session.max_sessions_per_user", "must be greater than zero");
    }
    if raw.max_sessions == 0 {
        check.fail("session.max_sessions", "must be greater than zero");
    }

    Some(SessionConfig {
        cookie_name,
        legacy_cookie_names,
        same_site,
        idle_timeout,
        absolute_timeout,
        keys: KeyRing::new(master_keys)?,
        ephemeral_keys,
        login_timeout,
        max_pending_logins: raw.max_pending_logins,
        max_sessions: raw.max_sessions,
        max_sessions_per_user: usize::try_from(raw.max_sessions_per_user).unwrap_or(usize::MAX),
        allow_remember: raw.allow_remember,
        clear_site_data: raw.clear_site_data,
        store,
    })
}

/// `[csrf]`.
pub(super) fn csrf(check: &mut Check, raw: &RawCsrf) -> CsrfConfig {
    let csrf_header = match HeaderName::from_bytes(raw.header.trim().as_bytes()) {
        Ok(name) => name,
        Err(_) => {
            check.fail("csrf.header", format!("{:?} is not a valid header name", raw.header));
            HeaderName::from_static("x-csrf")
        }
    };

    CsrfConfig { header: csrf_header }
}

/// `[log]`.
pub(super) fn log(check: &mut Check, raw: RawLog) -> LogConfig {
    if crate::telemetry::parse_filter(&raw.level).is_err() {
        check.fail(
            "log.level",
            format!(
                "{:?} is not a level (error, warn, info, debug, trace) or a filter like \"info,cloakroom=debug\"",
                raw.level
            ),
        );
    }

    let log_json = raw.format == LogFormat::Json;

    LogConfig { level: raw.level, json: log_json }
}

/// `[spa]`: static files, or a frontend dev server.
pub(super) fn spa(
    check: &mut Check,
    raw: &RawSpa,
) -> (Option<SpaConfig>, Option<(http::uri::Scheme, http::uri::Authority)>) {
    let spa = match raw.dir.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => None,
        Some(dir) => match std::fs::canonicalize(dir) {
            Ok(path) if path.is_dir() => match http::HeaderValue::try_from(raw.content_security_policy.trim()) {
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

    let dev_server = raw.dev_server.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let spa_dev_server = match dev_server {
        None => None,
        Some(_) if raw.dir.as_deref().is_some_and(|d| !d.trim().is_empty()) => {
            check.fail("spa.dev_server", "set either spa.dir or spa.dev_server, not both");
            None
        }
        Some(text) => match check.url("spa.dev_server", text) {
            Some(url) if url.path() == "/" && url.query().is_none() => {
                match url[url::Position::BeforeHost..url::Position::AfterPort].parse() {
                    Ok(authority) => {
                        check.warn(format!(
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

    (spa, spa_dev_server)
}

/// `[demo]`: development only, loopback only, and only in a build that has it.
pub(super) fn demo(check: &mut Check, raw: &RawDemo, oidc: &RawOidc) -> DemoConfig {
    let mut demo = DemoConfig::default();
    for (key, text, slot) in [
        ("demo.issuer_listen", &raw.issuer_listen, &mut demo.issuer_listen),
        ("demo.api_listen", &raw.api_listen, &mut demo.api_listen),
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
        if oidc.issuer.trim() != expected {
            check.fail(
                "oidc.issuer",
                format!("must be {expected:?} to use the development issuer on demo.issuer_listen"),
            );
        }
        if oidc.client_auth == ClientAuthMethod::PrivateKeyJwt {
            check.fail("oidc.client_auth", "the development issuer on demo.issuer_listen only knows client secrets");
        }
        check.warn(format!("DEVELOPMENT ISSUER on http://{addr}: development only, never in production"));
    }
    if let Some(addr) = demo.api_listen {
        check.warn(format!("DEMO API on http://{addr}: development only"));
    }

    demo
}

/// `[[routes]]`.
pub(super) fn routes(check: &mut Check, raw: &[RawRoute]) -> Vec<RouteConfig> {
    let mut routes = Vec::new();
    for (index, route) in raw.iter().enumerate() {
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
        let policy = route.token;
        let audience = match route.resource.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            Some(resource) => {
                check.resource(&key("resource"), resource);
                if policy == TokenPolicy::None {
                    check.fail(key("resource"), "has no meaning with token = \"none\"");
                }
                Some(Audience { resource: Some(resource.to_string()), scopes: route.scopes.clone() })
            }
            // cloakroom's own token may be asked for scopes alone (some providers require a
            // scope on client credentials); a user's token for a route needs its resource.
            None if !route.scopes.is_empty() && policy == TokenPolicy::Client => {
                Some(Audience { resource: None, scopes: route.scopes.clone() })
            }
            None => {
                if !route.scopes.is_empty() {
                    check.fail(
                        key("scopes"),
                        "needs a resource (RFC 8707) to ask them for (scopes alone: only with token = \"client\")",
                    );
                }
                None
            }
        };
        let methods = methods(check, &key("methods"), &route.methods);
        let rules = rules(check, &key("rules"), route, audience.as_ref());
        let step_up = route.step_up.as_ref().and_then(|raw| step_up(check, &key("step_up"), policy, raw));
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
            methods,
            rules,
            step_up,
        });
    }

    routes
}

/// When routes name resources (RFC 8707), the sign-in asks for all of them, and a provider may
/// then give the sign-in's own token any of their audiences: the routes that carry that token
/// would forward a token meant for another API. So `oidc.resource` (their audience) must be set.
pub(super) fn default_audience(check: &mut Check, default_resource: Option<&str>, routes: &[RouteConfig]) {
    let carries_user_token =
        |r: &&RouteConfig| matches!(r.policy, TokenPolicy::User | TokenPolicy::UserOrNone | TokenPolicy::UserOrClient);
    let names_resources = routes.iter().any(|r| r.audience.as_ref().is_some_and(|a| a.resource.is_some()));
    let default_carried = routes.iter().filter(carries_user_token).any(|r| r.audience.is_none());
    if default_resource.is_none() && names_resources && default_carried {
        check.fail(
            "oidc.resource",
            "is required when routes name a resource: it is the audience of the token the routes without one \
             carry, which a provider would otherwise be free to give another API's audience",
        );
    }
}

/// A route's `[routes.step_up]`: at least one of `acr_values` (values a provider may be sent)
/// and `max_age`; like rules, only on `token = "user"` routes.
fn step_up(check: &mut Check, key: &str, policy: TokenPolicy, raw: &RawStepUp) -> Option<StepUp> {
    if policy != TokenPolicy::User {
        check.fail(key, "needs a signed-in user: only token = \"user\" routes may require a step-up");
    }
    let mut acr_values = Vec::new();
    for (i, value) in raw.acr_values.iter().enumerate() {
        let value = value.trim();
        if !acr_value_ok(value) {
            check.fail(format!("{key}.acr_values[{i}]"), "must be a non-empty value of visible ASCII without quotes");
        } else if !acr_values.iter().any(|v| v == value) {
            acr_values.push(value.to_string());
        }
    }
    let max_age = raw.max_age.as_deref().map(|text| check.duration(&format!("{key}.max_age"), text).as_secs());
    if raw.acr_values.is_empty() && max_age.is_none() {
        check.fail(key, "needs acr_values, max_age or both");
        return None;
    }
    Some(StepUp { acr_values, max_age })
}

/// A step-up sends the browser to `/bff/login` with the route's `acr_values` and `max_age`: the
/// configuration must let `/bff/login` pass them on.
pub(super) fn step_up_login_params(check: &mut Check, login_params: &[String], routes: &[RouteConfig]) {
    for (i, route) in routes.iter().enumerate() {
        let Some(step_up) = &route.step_up else { continue };
        for (needed, name) in [(!step_up.acr_values.is_empty(), "acr_values"), (step_up.max_age.is_some(), "max_age")] {
            if needed && !login_params.iter().any(|p| p == name) {
                check.fail(
                    format!("routes[{i}].step_up"),
                    format!("needs oidc.login_params to allow {name}, which its step-up sign-in passes on"),
                );
            }
        }
    }
}

/// A route's `methods`: HTTP method names (any case), never `CONNECT` or `TRACE`.
fn methods(check: &mut Check, key: &str, names: &[String]) -> Option<MethodAllowlist> {
    if names.is_empty() {
        return None;
    }
    let mut methods: Vec<http::Method> = Vec::new();
    for name in names {
        let upper = name.trim().to_ascii_uppercase();
        match http::Method::from_bytes(upper.as_bytes()) {
            Ok(method) if method == http::Method::CONNECT || method == http::Method::TRACE => {
                check.fail(key, format!("{upper} is never forwarded"));
            }
            Ok(method) if !methods.contains(&method) => methods.push(method),
            Ok(_) => {}
            Err(_) => check.fail(key, format!("{name:?} is not an HTTP method")),
        }
    }
    let text = methods.iter().map(http::Method::as_str).collect::<Vec<_>>().join(", ");
    let allow = HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(""));
    Some(MethodAllowlist { methods, allow })
}

/// A route's `[[routes.rules]]`: each names a claim and exactly one test, or the scopes the
/// sign-in's token must have been granted. They need a signed-in user, so only `token = "user"`
/// routes may have them; scope rules read the sign-in's own grant, so not on a route that
/// names a `resource` (its API checks the scopes of the token made for it).
fn rules(check: &mut Check, key: &str, route: &RawRoute, audience: Option<&Audience>) -> Option<RouteRules> {
    if route.rules.is_empty() {
        return None;
    }
    if route.token != TokenPolicy::User {
        check.fail(key, "need a signed-in user: only token = \"user\" routes may have rules");
    }
    if route.rules.len() > MAX_RULES {
        check.fail(key, format!("are {} rules; a route may have at most {MAX_RULES}", route.rules.len()));
    }
    let mut claims: Vec<String> =
        route.rules.iter().map(|r| r.claim.trim().to_string()).filter(|c| !c.is_empty()).collect();
    claims.sort();
    claims.dedup();
    let mut rules = Vec::new();
    for (i, raw) in route.rules.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let claim = raw.claim.trim();
        let has_test = raw.equals.is_some() || raw.contains_any.is_some() || raw.contains_all.is_some();
        if !raw.scope.is_empty() {
            if !claim.is_empty() || has_test {
                check.fail(
                    &key,
                    "a scope rule names no claim and no test (scope = [\"a\", \"b\"]: all of them granted)",
                );
            } else if audience.is_some_and(|a| a.resource.is_some()) {
                check.fail(
                    format!("{key}.scope"),
                    "checks the sign-in's own token, which a route naming a resource does not carry",
                );
            } else if let Some(bad) = raw.scope.iter().find(|s| !scope_token_ok(s)) {
                check.fail(format!("{key}.scope"), format!("{bad:?} is not a scope (RFC 6749 §3.3)"));
            } else if raw.scope.len() > MAX_RULE_VALUES {
                check.fail(format!("{key}.scope"), format!("may name at most {MAX_RULE_VALUES} scopes"));
            } else {
                let wanted = raw.scope.iter().map(|s| serde_json::Value::from(s.as_str())).collect();
                rules.push(Rule::new(RuleSubject::Scope, ClaimTest::ContainsAll(wanted)));
            }
            continue;
        }
        if claim.is_empty() {
            check.fail(format!("{key}.claim"), "is required (or scope, for a rule on the granted scope)");
            continue;
        }
        // Claims are read as their record spells them, and JSON escapes these.
        if claim.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            check.fail(format!("{key}.claim"), "cannot hold a quote, a backslash or a control character");
            continue;
        }
        let test = match (&raw.equals, &raw.contains_any, &raw.contains_all) {
            (Some(value), None, None) => ClaimTest::Equals(value.clone()),
            (None, Some(values), None) if !values.is_empty() => ClaimTest::ContainsAny(values.clone()),
            (None, None, Some(values)) if !values.is_empty() => ClaimTest::ContainsAll(values.clone()),
            _ => {
                check.fail(&key, "needs exactly one of equals, contains_any, contains_all (a non-empty list)");
                continue;
            }
        };
        let values = test.values();
        if values.iter().any(|v| !(v.is_string() || v.is_number() || v.is_boolean())) {
            check.fail(&key, "compares strings, numbers and booleans (for several values: contains_all)");
            continue;
        }
        if values.len() > MAX_RULE_VALUES {
            check.fail(&key, format!("may list at most {MAX_RULE_VALUES} values"));
            continue;
        }
        let index = claims.binary_search_by(|c| c.as_str().cmp(claim)).expect("every claim is listed");
        rules.push(Rule::new(RuleSubject::Claim(index), test));
    }
    Some(RouteRules { rules, matching: route.rules_match, claims })
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn scope_token_ok(scope: &str) -> bool {
    !scope.is_empty() && scope.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}
