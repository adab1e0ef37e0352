//! Request → [`Route`]: a pure function of the path, unit tested, decided before anything else.

use crate::config::RouteConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BffEndpoint {
    Login,
    Callback,
    User,
    Logout,
    BackchannelLogout,
    /// `/bff/sessions` and `/bff/sessions/{id}`.
    Sessions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Bff(BffEndpoint),
    /// Index into the configured routes.
    Api(usize),
    /// Under `/bff/` but no such endpoint.
    BffUnknown,
    /// A path that could escape a prefix once an upstream normalizes it.
    BadPath,
    NotFound,
}

#[derive(Debug, Clone)]
pub struct Router {
    /// (prefix, index into config routes), longest prefix first.
    prefixes: Vec<(String, usize)>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut prefixes: Vec<(String, usize)> =
            routes.iter().enumerate().map(|(i, r)| (r.prefix.clone(), i)).collect();
        prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Self { prefixes }
    }

    pub fn route(&self, path: &str) -> Route {
        if !is_safe_path(path) {
            return Route::BadPath;
        }
        if let Some(rest) = path.strip_prefix("/bff/") {
            return match rest {
                "login" => Route::Bff(BffEndpoint::Login),
                "callback" => Route::Bff(BffEndpoint::Callback),
                "user" => Route::Bff(BffEndpoint::User),
                "logout" => Route::Bff(BffEndpoint::Logout),
                "backchannel-logout" => Route::Bff(BffEndpoint::BackchannelLogout),
                "sessions" => Route::Bff(BffEndpoint::Sessions),
                id if id.strip_prefix("sessions/").is_some_and(|id| !id.is_empty() && !id.contains('/')) => {
                    Route::Bff(BffEndpoint::Sessions)
                }
                _ => Route::BffUnknown,
            };
        }
        if path == "/bff" {
            return Route::BffUnknown;
        }
        for (prefix, index) in &self.prefixes {
            if path.starts_with(prefix.as_str()) {
                return Route::Api(*index);
            }
        }
        Route::NotFound
    }
}

/// Refuses what an upstream (or a filesystem, later) might normalize into another place:
/// `.`/`..` segments (plain or percent-encoded), encoded `/` or `\`, raw backslashes, NUL, and
/// anything not starting with `/`.
pub fn is_safe_path(path: &str) -> bool {
    if !path.starts_with('/') || path.contains(['\\', '\0']) {
        return false;
    }
    // Without allocating: this runs on every request.
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        if let Some(&[a, b]) = bytes.get(i + 1..i + 3)
            && matches!(&[a.to_ascii_lowercase(), b.to_ascii_lowercase()], b"2f" | b"5c" | b"00")
        {
            return false;
        }
    }
    !path.split('/').any(is_dot_segment)
}

/// `.` or `..`, each dot plain or as `%2e` (any case).
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first, allocating version, kept as the reference the fast one must agree with.
    fn reference_is_safe_path(path: &str) -> bool {
        if !path.starts_with('/') || path.contains('\\') {
            return false;
        }
        let lower = path.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") || lower.contains('\0') {
            return false;
        }
        !lower.split('/').any(|segment| {
            let decoded = segment.replace("%2e", ".");
            decoded == "." || decoded == ".."
        })
    }

    #[test]
    fn the_allocation_free_path_check_agrees_with_the_reference() {
        // Every path of up to four pieces from an alphabet of the tricky parts.
        let pieces = ["/", ".", "%2e", "%2E", "%2f", "%5C", "%00", "%", "%2", "a", "\\", "\0", "..", "%e2"];
        let mut paths = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> =
                paths.iter().flat_map(|p| pieces.iter().map(move |piece| format!("{p}{piece}"))).collect();
            paths.extend(longer);
        }
        for path in paths {
            let path = format!("/{path}");
            assert_eq!(is_safe_path(&path), reference_is_safe_path(&path), "{path:?}");
        }
    }

    fn router() -> Router {
        let route = |prefix: &str| RouteConfig {
            prefix: prefix.into(),
            upstream_origin: http::uri::Scheme::HTTP,
            upstream_authority: "127.0.0.1:1".parse().unwrap(),
            upstream_path: "/".into(),
            policy: crate::config::TokenPolicy::User,
            connect_timeout: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(1),
            audience: None,
            max_body: 1 << 30,
            tls: crate::tls::system_client_config(),
        };
        Router::new(&[route("/api/"), route("/api/public/"), route("/other/")])
    }

    #[test]
    fn bff_endpoints() {
        let r = router();
        assert_eq!(r.route("/bff/login"), Route::Bff(BffEndpoint::Login));
        assert_eq!(r.route("/bff/callback"), Route::Bff(BffEndpoint::Callback));
        assert_eq!(r.route("/bff/user"), Route::Bff(BffEndpoint::User));
        assert_eq!(r.route("/bff/logout"), Route::Bff(BffEndpoint::Logout));
        assert_eq!(r.route("/bff/backchannel-logout"), Route::Bff(BffEndpoint::BackchannelLogout));
        assert_eq!(r.route("/bff/sessions"), Route::Bff(BffEndpoint::Sessions));
        assert_eq!(r.route("/bff/sessions/abc"), Route::Bff(BffEndpoint::Sessions));
        assert_eq!(r.route("/bff/sessions/"), Route::BffUnknown);
        assert_eq!(r.route("/bff/sessions/a/b"), Route::BffUnknown);
        assert_eq!(r.route("/bff/user/"), Route::BffUnknown);
        assert_eq!(r.route("/bff/nope"), Route::BffUnknown);
        assert_eq!(r.route("/bff"), Route::BffUnknown);
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router();
        assert_eq!(r.route("/api/things"), Route::Api(0));
        assert_eq!(r.route("/api/public/x"), Route::Api(1));
        assert_eq!(r.route("/other/"), Route::Api(2));
        assert_eq!(r.route("/api"), Route::NotFound);
        assert_eq!(r.route("/apix/"), Route::NotFound);
        assert_eq!(r.route("/"), Route::NotFound);
    }

    #[test]
    fn paths_that_could_escape_a_prefix_are_refused() {
        let r = router();
        for path in [
            "/api/../admin",
            "/api/./x",
            "/api/%2e%2e/admin",
            "/api/%2E./admin",
            "/api/.%2e",
            "/api/a%2fb",
            "/api/a%5Cb",
            "/api/a\\b",
            "/api/%00",
            "api/x",
            "/bff/../api/x",
        ] {
            assert_eq!(r.route(path), Route::BadPath, "{path}");
        }
        assert_eq!(r.route("/api/.well-known/x"), Route::Api(0));
        assert_eq!(r.route("/api/a..b"), Route::Api(0));
    }
}
