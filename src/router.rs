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

#[cfg(test)]
mod tests {
    use super::*;

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
