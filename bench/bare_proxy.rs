//! The benchmark's floor for cloakroom's HTTP stack (`bench/run`, targets "bare hyper"): a
//! reverse proxy with nothing but hyper's server and a pooled client on tokio's
//! single-threaded scheduler, as cloakroom runs on one CPU. No authentication, no header
//! hygiene, no limits: never a thing to deploy. The gap between it and nginx is the stack's;
//! the gap between it and cloakroom is cloakroom's own work per request.
//!
//! The client is hyper-util's (target h), or with `cloakroom-client` cloakroom's own
//! (`src/upstream/`, target hc): the two side by side measure the client alone. With
//! `cloakroom-server` as well (target hs), connections are served as cloakroom's server builds
//! them (`server::builder`: hyper-util's automatic HTTP/1-or-2 server, with upgrades, a timer and
//! the header deadline): (hs) against (hc) measures that server stack alone.
//!
//! Usage: `bench-bare-proxy LISTEN_ADDR UPSTREAM_ORIGIN [cloakroom-client [cloakroom-server]]`,
//! e.g. `127.0.0.1:7999 http://127.0.0.1:9700`.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;

#[derive(Clone)]
enum Upstream {
    HyperUtil(Box<Client<HttpConnector, Incoming>>),
    Cloakroom(cloakroom::upstream::HttpClient),
}

impl Upstream {
    async fn send(&self, request: Request<Incoming>) -> std::io::Result<Response<cloakroom::respond::Body>> {
        match self {
            Upstream::HyperUtil(client) => {
                let response = client.request(request).await.map_err(std::io::Error::other)?;
                Ok(response.map(|body| body.map_err(Into::into).boxed()))
            }
            Upstream::Cloakroom(client) => {
                let request = request.map(|body| body.map_err(Into::into).boxed());
                let response = client.send(request, Duration::from_secs(30)).await.map_err(std::io::Error::other)?;
                Ok(response.map(|body| body.map_err(Into::into).boxed()))
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bench-bare-proxy LISTEN_ADDR UPSTREAM_ORIGIN [cloakroom-client]");
        std::process::exit(2);
    };
    let client = match args.next().as_deref() {
        Some("cloakroom-client") => {
            cloakroom::install_crypto_provider();
            Upstream::Cloakroom(cloakroom::upstream::HttpClient::new(Duration::from_secs(5)))
        }
        _ => Upstream::HyperUtil(Box::new(Client::builder(TokioExecutor::new()).build_http())),
    };
    // cloakroom's server stack (its defaults: 64 KiB of headers, a 30 s header deadline).
    let server = (args.next().as_deref() == Some("cloakroom-server"))
        .then(|| std::sync::Arc::new(cloakroom::server::connection_builder(64 * 1024, Duration::from_secs(30))));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, upstream, server) = (client.clone(), upstream.clone(), server.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                let client = client.clone();
                let target = format!("{upstream}{}", request.uri().path_and_query().map_or("/", |p| p.as_str()));
                async move {
                    *request.uri_mut() = target.parse().map_err(std::io::Error::other)?;
                    client.send(request).await
                }
            });
            let _ = match server {
                Some(server) => server.serve_connection_with_upgrades(TokioIo::new(stream), service).await,
                None => hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                    .map_err(Into::into),
            };
        });
    }
}
