//! A TCP gate in front of a server, to make it unreachable and reachable again.

use super::*;

/// A TCP gate in front of a server: open, it relays; closed, it refuses new connections and cuts
/// the ones it relays, so the server behind it is unreachable (nothing it is sent arrives late).
pub struct TcpGate {
    pub addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    closed: tokio::sync::watch::Sender<u64>,
}

impl TcpGate {
    /// Binds the gate; `target` is filled in later with [`TcpGate::relay_to`].
    pub fn bind() -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    pub fn relay_to(listener: std::net::TcpListener, target: SocketAddr) -> TcpGate {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (closed, _) = tokio::sync::watch::channel(0u64);
        let (gate_open, gate_closed) = (open.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if !gate_open.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = gate_closed.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        TcpGate { addr, open, closed }
    }

    pub fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.closed.send_modify(|n| *n += 1);
    }

    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
