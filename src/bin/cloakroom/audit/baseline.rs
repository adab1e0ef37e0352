//! The checks every BFF should pass: the login redirect, the refusals, the SPA's headers and
//! TLS, and (with a session) the session's life and logout.

use super::*;

/// The security profile each provider runs, as `/bff/providers` publishes it (cloakroom's; other
/// BFFs: skipped), and for a FAPI 2.0 one, what a browser can see of it: a sign-in that carries
/// only a pushed request's handle.
pub(super) async fn profile_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let listed = a.call(Method::GET, "/bff/providers", &[]).await?;
    let providers = serde_json::from_str::<serde_json::Value>(&listed.body).ok().filter(|_| listed.status.is_success());
    let Some(providers) = providers.as_ref().and_then(|p| p["providers"].as_array()) else {
        report.skip("deployment.profile", "the providers and their profiles are not published (/bff/providers)");
        return Ok(());
    };
    let named: Vec<(String, String)> = providers
        .iter()
        .map(|p| (p["id"].as_str().unwrap_or("?").to_string(), p["profile"].as_str().unwrap_or("none").to_string()))
        .collect();
    let said = named.iter().map(|(id, profile)| format!("{id}: {profile}")).collect::<Vec<_>>().join(", ");
    report.record("deployment.profile", true, said);
    for (id, _) in named.iter().filter(|(_, profile)| profile == "fapi2") {
        let login = a.call(Method::GET, &format!("/bff/login?provider={id}"), &[]).await?;
        let location = login.header(LOCATION.as_str()).and_then(|l| a.options.base.join(l).ok());
        let names: Vec<String> = location.iter().flat_map(|l| l.query_pairs().map(|(k, _)| k.into_owned())).collect();
        let pushed =
            names.iter().any(|k| k == "request_uri") && names.iter().all(|k| k == "client_id" || k == "request_uri");
        report.record(
            "fapi2.pushed",
            login.status.is_redirection() && pushed,
            format!("provider {id}: {} parameter(s) in the sign-in URL: {}", names.len(), names.join(", ")),
        );
    }
    Ok(())
}

pub(super) async fn login_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let login = a.call(Method::GET, "/bff/login", &[]).await?;
    let location = login.header(LOCATION.as_str()).and_then(|l| a.options.base.join(l).ok());
    let Some(location) = location.filter(|_| login.status.is_redirection()) else {
        report.record("login.redirect", false, format!("/bff/login answered {} without a redirect", login.status));
        return Ok(());
    };
    report.record(
        "login.redirect",
        true,
        format!("{} to {}", login.status.as_u16(), location.origin().ascii_serialization()),
    );
    let query: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    if query.contains_key("request_uri") {
        // RFC 9126: the parameters went to the provider directly; the browser (and so this
        // audit) sees only their handle.
        let only_handle = query.keys().all(|k| k == "client_id" || k == "request_uri");
        report.record(
            "login.pushed",
            only_handle,
            format!("pushed authorization request, {} parameter(s) in the URL", query.len()),
        );
        for name in ["login.response_type_code", "login.pkce_s256", "login.state", "login.nonce"] {
            report.skip(name, "pushed to the provider (PAR): not visible to a browser");
        }
    } else {
        report.record(
            "login.response_type_code",
            param("response_type") == "code",
            format!("response_type={:?}", param("response_type")),
        );
        let pkce = param("code_challenge_method") == "S256" && param("code_challenge").len() >= 43;
        report.record(
            "login.pkce_s256",
            pkce,
            format!(
                "code_challenge_method={:?}, code_challenge of {} chars",
                param("code_challenge_method"),
                param("code_challenge").len()
            ),
        );
        // 128 bits of base64url at least.
        report.record("login.state", param("state").len() >= 22, format!("state of {} chars", param("state").len()));
        report.record("login.nonce", param("nonce").len() >= 22, format!("nonce of {} chars", param("nonce").len()));
    }
    let cookies: Vec<String> =
        login.headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect();
    let weak: Vec<String> = cookies.iter().filter_map(|c| weak_cookie(c)).collect();
    report.record(
        "login.cookie_attributes",
        weak.is_empty(),
        if weak.is_empty() {
            format!("{} cookie(s), all Secure, HttpOnly, SameSite, __Host-/__Secure-", cookies.len())
        } else {
            weak.join("; ")
        },
    );
    Ok(())
}

pub(super) async fn refusal_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let header = a.options.csrf_header.clone();
    let csrf = (header.as_str(), "1");
    let user = a.call(Method::GET, "/bff/user", &[csrf]).await?;
    let json = user.header(CONTENT_TYPE.as_str()).is_some_and(|t| t.starts_with("application/json"));
    report.record(
        "user.unauthenticated_json_401",
        user.status == StatusCode::UNAUTHORIZED && json,
        format!("{} {}", user.status.as_u16(), user.header(CONTENT_TYPE.as_str()).unwrap_or("(no content-type)")),
    );

    let cookie = a.options.cookie.clone().map(|c| session_cookie(&c));
    let mut with_cookie: Vec<(&str, &str)> = Vec::new();
    if let Some(cookie) = &cookie {
        with_cookie.push((COOKIE.as_str(), cookie.as_str()));
    }
    let api = a.options.api_path.clone();
    let no_header = a.call(Method::GET, &api, &with_cookie).await?;
    // With a session, only the missing header can explain a refusal; without one, a 401 is
    // also a refusal.
    let refused =
        if cookie.is_some() { no_header.status == StatusCode::FORBIDDEN } else { no_header.status.is_client_error() };
    report.record(
        "csrf.header_required",
        refused,
        format!("{api} without {} answered {}", a.options.csrf_header, no_header.status.as_u16()),
    );
    let mut cross_site = with_cookie.clone();
    cross_site.extend([csrf, (ORIGIN.as_str(), "https://attacker.example"), ("sec-fetch-site", "cross-site")]);
    let cross = a.call(Method::GET, &api, &cross_site).await?;
    let refused = if cookie.is_some() { cross.status == StatusCode::FORBIDDEN } else { cross.status.is_client_error() };
    report.record(
        "csrf.cross_site_origin",
        refused,
        format!("{api} with a cross-site Origin answered {}", cross.status.as_u16()),
    );
    Ok(())
}

pub(super) async fn spa_and_tls_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    // As a browser navigation asks for it.
    let page = a.call(Method::GET, "/", &[("accept", "text/html"), ("sec-fetch-mode", "navigate")]).await?;
    if page.status == StatusCode::NOT_FOUND {
        report.skip("spa.security_headers", "no page at /");
    } else {
        let mut missing = Vec::new();
        if page.header("content-security-policy").is_none() {
            missing.push("Content-Security-Policy");
        }
        if page.header("x-content-type-options") != Some("nosniff") {
            missing.push("X-Content-Type-Options: nosniff");
        }
        let framing = page.header("x-frame-options").is_some()
            || page.header("content-security-policy").is_some_and(|c| c.contains("frame-ancestors"));
        if !framing {
            missing.push("X-Frame-Options or CSP frame-ancestors");
        }
        if page.header("referrer-policy").is_none() {
            missing.push("Referrer-Policy");
        }
        report.record(
            "spa.security_headers",
            missing.is_empty(),
            if missing.is_empty() {
                "CSP, nosniff, framing, referrer policy".into()
            } else {
                format!("missing: {}", missing.join(", "))
            },
        );
    }
    let https = a.options.base.scheme() == "https";
    let loopback = match a.options.base.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if https {
        let max_age = page
            .header("strict-transport-security")
            .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("max-age=")))
            .and_then(|v| v.trim_matches('"').parse::<u64>().ok());
        report.record(
            "tls.hsts",
            max_age.is_some_and(|age| age >= 15_552_000),
            match max_age {
                Some(age) => format!("Strict-Transport-Security max-age={age} (at least 180 days wanted)"),
                None => "no Strict-Transport-Security".into(),
            },
        );
    } else if loopback {
        report.skip("tls.hsts", "plain http on loopback (local development)");
    } else {
        report.record("tls.hsts", false, "served over plain http: cookies marked Secure never reach it from a browser");
    }
    Ok(())
}

pub(super) async fn session_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let Some(given) = a.options.cookie.clone() else {
        for name in
            ["session.cookie_name", "session.user_token_free", "logout.cookie_attributes", "logout.ends_session"]
        {
            report.skip(name, "no --cookie given");
        }
        return Ok(());
    };
    let cookie = session_cookie(&given);
    let name = cookie.split_once('=').map_or("", |(n, _)| n).to_string();
    report.record(
        "session.cookie_name",
        name.starts_with("__Host-"),
        format!("{name} (__Host- pins Secure, Path=/, no Domain)"),
    );

    let header = a.options.csrf_header.clone();
    let csrf = (header.as_str(), "1");
    let user = a.call(Method::GET, "/bff/user", &[csrf, (COOKIE.as_str(), &cookie)]).await?;
    let leaks = ["access_token", "refresh_token", "id_token"].iter().any(|k| user.body.contains(k));
    report.record(
        "session.user_token_free",
        user.status == StatusCode::OK && !leaks && jwt_shaped(&user.body).is_empty(),
        if user.status != StatusCode::OK {
            format!("/bff/user with the session answered {} (is the cookie still signed in?)", user.status.as_u16())
        } else if leaks {
            "/bff/user names a token field".into()
        } else {
            "/bff/user answers claims only".into()
        },
    );

    // A UTF-8 cookie beside the session: logout must end the session all the same.
    let origin = a.origin.clone();
    let mixed = format!("lang=fran\u{e7}ais; {cookie}");
    let logout = a
        .call(
            Method::POST,
            "/bff/logout",
            &[csrf, (COOKIE.as_str(), &mixed), (ORIGIN.as_str(), &origin), ("sec-fetch-site", "same-origin")],
        )
        .await?;
    let cleared: Vec<String> = logout
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|c| c.starts_with(&format!("{name}=")))
        .map(String::from)
        .collect();
    match cleared.first() {
        Some(set_cookie) => {
            let weak = weak_cookie(set_cookie);
            report.record(
                "logout.cookie_attributes",
                weak.is_none(),
                weak.unwrap_or_else(|| "cleared with Secure, HttpOnly, SameSite".into()),
            );
        }
        None => report.record(
            "logout.cookie_attributes",
            false,
            format!("logout ({}) did not clear {name}", logout.status.as_u16()),
        ),
    }
    let after = a.call(Method::GET, "/bff/user", &[csrf, (COOKIE.as_str(), &cookie)]).await?;
    let ended =
        (logout.status.is_success() || logout.status.is_redirection()) && after.status == StatusCode::UNAUTHORIZED;
    report.record(
        "logout.ends_session",
        ended,
        format!("logout answered {}; the old cookie then got {}", logout.status.as_u16(), after.status.as_u16()),
    );
    Ok(())
}
