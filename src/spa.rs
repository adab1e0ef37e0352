//! The SPA: static files from `[spa] dir`, with `index.html` for client-side routes.
//!
//! Reached only for paths that are neither `/bff/` nor an API prefix (the router decides), and
//! only for GET/HEAD. A path that names no file gets `index.html` when the request is a
//! navigation that accepts HTML, a 404 otherwise (a missing script must not come back as HTML).
//! Paths cannot leave the directory: the router refuses dot segments and encoded separators,
//! and the resolved file (symlinks followed) must still lie inside the canonical root.
//! Caching: `ETag` and `Last-Modified` with 304s; `no-cache` for HTML and unhashed files, a
//! year `immutable` for content-hashed names. `.br`/`.gz` siblings are served when accepted.

use crate::respond::{Body, BoxError, accepts_html, empty, full};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Frame, Incoming, SizeHint};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio_util::io::ReaderStream;

/// The default Content-Security-Policy for HTML: same-origin everything, no inline script, no
/// framing, no plugins. Configurable with `[spa] content_security_policy`.
pub const DEFAULT_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[derive(Debug, Clone)]
pub struct Spa {
    root: PathBuf,
    csp: HeaderValue,
}

impl Spa {
    /// `root` must be a canonical directory (config validation checks it).
    pub fn new(root: PathBuf, csp: HeaderValue) -> Self {
        Self { root, csp }
    }

    pub async fn serve(&self, request: &Request<Incoming>) -> Response<Body> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        let head = request.method() == Method::HEAD;
        let headers = request.headers();
        let file = match self.resolve(request.uri().path()).await {
            Some(file) => file,
            None if accepts_html(headers) => match self.resolve("/index.html").await {
                Some(index) => index,
                None => return plain(StatusCode::NOT_FOUND, "not found\n"),
            },
            None => return plain(StatusCode::NOT_FOUND, "not found\n"),
        };
        self.respond(file, headers, head).await
    }

    /// The regular file a URL path names, if it exists inside the root.
    async fn resolve(&self, url_path: &str) -> Option<PathBuf> {
        let decoded = percent_encoding::percent_decode_str(url_path).decode_utf8().ok()?;
        if decoded.contains('\0') || decoded.contains('\\') {
            return None;
        }
        let mut path = self.root.clone();
        for segment in decoded.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return None;
            }
            path.push(segment);
        }
        let canonical = tokio::fs::canonicalize(&path).await.ok()?;
        if !canonical.starts_with(&self.root) {
            return None; // a symlink pointing out of the directory
        }
        let metadata = tokio::fs::metadata(&canonical).await.ok()?;
        if metadata.is_file() { Some(canonical) } else { None }
    }

    async fn respond(&self, file: PathBuf, request_headers: &HeaderMap, head: bool) -> Response<Body> {
        let is_html = file.extension().is_some_and(|e| e == "html" || e == "htm");
        let (served, encoding) = precompressed(&file, request_headers).await;
        let Ok(opened) = tokio::fs::File::open(&served).await else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let Ok(metadata) = opened.metadata().await else { return plain(StatusCode::NOT_FOUND, "not found\n") };
        let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let etag = etag(metadata.len(), modified, encoding);

        let mut response = Response::new(empty());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
        headers.insert(header::ETAG, etag.clone());
        if let Ok(value) = HeaderValue::try_from(httpdate::fmt_http_date(modified)) {
            headers.insert(header::LAST_MODIFIED, value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control(&file, is_html)));
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        if is_html {
            headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        if not_modified(request_headers, &etag, modified) {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return response;
        }
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(metadata.len()));
        if !head {
            *response.body_mut() = FileBody::new(opened, metadata.len()).boxed();
        }
        response
    }
}

/// A `.br` or `.gz` sibling the client accepts, else the file itself.
async fn precompressed(file: &Path, headers: &HeaderMap) -> (PathBuf, Option<&'static str>) {
    let accepted: Vec<String> = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .collect();
    for (encoding, suffix) in [("br", "br"), ("gzip", "gz")] {
        if accepted.iter().any(|a| a == encoding) {
            let mut candidate = file.as_os_str().to_owned();
            candidate.push(".");
            candidate.push(suffix);
            let candidate = PathBuf::from(candidate);
            if tokio::fs::metadata(&candidate).await.is_ok_and(|m| m.is_file()) {
                return (candidate, Some(encoding));
            }
        }
    }
    (file.to_path_buf(), None)
}

fn etag(len: u64, modified: SystemTime, encoding: Option<&str>) -> HeaderValue {
    let nanos = modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let suffix = encoding.map(|e| format!("-{e}")).unwrap_or_default();
    HeaderValue::try_from(format!("\"{len:x}-{nanos:x}{suffix}\"")).expect("hex digits are a valid header value")
}

fn not_modified(headers: &HeaderMap, etag: &HeaderValue, modified: SystemTime) -> bool {
    if let Some(candidates) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let ours = etag.to_str().unwrap_or("");
        return candidates.split(',').map(|c| c.trim().trim_start_matches("W/")).any(|c| c == ours || c == "*");
    }
    if let Some(since) = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok())
        && let Ok(since) = httpdate::parse_http_date(since)
    {
        // HTTP dates have second precision.
        let modified_secs = modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let since_secs = since.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        return modified_secs <= since_secs;
    }
    false
}

/// HTML and plain names must be revalidated; content-hashed names never change.
fn cache_control(file: &Path, is_html: bool) -> &'static str {
    if !is_html && file.file_name().and_then(|n| n.to_str()).is_some_and(is_hashed_name) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

/// `app.3f9a2c1d.js`, `chunk-BX7a9Q2k.js`: a part of 8+ characters holding a digit, set off by
/// `.` or `-` (the conventions of common bundlers).
pub fn is_hashed_name(name: &str) -> bool {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    stem.split(['.', '-']).skip(1).any(|part| {
        part.len() >= 8
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && part.chars().any(|c| c.is_ascii_digit())
    })
}

fn content_type(file: &Path) -> &'static str {
    let extension = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A file streamed in chunks, never read whole into memory.
struct FileBody {
    stream: ReaderStream<tokio::fs::File>,
    remaining: u64,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64) -> Self {
        Self { stream: ReaderStream::with_capacity(file, 64 * 1024), remaining: len }
    }

    fn boxed(self) -> Body {
        http_body_util::BodyExt::boxed(self)
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match futures_core::Stream::poll_next(Pin::new(&mut self.stream), cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_recognised() {
        for name in ["app.3f9a2c1d.js", "chunk-BX7a9Q2k.js", "styles.0123abcd.css", "vendor.a1b2c3d4e5.min.js"] {
            assert!(is_hashed_name(name), "{name}");
        }
        for name in
            ["app.js", "index.html", "logo.png", "my-component.js", "favicon.ico", "abcdefgh.js", "x-abcdefgh.js"]
        {
            assert!(!is_hashed_name(name), "{name}");
        }
    }

    #[test]
    fn etags_differ_by_encoding() {
        let t = SystemTime::UNIX_EPOCH;
        assert_ne!(etag(10, t, None), etag(10, t, Some("br")));
        assert_ne!(etag(10, t, None), etag(11, t, None));
    }
}
