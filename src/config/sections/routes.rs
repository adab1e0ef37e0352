//! `[[routes]]`: prefixes, upstreams, token policies, methods, rules and step-up.

use super::*;

/// `[[routes]]`.
pub(in crate::config) fn routes(check: &mut Check, raw: &[RawRoute]) -> Vec<RouteConfig> {
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
        let (tls, client_certificate) = check.client_tls(
            &format!("routes[{index}]"),
            route.ca_file.as_deref(),
            route.client_cert_file.as_deref(),
            route.client_key_file.as_deref(),
        );
        let Some(upstream) = check.url(&key("upstream"), &route.upstream) else {
            continue;
        };
        let identity =
            route.identity.as_ref().and_then(|raw| identity(check, &key("identity"), policy, raw, &upstream));
        let exchange = route.exchange.as_ref().and_then(|raw| exchange(check, &key("exchange"), route, raw));
        if route.dpop && route.token != TokenPolicy::User {
            check.fail(key("dpop"), "proves the signed-in user's DPoP key: only on token = \"user\" routes");
        } else if route.dpop && route.exchange.is_some() {
            check.fail(key("dpop"), "is not offered with [routes.exchange]: exchanged tokens are Bearer tokens");
        } else if route.dpop && route.identity.as_ref().is_some_and(|identity| !identity.bearer) {
            check.fail(key("dpop"), "sends no token: [routes.identity] has bearer = false");
        }
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
            client_certificate,
            methods,
            rules,
            step_up,
            identity,
            exchange,
            dpop: route.dpop,
        });
    }

    routes
}

/// A route sending DPoP-bound tokens needs a provider that binds them (`dpop = true`).
pub(in crate::config) fn dpop_providers(check: &mut Check, providers: &[&OidcConfig], routes: &[RouteConfig]) {
    if providers.iter().any(|p| p.dpop) {
        return;
    }
    for (index, route) in routes.iter().enumerate().filter(|(_, r)| r.dpop) {
        check.fail(
            format!("routes[{index}].dpop"),
            format!("{:?} needs a provider with dpop = true: no session would have a DPoP key", route.prefix),
        );
    }
}

/// A provider binding its tokens to its client certificate (RFC 8705 §3): every route that
/// carries a token presents that same certificate, over https. A token bound to it is of no
/// use anywhere else, and the upstream would refuse it (and a route presenting another
/// certificate would be a configuration that only fails at the first call).
pub(in crate::config) fn bound_certificates(check: &mut Check, providers: &[&OidcConfig], routes: &[RouteConfig]) {
    for provider in providers.iter().filter(|p| p.certificate_bound_tokens) {
        let Some(bound) = &provider.client_certificate else { continue };
        let carries_token = |r: &RouteConfig| {
            r.policy != TokenPolicy::None && r.identity.as_ref().is_none_or(|identity| identity.bearer)
        };
        for (index, route) in routes.iter().enumerate().filter(|(_, r)| carries_token(r)) {
            if route.client_certificate.as_deref() != Some(&**bound) {
                check.fail(
                    format!("routes[{index}].client_cert_file"),
                    format!(
                        "{:?} carries tokens provider {:?} binds to its client certificate (certificate_bound_tokens): present the same one (its client_cert_file and client_key_file)",
                        route.prefix, provider.id
                    ),
                );
            } else if route.upstream_origin != http::uri::Scheme::HTTPS {
                check.fail(
                    format!("routes[{index}].upstream"),
                    format!(
                        "{:?} carries certificate-bound tokens: the certificate needs an https upstream",
                        route.prefix
                    ),
                );
            }
        }
    }
}

/// When routes name resources (RFC 8707), the sign-in asks for all of them, and a provider may
/// then give the sign-in's own token any of their audiences: the routes that carry that token
/// would forward a token meant for another API. So `oidc.resource` (their audience) must be set.
pub(in crate::config) fn default_audience(check: &mut Check, default_resource: Option<&str>, routes: &[RouteConfig]) {
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
pub(in crate::config) fn step_up_login_params(check: &mut Check, login_params: &[String], routes: &[RouteConfig]) {
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

/// Headers an identity header may not be: what cloakroom or HTTP itself sets on the way
/// upstream (the credential, cookies, framing, forwarding, tracing) and the assertion's own.
const RESERVED_HEADERS: [&str; 14] = [
    "authorization",
    "cookie",
    "cookie2",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "forwarded",
    "x-request-id",
    ASSERTION_HEADER,
];

/// A route's `[routes.identity]`: headers (name → claim) and the assertion, for a signed-in
/// user; so only on routes whose policy reads the user's session.
fn identity(
    check: &mut Check,
    key: &str,
    policy: TokenPolicy,
    raw: &RawIdentity,
    upstream: &Url,
) -> Option<IdentityConfig> {
    if !matches!(policy, TokenPolicy::User | TokenPolicy::UserOrNone | TokenPolicy::UserOrClient) {
        check.fail(
            key,
            "needs a signed-in user: only on routes with token = \"user\", \"user-or-none\" or \"user-or-client\"",
        );
        return None;
    }
    let named: Vec<(String, String)> = match &raw.headers {
        Some(headers) => headers.iter().map(|(h, c)| (h.clone(), c.clone())).collect(),
        None => DEFAULT_IDENTITY_HEADERS.iter().map(|(h, c)| (h.to_string(), c.to_string())).collect(),
    };
    let mut headers: Vec<(HeaderName, String)> = Vec::new();
    for (name, claim) in named {
        let header_key = format!("{key}.headers.{name:?}");
        let lower = name.trim().to_ascii_lowercase();
        let Ok(header) = HeaderName::from_bytes(lower.as_bytes()) else {
            check.fail(header_key, "is not an HTTP header name");
            continue;
        };
        if RESERVED_HEADERS.contains(&header.as_str())
            || ["x-forwarded-", "proxy-", "sec-", "keep-alive"].iter().any(|p| header.as_str().starts_with(p))
        {
            check.fail(header_key, "is a header cloakroom or HTTP sets on the way upstream; choose another name");
            continue;
        }
        let claim = claim.trim();
        if claim.is_empty() || claim.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            check.fail(header_key, "must name a claim (no quote, backslash or control character)");
            continue;
        }
        if headers.iter().any(|(h, _)| *h == header) {
            check.fail(header_key, "is named twice (header names have no case)");
            continue;
        }
        headers.push((header, claim.to_string()));
    }
    let assertion = raw.assertion.then(|| {
        let audience = raw.audience.as_deref().map(str::trim).filter(|a| !a.is_empty());
        audience.map_or_else(|| upstream.as_str().to_string(), str::to_string)
    });
    if raw.audience.is_some() && !raw.assertion {
        check.fail(format!("{key}.audience"), "is the assertion's audience: set assertion = true");
    }
    if headers.is_empty() && assertion.is_none() {
        check.fail(key, "sends no identity: name headers, set assertion = true, or leave the section out");
    }
    Some(IdentityConfig { headers, assertion, bearer: raw.bearer })
}

/// A route's `[routes.exchange]`: an `audience`, a `resource` or both, optional `scopes`; on a
/// `token = "user"` route only (the subject is the user's token), without the route's own
/// `resource` (one way to get a route its token).
fn exchange(check: &mut Check, key: &str, route: &RawRoute, raw: &RawExchange) -> Option<Exchange> {
    if route.token != TokenPolicy::User {
        check.fail(key, "exchanges the signed-in user's token: only on token = \"user\" routes");
        return None;
    }
    if route.resource.is_some() || !route.scopes.is_empty() {
        check.fail(key, "replaces the route's resource and scopes: set them in [routes.exchange] instead");
        return None;
    }
    let text = |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let (audience, resource) = (text(&raw.audience), text(&raw.resource));
    if let Some(resource) = &resource {
        check.resource(&format!("{key}.resource"), resource);
    }
    if audience.is_none() && resource.is_none() {
        check.fail(key, "needs an audience, a resource or both: what the token is for");
        return None;
    }
    if let Some(bad) = raw.scopes.iter().find(|s| !scope_token_ok(s)) {
        check.fail(format!("{key}.scopes"), format!("{bad:?} is not a scope (RFC 6749 §3.3)"));
        return None;
    }
    let key = format!(
        "x {} {} {}",
        audience.as_deref().unwrap_or_default(),
        resource.as_deref().unwrap_or_default(),
        raw.scopes.join(",")
    );
    Some(Exchange { audience, resource, scopes: raw.scopes.clone(), key })
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
