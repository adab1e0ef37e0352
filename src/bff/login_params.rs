//! The sign-in parameters an SPA may pass through `/bff/login` to the provider (`prompt`,
//! `max_age`, `acr_values`, `login_hint`, `ui_locales`): only those `[oidc] login_params`
//! allows, each validated, so that the page chooses nothing else of the authorization request.

use super::query_param;
use crate::config::{LOGIN_PARAM_NAMES as NAMES, MAX_AGE_LIMIT, acr_values_ok};

/// What `/bff/login` passes on, and what the callback must remember of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoginParams {
    pub pairs: Vec<(&'static str, String)>,
    /// `prompt=none`: a failure goes back to the app with a marker, never to an error page.
    pub silent: bool,
    /// `max_age` asked: the ID token's `auth_time` must show an authentication that recent.
    pub max_age: Option<u64>,
    /// `acr_values` asked: the ID token's `acr` must be one of them (`oidc.enforce_acr_values`).
    pub acr_values: Option<String>,
}

/// Reads the allowed parameters from the query; a parameter not allowed, repeated, or with a
/// value the provider must not be sent is an error naming it.
pub fn parse(query: Option<&str>, allowed: &[String]) -> Result<LoginParams, LoginParamError> {
    let mut params = LoginParams::default();
    for name in NAMES {
        let value = query_param(query, name).map_err(|()| LoginParamError::Repeated(name))?;
        let Some(value) = value else { continue };
        if !allowed.iter().any(|a| a == name) {
            return Err(LoginParamError::NotAccepted(name));
        }
        let valid = match name {
            "prompt" => valid_prompt(&value),
            "max_age" => value.parse::<u64>().is_ok_and(|age| age <= MAX_AGE_LIMIT),
            "acr_values" => acr_values_ok(&value),
            "ui_locales" => tokens(&value, 128, |b| b.is_ascii_alphanumeric() || b == b'-'),
            _ => !value.is_empty() && value.len() <= 256 && !value.chars().any(char::is_control),
        };
        if !valid {
            return Err(LoginParamError::Unsendable(name));
        }
        if name == "prompt" {
            params.silent = value == "none";
        }
        let mut value = value;
        if name == "max_age" {
            // The provider gets the number as it is compared at the callback (`05` is `5`).
            params.max_age = value.parse().ok();
            value = params.max_age.unwrap_or_default().to_string();
        }
        if name == "acr_values" {
            params.acr_values = Some(value.clone());
        }
        params.pairs.push((name, value));
    }
    Ok(params)
}

/// A sign-in parameter refused, by name (the value is not echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginParamError {
    #[error("{0} is repeated")]
    Repeated(&'static str),
    #[error("{0} is not accepted here")]
    NotAccepted(&'static str),
    #[error("{0} has a value that cannot be sent to the provider")]
    Unsendable(&'static str),
}

/// `none` alone, or a set of `login`, `consent`, `select_account` (OpenID Connect Core §3.1.2.1).
fn valid_prompt(value: &str) -> bool {
    let words: Vec<&str> = value.split(' ').collect();
    if words == ["none"] {
        return true;
    }
    !words.is_empty() && words.iter().all(|w| matches!(*w, "login" | "consent" | "select_account"))
}

/// Space-separated tokens of allowed bytes, at most `max` bytes in all.
fn tokens(value: &str, max: usize, allowed: impl Fn(u8) -> bool) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value.split(' ').all(|token| !token.is_empty() && token.bytes().all(&allowed))
}

/// The error a silent sign-in came back with, as the marker the app receives: the codes of
/// OpenID Connect Core §3.1.2.6 as they are, anything else `login_failed`.
pub fn silent_failure_code(error: &str) -> &'static str {
    match error {
        "login_required" => "login_required",
        "consent_required" => "consent_required",
        "interaction_required" => "interaction_required",
        "account_selection_required" => "account_selection_required",
        _ => "login_failed",
    }
}

/// `return_to` with `login_error=<code>` added to its query (before any fragment).
pub fn with_marker(return_to: &str, code: &str) -> String {
    let (path, fragment) = match return_to.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (return_to, None),
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut out = format!("{path}{separator}login_error={code}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn only_allowed_and_valid_parameters_pass() {
        let all = allowed(&NAMES);
        let parsed = parse(Some("returnUrl=%2F&prompt=none&login_hint=alice%40example.com&max_age=300"), &all).unwrap();
        assert!(parsed.silent);
        assert_eq!(parsed.max_age, Some(300));
        assert_eq!(parsed.pairs.len(), 3);
        assert_eq!(parse(Some("returnUrl=%2F"), &[]).unwrap(), LoginParams::default());
        let padded = parse(Some("max_age=0300"), &all).unwrap();
        assert_eq!(padded.pairs, [("max_age", "300".to_string())], "the provider gets the number compared later");
        for (query, names) in [
            ("prompt=login", &[][..]),
            ("prompt=none%20login", &["prompt"][..]),
            ("prompt=create", &["prompt"]),
            ("max_age=-1", &["max_age"]),
            ("max_age=abc", &["max_age"]),
            ("acr_values=a%22b", &["acr_values"]),
            ("ui_locales=en_GB", &["ui_locales"]),
            ("login_hint=a%0Ab", &["login_hint"]),
            ("login_hint=", &["login_hint"]),
            ("prompt=login&prompt=consent", &["prompt"]),
        ] {
            assert!(parse(Some(query), &allowed(names)).is_err(), "{query} with {names:?}");
        }
        let steps = parse(Some("prompt=login%20consent&acr_values=urn:mfa%20phr&ui_locales=fr-CA%20en"), &all).unwrap();
        assert!(!steps.silent);
        assert_eq!(steps.pairs.len(), 3);
    }

    #[test]
    fn a_silent_failure_returns_to_the_app_with_a_marker() {
        assert_eq!(with_marker("/", "login_required"), "/?login_error=login_required");
        assert_eq!(with_marker("/app?x=1#top", "login_failed"), "/app?x=1&login_error=login_failed#top");
        assert_eq!(silent_failure_code("login_required"), "login_required");
        assert_eq!(silent_failure_code("<script>"), "login_failed");
    }
}
