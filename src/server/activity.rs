//! One connection's activity, as its I/O sees it: bytes moved (for the idle check), requests in
//! flight, whether the client's socket took the last write, and the gate that holds an HTTP/1.1
//! answer's body back while it did not.
//!
//! The gate is what bounds a slow reader's cost: hyper pulls a body's frames while its write
//! buffer has room (up to `server.max_header_bytes`, the same buffer that reads request heads),
//! and the upstream client reads the upstream while its body is pulled. Held back at the first
//! blocked write, an answer keeps at most one chunk in each buffer, whatever the header limit.

use crate::respond::Body;
use futures_util::task::AtomicWaker;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bodies of at most this many bytes, length known, need no gate.
const UNGATED_MAX: u64 = 16 * 1024;

/// Bytes of an answer that may wait in hyper's write buffer for the client's socket.
const GATE_WINDOW: u64 = 8 * 1024;

/// What a connection's I/O has moved, how many requests it has in flight, and whether it
/// speaks HTTP/2.
pub(super) struct Activity {
    /// Reads and writes that moved bytes, and requests finished, counted.
    moves: AtomicU64,
    in_flight: AtomicUsize,
    http2: AtomicBool,
    /// The last write found the client's socket full (the client is not reading).
    write_blocked: AtomicBool,
    /// Bytes the client's socket has taken.
    written: AtomicU64,
    /// The [`Gated`] body waiting for the client's socket to take bytes again.
    writable: AtomicWaker,
    /// The connection's watcher, waiting for it to turn out HTTP/2 ([`Activity::http2_begun`]).
    http2_begun: AtomicWaker,
}

pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.moved();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            moves: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
            written: AtomicU64::new(0),
            writable: AtomicWaker::new(),
            http2_begun: AtomicWaker::new(),
        }
    }

    fn moved(&self) {
        self.moves.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }

    pub(super) fn begin_request(self: &Arc<Self>, version: http::Version) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if version == http::Version::HTTP_2 && !self.http2.swap(true, Ordering::AcqRel) {
            self.http2_begun.wake();
        }
        InFlight(self.clone())
    }

    pub(super) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Acquire)
    }

    /// Resolves once the connection's first HTTP/2 request has begun.
    pub(super) fn http2_begun(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.is_http2() {
                return Poll::Ready(());
            }
            // Registered before looking again: a request beginning in between wakes us.
            self.http2_begun.register(cx.waker());
            if self.is_http2() { Poll::Ready(()) } else { Poll::Pending }
        })
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The last write found the client's socket full: an answer (its head or its body, which
    /// outlives the request's in-flight mark) waits for a client that does not read.
    pub(super) fn is_write_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::Acquire)
    }

    /// An HTTP/1.1 answer's body, held back while the client does not read ([`Gated`]). Small
    /// bodies of a known length go as they are: they fit in the connection's write buffer.
    pub(super) fn gate(self: &Arc<Self>, body: Body) -> Body {
        if hyper::body::Body::size_hint(&body).exact().is_some_and(|len| len <= UNGATED_MAX) {
            return body;
        }
        Gated { inner: body, yielded: 0, written_before: self.written(), activity: self.clone() }.boxed()
    }

    /// A write result: how many bytes the client's socket took, or that it was full.
    fn wrote<T>(&self, result: &Poll<std::io::Result<T>>, taken: usize) {
        match result {
            Poll::Pending => self.write_blocked.store(true, Ordering::Release),
            Poll::Ready(Ok(_)) if taken > 0 => {
                self.write_blocked.store(false, Ordering::Release);
                self.written.fetch_add(taken as u64, Ordering::AcqRel);
                self.writable.wake();
                self.moved();
            }
            Poll::Ready(_) => {}
        }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
}

/// The connection's byte stream, noting activity on every read and write.
pub(super) struct ActivityIo<IO> {
    pub(super) inner: IO,
    pub(super) activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for ActivityIo<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.moved();
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ActivityIo<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        let taken = if let Poll::Ready(Ok(n)) = result { n } else { 0 };
        self.activity.wrote(&result, taken);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let taken = if let Poll::Ready(Ok(n)) = result { n } else { 0 };
        self.activity.wrote(&result, taken);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.activity.wrote(&result, 0);
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that yields no new frame while more than [`GATE_WINDOW`] of what it yielded
/// waits in hyper's buffer (not yet taken by the client's socket); woken when a write takes
/// bytes. One per HTTP/1.1 connection at a time (HTTP/2 streams share a socket and have their
/// own send bound).
struct Gated {
    inner: Body,
    /// Bytes this body has handed to hyper.
    yielded: u64,
    /// The connection's `written` when this answer began (the head and this body come after).
    written_before: u64,
    activity: Arc<Activity>,
}

impl Gated {
    fn waiting(&self) -> bool {
        let taken = self.activity.written().saturating_sub(self.written_before);
        self.yielded.saturating_sub(taken) > GATE_WINDOW
    }
}

impl hyper::body::Body for Gated {
    type Data = bytes::Bytes;
    type Error = crate::respond::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.waiting() {
            // Registered before looking again: a write in between wakes us.
            self.activity.writable.register(cx.waker());
            if self.waiting() {
                return Poll::Pending;
            }
        }
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.yielded += data.len() as u64;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
