//! `[session]`: the cookie, timeouts, keys and the store (memory or Redis in its three modes).

use super::*;

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
pub(in crate::config) fn session(check: &mut Check, raw: &RawSession) -> Option<SessionConfig> {
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
            Err(e) => check.fail(format!("session.keys[{index}]"), e.to_string()),
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
                cache_entries: usize::try_from(raw.redis_cache_entries).unwrap_or(usize::MAX),
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
