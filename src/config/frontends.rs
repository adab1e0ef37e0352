//! `[[frontends]]`: more frontends on one instance, each chosen by the host a request names.
//!
//! A frontend is a whole configuration: the top level's, with the frontend's own `public_url`,
//! client registration (`[frontends.oidc]`, `client_id` required), cookie and session choices
//! (`[frontends.session]`), anti-CSRF header (`[frontends.csrf]`) merged over it, and its own
//! `[frontends.spa]`, `[[frontends.routes]]` and `[[frontends.providers]]`, which are not
//! inherited (a frontend without routes has none). What the instance shares (listeners, the
//! session store and its keys, limits, logs, traces) is the top level's alone. Each is
//! validated as the whole it makes, its problems named under `frontends[N].`.

use super::{ConfigError, validate};
use toml::{Table, Value};

/// Keys a frontend may set, and how: merged over the top level's table, or its own.
const MERGED: [&str; 3] = ["oidc", "session", "csrf"];
const OWN: [&str; 3] = ["spa", "routes", "providers"];
/// `[frontends.session]` keys: the rest belongs to the store every frontend shares.
const SESSION_KEYS: [&str; 6] =
    ["cookie_name", "legacy_cookie_names", "same_site", "allow_remember", "max_sessions_per_user", "clear_site_data"];

/// Takes `frontends` out of `table` and makes each frontend's whole configuration table from
/// what is left and its own settings; problems are pushed to `errors` under `frontends[N]`.
pub(super) fn split(table: &mut Table, errors: &mut Vec<ConfigError>) -> Vec<(usize, Table)> {
    let Some(frontends) = table.remove("frontends") else { return Vec::new() };
    let Value::Array(frontends) = frontends else {
        errors.push(error("frontends", "must be an array of tables: [[frontends]]"));
        return Vec::new();
    };
    let mut tables = Vec::new();
    for (index, frontend) in frontends.into_iter().enumerate() {
        let key = |name: &str| format!("frontends[{index}].{name}");
        let Value::Table(frontend) = frontend else {
            errors.push(error(&format!("frontends[{index}]"), "must be a table"));
            continue;
        };
        let mut merged = table.clone();
        for own in OWN {
            merged.remove(own);
        }
        let before = errors.len();
        for (name, value) in frontend {
            match (name.as_str(), value) {
                ("public_url", Value::String(url)) => {
                    if let Some(Value::Table(server)) = merged.get_mut("server") {
                        server.insert("public_url".into(), Value::String(url));
                    } else {
                        let server = Table::from_iter([("public_url".to_string(), Value::String(url))]);
                        merged.insert("server".into(), Value::Table(server));
                    }
                }
                ("public_url", _) => errors.push(error(&key("public_url"), "must be a URL (a string)")),
                (section, Value::Table(settings)) if MERGED.contains(&section) => {
                    if section == "session"
                        && let Some(shared) = settings.keys().find(|k| !SESSION_KEYS.contains(&k.as_str()))
                    {
                        errors.push(error(
                            &key(&format!("session.{shared}")),
                            "is shared by every frontend: set it in the top-level [session]",
                        ));
                        continue;
                    }
                    let target = merged.entry(section).or_insert_with(|| Value::Table(Table::new()));
                    if let Value::Table(target) = target {
                        target.extend(settings);
                    }
                }
                (section, value) if OWN.contains(&section) => {
                    merged.insert(section.into(), value);
                }
                (other, _) => errors.push(error(
                    &key(other),
                    "is not a frontend setting (public_url, oidc, session, csrf, spa, routes, providers)",
                )),
            }
        }
        if !has_client_id(&merged, &table_client_id(table)) {
            errors.push(error(&key("oidc.client_id"), "is required: each frontend has its own client registration"));
        }
        if errors.len() == before {
            tables.push((index, merged));
        }
    }
    tables
}

/// Validates a frontend's table as a whole configuration, naming its problems under
/// `frontends[N].`.
pub(super) fn validate_one(index: usize, table: Table, errors: &mut Vec<ConfigError>) -> Option<super::Config> {
    let mut own = Vec::new();
    let raw = validate::deserialize_sections(table, &mut own);
    let config = validate::validate(raw, &mut own);
    for mut problem in own {
        problem.key = format!("frontends[{index}].{}", problem.key);
        errors.push(problem);
    }
    config
}

fn table_client_id(table: &Table) -> Option<String> {
    table.get("oidc")?.get("client_id")?.as_str().map(String::from)
}

/// The frontend set a `client_id` of its own (not the top level's).
fn has_client_id(merged: &Table, top_level: &Option<String>) -> bool {
    let own = merged.get("oidc").and_then(|o| o.get("client_id")).and_then(Value::as_str);
    own.is_some_and(|id| Some(id) != top_level.as_deref())
}

fn error(key: &str, message: &str) -> ConfigError {
    ConfigError { key: key.to_string(), message: message.to_string() }
}
