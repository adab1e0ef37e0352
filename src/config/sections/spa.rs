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
