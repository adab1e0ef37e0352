//! A real `redis-server` (Debian's package) on a free loopback port, for tests. Its data lives in
//! a temporary directory with an append-only file, so a stop and a start on the same port keep
//! what was stored, like a production restart. Killed when dropped.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Extra arguments (a replica's `--replicaof`, cluster mode, TLS); kept for `resume`.
    args: Vec<String>,
    /// TLS: the `redis-cli` arguments that reach it (its readiness check uses them).
    tls_cli: Vec<String>,
}

/// A loopback port nothing listens on, never the same one twice in this process: the kernel may
/// hand a just-released port out again, and two servers started from one test would collide.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A free port whose cluster bus port (10,000 above) is a port number and free too: Redis
/// refuses to start a cluster node on a port above 55535.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// How many fresh ports a start tries: a free port can be taken by another test's process
/// between the check and redis-server's own bind.
const START_ATTEMPTS: usize = 5;

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> RedisServer {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let cluster = args.iter().any(|a| a == "--cluster-enabled");
        Self::start_retrying(|| {
            let port = if cluster { free_cluster_port() } else { free_port() };
            (port, args.clone(), Vec::new())
        })
    }

    /// Serving TLS only (`--port 0`) on its port, with `cert` and the CA; with `require_client_cert`,
    /// clients must present a certificate of that CA.
    pub fn start_tls(cert: &super::IssuedCert, ca_file: &std::path::Path, require_client_cert: bool) -> RedisServer {
        let client = super::pki().issue("redis-cli", true);
        Self::start_retrying(|| {
            let port = free_port();
            let path = |p: &std::path::Path| p.display().to_string();
            let args = vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(&cert.cert_file),
                "--tls-key-file".into(),
                path(&cert.key_file),
                "--tls-ca-cert-file".into(),
                path(ca_file),
                "--tls-auth-clients".into(),
                if require_client_cert { "yes" } else { "no" }.into(),
            ];
            let tls_cli = vec![
                "--tls".into(),
                "--cacert".into(),
                path(ca_file),
                "--cert".into(),
                path(&client.cert_file),
                "--key".into(),
                path(&client.key_file),
            ];
            (port, args, tls_cli)
        })
    }

    /// Starts on the port (and with the arguments) `choose` gives, choosing again when the
    /// server exits at once (its port was taken meanwhile).
    fn start_retrying(mut choose: impl FnMut() -> (u16, Vec<String>, Vec<String>)) -> RedisServer {
        for _ in 1..START_ATTEMPTS {
            let (port, args, tls_cli) = choose();
            let mut server = Self::prepare(port, args, tls_cli);
            if server.try_resume() {
                return server;
            }
        }
        let (port, args, tls_cli) = choose();
        let mut server = Self::prepare(port, args, tls_cli);
        server.resume();
        server
    }

    fn prepare(port: u16, args: Vec<String>, tls_cli: Vec<String>) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("cloakroom-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        RedisServer { port, dir, child: None, args, tls_cli }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port with its data.
    pub fn resume(&mut self) {
        assert!(self.try_resume(), "redis-server did not start on port {}", self.port);
    }

    /// Starts the server; `false` when it exited without answering (its port was not free).
    fn try_resume(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt install redis-server; ./scripts/test does it)");
        self.child = Some(child);
        let started = Instant::now();
        while !self.answers() {
            let exited = self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited {
                self.child = None;
                return false;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops the server cleanly (it writes its data first); the port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Stops it at once, without writing anything (a crash, a lost machine).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command through `redis-cli` (TLS included); its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.tls_cli)
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Sends one command in RESP and returns the raw reply (tests' window into Redis).
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = vec![0u8; 1 << 20];
        let n = stream.read(&mut reply).unwrap();
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }

    /// Starts `MONITOR`: every command Redis receives from now on, as Redis echoes it. Read the
    /// capture with [`Monitor::text`].
    pub fn monitor(&self) -> Monitor {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = captured.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Monitor { captured }
    }

    fn answers(&self) -> bool {
        if !self.tls_cli.is_empty() {
            return self.cli(&["PING"]).trim() == "PONG";
        }
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }
}

pub struct Monitor {
    captured: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Monitor {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.captured.lock().unwrap()).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Redis Sentinel (Debian's `redis-server --sentinel`) watching `master` as `mymaster`: quick to
/// call the primary down (1 s) and to fail over. Killed when dropped.
pub struct Sentinel {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Sentinel {
    pub fn start(master_port: u16, quorum: u32) -> Sentinel {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cloakroom-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 4000\n\
                 sentinel parallel-syncs mymaster 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel runs");
        let sentinel = Sentinel { port, child, dir };
        let started = Instant::now();
        while !sentinel.command(&["PING"]).contains("PONG") {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-sentinel did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        sentinel
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port of the primary this sentinel currently names.
    pub fn master_port(&self) -> Option<u16> {
        let reply = self.command(&["SENTINEL", "get-master-addr-by-name", "mymaster"]);
        reply.lines().filter(|l| !l.starts_with('*') && !l.starts_with('$')).nth(1)?.trim().parse().ok()
    }

    pub fn command(&self, args: &[&str]) -> String {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return String::new() };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        if stream.write_all(request.as_bytes()).is_err() {
            return String::new();
        }
        let mut reply = vec![0u8; 65536];
        let n = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A six-node Redis Cluster (three primaries, three replicas) made with `redis-cli --cluster
/// create`, quick to fail a primary over (node timeout 1 s).
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-replica-validity-factor",
                    "0",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Cluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Until every live node says `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        let started = Instant::now();
        loop {
            let ok = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .all(|n| n.command(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills a primary (`kill -9`) and returns once the cluster has promoted its replica: the
    /// dead node is marked failed, owns no slots, and the live nodes say `cluster_state:ok`.
    pub fn kill_a_primary(&mut self) {
        let victim = self
            .nodes
            .iter_mut()
            .find(|n| n.child.is_some() && n.command(&["ROLE"]).contains("master"))
            .expect("a primary");
        let address = victim.addr();
        victim.kill();
        let started = Instant::now();
        loop {
            let witness = self.nodes.iter().find(|n| n.child.is_some()).expect("a live node");
            let nodes = witness.command(&["CLUSTER", "NODES"]);
            let promoted = nodes.lines().filter(|line| line.contains(&format!(" {address}@"))).all(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(2).is_some_and(|flags| flags.split(',').any(|f| f == "fail")) && fields.len() <= 8
            });
            if promoted {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no replica took over from {address}");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_until_ok();
    }
}
