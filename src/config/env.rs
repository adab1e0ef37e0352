//! Environment overrides: `CLOAKROOM_<SECTION>__<KEY>=value` replaces `<section>.<key>` in the file.
//!
//! Arrays of tables are addressed by index (`CLOAKROOM_ROUTES__0__UPSTREAM`). A value that looks
//! like a TOML array (`["a", "b"]`) is parsed as one; everything else is inserted as a string and
//! the typed deserializers in [`super::raw`] take it from there.

use toml::{Table, Value};

pub const PREFIX: &str = "CLOAKROOM_";

/// Applies every `CLOAKROOM_…` variable to `table`; returns the (key, message) of any that cannot be.
pub fn apply_overrides<I>(table: &mut Table, vars: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut errors = Vec::new();
    for (name, value) in vars {
        let Some(path) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let segments: Vec<String> = path.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let key = segments.join(".");
        if segments.len() < 2 || segments.iter().any(String::is_empty) {
            errors.push((key, format!("environment variable {name} must look like CLOAKROOM_<SECTION>__<KEY>")));
            continue;
        }
        if let Err(message) = set_path(table, &segments, parse_value(&value)) {
            errors.push((key, format!("{message} (from environment variable {name})")));
        }
    }
    errors
}

fn parse_value(raw: &str) -> Value {
    let trimmed = raw.trim();
    if trimmed.starts_with('[')
        && let Ok(mut wrapper) = format!("v = {trimmed}").parse::<Table>()
        && let Some(value) = wrapper.remove("v")
    {
        return value;
    }
    Value::String(raw.to_string())
}

/// Why a variable's path cannot be set in the configuration's table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PathError {
    #[error("empty key")]
    Empty,
    #[error("{0:?} is not an array index")]
    NotAnIndex(String),
    #[error("index {index} skips entries (the list has {len})")]
    SkipsEntries { index: usize, len: usize },
    #[error("cannot set a key inside a value that is not a table")]
    NotATable,
}

fn set_path(table: &mut Table, segments: &[String], value: Value) -> Result<(), PathError> {
    let (first, rest) = segments.split_first().ok_or(PathError::Empty)?;
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let child = table.entry(first.clone()).or_insert_with(|| {
        if rest[0].parse::<usize>().is_ok() { Value::Array(Vec::new()) } else { Value::Table(Table::new()) }
    });
    set_in_value(child, rest, value)
}

fn set_in_value(node: &mut Value, segments: &[String], value: Value) -> Result<(), PathError> {
    match node {
        Value::Table(table) => set_path(table, segments, value),
        Value::Array(items) => {
            let index: usize = segments[0].parse().map_err(|_| PathError::NotAnIndex(segments[0].clone()))?;
            if index > items.len() {
                return Err(PathError::SkipsEntries { index, len: items.len() });
            }
            if index == items.len() {
                items.push(Value::Table(Table::new()));
            }
            let rest = &segments[1..];
            if rest.is_empty() {
                items[index] = value;
                Ok(())
            } else {
                set_in_value(&mut items[index], rest, value)
            }
        }
        _ => Err(PathError::NotATable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_nested_keys_and_arrays_of_tables() {
        let mut table: Table = "[oidc]\nclient_id = \"a\"\n[[routes]]\nprefix = \"/api/\"\n".parse().unwrap();
        let errors = apply_overrides(
            &mut table,
            vars(&[
                ("CLOAKROOM_OIDC__CLIENT_ID", "b"),
                ("CLOAKROOM_OIDC__SCOPES", r#"["openid", "email"]"#),
                ("CLOAKROOM_ROUTES__0__UPSTREAM", "http://127.0.0.1:1/"),
                ("CLOAKROOM_ROUTES__1__PREFIX", "/other/"),
                ("PATH", "/usr/bin"),
            ]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(table["oidc"]["client_id"].as_str(), Some("b"));
        assert_eq!(table["oidc"]["scopes"].as_array().map(Vec::len), Some(2));
        assert_eq!(table["routes"][0]["upstream"].as_str(), Some("http://127.0.0.1:1/"));
        assert_eq!(table["routes"][0]["prefix"].as_str(), Some("/api/"));
        assert_eq!(table["routes"][1]["prefix"].as_str(), Some("/other/"));
    }

    #[test]
    fn numbers_stay_text_so_secrets_keep_their_digits() {
        let mut table = Table::new();
        apply_overrides(&mut table, vars(&[("CLOAKROOM_OIDC__CLIENT_SECRET", "0123")]));
        assert_eq!(table["oidc"]["client_secret"].as_str(), Some("0123"));
    }

    #[test]
    fn malformed_names_are_reported_with_their_key() {
        let mut table = Table::new();
        let errors =
            apply_overrides(&mut table, vars(&[("CLOAKROOM_LISTEN", "x"), ("CLOAKROOM_ROUTES__5__PREFIX", "/a/")]));
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].0, "listen");
        assert_eq!(errors[1].0, "routes.5.prefix");
    }
}
