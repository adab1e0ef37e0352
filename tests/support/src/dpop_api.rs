//! The DPoP-protected API (`tests/provider/dpop-api.mjs`): a resource server that verifies the
//! token's binding and each proof with `jose`, independently of cloakroom's own code.

use super::*;

pub struct DpopApi {
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
    _child: Mutex<Child>,
}

impl DpopApi {
    /// Started for `issuer`'s tokens; it exits with the test process.
    pub fn start(issuer: &str) -> DpopApi {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../provider");
        let mut child = Command::new("node")
            .arg("dpop-api.mjs")
            .arg(issuer)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        std::mem::forget(child.stdin.take().expect("piped stdin"));
        let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("the API prints its port");
        std::mem::forget(reader);
        let parsed: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("the API said {line:?}: {e}"));
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
