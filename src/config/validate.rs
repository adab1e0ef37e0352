//! From [`RawConfig`] to [`Config`]: every check, every error collected, each naming its key.

use super::check::Check;
use super::raw::RawConfig;
use super::sections;
use super::*;
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
                // The message alone: the key is given, and the parser's own "in `…`" repeats it.
                let message = e.inner().to_string();
                let message = message.split("\nin `").next().unwrap_or_default().trim_end().to_string();
                errors.push(ConfigError { key: key.clone(), message });
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

pub(super) fn validate(raw: RawConfig, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let fixed_at_start = fixed_at_start(&raw);
    let mut check = Check { errors, warnings: Vec::new() };
    let (server, public_url) = sections::server(&mut check, &raw.server);
    let demo = sections::demo(&mut check, &raw.demo, &raw.oidc);
    let oidc = sections::oidc(&mut check, raw.oidc, public_url.as_ref());
    let session = sections::session(&mut check, &raw.session);
    let csrf = sections::csrf(&mut check, &raw.csrf);
    let log = sections::log(&mut check, raw.log);
    let traces = sections::traces(&mut check, &raw.traces);
    let (spa, spa_dev_server) = sections::spa(&mut check, &raw.spa);
    let spa_origins = sections::spa_origins(&mut check, &raw.spa.origins, public_url.as_ref());
    let routes = sections::routes(&mut check, &raw.routes);
    let providers = sections::more_providers(&mut check, raw.providers, public_url.as_ref(), oidc.as_ref());
    let (mut oidc, session) = (oidc?, session?);
    sections::default_audience(&mut check, oidc.resource.as_deref(), &routes);
    let all_providers = std::iter::once(&oidc).chain(&providers).collect::<Vec<_>>();
    sections::dpop_providers(&mut check, &all_providers, &routes);
    sections::bound_certificates(&mut check, &all_providers, &routes);
    sections::step_up_login_params(&mut check, &oidc.login_params, &routes);
    sections::widen_for_routes(&mut oidc, &routes);
    Some(Config {
        server,
        oidc,
        session,
        csrf,
        log,
        traces,
        spa,
        spa_dev_server,
        spa_origins,
        demo,
        routes,
        providers,
        warnings: check.warnings,
        fixed_at_start,
        source: None,
        frontends: Vec::new(),
    })
}

/// What a reload cannot change ([`FixedAtStart`]): the sockets (`listen`, `admin_listen`, TLS
/// files, which SIGHUP re-reads in place), the runtime's threads, the connection limits and
/// request-head limits the accept loop holds, the session store and the limits it was built
/// with, the log and trace pipelines, and the demo's servers.
fn fixed_at_start(raw: &RawConfig) -> FixedAtStart {
    let (server, session) = (&raw.server, &raw.session);
    let digest = |value: &dyn std::fmt::Debug| crate::crypto::sha256(format!("{value:?}").as_bytes());
    FixedAtStart(vec![
        ("server.listen", digest(&server.listen)),
        ("server.admin_listen", digest(&server.admin_listen)),
        ("server.worker_threads", digest(&server.worker_threads)),
        ("server.max_connections", digest(&server.max_connections)),
        ("server.max_connections_per_client", digest(&server.max_connections_per_client)),
        ("server.max_header_bytes", digest(&server.max_header_bytes)),
        ("server.header_read_timeout", digest(&server.header_read_timeout)),
        ("server.tls_cert_file", digest(&server.tls_cert_file)),
        ("server.tls_key_file", digest(&server.tls_key_file)),
        (
            "session.store",
            digest(&(
                &session.store,
                &session.redis_mode,
                &session.redis_url,
                &session.redis_nodes,
                &session.redis_master_name,
                &session.redis_username,
                &session.redis_password,
                &session.redis_password_file,
                (&session.redis_ca_file, &session.redis_client_cert_file, &session.redis_client_key_file),
                (&session.redis_key_prefix, &session.redis_connect_timeout, &session.redis_command_timeout),
            )),
        ),
        ("session.idle_timeout", digest(&session.idle_timeout)),
        ("session.absolute_timeout", digest(&session.absolute_timeout)),
        ("session.max_sessions", digest(&session.max_sessions)),
        ("session.max_pending_logins", digest(&session.max_pending_logins)),
        ("session.login_timeout", digest(&session.login_timeout)),
        ("log", digest(&raw.log)),
        ("traces", digest(&raw.traces)),
        ("demo", digest(&raw.demo)),
    ])
}
