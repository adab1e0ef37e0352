//! The hostile-input probes (issue 13 and after): paths, methods, `Host`, the callback's
//! parameters, cookies.

use super::*;

pub(super) async fn hostile_input_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let header = a.options.csrf_header.clone();
    let csrf: (&str, &[u8]) = (header.as_str(), b"1");
    let api = a.options.api_path.trim_end_matches('/').to_string();
    path_checks(a, report, csrf, &api).await?;
    method_checks(a, report, csrf, &api).await?;
    host_checks(a, report, csrf).await?;
    callback_checks(a, report).await?;
    cookie_checks(a, report, csrf, &api).await
}

/// Dot segments in the spellings servers normalise: refused, never forwarded.
async fn path_checks(a: &mut Auditor, report: &mut Report, csrf: (&str, &[u8]), api: &str) -> Result<(), String> {
    let mut forwarded = Vec::new();
    let escapes = [
        "..;/x",
        "%2e%2e;/x",
        "..%3b/x",
        "..%09/x",
        "%252e%252e/x",
        "%c0%ae%c0%ae/x",
        "%u002e%u002e/x",
        "..%3f/x",
        "..%ff/x",
        "..%e2%80%8b/x",
    ];
    for escape in escapes {
        let path = format!("{api}/{escape}");
        let answer = a.call_raw(Method::GET, &path, &[csrf]).await?;
        if answer.status != StatusCode::BAD_REQUEST {
            forwarded.push(format!("{path} answered {}", answer.status.as_u16()));
        }
    }
    report.record(
        "paths.dot_segments",
        forwarded.is_empty(),
        if forwarded.is_empty() {
            format!(
                "{} spellings of a dot segment (path parameters, whitespace, double and overlong encodings, \
                 bytes lax decoders drop) refused with 400",
                escapes.len()
            )
        } else {
            format!("not refused: {}", forwarded.join("; "))
        },
    );
    Ok(())
}

/// Methods that echo or tunnel, asked for directly or through an override in a header or in
/// the query string (`?_method=`, as Laravel, Symfony, Express and Spring read it).
async fn method_checks(a: &mut Auditor, report: &mut Report, csrf: (&str, &[u8]), api: &str) -> Result<(), String> {
    let mut echoed = Vec::new();
    for method in ["TRACE", "TRACK", "trace"] {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let answer = a.call_raw(method.clone(), &format!("{api}/x"), &[csrf]).await?;
        if answer.status != StatusCode::METHOD_NOT_ALLOWED {
            echoed.push(format!("{method} answered {}", answer.status.as_u16()));
        }
    }
    let overridden =
        a.call_raw(Method::POST, &format!("{api}/x"), &[csrf, ("x-http-method-override", b"TRACE")]).await?;
    if overridden.status != StatusCode::METHOD_NOT_ALLOWED {
        echoed.push(format!("POST with X-HTTP-Method-Override: TRACE answered {}", overridden.status.as_u16()));
    }
    let in_query = a.call_raw(Method::POST, &format!("{api}/x?_method=TRACE"), &[csrf]).await?;
    if in_query.status != StatusCode::METHOD_NOT_ALLOWED {
        echoed.push(format!("POST {api}/x?_method=TRACE answered {}", in_query.status.as_u16()));
    }
    report.record(
        "methods.trace_refused",
        echoed.is_empty(),
        if echoed.is_empty() {
            format!("TRACE, TRACK, trace and a TRACE method override (header and ?_method=) under {api}/ answered 405")
        } else {
            echoed.join("; ")
        },
    );
    Ok(())
}

/// A repeated `Host`, and a foreign one that must steer nothing.
async fn host_checks(a: &mut Auditor, report: &mut Report, csrf: (&str, &[u8])) -> Result<(), String> {
    let authority = a.options.base.authority().to_string();
    let hosts = [("host", authority.as_bytes()), ("host", b"attacker.example".as_slice()), csrf];
    let repeated = a.call_raw(Method::GET, "/bff/user", &hosts).await?;
    report.record(
        "host.repeated_refused",
        repeated.status == StatusCode::BAD_REQUEST,
        format!("two Host headers answered {}", repeated.status.as_u16()),
    );
    let foreign = a.call_raw(Method::GET, "/bff/login", &[("host", b"attacker.example")]).await?;
    let steered = foreign.header(LOCATION.as_str()).is_some_and(|l| l.contains("attacker.example"));
    report.record(
        "host.foreign_not_reflected",
        !steered,
        if steered {
            "the login redirect names the Host the client sent (redirect_uri from Host?)".to_string()
        } else {
            format!("Host: attacker.example answered {} and steered nothing", foreign.status.as_u16())
        },
    );
    Ok(())
}

/// Control bytes in the callback's parameters: a 4xx, nothing reflected into a cookie.
async fn callback_checks(a: &mut Auditor, report: &mut Report) -> Result<(), String> {
    let mut bad = Vec::new();
    for query in ["state=%0Aabc&code=x", "state=a%3B%20Domain%3Devil.example&code=x", "state=%FF%00&error=%1B%5B2J"] {
        let answer = a.call_raw(Method::GET, &format!("/bff/callback?{query}"), &[]).await?;
        let planted = answer
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .any(|c| c.as_bytes().windows(12).any(|w| w.eq_ignore_ascii_case(b"evil.example")));
        if !answer.status.is_client_error() || planted {
            bad.push(format!(
                "{query} answered {}{}",
                answer.status.as_u16(),
                if planted { " with a cookie naming it" } else { "" }
            ));
        }
    }
    report.record(
        "callback.control_bytes",
        bad.is_empty(),
        if bad.is_empty() {
            "control bytes in state/error answered 4xx, nothing reflected".into()
        } else {
            bad.join("; ")
        },
    );
    Ok(())
}

/// Answers that set a cookie of the BFF's are `no-store` (a shared cache may keep an answer
/// with `Set-Cookie`, and hand the ticket to the next user): the sign-in's start, a page and an
/// API call made with the session cookie's earlier name; and a non-ASCII cookie beside the
/// session hides nothing.
async fn cookie_checks(a: &mut Auditor, report: &mut Report, csrf: (&str, &[u8]), api: &str) -> Result<(), String> {
    let legacy = format!("__Host-cloakroom={}", "A".repeat(86));
    let page: &[(&str, &[u8])] =
        &[("accept", b"text/html"), ("sec-fetch-mode", b"navigate"), ("cookie", legacy.as_bytes())];
    let mut storable = Vec::new();
    for (path, headers) in [
        ("/bff/login".to_string(), &[][..]),
        ("/".to_string(), page),
        (format!("{api}/x"), &[csrf, ("cookie", legacy.as_bytes())][..]),
    ] {
        let answer = a.call_raw(Method::GET, &path, headers).await?;
        let sets = answer.headers.contains_key(SET_COOKIE);
        let no_store =
            answer.headers.get_all(CACHE_CONTROL).iter().any(|v| v.as_bytes().windows(8).any(|w| w == b"no-store"));
        if sets && !no_store {
            storable.push(format!("{path} sets a cookie without Cache-Control: no-store"));
        }
    }
    report.record(
        "cookies.never_on_a_storable_answer",
        storable.is_empty(),
        if storable.is_empty() {
            "every answer that sets a cookie (sign-in, a page and an API call with an earlier cookie name) is no-store"
                .into()
        } else {
            storable.join("; ")
        },
    );

    let Some(given) = a.options.cookie.clone() else {
        report.skip("cookie.non_ascii_beside_session", "no --cookie given");
        return Ok(());
    };
    let mixed = format!("lang=fran\u{e7}ais; {}", session_cookie(&given));
    let user = a.call_raw(Method::GET, "/bff/user", &[csrf, (COOKIE.as_str(), mixed.as_bytes())]).await?;
    let json = user.header(CONTENT_TYPE.as_str()).is_some_and(|t| t.starts_with("application/json"));
    report.record(
        "cookie.non_ascii_beside_session",
        user.status == StatusCode::OK && json,
        format!("/bff/user with a UTF-8 cookie beside the session answered {}", user.status.as_u16()),
    );
    Ok(())
}
