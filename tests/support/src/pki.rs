//! A test PKI: one CA per test process, generated when first needed; certificates issued on
//! demand, as PEM files in a temporary directory. Shared by the integration and CLI tests.

use std::sync::{Arc, OnceLock};

pub struct TestPki {
    pub dir: std::path::PathBuf,
    pub ca_file: std::path::PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    serial: std::sync::atomic::AtomicU64,
}

/// A certificate and key the test PKI issued, as PEM files.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub der: Vec<u8>,
}

pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::new("cloakroom test CA"))
}

impl TestPki {
    /// A fresh CA in its own directory.
    pub fn new(name: &str) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("cloakroom-test-pki-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        TestPki { dir, ca_file, ca, serial: Default::default() }
    }

    /// A server certificate for 127.0.0.1 and localhost (or, with `client`, a client one).
    pub fn issue(&self, name: &str, client: bool) -> IssuedCert {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let n = self.serial.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let cert_file = self.dir.join(format!("{name}-{n}.pem"));
        let key_file = self.dir.join(format!("{name}-{n}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        IssuedCert { cert_file, key_file, der: cert.der().to_vec() }
    }

    /// A rustls client configuration trusting this CA, optionally presenting `identity`.
    pub fn client_config(&self, identity: Option<&IssuedCert>) -> Arc<rustls::ClientConfig> {
        cloakroom::install_crypto_provider();
        cloakroom::tls::client_config(&cloakroom::tls::ClientTlsFiles {
            ca_file: Some(self.ca_file.clone()),
            client_cert: identity.map(|c| (c.cert_file.clone(), c.key_file.clone())),
        })
        .unwrap()
    }
}
