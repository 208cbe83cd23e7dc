//! Certificates made at test time (nothing secret is committed): a CA, server certificates
//! for `localhost` and `127.0.0.1`, client certificates with a chosen CN, and the rdkafka
//! settings that use them.

use std::path::{Path, PathBuf};

use freshet_broker::config::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rdkafka::config::ClientConfig;

/// A certificate authority for one test; its certificate lives in its own temporary directory.
pub struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "Freshet test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("CA directory");
        std::fs::write(dir.path().join("ca.pem"), certificate.pem()).expect("write ca.pem");
        TestCa {
            certificate,
            key,
            dir,
        }
    }

    /// The CA certificate (PEM): what clients trust, and `--tls-client-ca`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `server.pem` and `server-key.pem` in `dir`: a server certificate for `localhost` and
    /// `127.0.0.1`.
    pub fn server_cert(&self, dir: &Path) -> (PathBuf, PathBuf) {
        self.issue(
            dir,
            "server",
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// `client-<cn>.pem` and `client-<cn>-key.pem` in `dir`: a client certificate whose
    /// subject CN is `cn` (the principal is `User:<cn>`).
    pub fn client_cert(&self, dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
        self.issue(
            dir,
            &format!("client-{cn}"),
            cn,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// Broker TLS settings with a new server certificate in `dir`; clients must present a
    /// certificate signed by this CA when `require_client_cert`.
    pub fn tls_config(&self, dir: &Path, require_client_cert: bool) -> TlsConfig {
        let (cert, key) = self.server_cert(dir);
        TlsConfig {
            cert,
            key,
            client_ca: require_client_cert.then(|| self.ca_path()),
        }
    }

    /// Sets `config` up for an SSL (or SASL_SSL, when `sasl`) listener signed by this CA,
    /// with a client certificate when `client` is given.
    pub fn configure_client(
        &self,
        config: &mut ClientConfig,
        sasl: bool,
        client: Option<(&Path, &Path)>,
    ) {
        let protocol = if sasl { "sasl_ssl" } else { "ssl" };
        config
            .set("security.protocol", protocol)
            .set("ssl.ca.location", self.ca_path().to_string_lossy());
        if let Some((cert, key)) = client {
            config
                .set("ssl.certificate.location", cert.to_string_lossy())
                .set("ssl.key.location", key.to_string_lossy());
        }
    }

    /// A certificate signed by this CA and its PKCS#8 key: `<stem>.pem`, `<stem>-key.pem`.
    fn issue(
        &self,
        dir: &Path,
        stem: &str,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let names = names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("sign certificate");
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}-key.pem")),
        );
        std::fs::write(&cert_path, certificate.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("ca_path", &self.ca_path())
            .finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
