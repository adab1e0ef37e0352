//! Real gateways in front of cloakroom's forward-auth: Debian's nginx (`auth_request`) and
//! Caddy (`forward_auth`), each run from the configuration docs/gateways holds, as written,
//! with only its placeholders filled in.

use super::*;

/// A gateway process on loopback; stopped when dropped.
pub struct Gateway {
    /// The browser-facing origin (`http://127.0.0.1:<port>`).
    pub origin: String,
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/gateways");

/// A working directory of the gateway's own, and its configuration from docs/gateways with the
/// placeholders filled in: `own` (where it listens) and the shared three.
fn prepare(
    program: &str,
    file: &str,
    own: (&str, &str),
    cloakroom: SocketAddr,
    api: SocketAddr,
    token: &str,
) -> (std::path::PathBuf, String) {
    assert!(std::path::Path::new(program).exists(), "Debian's {program} is needed (./scripts/test installs it)");
    let name = std::path::Path::new(program).file_name().unwrap().to_string_lossy().to_string();
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-{name}-{}-{}",
        std::process::id(),
        own.1.replace(['/', ':'], "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = std::fs::read_to_string(format!("{DOCS}/{file}")).expect("docs/gateways holds the configuration");
    for (placeholder, value) in
        [own, ("CLOAKROOM", &cloakroom.to_string()), ("API", &api.to_string()), ("GATEWAY_TOKEN", token)]
    {
        text = text.replace(placeholder, value);
    }
    (dir, text)
}

impl Gateway {
    /// nginx on `port`, asking `cloakroom` and forwarding `/api/` to `api`.
    pub async fn nginx(port: u16, cloakroom: SocketAddr, api: SocketAddr, token: &str) -> Gateway {
        let listen = format!("127.0.0.1:{port}");
        let (dir, server) = prepare("/usr/sbin/nginx", "nginx.conf", ("LISTEN", &listen), cloakroom, api, token);
        let d = dir.display();
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\naccess_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n{server}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        Self::ready(Gateway { origin: format!("http://{listen}"), child, dir }, port).await
    }

    /// Caddy on `port`, asking `cloakroom` and forwarding `/api/` to `api`.
    pub async fn caddy(port: u16, cloakroom: SocketAddr, api: SocketAddr, token: &str) -> Gateway {
        let origin = format!("http://127.0.0.1:{port}");
        let (dir, site) = prepare("/usr/bin/caddy", "Caddyfile", ("SITE", &origin), cloakroom, api, token);
        std::fs::write(dir.join("Caddyfile"), format!("{{\n\tadmin off\n\tauto_https off\n}}\n{site}")).unwrap();
        let child = Command::new("/usr/bin/caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.join("Caddyfile"))
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", &dir)
            .env("XDG_CONFIG_HOME", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("caddy starts");
        Self::ready(Gateway { origin, child, dir }, port).await
    }

    async fn ready(mut gateway: Gateway, port: u16) -> Gateway {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return gateway;
            }
            if let Ok(Some(status)) = gateway.child.try_wait() {
                panic!("the gateway exited: {status} (logs in {})", gateway.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway did not listen on {port}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}
