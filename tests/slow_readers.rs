//! Slow readers (issue 18, item 7): clients that ask for a large answer and stop reading must
//! hold little of cloakroom's memory, and be cut off once they have taken nothing for an idle
//! period, while the upstream's reading pauses instead of filling buffers.
//!
//! Its own test binary, and cloakroom as its own process, so that the memory measured is
//! cloakroom's alone (the upstream here buffers on its side too).

use cloakroom_test_support as support;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READERS: usize = 40;
const BODY: u64 = 64 * 1024 * 1024;
/// What each stalled reader may cost cloakroom (issue 27, item 1: at most 64 KiB; measured
/// about 64 KiB in a debug build, where it was about 248 KiB before the gate and the smaller
/// upstream read buffer, and about 990 KiB before issue 18).
const ALLOWED_KIB_PER_READER: u64 = 72;

/// The sockets a process holds open (its listeners, clients and upstream connections).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

/// The idle period: long enough that a cut after one period and one after two are far apart.
const IDLE_SECS: u64 = 4;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_hold_little_memory_and_are_cut_off() {
    let upstream = Upstream::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (port, admin_port) = (listener.local_addr().unwrap().port(), admin.local_addr().unwrap().port());
    drop((listener, admin));
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
         public_url = \"http://127.0.0.1:{port}\"\nidle_timeout = \"{IDLE_SECS}s\"\nshutdown_delay = \"0s\"\n\
         [oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"x\"\nclient_secret = \"y\"\n\
         [session]\nkeys = [\"{key}\"]\n\
         [[routes]]\nprefix = \"/open/\"\nupstream = \"http://{upstream}/open/\"\ntoken = \"none\"\n",
        key = test_key(),
        upstream = upstream.addr,
    );
    let path = std::env::temp_dir().join(format!("cloakroom-slow-readers-{port}.toml"));
    std::fs::write(&path, config).unwrap();
    let binary = std::env::var("SLOW_READERS_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cloakroom").into());
    let mut child =
        Command::new(binary).arg("--config").arg(&path).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "cloakroom did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Warm up (one whole small download), then the baseline.
    let mut warm = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    warm.write_all(b"GET /open/download?bytes=1000000 HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    warm.read_to_end(&mut sink).await.unwrap();
    let baseline = rss_kib(child.id());

    let request = format!("GET /open/download?bytes={BODY} HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\n\r\n");
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        readers.push(stream); // and it reads no more
    }
    let stalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let growth = rss_kib(child.id()).saturating_sub(baseline);
    println!("{READERS} stalled readers: cloakroom grew by {growth} KiB");

    // Cut off once it has taken nothing for an idle period (issue 27, item 4: README says after
    // idle_timeout, and they were cut after two to two and a half): the kernel's socket buffers
    // fill first (well under a second here), and the check comes at most a quarter period
    // after the period. So every reader's connection (and its upstream one) is gone within
    // 1.25 periods and a second of filling, far from the two periods it took before.
    let before = sockets(child.id());
    let mut cut_after = None;
    while cut_after.is_none() && stalled.elapsed() < Duration::from_secs(4 * IDLE_SECS) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Every reader's two sockets gone, give or take one socket (the warm-up's pooled
        // upstream connection). A slack of two let the check pass with one reader left, which
        // the reads below then revived (CI, 2026-12-07: "reader 39 was not cut off").
        if sockets(child.id()) + 2 * READERS <= before + 1 {
            cut_after = Some(stalled.elapsed());
        }
    }
    let cut_after = cut_after.expect("the stalled readers were never cut off");
    println!("stalled readers cut off {cut_after:?} after their answers began (idle_timeout {IDLE_SECS} s)");
    let bound = Duration::from_millis(IDLE_SECS * 1250 + 1000);
    assert!(cut_after < bound, "cut off {cut_after:?} after stalling: past 1.25 idle periods and a second");
    for (i, mut stream) in readers.into_iter().enumerate() {
        let mut read = 0u64;
        let mut chunk = vec![0u8; 256 * 1024];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read += n as u64,
                }
            }
        })
        .await;
        assert!(ended.is_ok() && read < BODY / 2, "reader {i} was not cut off ({read} bytes readable)");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        growth < ALLOWED_KIB_PER_READER * READERS as u64,
        "{READERS} stalled readers cost {growth} KiB ({} KiB each)",
        growth / READERS as u64
    );
}
