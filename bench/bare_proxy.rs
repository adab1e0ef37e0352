//! The benchmark's floor for cloakroom's HTTP stack (`bench/run`, target "bare hyper"): a
//! reverse proxy with nothing but hyper's server and hyper-util's pooled client on tokio's
//! single-threaded scheduler, as cloakroom runs on one CPU. No authentication, no header
//! hygiene, no limits: never a thing to deploy. The gap between it and nginx is the stack's;
//! the gap between it and cloakroom is cloakroom's own work per request.
//!
//! Usage: `bench-bare-proxy LISTEN_ADDR UPSTREAM_ORIGIN`, e.g. `127.0.0.1:7999 http://127.0.0.1:9700`.

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bench-bare-proxy LISTEN_ADDR UPSTREAM_ORIGIN");
        std::process::exit(2);
    };
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                let client = client.clone();
                let target = format!("{upstream}{}", request.uri().path_and_query().map_or("/", |p| p.as_str()));
                async move {
                    *request.uri_mut() = target.parse().map_err(std::io::Error::other)?;
                    let response: Response<Incoming> = client.request(request).await.map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
