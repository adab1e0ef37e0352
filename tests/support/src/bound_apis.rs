//! APIs taking sender-constrained tokens, verifying them with `jose` and node's TLS,
//! independently of cloakroom's own code: DPoP (`tests/provider/dpop-api.mjs`) and
//! certificate-bound tokens (`tests/provider/mtls-api.mjs`).

use super::*;

/// `node <script> <args>` in tests/provider, with `env`; what it printed first (JSON), and the
/// process, which exits when the test process does (its stdin closes).
fn start_node(script: &str, args: &[&str], env: &[(&str, &std::path::Path)]) -> (Value, Child) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../provider");
    let mut command = Command::new("node");
    command.arg(script).args(args).current_dir(dir).stdin(Stdio::piped()).stdout(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.stderr(Stdio::null()).spawn().expect("node runs");
    std::mem::forget(child.stdin.take().expect("piped stdin"));
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("the API prints its port");
    std::mem::forget(reader);
    let parsed: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{script} said {line:?}: {e}"));
    (parsed, child)
}

pub struct DpopApi {
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
    _child: Mutex<Child>,
}

impl DpopApi {
    /// Started for `issuer`'s tokens; it exits with the test process.
    pub fn start(issuer: &str) -> DpopApi {
        let (parsed, child) = start_node("dpop-api.mjs", &[issuer], &[]);
        DpopApi { origin: format!("http://127.0.0.1:{}", parsed["port"]), _child: Mutex::new(child) }
    }

    /// Every request it got, oldest first: `method`, `path`, `headers`, `verdict` ("ok" or why not).
    pub async fn seen(&self) -> Vec<Value> {
        let reply = http_call(Method::GET, &format!("{}/__test/seen", self.origin), None, &[]).await;
        reply.json().as_array().cloned().unwrap_or_default()
    }

    /// A new nonce: the next proof carrying the old one is answered `use_dpop_nonce`.
    pub async fn rotate_nonce(&self) {
        let reply = http_call(Method::POST, &format!("{}/__test/rotate", self.origin), None, &[]).await;
        assert_eq!(reply.status, 204);
    }
}

/// The API taking certificate-bound tokens, over https with a certificate of the test CA.
pub struct MtlsApi {
    /// `https://127.0.0.1:<port>`.
    pub origin: String,
    _child: Mutex<Child>,
}

impl MtlsApi {
    /// Started for `issuer`'s tokens (its JWKS fetched trusting the test CA).
    pub fn start(issuer: &str) -> MtlsApi {
        let cert = pki().issue("mtls-api", false);
        let ca = pki().ca_file.as_path();
        let env = [("TLS_CERT", cert.cert_file.as_path()), ("TLS_KEY", &cert.key_file), ("TLS_CA", ca)];
        let (parsed, child) =
            start_node("mtls-api.mjs", &[issuer], &[&env[..], &[("NODE_EXTRA_CA_CERTS", ca)]].concat());
        MtlsApi { origin: format!("https://127.0.0.1:{}", parsed["port"]), _child: Mutex::new(child) }
    }

    /// Every request it got, oldest first: `method`, `path`, `presented` (the thumbprint of
    /// the client certificate), `verdict` ("ok" or why not).
    pub async fn seen(&self) -> Vec<Value> {
        let reply = http_call(Method::GET, &format!("{}/__test/seen", self.origin), None, &[]).await;
        reply.json().as_array().cloned().unwrap_or_default()
    }
}
