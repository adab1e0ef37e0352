//! Closing the main listener without losing a request.
//!
//! A connection the kernel has completed but cloakroom has not accepted yet carries a request its
//! client already sent: closing the listener resets it, and that request is lost (a client that
//! retries only refused connections, as most load generators and many HTTP clients do, gives up
//! on it). So, as the shutdown stops accepting: the kernel stops starting handshakes (a socket
//! filter drops new SYNs, which their clients send again and which are refused once the listener
//! is closed), handshakes under way get a moment to finish, and every connection waiting is
//! accepted and answered before the listener closes.

use std::time::Duration;
use tokio::net::TcpListener;

/// How long handshakes already under way get to complete before the last sweep (a SYN-ACK's
/// round trip on the networks cloakroom sits in; the shutdown waits this once).
pub(super) const HANDSHAKES_SETTLE: Duration = Duration::from_millis(50);

/// Stops the kernel from starting handshakes on `listener`: a filter that drops every segment
/// with SYN set and ACK clear (classic BPF, on Linux), or, where that cannot be, a backlog of
/// nothing (one more connection may still complete then).
pub(super) fn refuse_new_handshakes(listener: &TcpListener) {
    let socket = socket2::SockRef::from(listener);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use socket2::SockFilter;
        // The TCP header's flags byte is at offset 13 of the segment the filter sees.
        const DROP_SYNS: [SockFilter; 5] = [
            SockFilter::new(0x30, 0, 0, 13),          // ldb [13]
            SockFilter::new(0x45, 2, 0, 0x10),        // jset #ACK: keep (handshakes under way finish)
            SockFilter::new(0x45, 0, 1, 0x02),        // jset #SYN: drop, else keep
            SockFilter::new(0x06, 0, 0, 0),           // ret #0: drop
            SockFilter::new(0x06, 0, 0, 0xffff_ffff), // ret #-1: keep
        ];
        match socket.attach_filter(&DROP_SYNS) {
            Ok(()) => return,
            Err(e) => tracing::debug!(error = %e, "could not filter new handshakes; lowering the backlog instead"),
        }
    }
    if let Err(e) = socket.listen(0) {
        tracing::debug!(error = %e, "could not lower the listen backlog");
    }
}
