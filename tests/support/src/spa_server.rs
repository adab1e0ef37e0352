//! The demo SPA served from another origin than cloakroom's (a CDN's part): its static files,
//! with index.html naming cloakroom's origin in `<meta name="cloakroom">`.

use super::*;

/// A static server on loopback, its own port: another origin of the same site as cloakroom's.
pub struct SpaServer {
    pub origin: String,
}

impl SpaServer {
    /// Serves `dir` on `port` (chosen before cloakroom starts, whose configuration names it).
    pub async fn start(port: u16, dir: &str, cloakroom_origin: &str) -> SpaServer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let dir = std::path::PathBuf::from(dir);
        let meta = format!("<meta name=\"cloakroom\" content=\"{cloakroom_origin}\">");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (dir, meta) = (dir.clone(), meta.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (dir, meta) = (dir.clone(), meta.clone());
                        async move { Ok::<_, std::convert::Infallible>(serve(&dir, &meta, request.uri().path())) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SpaServer { origin }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

fn serve(dir: &std::path::Path, meta: &str, path: &str) -> Response<Body> {
    let name = match path {
        "/" => "index.html",
        other => other.trim_start_matches('/'),
    };
    let known = ["index.html", "app.js", "style.css"];
    let Some(name) = known.iter().find(|k| **k == name) else {
        // Any other path is a page of the app (its router's): the entry.
        return serve(dir, meta, "/");
    };
    let mut text = std::fs::read_to_string(dir.join(name)).expect("the SPA's files");
    if *name == "index.html" {
        text = text.replace("<meta name=\"cloakroom\" content=\"\">", meta);
    }
    let kind = match *name {
        "app.js" => "text/javascript",
        "style.css" => "text/css",
        _ => "text/html; charset=utf-8",
    };
    let mut response = Response::new(full(text));
    response.headers_mut().insert(CONTENT_TYPE, kind.parse().unwrap());
    response
}
