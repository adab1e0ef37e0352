//! `[spa]`: the SPA's files, or a development server.

use super::*;

/// `[spa]`: static files, or a frontend dev server.
pub(in crate::config) fn spa(
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

/// `[spa] origins`: each an origin alone (`https://app.example.com`: https, or http on loopback;
/// no path, query or credentials), none of them cloakroom's own. A browser sends its cookies
/// on such a call only when the origin is on the same site as `public_url` (the suffix check
/// here is a guard against a typo, not a public-suffix list).
pub(in crate::config) fn spa_origins(check: &mut Check, raw: &[String], public_url: Option<&Url>) -> Vec<String> {
    let mut origins = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let key = format!("spa.origins[{i}]");
        let Some(url) = check.url(&key, text) else { continue };
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            check.fail(&key, format!("{text:?} must be an origin alone, such as \"https://app.example.com\""));
            continue;
        }
        if url.scheme() == "http" && !is_loopback(&url) {
            check.fail(&key, format!("{text:?} must use https (http only on loopback)"));
            continue;
        }
        let origin = url.origin().ascii_serialization();
        if public_url.is_some_and(|public| public.origin().ascii_serialization() == origin) {
            check.fail(&key, "is server.public_url's origin, which needs no listing");
            continue;
        }
        if let Some(public) = public_url.and_then(Url::host_str)
            && let Some(host) = url.host_str()
            && site_of(host) != site_of(public)
        {
            check.warn(format!(
                "spa.origins: {origin} looks like another site than server.public_url ({public}): browsers send no SameSite cookie to cloakroom from a page there"
            ));
        }
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    origins
}

/// The last two labels of a host name (or an address as it is): a rough "site".
fn site_of(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return host.to_string();
    }
    let labels: Vec<&str> = host.rsplit('.').take(2).collect();
    labels.into_iter().rev().collect::<Vec<_>>().join(".")
}
