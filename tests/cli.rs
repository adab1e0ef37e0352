//! The binary: `check` validates and reports every error naming its key; SIGTERM stops cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cloakroom");

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cloakroom-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_repository_demo_config_only_in_a_demo_build() {
    let output = Command::new(BIN)
        .args(["check", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if cfg!(feature = "demo") {
        assert!(output.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("configuration is valid"), "{stdout}");
        assert!(stdout.contains("provider \"default\": profile none"), "the profile is not reported: {stdout}");
        assert!(stderr.contains("session.keys is empty"), "the ephemeral-key warning is missing: {stderr}");
        assert!(stderr.contains("DEVELOPMENT ISSUER"), "the development-only warning is missing: {stderr}");
    } else {
        assert_eq!(output.status.code(), Some(78), "a production build accepted the demo: {stdout}{stderr}");
        assert!(stderr.contains("demo.issuer_listen") && stderr.contains("--features demo"), "{stderr}");
    }
}

#[test]
fn check_reports_every_error_with_its_key_and_fails() {
    let path = temp_file(
        "broken.toml",
        "[server]\nlisten = \"nowhere\"\ncolour = 1\n[oidc]\nissuer = \"http://id.example.com\"\n[session]\nsame_site = \"none\"\n",
    );
    let output = Command::new(BIN).args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in
        ["server.listen", "server.colour", "oidc.issuer", "oidc.client_id", "oidc.client_secret", "session.same_site"]
    {
        assert!(stderr.contains(key), "{key} not named in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_files_and_bad_arguments_are_clear_errors() {
    let output = Command::new(BIN).args(["check", "--config", "/nonexistent/cloakroom.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent/cloakroom.toml"));
    let output = Command::new(BIN).arg("--frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage"));
}

/// Starts the binary on free loopback ports with `extra` config appended; returns once its
/// admin listener accepts connections.
fn start_binary(name: &str, extra: &str, stdout: Stdio) -> (std::process::Child, std::path::PathBuf) {
    start_binary_with(name, "", extra, stdout)
}

/// Like [`start_binary`], with `server_extra` inside `[server]`.
fn start_binary_with(
    name: &str,
    server_extra: &str,
    extra: &str,
    stdout: Stdio,
) -> (std::process::Child, std::path::PathBuf) {
    start_binary_at("http://127.0.0.1:9", name, server_extra, extra, stdout)
}

/// Like [`start_binary_with`], signing in at `issuer`.
fn start_binary_at(
    issuer: &str,
    name: &str,
    server_extra: &str,
    extra: &str,
    stdout: Stdio,
) -> (std::process::Child, std::path::PathBuf) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (port, admin_port) = (listener.local_addr().unwrap().port(), admin.local_addr().unwrap().port());
    drop((listener, admin));
    let path = temp_file(
        name,
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n{server_extra}\n[oidc]\nissuer = \"{issuer}\"\nclient_id = \"x\"\nclient_secret = \"y\"\n{extra}"
        ),
    );
    let child = Command::new(BIN).arg("--config").arg(&path).stdout(stdout).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "cloakroom did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, path)
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let (mut child, path) = start_binary("run.toml", "", Stdio::null());
    // The container health probe: healthy while it runs.
    let health = Command::new(BIN).args(["healthcheck", "--config"]).arg(&path).output().unwrap();
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let stopping = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(stopping.elapsed() < Duration::from_secs(10), "SIGTERM did not stop cloakroom");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_worker_thread_or_several_serve_and_stop_alike() {
    for (threads, expected) in [("1", "serving on 1 worker thread(s)"), ("3", "serving on 3 worker thread(s)")] {
        let (child, path) = start_binary_with(
            &format!("threads-{threads}.toml"),
            &format!("worker_threads = {threads}"),
            "",
            Stdio::piped(),
        );
        let health = Command::new(BIN).args(["healthcheck", "--config"]).arg(&path).output().unwrap();
        assert!(health.status.success(), "{threads}: {}", String::from_utf8_lossy(&health.stderr));
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{threads}: exit status {}", output.status);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(expected), "{threads}: expected {expected:?} in: {text}");
    }
}

#[test]
fn healthcheck_fails_when_nothing_answers() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = admin.local_addr().unwrap().port();
    drop(admin);
    let path = temp_file(
        "down.toml",
        &format!(
            "[server]\nadmin_listen = \"127.0.0.1:{port}\"\n[oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"x\"\nclient_secret = \"y\"\n"
        ),
    );
    let output = Command::new(BIN).args(["healthcheck", "--config"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unhealthy"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (child, _) = start_binary("json.toml", "[log]\nformat = \"json\"\n", Stdio::piped());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 2, "expected JSON log lines, got: {text}");
    for line in lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed["level"].is_string() && parsed["fields"].is_object(), "{line}");
    }
}

use cloakroom_test_support as pki;

/// The certificate a TLS handshake with `addr` presents.
async fn presented_certificate(addr: &str) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(pki::pki().client_config(None));
    let stream = connector.connect(name, tcp).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn sighup_reloads_the_tls_certificate() {
    let first = pki::pki().issue("first", false);
    let live = pki::pki().issue("live", false);
    std::fs::copy(&first.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&first.key_file, &live.key_file).unwrap();
    let tls = format!("tls_cert_file = {:?}\ntls_key_file = {:?}", live.cert_file, live.key_file);
    let (mut child, path) = start_binary_with("tls.toml", &tls, "", Stdio::null());
    let text = std::fs::read_to_string(&path).unwrap();
    let listen = text.lines().find_map(|l| l.strip_prefix("listen = ")).unwrap().trim_matches('"').to_string();
    assert_eq!(presented_certificate(&listen).await, first.der);

    let second = pki::pki().issue("second", false);
    std::fs::copy(&second.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&second.key_file, &live.key_file).unwrap();
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    let started = Instant::now();
    while presented_certificate(&listen).await != second.der {
        assert!(started.elapsed() < Duration::from_secs(10), "SIGHUP did not reload the certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP must not stop the server");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// One raw HTTP/1.1 exchange: `Ok(close)` when an answer came (`close`: the server asked to
/// close), `Err` when the request went out and no answer came back.
fn exchange(stream: &mut std::net::TcpStream) -> Result<bool, ()> {
    exchange_request(stream, b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n").map(|(_, close)| close)
}

/// [`exchange`] with a request of the caller's: the answer's status, and whether it closes.
fn exchange_request(stream: &mut std::net::TcpStream, request: &[u8]) -> Result<(u16, bool), ()> {
    use std::io::{Read, Write};
    stream.write_all(request).map_err(|_| ())?;
    let (mut buffer, mut chunk) = (Vec::new(), [0u8; 4096]);
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).ok_or(())?;
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).ok_or(())?;
    Ok((status, head.contains("connection: close")))
}

/// Issue 27, item 5, with a real SIGTERM: a keep-alive load from clients that do not watch
/// `/readyz` and retry only a refused connection loses no request across the shutdown.
#[test]
fn sigterm_under_a_keep_alive_load_loses_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (mut child, path) = start_binary_with("term-load.toml", "shutdown_delay = \"300ms\"", "", Stdio::null());
    let text = std::fs::read_to_string(&path).unwrap();
    let listen = text.lines().find_map(|l| l.strip_prefix("listen = ")).unwrap().trim_matches('"').to_string();
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let (answered, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (answered, lost) = (answered.clone(), lost.clone());
            std::thread::spawn(move || {
                let mut refused_since: Option<Instant> = None;
                loop {
                    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
                        if refused_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(500) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    refused_since = None;
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    loop {
                        match exchange(&mut stream) {
                            Ok(false) => answered.fetch_add(1, Ordering::SeqCst),
                            Ok(true) => {
                                answered.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Err(()) => {
                                lost.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                        };
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    for worker in workers {
        worker.join().unwrap();
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let (answered, lost) = (answered.load(Ordering::SeqCst), lost.load(Ordering::SeqCst));
    println!("across SIGTERM: {answered} answered, {lost} lost");
    assert!(answered > 200, "too little load to mean anything: {answered}");
    assert_eq!(lost, 0, "{lost} requests went out and got no answer ({answered} answered)");
}

/// `cloakroom sessions …` (issue 29, item 4) calls the running binary's admin listener with the
/// token from the configuration; the same call without the token is refused, and says so.
#[test]
fn the_sessions_command_uses_the_configured_admin_token_and_is_refused_without_it() {
    let token = "f".repeat(40);
    let token_file = temp_file("admin-token", &format!("{token}\n"));
    let server = format!("admin_token_file = {:?}", token_file.display().to_string());
    let (mut child, path) = start_binary_with("sessions.toml", &server, "", Stdio::null());
    let run = |config: &std::path::Path, args: &[&str]| {
        Command::new(BIN).arg("sessions").args(args).arg("--config").arg(config).output().unwrap()
    };
    let listed = run(&path, &["list", "alice"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!((listed["sub"].as_str(), listed["sessions"].as_array().map(Vec::len)), (Some("alice"), Some(0)));
    let ended = run(&path, &["end-all"]);
    assert!(ended.status.success(), "{}", String::from_utf8_lossy(&ended.stderr));
    assert_eq!(String::from_utf8_lossy(&ended.stdout).trim(), r#"{"ended":0}"#);
    // The same listener, asked by a configuration without the token.
    let text = std::fs::read_to_string(&path).unwrap();
    let without = temp_file("sessions-no-token.toml", &text.replace(&server, ""));
    let refused = run(&without, &["end-all"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401") && stderr.contains("unauthorized"), "{stderr}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The main listener's address in a config [`start_binary_with`] wrote.
fn listen_addr(path: &std::path::Path) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().find_map(|l| l.strip_prefix("listen = ")).unwrap().trim_matches('"').parse().unwrap()
}

fn traces_toml(collector: std::net::SocketAddr, extra: &str) -> String {
    format!("[traces]\nendpoint = \"http://{collector}/v1/traces\"\nexport_interval = \"50ms\"\n{extra}")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Issue 31, item 1: a collector that takes the export and never answers costs no call and
/// no memory: spans beyond the bounded queue are dropped, the export waits on its own task
/// (at most `export_timeout`), and the binary still stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_collector_fails_no_call_and_grows_no_memory() {
    let collector = pki::OtlpReceiver::start_hung().await;
    let traces = traces_toml(collector.addr, "queue_size = 64\nexport_timeout = \"1s\"");
    let (mut child, path) = start_binary("hung-collector.toml", &traces, Stdio::null());
    let (addr, pid) = (listen_addr(&path), child.id());
    let (lost, warm, loaded) = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut lost = 0;
        let mut call = |count: usize| {
            for _ in 0..count {
                if exchange(&mut stream).is_err() {
                    lost += 1;
                    stream = std::net::TcpStream::connect(addr).unwrap();
                }
            }
        };
        call(2_000);
        let warm = rss_kib(pid);
        call(20_000);
        (lost, warm, rss_kib(pid))
    })
    .await
    .unwrap();
    assert_eq!(lost, 0, "calls failed while the collector hung");
    assert!(collector.requests.load(std::sync::atomic::Ordering::SeqCst) > 0, "no export was attempted");
    // 20,000 server spans kept would be megabytes; a bounded queue holds 64.
    assert!(loaded < warm + 4 * 1024, "memory grew from {warm} KiB to {loaded} KiB while the collector hung");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "a hung collector kept cloakroom from stopping");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 31, item 1: `sample_ratio = 0.0` records no trace of its own, and a trusted proxy's
/// sampled trace is still recorded (its decision is followed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_ratio_zero_records_only_what_a_trusted_proxy_sampled() {
    let collector = pki::OtlpReceiver::start().await;
    let traces = traces_toml(collector.addr, "sample_ratio = 0.0");
    let trusted = "trusted_proxies = [\"127.0.0.1/32\"]";
    let (mut child, path) = start_binary_with("sampling.toml", trusted, &traces, Stdio::null());
    let addr = listen_addr(&path);
    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for _ in 0..50 {
            exchange(&mut stream).unwrap();
        }
        let sampled =
            format!("GET /sampled HTTP/1.1\r\nHost: x\r\ntraceparent: 00-{trace}-00f067aa0ba902b7-01\r\n\r\n");
        exchange_request(&mut stream, sampled.as_bytes()).unwrap();
    })
    .await
    .unwrap();
    let span = collector.wait_for("the trusted proxy's sampled request", |s| s.trace_id == trace).await;
    assert_eq!(span.parent_span_id, "00f067aa0ba902b7");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let others: Vec<_> = collector.spans().into_iter().filter(|s| s.trace_id != trace).collect();
    assert!(others.is_empty(), "spans recorded at sample_ratio 0: {others:#?}");
}

/// Issue 31, item 2, with a real SIGHUP: the configuration file is read again and served while
/// keep-alive clients keep calling, and none of their calls fails; a broken file is refused
/// (logged, counted) and the running configuration stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_configuration_under_load_and_no_call_fails() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let upstream = pki::Upstream::start().await;
    let route = |prefix: &str| {
        format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://{}/api/\"\ntoken = \"none\"\n", upstream.addr)
    };
    let issuer = pki::provider().issuer.clone();
    let log = std::env::temp_dir().join(format!("cloakroom-cli-reload-{}.log", std::process::id()));
    let stdout = Stdio::from(std::fs::File::create(&log).unwrap());
    let (mut child, path) = start_binary_at(&issuer, "reload.toml", "", &route("/a/"), stdout);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let (addr, original) = (listen_addr(&path), std::fs::read_to_string(&path).unwrap());
    let admin = original.lines().find_map(|l| l.strip_prefix("admin_listen = ")).unwrap().trim_matches('"').to_string();
    let (answered, failed, stop) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (answered, failed, stop) = (answered.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                let connect = || {
                    let stream = std::net::TcpStream::connect(addr).unwrap();
                    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    stream
                };
                let mut stream = connect();
                while !stop.load(Ordering::SeqCst) {
                    match exchange_request(&mut stream, b"GET /a/items HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\n\r\n") {
                        Ok((200, close)) => {
                            answered.fetch_add(1, Ordering::SeqCst);
                            if close {
                                stream = connect();
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            stream = connect();
                        }
                    }
                }
            })
        })
        .collect();
    let hup = |child: &std::process::Child| {
        assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    };
    let status_of = |path: &'static str| {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        exchange_request(&mut stream, format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\n\r\n").as_bytes())
            .unwrap()
            .0
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of("/b/items"), 404);

    // A route added, reloaded a few times over while the clients call.
    std::fs::write(&path, format!("{original}\n{}", route("/b/"))).unwrap();
    for _ in 0..3 {
        hup(&child);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    while status_of("/b/items") != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "SIGHUP did not serve the added route: {}", logged());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken file: refused, the running configuration (with /b/) stays.
    std::fs::write(&path, format!("{original}\n{}\n[session]\nsame_site = \"sometimes\"\n", route("/b/"))).unwrap();
    hup(&child);
    let metrics = || {
        let mut stream = std::net::TcpStream::connect(admin.as_str()).unwrap();
        std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stream, &mut text).unwrap();
        text
    };
    let started = Instant::now();
    while !metrics().contains("cloakroom_config_reloads_total{outcome=\"invalid\"} 1") {
        assert!(started.elapsed() < Duration::from_secs(10), "the broken file's refusal is not counted: {}", metrics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_of("/b/items"), 200, "a refused reload changed the running configuration");
    assert!(metrics().contains("cloakroom_config_reloads_total{outcome=\"ok\"} 3"), "{}", metrics());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
    let (answered, failed) = (answered.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("across four reloads: {answered} calls answered 200, {failed} failed");
    assert!(answered > 500, "too little load to mean anything: {answered}");
    assert_eq!(failed, 0, "{failed} calls failed across the reloads ({answered} answered)");
    let _ = std::fs::remove_file(&log);
}
