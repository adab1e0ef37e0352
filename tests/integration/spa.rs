//! SPA hosting: files, client-side routes, caching, precompression, security headers, and
//! no way out of the directory.

use crate::support::*;
use http::Method;

struct Site {
    dir: std::path::PathBuf,
    outside: std::path::PathBuf,
}

const OUTSIDE_SECRET: &str = "OUTSIDE-THE-SPA-DIRECTORY";

impl Site {
    fn new() -> Site {
        let dir = std::env::temp_dir().join(format!("cloakroom-spa-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html><title>demo</title><p>index</p>").unwrap();
        std::fs::write(dir.join("assets/app.3f9a2c1d.js"), "console.log('plain');").unwrap();
        std::fs::write(dir.join("assets/app.3f9a2c1d.js.br"), "BROTLI-BYTES").unwrap();
        std::fs::write(dir.join("assets/app.3f9a2c1d.js.gz"), "GZIP-BYTES").unwrap();
        std::fs::write(dir.join("style.css"), "p{}").unwrap();
        let outside = dir.with_extension("outside.txt");
        std::fs::write(&outside, OUTSIDE_SECRET).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("escape.txt")).unwrap();
        Site { dir, outside }
    }

    async fn bff(&self) -> Bff {
        Bff::start_with(BffOptions {
            extra_toml: format!("[spa]\ndir = {:?}\n", self.dir.display().to_string()),
            ..Default::default()
        })
        .await
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.outside);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

const NAVIGATION: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
const FETCH: (&str, &str) = ("accept", "*/*");

#[tokio::test]
async fn serves_files_and_client_side_routes_with_the_security_headers() {
    let site = Site::new();
    let bff = site.bff().await;
    for path in ["/", "/index.html", "/orders/42/edit"] {
        let reply = http_call(Method::GET, &bff.url(path), None, &[NAVIGATION]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(reply.text().contains("<p>index</p>"), "{path}");
        assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(reply.header("cache-control"), Some("no-cache"));
        let csp = reply.header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && csp.contains("script-src 'self'")
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert!(reply.header("referrer-policy").is_some());
    }
    let js = http_call(Method::GET, &bff.url("/assets/app.3f9a2c1d.js"), None, &[FETCH]).await;
    assert_eq!(js.status, 200);
    assert_eq!(js.text(), "console.log('plain');");
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(js.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert!(js.header("content-security-policy").is_none(), "CSP belongs on documents");
    let css = http_call(Method::GET, &bff.url("/style.css"), None, &[FETCH]).await;
    assert_eq!(
        (css.header("content-type"), css.header("cache-control")),
        (Some("text/css; charset=utf-8"), Some("no-cache"))
    );
}

#[tokio::test]
async fn missing_assets_are_404_not_html_and_bff_or_api_paths_never_get_index() {
    let site = Site::new();
    let bff = site.bff().await;
    let reply = http_call(Method::GET, &bff.url("/assets/missing.js"), None, &[FETCH]).await;
    assert_eq!(reply.status, 404);
    assert!(!reply.text().contains("<p>index</p>"));
    let reply = http_call(Method::GET, &bff.url("/bff/unknown"), None, &[NAVIGATION]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (404, Some("not_found")));
    let reply = http_call(Method::GET, &bff.url("/api/things"), None, &[NAVIGATION, CSRF]).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (401, Some("unauthenticated")));
    assert_eq!(http_call(Method::POST, &bff.url("/"), None, &[NAVIGATION]).await.status, 405);
}

#[tokio::test]
async fn nothing_outside_the_directory_can_be_reached() {
    let site = Site::new();
    let bff = site.bff().await;
    for path in [
        "/../../etc/hostname",
        "/%2e%2e/%2e%2e/etc/hostname",
        "/assets/..%2f..%2fetc/hostname",
        "/..\\..\\etc\\hostname",
    ] {
        let reply = http_call(Method::GET, &bff.url(path), None, &[FETCH]).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
    }
    let reply = http_call(Method::GET, &bff.url("/escape.txt"), None, &[FETCH]).await;
    assert_eq!(reply.status, 404, "a symlink led out of the directory");
    assert!(!reply.text().contains(OUTSIDE_SECRET));
}

#[tokio::test]
async fn conditional_requests_and_precompressed_files() {
    let site = Site::new();
    let bff = site.bff().await;
    let url = bff.url("/assets/app.3f9a2c1d.js");
    let first = http_call(Method::GET, &url, None, &[FETCH]).await;
    let etag = first.header("etag").unwrap().to_string();
    let modified = first.header("last-modified").unwrap().to_string();
    let again = http_call(Method::GET, &url, None, &[FETCH, ("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let again = http_call(Method::GET, &url, None, &[FETCH, ("if-modified-since", &modified)]).await;
    assert_eq!(again.status, 304);
    let changed = http_call(Method::GET, &url, None, &[FETCH, ("if-none-match", "\"other\"")]).await;
    assert_eq!(changed.status, 200);

    let br = http_call(Method::GET, &url, None, &[FETCH, ("accept-encoding", "gzip, br")]).await;
    assert_eq!((br.header("content-encoding"), br.text().as_str()), (Some("br"), "BROTLI-BYTES"));
    assert_eq!(br.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    assert_ne!(br.header("etag").unwrap(), etag, "a compressed variant needs its own ETag");
    let gz = http_call(Method::GET, &url, None, &[FETCH, ("accept-encoding", "gzip")]).await;
    assert_eq!((gz.header("content-encoding"), gz.text().as_str()), (Some("gzip"), "GZIP-BYTES"));

    let head = http_call(Method::HEAD, &url, None, &[FETCH]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("21"));
}

#[tokio::test]
async fn a_bad_spa_directory_is_a_config_error() {
    use cloakroom::config::Config;
    let base = "[oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"a\"\nclient_secret = \"b\"\n";
    for (dir, expected) in [("/nonexistent/spa", "spa.dir"), ("/etc/hostname", "spa.dir")] {
        let errors = Config::from_toml(&format!("{base}[spa]\ndir = {dir:?}\n"), Vec::new()).unwrap_err();
        assert_eq!(errors.0[0].key, expected, "{errors}");
    }
}

/// Issue 26, item 3: a session cookie under an earlier name moves to the current one on a page
/// the browser navigated to, which is then `no-store`; never on a static asset a shared cache
/// may keep a year (`public, immutable`), which keeps its caching and sets no cookie.
#[tokio::test]
async fn the_cookie_rename_rides_on_pages_never_on_cacheable_files() {
    let site = Site::new();
    let bff = site.bff().await;
    let ticket = "A".repeat(86);
    let old = format!("__Host-cloakroom={ticket}");

    let asset = http_call(Method::GET, &bff.url("/assets/app.3f9a2c1d.js"), None, &[FETCH, ("cookie", &old)]).await;
    assert_eq!(asset.status, 200);
    assert_eq!(asset.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert!(asset.set_cookies().is_empty(), "a cookie on a cacheable file: {:?}", asset.set_cookies());

    let page = http_call(Method::GET, &bff.url("/orders/42"), None, &[NAVIGATION, ("cookie", &old)]).await;
    assert_eq!(page.status, 200);
    let set = page.set_cookies();
    assert!(set.iter().any(|c| c.starts_with(&format!("__Host-Http-cloakroom={ticket};"))), "{set:?}");
    assert!(set.iter().any(|c| c.starts_with("__Host-cloakroom=;") && c.contains("Max-Age=0")), "{set:?}");
    assert_eq!(page.header("cache-control"), Some("no-store"), "a page that sets the ticket may be stored");

    let plain = http_call(Method::GET, &bff.url("/orders/42"), None, &[NAVIGATION]).await;
    assert_eq!(plain.header("cache-control"), Some("no-cache"), "pages without a cookie keep their caching");
}
