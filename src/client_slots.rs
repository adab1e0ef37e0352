//! A cap on one client's concurrent connections and HTTP/2 requests
//! (`server.max_connections_per_client`): one address cannot hold the whole `max_connections`,
//! nor multiply it by HTTP/2's streams (each connection or stream also holds buffers and an
//! upstream connection while its client reads slowly). A trusted proxy's address is exempt: it
//! carries many clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct ClientSlots {
    cap: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's slot; given back when dropped.
pub struct ClientSlot {
    ip: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ClientSlots {
    /// `cap`: connections per address at once; 0 turns the cap off.
    pub fn new(cap: usize) -> Self {
        ClientSlots { cap, held: Arc::default() }
    }

    /// A slot for a connection from `ip`, or `None` when that address holds `cap` already.
    /// `Some(None)`: no cap applies (off, or a trusted proxy).
    pub fn take(&self, ip: IpAddr, exempt: bool) -> Option<Option<ClientSlot>> {
        if self.cap == 0 || exempt {
            return Some(None);
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(ip).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Some(ClientSlot { ip, held: self.held.clone() }))
    }
}

/// A response body that keeps its request's slot until it is sent or dropped: a stream's
/// buffers live as long as its body, not its head.
struct Holding {
    inner: crate::respond::Body,
    _slot: ClientSlot,
}

impl hyper::body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = crate::respond::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl ClientSlot {
    /// `body`, holding this slot until it has been sent.
    pub fn hold(self, body: crate::respond::Body) -> crate::respond::Body {
        use http_body_util::BodyExt;
        Holding { inner: body, _slot: self }.boxed()
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_the_cap_and_gets_slots_back() {
        let slots = ClientSlots::new(2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = slots.take(a, false).unwrap();
        let second = slots.take(a, false).unwrap();
        assert!(slots.take(a, false).is_none(), "a third connection from one address");
        assert!(slots.take(b, false).is_some(), "another address has its own");
        assert!(slots.take(a, true).is_some(), "a trusted proxy is exempt");
        drop(first);
        assert!(slots.take(a, false).is_some(), "the slot came back");
        drop(second);
        assert!(ClientSlots::new(0).take(a, false).is_some(), "0: no cap");
        assert!(slots.held.lock().unwrap().get(&a).is_none_or(|n| *n <= 2));
    }
}
