//! Step-up: a route that needs a stronger (`acr`) or more recent (`auth_time`) sign-in than the
//! session has, and an upstream that says so itself (RFC 9470's `insufficient_user_authentication`
//! challenge), both answer the SPA the same way: `401 step_up_required` with what is needed and a
//! ready `/bff/login?…&returnUrl=` link, to which the SPA appends its own (encoded) location.

use crate::config::{MAX_AGE_LIMIT, StepUp, acr_values_ok};
use crate::error::ApiError;
use crate::oidc::authentication;
use crate::respond::{Body, json};
use crate::session::claims::{Found, RawClaims};
use http::Response;
use http::header::{HeaderMap, WWW_AUTHENTICATE};

/// Whether the session's claims meet the route's requirement at `now` (unix seconds): `acr` a
/// string in the set, `auth_time` an integer at most `max_age` ago, by the one rule the callback
/// uses too ([`authentication`]: else a sign-in the callback took as fresh could be refused
/// here, and the user asked to step up again and again). Read in place, allocating nothing.
pub fn satisfied(step_up: &StepUp, claims: &RawClaims, now: u64, skew: u64) -> bool {
    const ACR: usize = 0;
    const AUTH_TIME: usize = 1;
    let (mut acr_ok, mut auth_time) = (false, None);
    let readable = claims.scan(
        |name| match name {
            "acr" => Some(ACR),
            "auth_time" => Some(AUTH_TIME),
            _ => None,
        },
        |claim, value, found| match (claim, value, found) {
            // Configured values have nothing JSON escapes (`acr_values_ok`), so the string's
            // text between its quotes is the value itself.
            (ACR, json, Found::Value) => {
                let acr = json.strip_prefix('"').and_then(|j| j.strip_suffix('"'));
                acr_ok = authentication::acr_is_one_of(acr, step_up.acr_values.iter().map(String::as_str));
            }
            (AUTH_TIME, json, Found::Value) => auth_time = json.parse::<u64>().ok(),
            _ => {}
        },
    );
    let acr_ok = step_up.acr_values.is_empty() || acr_ok;
    let age_ok = step_up.max_age.is_none_or(|max_age| authentication::recent_enough(auth_time, max_age, now, skew));
    readable && acr_ok && age_ok
}

/// What a step-up sign-in must achieve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Space-separated, as `acr_values` is sent to the provider.
    pub acr_values: Option<String>,
    pub max_age: Option<u64>,
}

impl Challenge {
    pub fn of_route(step_up: &StepUp) -> Self {
        let acr_values = (!step_up.acr_values.is_empty()).then(|| step_up.acr_values.join(" "));
        Challenge { acr_values, max_age: step_up.max_age }
    }

    /// The upstream's own step-up challenge (RFC 9470 §3): a `Bearer` challenge with
    /// `error="insufficient_user_authentication"`, and `acr_values` / `max_age` the provider
    /// may be sent. Anything else, or anything unreadable, is `None`: the upstream's answer then
    /// goes to the SPA as it is.
    pub fn from_upstream(headers: &HeaderMap) -> Option<Self> {
        for value in headers.get_all(WWW_AUTHENTICATE) {
            let Some(params) = bearer_params(value.as_bytes()) else { continue };
            let get = |name: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
            if get("error") != Some("insufficient_user_authentication") {
                continue;
            }
            // Only what `/bff/login` would pass on: the link must work.
            let acr_values = match get("acr_values") {
                Some(v) if !acr_values_ok(v) => return None,
                other => other.map(String::from),
            };
            let max_age = match get("max_age") {
                Some(v) => Some(v.parse::<u64>().ok().filter(|age| *age <= MAX_AGE_LIMIT)?),
                None => None,
            };
            return Some(Challenge { acr_values, max_age });
        }
        None
    }

    /// `401 step_up_required`, with the requirement and the sign-in link (carrying only the
    /// parameters `/bff/login` is configured to pass on).
    pub fn response(&self, login_params: &[String]) -> Response<Body> {
        let (status, code, description) = ApiError::StepUpRequired.parts();
        let allowed = |name: &str| login_params.iter().any(|p| p == name);
        let mut login = String::from("/bff/login?");
        if let Some(acr) = self.acr_values.as_deref().filter(|_| allowed("acr_values")) {
            login.push_str("acr_values=");
            login.extend(url::form_urlencoded::byte_serialize(acr.as_bytes()));
            login.push('&');
        }
        if let Some(max_age) = self.max_age.filter(|_| allowed("max_age")) {
            login.push_str(&format!("max_age={max_age}&"));
        }
        login.push_str("returnUrl=");
        json(
            status,
            &serde_json::json!({
                "error": code,
                "error_description": description,
                "acr_values": self.acr_values,
                "max_age": self.max_age,
                "login_url": login,
            }),
        )
    }
}

/// The auth-params of the `Bearer` challenge in one `WWW-Authenticate` value (RFC 9110 §11.6.1:
/// challenges separated by commas, each a scheme then `name=token` or `name="quoted"` pairs).
/// `None` when there is no Bearer challenge or the value does not parse.
/// Whether an upstream's `401` says the token itself is no good (RFC 6750 `invalid_token`:
/// revoked, expired early, signed with a key the upstream no longer trusts), as opposed to a
/// step-up or any other refusal.
pub fn rejects_token(headers: &HeaderMap) -> bool {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| bearer_params(v.as_bytes()))
        .any(|params| params.iter().any(|(n, v)| n.eq_ignore_ascii_case("error") && v == "invalid_token"))
}

/// Whether a DPoP upstream asks for a proof with its nonce (RFC 9449 §9: `use_dpop_nonce`,
/// its `DPoP-Nonce` header beside).
pub fn asks_for_dpop_nonce(headers: &HeaderMap) -> bool {
    headers.contains_key("dpop-nonce")
        && headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| bearer_params(v.as_bytes()))
            .any(|params| params.iter().any(|(n, v)| n.eq_ignore_ascii_case("error") && v == "use_dpop_nonce"))
}

/// The parameters of a token scheme's challenges (Bearer or DPoP) in a `WWW-Authenticate` value.
fn bearer_params(value: &[u8]) -> Option<Vec<(String, String)>> {
    let mut at = 0;
    let mut in_bearer = false;
    let mut found = false;
    let mut params = Vec::new();
    loop {
        while at < value.len() && matches!(value[at], b' ' | b'\t' | b',') {
            at += 1;
        }
        if at >= value.len() {
            return found.then_some(params);
        }
        let start = at;
        while at < value.len() && is_tchar(value[at]) {
            at += 1;
        }
        if at == start {
            return None;
        }
        let name = std::str::from_utf8(&value[start..at]).ok()?;
        let mut next = at;
        while next < value.len() && matches!(value[next], b' ' | b'\t') {
            next += 1;
        }
        if value.get(next) != Some(&b'=') {
            // A new challenge's scheme: a token's, Bearer (RFC 6750) or DPoP (RFC 9449 §7.1).
            in_bearer = name.eq_ignore_ascii_case("bearer") || name.eq_ignore_ascii_case("dpop");
            found |= in_bearer;
            continue;
        }
        at = next + 1;
        while at < value.len() && matches!(value[at], b' ' | b'\t') {
            at += 1;
        }
        let param_value = if value.get(at) == Some(&b'"') {
            at += 1;
            let mut text = Vec::new();
            loop {
                match value.get(at)? {
                    b'"' => break,
                    b'\\' => {
                        at += 1;
                        text.push(*value.get(at)?);
                    }
                    byte => text.push(*byte),
                }
                at += 1;
            }
            at += 1;
            String::from_utf8(text).ok()?
        } else {
            let start = at;
            while at < value.len() && is_tchar(value[at]) {
                at += 1;
            }
            std::str::from_utf8(&value[start..at]).ok()?.to_string()
        };
        if in_bearer {
            params.push((name.to_string(), param_value));
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn claims(value: Value) -> RawClaims {
        RawClaims::of(&value)
    }

    #[test]
    fn acr_and_auth_time_are_checked_against_the_route() {
        let both = StepUp { acr_values: vec!["mfa".into(), "hwk".into()], max_age: Some(300) };
        let now = 10_000;
        assert!(satisfied(&both, &claims(json!({"acr": "mfa", "auth_time": now - 300})), now, 0));
        assert!(satisfied(&both, &claims(json!({"acr": "hwk", "auth_time": now})), now, 0));
        assert!(!satisfied(&both, &claims(json!({"acr": "pwd", "auth_time": now})), now, 0), "a weaker acr");
        assert!(!satisfied(&both, &claims(json!({"acr": "mfa", "auth_time": now - 301})), now, 0), "too old");
        assert!(!satisfied(&both, &claims(json!({"acr": "mfa"})), now, 0), "no auth_time");
        assert!(!satisfied(&both, &claims(json!({"auth_time": now})), now, 0), "no acr");
        assert!(!satisfied(&both, &claims(json!({"acr": ["mfa"], "auth_time": now})), now, 0), "acr is a string");
        assert!(!satisfied(&both, &claims(json!({"acr": "mfa", "auth_time": now + 5})), now, 0), "from the future");
        // The provider's clock a little off ours, as the callback allows (`oidc.clock_skew`).
        assert!(satisfied(&both, &claims(json!({"acr": "mfa", "auth_time": now + 5})), now, 60), "5 s ahead");
        assert!(!satisfied(&both, &claims(json!({"acr": "mfa", "auth_time": now + 61})), now, 60), "past the skew");
        assert!(satisfied(&both, &claims(json!({"acr": "mfa", "auth_time": now - 360})), now, 60));
        assert!(!satisfied(&both, &claims(json!({"acr": "mfa", "auth_time": now - 361})), now, 60), "too old");
        let acr_only = StepUp { acr_values: vec!["mfa".into()], max_age: None };
        assert!(satisfied(&acr_only, &claims(json!({"acr": "mfa"})), now, 0));
        let age_only = StepUp { acr_values: vec![], max_age: Some(60) };
        assert!(satisfied(&age_only, &claims(json!({"auth_time": now - 10})), now, 0));
        assert!(!satisfied(&age_only, &claims(json!({"auth_time": (now - 10) as f64 + 0.5})), now, 0), "an integer");
        assert!(!satisfied(&age_only, &claims(json!({"auth_time": [now - 10]})), now, 0), "not in an array");
        assert!(!satisfied(&age_only, &claims(json!([{"auth_time": now - 10}])), now, 0), "claims are an object");
        let many = claims(json!({"acr": "mfa", "auth_time": now, "groups": ["a", "b"], "name": "A \"B\""}));
        let mut met = false;
        let counted = allocation_counter::measure(|| met = satisfied(&both, &many, now, 0));
        assert!(met);
        assert_eq!(counted.count_total, 0, "the check runs on every call: {counted:?}");
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(WWW_AUTHENTICATE, http::HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    #[test]
    fn reads_the_rfc_9470_challenge() {
        let challenge = Challenge::from_upstream(&headers(&[
            br#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="myACR""#,
        ]));
        assert_eq!(challenge, Some(Challenge { acr_values: Some("myACR".into()), max_age: None }));
        let challenge = Challenge::from_upstream(&headers(&[
            b"Basic realm=\"x\", Bearer realm=\"api\", error=insufficient_user_authentication, max_age=5",
        ]));
        assert_eq!(challenge, Some(Challenge { acr_values: None, max_age: Some(5) }));
        let challenge = Challenge::from_upstream(&headers(&[
            b"Basic realm=x",
            b"bearer ERROR=\"insufficient_user_authentication\", acr_values=\"a b\", max_age=\"60\"",
        ]));
        assert_eq!(challenge, Some(Challenge { acr_values: Some("a b".into()), max_age: Some(60) }));
    }

    #[test]
    fn anything_else_is_not_a_step_up() {
        for value in [
            &b"Bearer error=\"invalid_token\""[..],
            b"Basic realm=\"x\", error=\"insufficient_user_authentication\"",
            b"Bearer error=\"insufficient_user_authentication\", max_age=-1",
            b"Bearer error=\"insufficient_user_authentication\", max_age=\"soon\"",
            b"Bearer error=\"insufficient_user_authentication\", acr_values=\"a\\\"b\"",
            b"Bearer error=\"insufficient_user_authentication\", acr_values=\"",
            b"Bearer error=\"insufficient_user_authentication\" ,, =x",
            b"Bearer error=\"insufficient_user_authentication\", acr_values=\"caf\xc3\xa9\"",
            b"",
            b"Bearer",
            b"Bearer error=\"insufficient_user_authentication\", acr_values=\"\"",
        ] {
            assert_eq!(Challenge::from_upstream(&headers(&[value])), None, "{}", String::from_utf8_lossy(value));
        }
    }

    #[tokio::test]
    async fn the_answer_names_what_is_needed_and_a_login_link() {
        use http_body_util::BodyExt;
        let challenge = Challenge { acr_values: Some("mfa hwk".into()), max_age: Some(300) };
        let all = vec!["acr_values".to_string(), "max_age".to_string()];
        let response = challenge.response(&all);
        assert_eq!(response.status(), 401);
        let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["error"], "step_up_required");
        assert_eq!(body["acr_values"], "mfa hwk");
        assert_eq!(body["max_age"], 300);
        assert_eq!(body["login_url"], "/bff/login?acr_values=mfa+hwk&max_age=300&returnUrl=");
        let body = challenge.response(&[]).into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["login_url"], "/bff/login?returnUrl=", "only parameters /bff/login passes on");
    }
}
