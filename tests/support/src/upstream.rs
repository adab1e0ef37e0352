//! The recording upstream, and bodies generated lazily for streaming tests.

use super::*;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// Bearer tokens this upstream answers `401 invalid_token` (as an API does once a token is
    /// revoked or its signing key rotated out).
    pub rejected: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let record = seen.clone();
        let rejected: Arc<Mutex<Vec<String>>> = Arc::default();
        let rejecting = rejected.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (record, rejecting) = (record.clone(), rejecting.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (record, rejecting) = (record.clone(), rejecting.clone());
                        async move {
                            let bearer = request.headers().get("authorization").and_then(|v| v.to_str().ok());
                            let refused = bearer.is_some_and(|b| {
                                let rejecting = rejecting.lock().unwrap();
                                rejecting.iter().any(|t| t == "*" || b == format!("Bearer {t}"))
                            });
                            if refused {
                                let (parts, _) = request.into_parts();
                                record.lock().unwrap().push(Recorded {
                                    method: parts.method.to_string(),
                                    uri: parts.uri.to_string(),
                                    headers: parts.headers,
                                });
                                let mut r = Response::new(full("{\"error\":\"invalid_token\"}"));
                                *r.status_mut() = StatusCode::UNAUTHORIZED;
                                let challenge = "Bearer error=\"invalid_token\", error_description=\"revoked\"";
                                r.headers_mut().insert("www-authenticate", challenge.parse().unwrap());
                                return Ok::<_, std::convert::Infallible>(r);
                            }
                            Ok::<_, std::convert::Infallible>(upstream_answer(request, record).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen, rejected }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// From now on, answer a call bearing `token` (`"*"`: any token) `401 invalid_token`.
    pub fn reject(&self, token: &str) {
        self.rejected.lock().unwrap().push(token.to_string());
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn upstream_answer(mut request: Request<Incoming>, record: Arc<Mutex<Vec<Recorded>>>) -> Response<Body> {
    if request.uri().path().ends_with("/ws") && request.headers().contains_key("sec-websocket-key") {
        return websocket_echo(&mut request, &record);
    }
    let (parts, body) = request.into_parts();
    record.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
    });
    let path = parts.uri.path();
    let mut response = match path {
        p if p.ends_with("/slow") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::new(full("late"))
        }
        p if p.ends_with("/big-head") => {
            // An answer head larger than cloakroom reads from an upstream (8 KiB).
            let mut r = Response::new(full("{}"));
            r.headers_mut().insert("x-padding", "p".repeat(10 * 1024).parse().unwrap());
            r
        }
        p if p.ends_with("/public") => {
            // What an upstream marks as shareable: a shared cache may keep it for ten minutes.
            let mut r = Response::new(full("{\"public\":true}"));
            r.headers_mut().insert("cache-control", "public, max-age=600".parse().unwrap());
            r
        }
        p if p.ends_with("/set-cookie") => {
            let mut r = Response::new(full("{}"));
            r.headers_mut()
                .append(SET_COOKIE, "__Host-Http-cloakroom=planted; Path=/; Secure; HttpOnly".parse().unwrap());
            r.headers_mut().append(SET_COOKIE, "app=1; Path=/".parse().unwrap());
            // Nameless: browsers send these back as bare `__Host-Http-cloakroom=planted`.
            r.headers_mut().append(SET_COOKIE, "=__Host-Http-cloakroom=planted; Path=/".parse().unwrap());
            r.headers_mut().append(SET_COOKIE, "__Host-Http-cloakroom; Path=/".parse().unwrap());
            r
        }
        p if p.ends_with("/step-up") => {
            // RFC 9470: the API itself asks for a stronger, more recent sign-in.
            let mut r = Response::new(full("{\"detail\":\"mfa please\"}"));
            *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
            let challenge = "Bearer error=\"insufficient_user_authentication\", \
                             error_description=\"A different authentication level is required\", \
                             acr_values=\"mfa\", max_age=\"120\"";
            r.headers_mut().insert(::http::header::WWW_AUTHENTICATE, challenge.parse().unwrap());
            r
        }
        p if p.ends_with("/upload") => {
            let mut body = body;
            let mut bytes = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map(|f| f.into_data()) {
                    bytes += data.map(|d| d.len() as u64).unwrap_or(0);
                }
            }
            Response::new(full(serde_json::json!({ "bytes": bytes }).to_string()))
        }
        p if p.ends_with("/download") => {
            let size: u64 =
                parts.uri.query().and_then(|q| q.strip_prefix("bytes=")).and_then(|n| n.parse().ok()).unwrap_or(0);
            Response::new(GeneratedBody::new(size).boxed())
        }
        _ => Response::new(full(
            serde_json::json!({ "path": path, "authorization": parts.headers.contains_key("authorization") })
                .to_string(),
        )),
    };
    response.headers_mut().insert(CONTENT_TYPE, "application/json".parse().unwrap());
    response.headers_mut().insert("connection", "x-upstream-hop".parse().unwrap());
    response.headers_mut().insert("x-upstream-hop", "1".parse().unwrap());
    response
}

/// Accepts a WebSocket handshake (RFC 6455 accept key) and echoes every byte back.
fn websocket_echo(request: &mut Request<Incoming>, record: &Arc<Mutex<Vec<Recorded>>>) -> Response<Body> {
    use base64::Engine;
    record.lock().unwrap().push(Recorded {
        method: request.method().to_string(),
        uri: request.uri().to_string(),
        headers: request.headers().clone(),
    });
    let key = request.headers()["sec-websocket-key"].to_str().unwrap().to_string();
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert("connection", "upgrade".parse().unwrap());
    response.headers_mut().insert("upgrade", "websocket".parse().unwrap());
    response.headers_mut().insert("sec-websocket-accept", accept.parse().unwrap());
    response
}

/// A body of `remaining` bytes produced lazily in 256 KiB chunks: never held whole in memory.
pub struct GeneratedBody {
    remaining: u64,
    chunk: Bytes,
    /// Hide the length (the client then sends it chunked, with no Content-Length).
    undeclared: bool,
}

impl GeneratedBody {
    pub fn new(size: u64) -> Self {
        Self { remaining: size, chunk: Bytes::from(vec![b'x'; 256 * 1024]), undeclared: false }
    }

    pub fn chunked(size: u64) -> Self {
        Self { undeclared: true, ..Self::new(size) }
    }
}

impl hyper::body::Body for GeneratedBody {
    type Data = Bytes;
    type Error = cloakroom::respond::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.undeclared {
            hyper::body::SizeHint::default()
        } else {
            hyper::body::SizeHint::with_exact(self.remaining)
        }
    }
}
