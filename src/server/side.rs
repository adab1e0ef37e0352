//! A connection and its watcher (the drain signal, the idle checks), polled apart: the watcher
//! only when one of its own wakers fired, not on every wake of the connection.
//!
//! `tokio::select!` polls every branch whenever the task wakes, and a connection's task wakes
//! several times per request (a read, the upstream's answer, a write). Polling the drain watch
//! takes its lock, and a timer is looked at too: a profile of bench row (c) found about 200 ns
//! of each call there. Here the watcher's futures get a waker of their own that marks them due
//! before waking the task, so a wake for the connection costs the watcher one atomic swap.

use futures_util::task::{ArcWake, AtomicWaker, waker_ref};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Which finished first.
pub(super) enum First<A, B> {
    Connection(A),
    Watcher(B),
}

/// The watcher's waker: marks it due, then wakes the task.
struct Due {
    due: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for Due {
    fn wake_by_ref(this: &Arc<Self>) {
        this.due.store(true, Ordering::Release);
        this.task.wake();
    }
}

/// Polls `connection` on every wake and `watcher` only when its own wakers asked (and once at
/// first, so that it registers them), until either finishes.
pub(super) fn first<C: Future + Unpin, W: Future + Unpin>(connection: C, watcher: W) -> Apart<C, W> {
    Apart { connection, watcher, due: Arc::new(Due { due: AtomicBool::new(true), task: AtomicWaker::new() }) }
}

/// [`first`]'s future.
pub(super) struct Apart<C, W> {
    connection: C,
    watcher: W,
    due: Arc<Due>,
}

impl<C: Future + Unpin, W: Future + Unpin> Future for Apart<C, W> {
    type Output = First<C::Output, W::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.due.task.register(cx.waker());
        if let Poll::Ready(out) = Pin::new(&mut this.connection).poll(cx) {
            return Poll::Ready(First::Connection(out));
        }
        if this.due.due.swap(false, Ordering::AcqRel) {
            let waker = waker_ref(&this.due);
            if let Poll::Ready(out) = Pin::new(&mut this.watcher).poll(&mut Context::from_waker(&waker)) {
                return Poll::Ready(First::Watcher(out));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A future that counts its polls and never finishes.
    struct Counted<'a>(&'a AtomicUsize);

    impl Future for Counted<'_> {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn the_watcher_is_polled_when_its_own_waker_fires_not_on_the_connections_wakes() {
        let polls = AtomicUsize::new(0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        // The "connection": finishes on the tenth message, woken by each.
        let connection = async {
            let mut seen = 0;
            while rx.recv().await.is_some() {
                seen += 1;
                if seen == 10 {
                    return seen;
                }
            }
            seen
        };
        let watcher = async {
            Counted(&polls).await;
        };
        let sender = tokio::spawn(async move {
            for i in 0..10 {
                tx.send(i).unwrap();
                tokio::task::yield_now().await;
            }
        });
        let (connection, watcher) = (std::pin::pin!(connection), std::pin::pin!(watcher));
        match first(connection, watcher).await {
            First::Connection(seen) => assert_eq!(seen, 10),
            First::Watcher(()) => panic!("the watcher never finishes"),
        }
        sender.await.unwrap();
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, to register, and not on the connection's wakes");
    }

    #[tokio::test]
    async fn a_watcher_woken_by_its_timer_finishes_first() {
        let connection = std::future::pending::<()>();
        let watcher = async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            "idle"
        };
        let (connection, watcher) = (std::pin::pin!(connection), std::pin::pin!(watcher));
        let started = tokio::time::Instant::now();
        match first(connection, watcher).await {
            First::Watcher(what) => assert_eq!(what, "idle"),
            First::Connection(()) => panic!("the connection never finishes"),
        }
        assert!(started.elapsed() >= std::time::Duration::from_millis(5));
    }

    #[tokio::test]
    async fn a_watcher_woken_by_a_channel_finishes_first() {
        let (tx, mut rx) = tokio::sync::watch::channel(0);
        let connection = std::future::pending::<()>();
        let watcher = async move {
            rx.changed().await.unwrap();
            *rx.borrow()
        };
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send(7).unwrap();
            // Kept until the watcher has seen the change.
            tx.closed().await;
        });
        let (connection, watcher) = (std::pin::pin!(connection), std::pin::pin!(watcher));
        match first(connection, watcher).await {
            First::Watcher(value) => assert_eq!(value, 7),
            First::Connection(()) => panic!("the connection never finishes"),
        }
    }
}
