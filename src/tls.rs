//! TLS, both ways, with rustls (aws-lc-rs).
//!
//! Serving: a PEM chain and key, TLS 1.2 and 1.3 only, HTTP/2 or HTTP/1.1 by ALPN. The
//! certificate sits behind a resolver that [`ServerTls::reload`] swaps (SIGHUP): handshakes
//! after the swap get the new one; connections already open keep theirs and are not dropped. A
//! reload that fails keeps the old certificate and says why.
//!
//! Calling out (provider, upstreams): the system's trust store by default, or exactly the CAs of
//! a configured bundle; optionally a client certificate (mutual TLS) per upstream.

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

/// The serving certificate and where it is reloaded from.
#[derive(Debug)]
pub struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    resolver: Arc<SwappableCert>,
    config: Arc<rustls::ServerConfig>,
}

#[derive(Debug)]
struct SwappableCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl ServerTls {
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsFileError> {
        let resolver = Arc::new(SwappableCert(RwLock::new(Arc::new(certified_key(cert_file, key_file)?))));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs's default provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self { cert_file: cert_file.into(), key_file: key_file.into(), resolver, config: Arc::new(config) })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// Reads the files again and, if they make a valid pair, serves the new certificate from the
    /// next handshake on. On error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let key = certified_key(&self.cert_file, &self.key_file)?;
        *self.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }
}

/// Why a certificate or key file cannot be used; each message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFileError {
    #[error("{}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key ({reason})", path.display())]
    NoKey { path: PathBuf, reason: String },
    #[error("{} and {}: {reason}", cert.display(), key.display())]
    Mismatch { cert: PathBuf, key: PathBuf, reason: String },
}

/// A chain and its key, checked to belong together.
fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsFileError> {
    let chain = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    CertifiedKey::from_der(chain, key, &aws_lc_rs::default_provider()).map_err(|e| mismatch(cert_file, key_file, e))
}

fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    PrivateKeyDer::from_pem_file(file).map_err(|e| TlsFileError::NoKey { path: file.into(), reason: e.to_string() })
}

fn mismatch(cert: &Path, key: &Path, e: rustls::Error) -> TlsFileError {
    TlsFileError::Mismatch { cert: cert.into(), key: key.into(), reason: e.to_string() }
}

fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let unreadable =
        |e: rustls::pki_types::pem::Error| TlsFileError::Unreadable { path: file.into(), reason: e.to_string() };
    let certs: Vec<_> =
        CertificateDer::pem_file_iter(file).map_err(unreadable)?.collect::<Result<_, _>>().map_err(unreadable)?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate { path: file.into() });
    }
    Ok(certs)
}

/// Outgoing TLS for one destination: whom to trust and, optionally, who we are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// Trust exactly these CAs instead of the system's store.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and key, for upstreams that require mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Builds the rustls client configuration for `files` (checked at start-up, so a bad file is a
/// configuration error, not a failure at the first request).
pub fn client_config(files: &ClientTlsFiles) -> Result<Arc<rustls::ClientConfig>, ClientTlsError> {
    client_config_and_leaf(files).map(|(config, _)| config)
}

/// [`client_config`], and the client certificate it presents (DER), read from the one reading
/// of its file: what a binding check compares is what the connection shows.
pub fn client_config_and_leaf(
    files: &ClientTlsFiles,
) -> Result<(Arc<rustls::ClientConfig>, Option<Vec<u8>>), ClientTlsError> {
    let roots = match &files.ca_file {
        Some(file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(file).map_err(ClientTlsError::CaFile)? {
                roots.add(cert).map_err(|e| {
                    ClientTlsError::CaFile(TlsFileError::Unreadable { path: file.clone(), reason: e.to_string() })
                })?;
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs's default provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots);
    let (config, leaf) = match &files.client_cert {
        None => (builder.with_no_client_auth(), None),
        Some((cert_file, key_file)) => {
            let key = read_key(key_file).map_err(ClientTlsError::ClientCert)?;
            let chain = read_certs(cert_file).map_err(ClientTlsError::ClientCert)?;
            let leaf = chain.first().map(|cert| cert.as_ref().to_vec());
            let config = builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientTlsError::ClientCert(mismatch(cert_file, key_file, e)))?;
            (config, leaf)
        }
    };
    Ok((Arc::new(config), leaf))
}

/// Why outgoing TLS settings cannot be used: the CA file, or the client certificate and key (so
/// that configuration errors name `ca_file` or `client_cert_file`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientTlsError {
    #[error(transparent)]
    CaFile(TlsFileError),
    #[error(transparent)]
    ClientCert(TlsFileError),
}

/// The default for every destination without its own TLS settings: the system's trust store.
pub fn system_client_config() -> Arc<rustls::ClientConfig> {
    client_config(&ClientTlsFiles::default()).expect("the system trust store needs no files")
}

/// The operating system's trust store, read once. An empty or missing store is logged, not
/// fatal: plain-http and custom-CA destinations still work.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "reading the system trust store");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("the system trust store has no CA certificates (install ca-certificates); https destinations without ca_file will fail");
            }
            Arc::new(roots)
        })
        .clone()
}
