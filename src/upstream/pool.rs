//! Connections kept open per destination and reused: an HTTP/1.1 connection takes the next
//! request once it is ready again (its answer read to the end), an HTTP/2 one takes requests
//! side by side. Nothing is spawned per request: a connection stays in its destination's list
//! while busy, and a request goes to the first one that is ready; the connection's own task
//! (spawned once, at the handshake) marks it ready when its answer is done.
//!
//! A connection unused for `IDLE_TIMEOUT` is never used again and is closed (pruned as requests
//! pass, at most once per `PRUNE_EVERY` per destination, and by a sweep of the whole pool, for
//! destinations that see no more requests); closed ones leave the list within `PRUNE_EVERY`
//! (never chosen meanwhile: they are not ready); at most `MAX_IDLE` ready ones stay per
//! destination.

use super::connect::{Destination, Sender};
use crate::respond::Body;
use http::Request;
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Idle connections are closed after this long (hyper-util's client, used before, had 90 s).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often a request prunes its destination's list (looking at every connection in it costs
/// more than the rest of the choice: a profile found it at 150 ns a call with 32 connections).
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Ready connections kept per destination beyond what is in use.
const MAX_IDLE: usize = 128;

/// The pool of one client (one route, or the provider).
#[derive(Debug, Default)]
pub(super) struct Pool {
    destinations: Mutex<Vec<Connections>>,
    /// Whether the sweep runs (started with the first connection, inside the runtime).
    sweeping: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Connections {
    to: Destination,
    open: Vec<Connection>,
    /// When a request last pruned `open`.
    pruned: Instant,
}

struct Connection {
    sender: Sender,
    last_used: Instant,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("last_used", &self.last_used).finish_non_exhaustive()
    }
}

/// A request handed to a connection: its answer, or the request back when it was not sent.
pub(super) type Answer = Result<http::Response<Incoming>, TrySendError<Request<Body>>>;

impl Pool {
    /// Hands `request` to a ready connection to `to`, when there is one; gives it back when
    /// there is none (by value, as hyper's own `try_send_request` does).
    #[allow(clippy::result_large_err)]
    pub fn send_on_ready(
        &self,
        to: &Destination,
        request: Request<Body>,
    ) -> Result<impl Future<Output = Answer> + use<>, Request<Body>> {
        let now = Instant::now();
        let mut destinations = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        let Some(connections) = destinations.iter_mut().find(|c| c.to == *to) else { return Err(request) };
        if now.saturating_duration_since(connections.pruned) >= PRUNE_EVERY {
            connections.open.retain(|c| !c.expired(now));
            connections.pruned = now;
        }
        // The most recent first: its socket is the likeliest to be warm. One past its idle
        // timeout is not taken, pruned or not yet.
        let Some(ready) = connections.open.iter_mut().rev().find(|c| c.sender.is_ready() && !c.idle_too_long(now))
        else {
            return Err(request);
        };
        ready.last_used = now;
        Ok(ready.sender.send(request, to))
    }

    /// Keeps `sender`, a new connection to `to` that has just been handed a request.
    pub fn keep(self: &Arc<Self>, to: &Destination, sender: Sender) {
        let connection = Connection { sender, last_used: Instant::now() };
        {
            let mut destinations = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
            match destinations.iter_mut().find(|c| c.to == *to) {
                Some(connections) => connections.open.push(connection),
                None => {
                    destinations.push(Connections { to: to.clone(), open: vec![connection], pruned: Instant::now() })
                }
            }
        }
        if !self.sweeping.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Closes what has been idle too long, and ready connections beyond `MAX_IDLE`.
    fn prune(&self) {
        let now = Instant::now();
        let mut destinations = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        for connections in destinations.iter_mut() {
            connections.open.retain(|c| !c.expired(now));
            let mut ready = 0;
            // The oldest go first.
            for index in (0..connections.open.len()).rev() {
                if connections.open[index].sender.is_ready() {
                    ready += 1;
                    if ready > MAX_IDLE {
                        connections.open.remove(index);
                    }
                }
            }
        }
        destinations.retain(|c| !c.open.is_empty());
    }
}

impl Connection {
    /// Closed, or ready and unused for longer than the idle timeout.
    fn expired(&self, now: Instant) -> bool {
        self.sender.is_closed() || (self.sender.is_ready() && self.idle_too_long(now))
    }

    fn idle_too_long(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_used) > IDLE_TIMEOUT
    }
}

/// The pool's sweep, for as long as the pool lives.
async fn sweep(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 3).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.prune();
    }
}

impl Sender {
    pub fn is_ready(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_ready(),
            Sender::Http2(sender) => sender.is_ready(),
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    /// Hands `request` (its URI absolute, to `to`) to this connection, in the form its protocol
    /// sends: HTTP/1.1 in origin form with a `Host`, HTTP/2 with the authority in the URI.
    pub fn send(&mut self, mut request: Request<Body>, to: &Destination) -> impl Future<Output = Answer> + use<> {
        use futures_util::future::Either;
        match self {
            Sender::Http1(sender) => {
                http1_form(&mut request, to);
                Either::Left(sender.try_send_request(request))
            }
            Sender::Http2(sender) => {
                http2_form(&mut request, to);
                Either::Right(sender.try_send_request(request))
            }
        }
    }
}

/// Origin form (`/path?query`), and a `Host` naming the authority when the caller set none
/// (the port left out when it is the scheme's default).
fn http1_form(request: &mut Request<Body>, to: &Destination) {
    if request.uri().authority().is_some() {
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = request.uri().path_and_query().cloned();
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    *request.version_mut() = http::Version::HTTP_11;
    if !request.headers().contains_key(http::header::HOST) {
        let default_port = if to.https { 443 } else { 80 };
        let host = match to.authority.port_u16() {
            Some(port) if port != default_port => to.authority.as_str(),
            _ => to.authority.host(),
        };
        if let Ok(value) = http::HeaderValue::try_from(host) {
            request.headers_mut().insert(http::header::HOST, value);
        }
    }
}

/// The absolute form HTTP/2 takes its `:scheme` and `:authority` from (a request given back by
/// an HTTP/1.1 connection may be in origin form by then).
fn http2_form(request: &mut Request<Body>, to: &Destination) {
    if request.uri().authority().is_none() {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(if to.https { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP });
        parts.authority = Some(to.authority.clone());
        parts.path_and_query = request.uri().path_and_query().cloned();
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    *request.version_mut() = http::Version::HTTP_2;
}
