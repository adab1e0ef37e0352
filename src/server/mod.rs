//! Listeners: the main one (HTTP/1.1 and HTTP/2, in clear or over TLS, via hyper-util's auto
//! builder, one task per connection, idle connections closed) and the admin one (`/healthz`,
//! `/readyz`), plus graceful shutdown.

mod activity;
mod admin;
mod closing;
mod side;

use crate::reload::Live;
use crate::respond::Body;
use activity::{Activity, ActivityIo};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use side::First;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

pub struct Listeners {
    pub main: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(main: SocketAddr, admin: SocketAddr) -> std::io::Result<Self> {
        Ok(Self { main: TcpListener::bind(main).await?, admin: TcpListener::bind(admin).await? })
    }

    /// From already-bound sockets (tests bind first to learn the port for `public_url`).
    pub fn from_std(main: std::net::TcpListener, admin: std::net::TcpListener) -> std::io::Result<Self> {
        main.set_nonblocking(true)?;
        admin.set_nonblocking(true)?;
        Ok(Self { main: TcpListener::from_std(main)?, admin: TcpListener::from_std(admin)? })
    }
}

/// Limits for the main listener; side listeners (admin, demo) use the defaults.
struct Limits {
    max_header_bytes: usize,
    header_read_timeout: Duration,
}

/// Bytes an HTTP/2 stream buffers towards a client that is not reading (HTTP/1.1 connections
/// buffer at most `max_header_bytes`, their buffer size).
const MAX_SEND_BUFFER: usize = 16 * 1024;

const SIDE_LISTENER: Limits = Limits { max_header_bytes: 64 * 1024, header_read_timeout: Duration::from_secs(30) };

/// The connection builder of the main listener with these limits, as `serve` makes it (the
/// benchmark's bare proxy serves with it too, so the server stack is measured apart).
pub fn connection_builder(max_header_bytes: usize, header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    builder(&Limits { max_header_bytes, header_read_timeout })
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    // What one HTTP/2 stream may queue for a client that does not read (hyper's default is
    // 400 KB): slow readers hold little, and backpressure reaches the upstream sooner.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_send_buf_size(MAX_SEND_BUFFER);
    builder
}

/// Serves until `shutdown` resolves, then stops accepting, marks the app not ready, and gives
/// in-flight requests up to `server.shutdown_timeout` to finish.
pub async fn serve(live: Arc<Live>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let admin = tokio::spawn(serve_admin(live.clone(), listeners.admin));
    // What the accept loop holds is fixed at start ([`crate::config::FixedAtStart`]); each
    // request takes the configuration current when it arrives.
    let app = live.app();
    let server = &app.config.server;
    let builder = Arc::new(builder(&Limits {
        max_header_bytes: server.max_header_bytes,
        header_read_timeout: server.header_read_timeout,
    }));
    let acceptor = server.tls.as_ref().map(|tls| tls.acceptor());
    // Every live connection holds a slot: at most max_connections are served at once (past
    // that, new ones wait in the listen backlog), and the drain waits for all slots to return.
    let max_connections = u32::try_from(server.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let client_slots = crate::client_slots::ClientSlots::new(server.max_connections_per_client);
    let (phase, phases) = watch::channel(Phase::Serving);
    // Shutdown, step one: readiness turns false while new connections are still served for
    // `shutdown_delay`, so load balancers polling /readyz stop sending before the door closes.
    // Meanwhile keep-alive clients are asked to leave: `Connection: close` on HTTP/1.1 answers
    // (`dispatch`), a GOAWAY on HTTP/2 connections.
    let delay = server.shutdown_delay;
    let stop_accepting = async {
        shutdown.await;
        app.begin_shutdown();
        let _ = phase.send(Phase::Leaving);
        tracing::info!(?delay, "shutting down: not ready; still accepting until the delay ends (signal again to skip)");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = app.hurried() => tracing::info!("shutdown delay cut short"),
        }
    };
    tokio::pin!(stop_accepting);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut stop_accepting => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listeners.main.accept() => accepted,
            () = &mut stop_accepting => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        spawn_connection(&live, &builder, &acceptor, &client_slots, phases.clone(), (stream, peer), Some(slot));
    }
    // Step two: no new connections, and none lost: the kernel starts no more handshakes, and
    // each connection waiting to be accepted is accepted and its first request answered (with
    // `Connection: close`) before the listener closes ([`closing`]); after that a client is
    // refused, which it can retry elsewhere.
    app.begin_shutdown();
    closing::refuse_new_handshakes(&listeners.main);
    tokio::time::sleep(closing::HANDSHAKES_SETTLE).await;
    let mut swept = 0;
    while let Some(accepted) = futures_util::FutureExt::now_or_never(listeners.main.accept()) {
        let Ok(accepted) = accepted else { break };
        let slot = slots.clone().try_acquire_owned().ok();
        spawn_connection(&live, &builder, &acceptor, &client_slots, phases.clone(), accepted, slot);
        swept += 1;
    }
    if swept > 0 {
        tracing::info!(connections = swept, "answering the connections that were waiting to be accepted");
    }
    drop(listeners.main);
    // Step three: what is in flight finishes, up to the deadline.
    let _ = phase.send(Phase::Draining);
    let deadline = live.app().config.server.shutdown_timeout;
    if tokio::time::timeout(deadline, slots.acquire_many(max_connections)).await.is_err() {
        tracing::warn!(?deadline, "shutdown deadline reached with requests still in flight");
    }
    admin.abort();
}

/// Serves one accepted connection in a task of its own, holding its slots while it lives.
fn spawn_connection(
    live: &Arc<Live>,
    builder: &Arc<auto::Builder<TokioExecutor>>,
    acceptor: &Option<tokio_rustls::TlsAcceptor>,
    client_slots: &crate::client_slots::ClientSlots,
    phase: watch::Receiver<Phase>,
    (stream, peer): (tokio::net::TcpStream, SocketAddr),
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let app = live.app();
    let exempt = app.config.server.trusted_proxies.iter().any(|cidr| cidr.contains(peer.ip()));
    let Some(client_slot) = client_slots.take(peer.ip(), exempt) else {
        // Closed before a byte is read: this address holds its share of connections already.
        tracing::debug!(%peer, "connection refused: server.max_connections_per_client reached");
        app.metrics.connection_refused();
        return;
    };
    let _ = stream.set_nodelay(true);
    // HTTP/2 multiplexes: each request in flight on it takes a slot of the address too.
    let streams = (!exempt).then(|| client_slots.clone());
    let idle_timeout = app.config.server.idle_timeout;
    let header_read_timeout = app.config.server.header_read_timeout;
    let connection = Connection { live: live.clone(), builder: builder.clone(), peer, phase, streams, idle_timeout };
    let acceptor = acceptor.clone();
    tokio::spawn(async move {
        match acceptor {
            None => connection.serve(stream, "http").await,
            // The handshake is part of the request head for the slow-loris deadline.
            Some(acceptor) => match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => connection.serve(stream, "https").await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            },
        }
        drop(client_slot);
        drop(slot);
    });
}

/// Where the server is in its life, as its connections see it (one channel, so that a
/// connection waits on one thing besides its client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Shutdown has begun: HTTP/2 clients get a GOAWAY (HTTP/1.1 ones `Connection: close`).
    Leaving,
    /// The server drains: finish what is in flight, take nothing new.
    Draining,
}

/// How often, per idle period, a connection looks at whether it moved bytes: it is closed
/// between one and 1 + 1/`CHECKS_PER_IDLE_PERIOD` idle periods after it last did.
const CHECKS_PER_IDLE_PERIOD: u32 = 4;

/// One accepted connection on the main listener.
struct Connection {
    live: Arc<Live>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    peer: SocketAddr,
    phase: watch::Receiver<Phase>,
    /// Where an HTTP/2 request takes its slot of the client's address (`None`: exempt).
    streams: Option<crate::client_slots::ClientSlots>,
    /// `server.idle_timeout` when the connection was accepted.
    idle_timeout: Duration,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 until the client leaves, the connection sits idle past
    /// `server.idle_timeout`, or the server drains.
    async fn serve<IO>(mut self, io: IO, proto: &'static str)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let (live, peer, tracked, streams) = (self.live.clone(), self.peer, activity.clone(), self.streams.clone());
        let service = service_fn(move |request: Request<Incoming>| {
            // The configuration current now for the host it names (`[[frontends]]`), kept to
            // the end of this request (a reload meanwhile changes the next one).
            let host = match request.uri().authority() {
                Some(authority) => Some(authority.as_str().as_bytes()),
                None => request.headers().get(http::header::HOST).map(http::HeaderValue::as_bytes),
            };
            let app = live.app_for(host);
            let in_flight = tracked.begin_request(request.version());
            let tracked = tracked.clone();
            let http1 = request.version() != http::Version::HTTP_2;
            // One address's connections and HTTP/2 streams share its cap: without this, each
            // of its connections could carry a couple of hundred streams, each holding buffers
            // and an upstream connection while its client reads slowly.
            let stream_slot = match &streams {
                Some(slots) if request.version() == http::Version::HTTP_2 => slots.take(peer.ip(), false),
                _ => Some(None),
            };
            async move {
                let response: Response<Body> = match stream_slot {
                    Some(None) => crate::dispatch::handle(&app, request, peer, proto).await,
                    Some(Some(slot)) => crate::dispatch::handle(&app, request, peer, proto).await.map(|b| slot.hold(b)),
                    None => {
                        tracing::debug!(%peer, "request refused: server.max_connections_per_client reached");
                        app.metrics.stream_refused();
                        crate::error::ApiError::TooManyRequests.response()
                    }
                };
                drop(in_flight);
                // A client that stops reading holds one chunk, not buffers' worth (HTTP/1.1).
                let response = if http1 { response.map(|body| tracked.gate(body)) } else { response };
                Ok::<_, Infallible>(response)
            }
        });
        let io = TokioIo::new(ActivityIo { inner: io, activity: activity.clone() });
        let connection = self.builder.serve_connection_with_upgrades(io, service);
        let mut connection = std::pin::pin!(connection);
        let idle_timeout = self.idle_timeout;
        let watcher = std::pin::pin!(watch(&mut self.phase, &activity, idle_timeout, peer));
        let ended = match side::first(connection.as_mut(), watcher).await {
            First::Connection(ended) => ended,
            First::Watcher(Decision::CutOff) => return,
            First::Watcher(Decision::Close { cut_off_at }) => {
                connection.as_mut().graceful_shutdown();
                match cut_off_at {
                    None => connection.await,
                    // A client gets one more idle period to take its leave (an HTTP/2 client
                    // must acknowledge GOAWAY); one that does not is cut off.
                    Some(at) => match side::first(connection, std::pin::pin!(tokio::time::sleep_until(at))).await {
                        First::Connection(ended) => ended,
                        First::Watcher(()) => {
                            tracing::debug!(%peer, "cutting off an idle connection that did not close");
                            return;
                        }
                    },
                }
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// What a connection's watcher decided.
enum Decision {
    /// Close gracefully (finish what is in flight), and cut off at `cut_off_at` if still open.
    Close { cut_off_at: Option<Instant> },
    /// Cut off now.
    CutOff,
}

/// A connection's watcher: the server's phase, and whether the connection sits idle (polled
/// apart from the connection, [`side`]).
async fn watch(
    phase: &mut watch::Receiver<Phase>,
    activity: &Activity,
    idle_timeout: Duration,
    peer: SocketAddr,
) -> Decision {
    // Idle is judged by sampling: the I/O counts what moved, and every check compares the
    // count with the last (no clock read per read or write on the request path).
    let check_every = (idle_timeout / CHECKS_PER_IDLE_PERIOD).max(Duration::from_millis(1));
    let mut next_check = Instant::now() + check_every;
    let (mut seen, mut quiet_since) = (activity.moves(), Instant::now());
    let mut server_gone = false;
    // Shutdown has begun while this connection was fresh, or still HTTP/1.1: should it turn out
    // HTTP/2, it is told to go as soon as its first request begins (that request is answered),
    // instead of being served until the drain's deadline.
    let mut told_to_go = false;
    loop {
        tokio::select! {
            // Draining: finish what is in flight, take nothing new. Leaving: an HTTP/2 client
            // is told to go (GOAWAY) as the delay begins: in-flight streams finish, new ones go
            // to a new connection. An HTTP/1.1 connection is left open: closing it while idle
            // would race a request the client is sending on it.
            changed = phase.changed(), if !server_gone => {
                // The server's side gone: nothing more will come, drain.
                server_gone = changed.is_err();
                let phase = if server_gone { Phase::Draining } else { *phase.borrow_and_update() };
                // A connection that has not moved a byte yet is not closed by the drain: its
                // client may have sent a request already, which would be lost; its first answer
                // closes it instead (`Connection: close` while shutting down), or the header
                // deadline does.
                let fresh = activity.moves() == 0;
                if (phase == Phase::Draining && !fresh) || (phase == Phase::Leaving && activity.is_http2()) {
                    return Decision::Close { cut_off_at: None };
                }
                told_to_go = phase != Phase::Serving;
            }
            () = activity.http2_begun(), if told_to_go => {
                return Decision::Close { cut_off_at: None };
            }
            () = tokio::time::sleep_until(next_check) => {
                let now = Instant::now();
                let moves = activity.moves();
                if moves != seen {
                    // Bytes moved since the last check: quiet at most since now.
                    (seen, quiet_since) = (moves, now);
                }
                let quiet_for_a_period = now.duration_since(quiet_since) >= idle_timeout;
                if quiet_for_a_period && activity.is_write_blocked() {
                    // An answer is waiting to be written and the client has taken nothing for
                    // a whole idle period: it holds buffers and an upstream connection. Cut now
                    // (a graceful close would wait for that answer another period).
                    tracing::debug!(%peer, "cutting off a client that stopped reading");
                    return Decision::CutOff;
                } else if quiet_for_a_period && activity.in_flight() == 0 {
                    tracing::debug!(%peer, "closing an idle connection");
                    return Decision::Close { cut_off_at: Some(now + idle_timeout) };
                }
                next_check = now + check_every;
            }
        }
    }
}

/// Connections a side listener serves at once; more wait in the backlog.
const SIDE_MAX_CONNECTIONS: usize = 64;
/// How long a side listener's connection may live (a Prometheus scrape or a probe takes
/// milliseconds; a keep-alive client simply reconnects).
const SIDE_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// A plain HTTP/1.1 server for a side service (the admin endpoints, the demo's issuer and API),
/// with a cap on connections and on each connection's lifetime, so that whoever reaches it
/// cannot hold it open.
pub async fn serve_fn<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let builder = builder(&SIDE_LISTENER);
    let slots = Arc::new(tokio::sync::Semaphore::new(SIDE_MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let handler = handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(SIDE_CONNECTION_LIFETIME, connection).await;
            drop(slot);
        });
    }
}

async fn serve_admin(live: Arc<Live>, listener: TcpListener) {
    serve_fn(listener, move |request: Request<Incoming>| {
        let live = live.clone();
        async move { admin::respond(&live, request).await }
    })
    .await
}
